//! `custodian copy` between local disk and real S3 servers: what arrives restores byte for byte,
//! a second copy moves nothing, selections copy only what they name, and a foreign repository
//! is refused.

use crate::common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `custodian copy ARGS… --json` with the writer credential and the S3 server's environment.
fn copy(w: &World, server: &S3Server, args: &[&str]) -> Value {
    let out = copy_cmd(w, server, args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn copy_cmd(w: &World, server: &S3Server, args: &[&str]) -> Command {
    let mut c = w.writer_cmd(&["copy", "--json"]);
    c.args(args).envs(server.env());
    c
}

/// A command against another repository location, with the operator identity.
fn operator_at(w: &World, server: &S3Server, repo: &str, args: &[&str]) -> Command {
    let mut c = w.operator_cmd(args);
    c.env("CUSTODIAN_REPO", repo).envs(server.env());
    c
}

fn statuses(report: &Value) -> Vec<String> {
    report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

fn restore_and_compare(w: &World, server: &S3Server, repo: &str, source: &str, expected: &Path) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let target = w.dir.path().join(format!("restored-{source}-{n}"));
    let out = operator_at(
        w,
        server,
        repo,
        &["restore", "latest", "--source", source, "--target"],
    )
    .arg(&target)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(expected, &target);
}

#[test]
fn copies_local_to_s3_and_back_verified_and_incremental() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    let w = World::new(SMALL_PACKS);
    let (customers, ledgers) = (w.dir.path().join("customers"), w.dir.path().join("ledgers"));
    custodian::sample::generate(&customers, 2 << 20, 31).unwrap();
    custodian::sample::generate(&ledgers, 1 << 20, 32).unwrap();
    w.backup("customers", &customers);
    w.backup("ledgers", &ledgers);
    custodian::sample::mutate(&customers, 33).unwrap();
    w.backup("customers", &customers);
    let local = w.repo.to_str().unwrap().to_string();
    let mirror = format!("s3://{}/mirror", server.bucket());

    // Everything, into an empty bucket prefix: the mirror is created with the same keys.
    let report = copy(&w, &server, &["--from", &local, "--to", &mirror]);
    assert_eq!(statuses(&report), ["copied"; 3]);
    let copied = report["objects_copied"].as_u64().unwrap();
    assert!(copied > 10, "{report}");
    assert_eq!(report["objects_verified"], copied);
    // The mirror holds what the source holds, apart from the store probe's own objects.
    let (from, to) = (&report["from"], &report["to"]);
    assert!(
        to["objects"].as_u64() >= from["objects"].as_u64().map(|n| n - 2),
        "{report}"
    );
    restore_and_compare(&w, &server, &mirror, "customers", &customers);
    restore_and_compare(&w, &server, &mirror, "ledgers", &ledgers);
    let out = operator_at(&w, &server, &mirror, &["check", "--read-data"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Again: nothing to move.
    let report = copy(&w, &server, &["--from", &local, "--to", &mirror]);
    assert_eq!(statuses(&report), ["already-present"; 3]);
    assert_eq!(report["objects_copied"], 0, "{report}");
    // Only the copy's audit entry, its closing checkpoint and the store's create-if-absent
    // probe (which the entry's exclusive create needs) are written.
    assert_eq!(report["to"]["requests"]["put"], 3, "{report}");

    // A new snapshot, selected by source and `latest`: only its new objects travel.
    custodian::sample::mutate(&customers, 34).unwrap();
    w.backup("customers", &customers);
    let report = copy(
        &w,
        &server,
        &[
            "--from",
            &local,
            "--to",
            &mirror,
            "--source",
            "customers",
            "latest",
        ],
    );
    assert_eq!(statuses(&report), ["copied"]);
    let fresh = report["objects_copied"].as_u64().unwrap();
    assert!(fresh > 0 && fresh < copied, "{report}");
    restore_and_compare(&w, &server, &mirror, "customers", &customers);

    // Back from S3 to a new local repository, one source only.
    let back = w.dir.path().join("back").to_str().unwrap().to_string();
    let report = copy(
        &w,
        &server,
        &["--from", &mirror, "--to", &back, "--source", "ledgers"],
    );
    assert_eq!(statuses(&report), ["copied"]);
    restore_and_compare(&w, &server, &back, "ledgers", &ledgers);
    let out = operator_at(&w, &server, &back, &["snapshots", "--json"])
        .output()
        .unwrap();
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 1, "only the ledgers snapshot was copied");
}

#[test]
fn copy_refuses_a_repository_of_another_key_set() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    let (a, b) = (World::new(&[]), World::new(&[]));
    let src = a.dir.path().join("records");
    custodian::sample::generate(&src, 256 << 10, 41).unwrap();
    a.backup("customers", &src);
    let out = copy_cmd(
        &a,
        &server,
        &[
            "--from",
            a.repo.to_str().unwrap(),
            "--to",
            b.repo.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another repository"), "{err}");
    assert!(
        b.snapshots().is_empty(),
        "nothing was written into the other repository"
    );
}
