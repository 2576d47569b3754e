//! forget, holds and destruction records through the real binary.

use crate::common;

use common::*;
use serde_json::Value;

fn json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn five_snapshots() -> (World, std::path::PathBuf, Vec<String>) {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 300 << 10, 111).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        std::fs::write(src.join("day.txt"), format!("day {i}")).unwrap();
        ids.push(
            w.backup("customers", &src)["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    (w, src, ids)
}

#[test]
fn forget_keeps_what_rules_say_records_what_it_destroys_and_respects_holds() {
    let (w, src, ids) = five_snapshots();
    // Dry run: every decision with its rule, nothing deleted.
    let plan = json(
        w.writer_cmd(&["forget", "--keep-last", "2", "--dry-run", "--json"])
            .output()
            .unwrap(),
    );
    let removes: Vec<&Value> = plan["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["keep"] == false)
        .collect();
    assert_eq!(removes.len(), 3);
    assert_eq!(removes[0]["reasons"][0], "no keep rule matched");
    assert_eq!(w.snapshots().len(), 5);

    // A legal hold on the oldest survives any rule.
    let out = w
        .writer_cmd(&["hold", &ids[0][..8], "--reason", "case 2026-117"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let done = json(
        w.writer_cmd(&["forget", "--keep-last", "2", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(done["forgotten"], 2);
    let left: Vec<String> = w
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![ids[0].clone(), ids[3].clone(), ids[4].clone()]);
    assert_eq!(w.snapshots()[0]["held"], "case 2026-117");

    // The certificate: what, when, why, by whom; in the repository and locally.
    let records = json(
        w.writer_cmd(&["destruction-records", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(records.as_array().unwrap().len(), 1);
    let r = &records[0];
    assert_eq!(r["action"], "forget");
    assert!(
        r["by"].as_str().unwrap().starts_with("writer credential "),
        "{r}"
    );
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 2);
    assert_eq!(r["snapshots"][0]["reason"], "no keep rule matched");
    assert!(r["bytes_deleted"].as_u64().unwrap() > 0);
    assert!(r["note"].as_str().unwrap().contains("storage provider"));
    assert_eq!(
        std::fs::read_dir(w.state.join("destruction"))
            .unwrap()
            .count(),
        1
    );

    // The writer cannot lift a hold; an operator can, and then max-age destroys it.
    let out = w.writer_cmd(&["release", &ids[0][..8]]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator identity"));
    let out = w.operator_cmd(&["release", &ids[0][..8]]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let done = json(
        w.writer_cmd(&["forget", "--keep-last", "10", "--max-age", "1s", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(done["forgotten"], 3, "max-age beats keep-last: {done:#}");
    assert!(w.snapshots().is_empty());
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A fresh backup after forgetting everything is whole (data was only unreferenced).
    w.backup("customers", &src);
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
}

#[test]
fn forget_without_a_policy_is_refused() {
    let (w, _, _) = five_snapshots();
    let out = w.writer_cmd(&["forget"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a policy"));
    let out = w
        .writer_cmd(&["forget", "--min-age", "2d", "--max-age", "1d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(w.snapshots().len(), 5);
}

#[test]
fn a_suspicious_backup_holds_the_last_good_snapshot() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 1 << 20, 112).unwrap();
    let good = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut files: Vec<std::path::PathBuf> = all_bytes(&src).into_iter().map(|(p, _)| p).collect();
    files.sort();
    for (i, f) in files.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let len = std::fs::metadata(f).unwrap().len() as usize;
        std::fs::write(f, noise(len.max(512), 200 + i as u64)).unwrap();
    }
    let bad = w.backup_expect("customers", &src, 4);
    assert_eq!(bad["changes"]["suspicious"], true);
    let snaps = w.snapshots();
    assert_eq!(snaps[0]["id"], good.as_str());
    assert!(
        snaps[0]["held"].as_str().unwrap().contains("ransomware"),
        "{:#}",
        snaps[0]
    );
    let done = json(
        w.writer_cmd(&["forget", "--keep-last", "1", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        done["forgotten"], 0,
        "the held snapshot survives keep-last 1"
    );
}

#[test]
fn destroying_a_key_domain_leaves_nothing_decryptable_and_records_it() {
    let w = World::new(&[]);
    let (a, b) = (w.dir.path().join("client-a"), w.dir.path().join("client-b"));
    custodian::sample::generate(&a, 200 << 10, 121).unwrap();
    custodian::sample::generate(&b, 200 << 10, 122).unwrap();
    w.backup("client-a", &a);
    w.backup("client-b", &b);
    let out = w
        .operator_cmd(&["key", "destroy-domain", "client-a", "--confirm", "client-b"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a wrong confirmation is refused"
    );
    let out = w
        .operator_cmd(&["key", "destroy-domain", "client-a", "--confirm", "client-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["source"], "client-b");
    // Every pack of the destroyed domain is still there, and no operator can open any blob of it.
    let out = w
        .operator_cmd(&["check", "--read-data", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        !out.status.success() && !errors.is_empty(),
        "{}",
        text(&out)
    );
    assert!(
        errors
            .iter()
            .all(|e| e.as_str().unwrap().contains("keys/domains/")),
        "every unreadable blob is unreadable for want of the destroyed domain key: {errors:?}"
    );
    // The other domain is untouched.
    let target = w.dir.path().join("restored-b");
    w.restore("latest", &target, &["--source", "client-b"]);
    assert_same_tree(&b, &target);
    let records = json(
        w.writer_cmd(&["destruction-records", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(records[0]["action"], "destroy-domain");
    assert!(records[0]["by"]
        .as_str()
        .unwrap()
        .starts_with("operator age1"));
}
