//! A damaged repository never yields wrong bytes: restore fails naming the file and the pack,
//! and check finds what is wrong.

use crate::common;

use common::*;
use std::fs;

fn pack_files(w: &World) -> Vec<std::path::PathBuf> {
    let mut packs: Vec<_> = all_bytes(&w.repo.join("packs"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    packs
}

#[test]
fn a_flipped_byte_fails_restore_and_check_by_name() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only-ledger.csv"), noise(200_000, 3)).unwrap();
    w.backup("customers", &src);
    // The largest pack holds the 200 kB data frame and a small tree frame: its middle is data.
    let pack = &pack_files(&w)[0];
    let mut bytes = fs::read(pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(pack, &bytes).unwrap();
    let pack_short = &pack.file_name().unwrap().to_string_lossy()[..8];

    let target = w.dir.path().join("restored");
    let out = w
        .operator_cmd(&["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only-ledger.csv") && err.contains(pack_short),
        "must name file and pack: {err}"
    );
    assert!(
        !target.join("only-ledger.csv").exists(),
        "a file with unverified content must not be left behind"
    );

    let out = w
        .operator_cmd(&["check", "--read-data", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(pack_short)),
        "{report}"
    );
}

#[test]
fn structure_check_sees_truncation_and_missing_packs_without_keys_to_content() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 2 << 20, 4).unwrap();
    w.backup("customers", &src);
    let out = w.writer_cmd(&["check", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let packs = pack_files(&w);
    let bytes = fs::read(&packs[0]).unwrap();
    fs::write(&packs[0], &bytes[..bytes.len() - 10]).unwrap();
    fs::remove_file(packs.last().unwrap()).unwrap();
    let out = w.writer_cmd(&["check", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("truncated or replaced")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("missing from storage")),
        "{errors:?}"
    );
}

#[test]
fn read_data_subset_reads_only_part() {
    let w = World::new(SMALL_PACKS);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("scan.pdf"), noise(4 << 20, 9)).unwrap();
    w.backup("customers", &src);
    let read = |subset: &str| {
        let out = w
            .operator_cmd(&["check", "--json", "--read-data-subset", subset])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            r["packs_read"].as_u64().unwrap(),
            r["packs"].as_u64().unwrap(),
        )
    };
    let (some, all) = read("25%");
    assert!(all >= 10, "expected many packs, got {all}");
    assert!(some >= 1 && some < all, "25% read {some} of {all}");
    let (first, _) = read("1/2");
    let (second, _) = read("2/2");
    assert_eq!(first + second, all);
}
