//! Repositories written by format versions 1 and 2 are committed under tests/fixtures/ and must
//! always open, check clean, and restore exactly. If these tests fail, a format change broke old
//! backups. A copy of the version 1 one is migrated to version 2 and must do the same.

use crate::common;

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

/// A scratch copy of fixture `version`, its keys made private again (git does not keep 0600).
fn scratch(version: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("repo"), &dir.path().join("repo"));
    for key in ["operator.key", "writer.key"] {
        fs::copy(fixture.join(key), dir.path().join(key)).unwrap();
        chmod(&dir.path().join(key), 0o600);
    }
    (dir, fixture)
}

/// `custodian ARGS` on the scratch repository with `key` as the credential; returns the output.
fn run_with(dir: &Path, key: (&str, &str), args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("CUSTODIAN_REPO", dir.join("repo"))
        .env("CUSTODIAN_STATE_DIR", dir.join("state"))
        .env_remove("CUSTODIAN_IDENTITY")
        .env_remove("CUSTODIAN_WRITER_KEY")
        .env(key.0, dir.join(key.1))
        .output()
        .unwrap()
}

/// Snapshots list, check --read-data is clean, and `latest` restores exactly.
fn opens_checks_and_restores(dir: &Path, fixture: &Path, writer_key: &str) {
    let run = |args: &[&str]| {
        let out = run_with(dir, ("CUSTODIAN_IDENTITY", "operator.key"), args);
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
    let target = dir.join("restored");
    let _ = fs::remove_dir_all(&target);
    run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_content(&fixture.join("source"), &target);
    let out = run_with(
        dir,
        ("CUSTODIAN_WRITER_KEY", writer_key),
        &["snapshots", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn version_1_repository_still_opens_checks_and_restores() {
    let (dir, fixture) = scratch("v1");
    opens_checks_and_restores(dir.path(), &fixture, "writer.key");
}

#[test]
fn version_2_repository_still_opens_checks_and_restores() {
    let (dir, fixture) = scratch("v2");
    opens_checks_and_restores(dir.path(), &fixture, "writer.key");
    let out = run_with(
        dir.path(),
        ("CUSTODIAN_WRITER_KEY", "writer.key"),
        &["snapshots", "--json"],
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        snaps[0]["writer"]
            .as_str()
            .unwrap()
            .starts_with("writer credential "),
        "{snaps:?}"
    );
}

#[test]
fn migrate_signs_a_version_1_repository_in_place() {
    let (dir, fixture) = scratch("v1");
    let d = dir.path();
    let before: Vec<u8> = fs::read(d.join("repo/config")).unwrap();
    let out = run_with(
        d,
        ("CUSTODIAN_IDENTITY", "operator.key"),
        &["migrate", "--writer-key-out"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--writer-key-out needs a value: {}",
        text(&out)
    );
    let new_key = d.join("new-writer.key");
    let out = run_with(
        d,
        ("CUSTODIAN_IDENTITY", "operator.key"),
        &[
            "migrate",
            "--json",
            "--writer-key-out",
            new_key.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(done["objects"].as_u64().unwrap() >= 6, "{done}");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("repo/config")).unwrap()).unwrap();
    assert_eq!(config["version"], 2);
    // Nothing was re-encrypted: every pack and every object is byte for byte what it was.
    assert_same_content(&fixture.join("repo/packs"), &d.join("repo/packs"));
    assert_same_content(&fixture.join("repo/snapshots"), &d.join("repo/snapshots"));
    opens_checks_and_restores(d, &fixture, "new-writer.key");
    // The old credential cannot sign, so it is refused, saying which one to use.
    let out = run_with(d, ("CUSTODIAN_WRITER_KEY", "writer.key"), &["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("'custodian migrate' wrote"),
        "{}",
        text(&out)
    );
    // A backup with the new credential is signed by it.
    let out = std::process::Command::new(BIN)
        .args(["backup", "--json", "--new-source", "--source", "fixture"])
        .arg(fixture.join("source"))
        .env("CUSTODIAN_REPO", d.join("repo"))
        .env("CUSTODIAN_STATE_DIR", d.join("state"))
        .env("CUSTODIAN_WRITER_KEY", &new_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Putting the format-1 config back does not switch signatures off for those who know.
    fs::write(d.join("repo/config"), &before).unwrap();
    let out = run_with(
        d,
        ("CUSTODIAN_WRITER_KEY", "new-writer.key"),
        &["snapshots"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("switch signatures off"),
        "{}",
        text(&out)
    );
    let out = run_with(d, ("CUSTODIAN_IDENTITY", "operator.key"), &["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("switch signatures off"),
        "{}",
        text(&out)
    );
}
