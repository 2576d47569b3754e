//! The writer credential can add backups but never read them, and nothing in the repository
//! reveals customer file names or contents.

use crate::common;

use common::*;
use std::collections::HashSet;
use std::fs;

const MARKER: &str = "ZEBRA-7f3c-CONFIDENTIAL";

#[test]
fn writer_cannot_read_and_nothing_leaks() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(src.join(format!("client-{MARKER}"))).unwrap();
    fs::write(
        src.join(format!("client-{MARKER}/{MARKER}.csv")),
        format!("name,{MARKER}\n").repeat(200),
    )
    .unwrap();
    fs::write(src.join("plain.txt"), MARKER).unwrap();
    let id = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Restore and ls with only the writer credential: refused, naming what is needed.
    for args in [
        vec!["restore", id.as_str(), "--target", "/tmp/never"],
        vec!["ls", id.as_str()],
    ] {
        let out = w.writer_cmd(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs an operator identity"), "{err}");
        assert!(err.contains("--identity"), "{err}");
    }
    let out = w.writer_cmd(&["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator identity"));
    // …but listing and structural checks work.
    assert_eq!(w.snapshots().len(), 1);
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The marker appears nowhere in the repository's bytes, nor in the local state.
    for dir in [&w.repo, &w.state] {
        for (path, bytes) in all_bytes(dir) {
            assert!(
                !contains(path.to_string_lossy().as_bytes(), MARKER.as_bytes()),
                "{} names the marker",
                path.display()
            );
            assert!(
                !contains(&bytes, MARKER.as_bytes()),
                "{} holds the marker in plaintext",
                path.display()
            );
        }
    }
}

fn chunk_ids(w: &World) -> HashSet<String> {
    let out = w
        .operator_cmd(&["ls", "--json", "latest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .flat_map(|r| {
            r["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn the_same_file_has_different_chunk_ids_in_two_repositories() {
    let (a, b) = (World::new(&[]), World::new(&[]));
    let src = a.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("known.csv"),
        b"a well-known public file\n".repeat(100),
    )
    .unwrap();
    a.backup("customers", &src);
    b.backup("customers", &src);
    let (ia, ib) = (chunk_ids(&a), chunk_ids(&b));
    assert_eq!(ia.len(), 1);
    assert!(
        ia.is_disjoint(&ib),
        "keyed ids must differ between repositories: {ia:?} {ib:?}"
    );
}
