//! A repository written by format version 1 is committed under tests/fixtures/v1 and must always
//! open, check clean, and restore exactly. If this test fails, a format change broke old backups.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn content_equal(a: &Path, b: &Path) {
    for e in fs::read_dir(a).unwrap() {
        let e = e.unwrap();
        let other = b.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            content_equal(&e.path(), &other);
        } else {
            assert_eq!(
                fs::read(e.path()).unwrap(),
                fs::read(&other).unwrap(),
                "{}",
                other.display()
            );
        }
    }
    assert_eq!(
        fs::read_dir(a).unwrap().count(),
        fs::read_dir(b).unwrap().count(),
        "{}",
        b.display()
    );
}

#[test]
fn version_1_repository_still_opens_checks_and_restores() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("repo"), &dir.path().join("repo"));
    for key in ["operator.key", "writer.key"] {
        fs::copy(fixture.join(key), dir.path().join(key)).unwrap();
        chmod(&dir.path().join(key), 0o600); // git does not keep 0600
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("CUSTODIAN_REPO", dir.path().join("repo"))
            .env("CUSTODIAN_IDENTITY", dir.path().join("operator.key"))
            .env("CUSTODIAN_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out.stdout
    };
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&run(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "fixture");
    let report: serde_json::Value =
        serde_json::from_slice(&run(&["check", "--read-data", "--json"])).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    let target = dir.path().join("restored");
    run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    content_equal(&fixture.join("source"), &target);
    // The writer credential of version 1 still opens it too.
    let out = std::process::Command::new(BIN)
        .args(["snapshots", "--json"])
        .env("CUSTODIAN_REPO", dir.path().join("repo"))
        .env("CUSTODIAN_WRITER_KEY", dir.path().join("writer.key"))
        .env_remove("CUSTODIAN_IDENTITY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
