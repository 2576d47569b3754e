//! Bad input gets one clear paragraph naming the thing and the fix, a non-zero exit, no panic.

use crate::common;

use common::*;
use std::fs;

fn fails_with(out: std::process::Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

fn world_with_snapshot() -> (World, std::path::PathBuf) {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), b"1,2,3\n").unwrap();
    w.backup("customers", &src);
    (w, src)
}

#[test]
fn missing_and_wrong_keys() {
    let (w, _) = world_with_snapshot();
    fails_with(
        w.cmd(&["snapshots"]).output().unwrap(),
        &["needs a key", "--writer-key"],
    );
    fails_with(
        w.cmd(&["snapshots", "--writer-key", "/no/such.key"])
            .output()
            .unwrap(),
        &["/no/such.key", "does not exist"],
    );
    // An operator identity that is not one of this repository's operators.
    let stranger = w.dir.path().join("stranger.key");
    assert!(w
        .cmd(&["key", "generate", "--output"])
        .arg(&stranger)
        .output()
        .unwrap()
        .status
        .success());
    fails_with(
        w.cmd(&["ls", "latest", "--identity"])
            .arg(&stranger)
            .output()
            .unwrap(),
        &["not one of this repository's operators"],
    );
    // A writer credential of another repository.
    let other = World::new(&[]);
    fails_with(
        w.cmd(&["snapshots", "--writer-key"])
            .arg(&other.writer)
            .output()
            .unwrap(),
        &["belongs to repository"],
    );
    // The operator identity passed as a writer credential.
    fails_with(
        w.cmd(&["snapshots", "--writer-key"])
            .arg(&w.operator)
            .output()
            .unwrap(),
        &["operator identity", "--identity"],
    );
    // Garbage in a key file.
    let junk = w.dir.path().join("junk.key");
    fs::write(&junk, "hello").unwrap();
    chmod(&junk, 0o600);
    fails_with(
        w.cmd(&["ls", "latest", "--identity"])
            .arg(&junk)
            .output()
            .unwrap(),
        &["junk.key", "AGE-SECRET-KEY"],
    );
}

#[test]
fn key_readable_by_others_is_refused() {
    let (w, _) = world_with_snapshot();
    chmod(&w.writer, 0o644);
    fails_with(
        w.writer_cmd(&["snapshots"]).output().unwrap(),
        &["readable by group or others", "chmod 600"],
    );
    chmod(&w.operator, 0o640);
    fails_with(
        w.operator_cmd(&["ls", "latest"]).output().unwrap(),
        &["chmod 600"],
    );
}

#[test]
fn not_a_repository_and_unknown_version() {
    let (w, _) = world_with_snapshot();
    let empty = w.dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    fails_with(
        w.writer_cmd(&["snapshots", "--repo"])
            .arg(&empty)
            .output()
            .unwrap(),
        &["is not a custodian repository", "custodian init"],
    );
    let config = w.repo.join("config");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("\"version\": 2", "\"version\": 9");
    fs::write(&config, text).unwrap();
    fails_with(
        w.writer_cmd(&["snapshots"]).output().unwrap(),
        &["format version 9", "Upgrade custodian"],
    );
}

#[test]
fn snapshot_names_that_match_nothing_or_several() {
    let (w, src) = world_with_snapshot();
    fails_with(
        w.operator_cmd(&["ls", "deadbeef"]).output().unwrap(),
        &["no snapshot matches 'deadbeef'"],
    );
    fails_with(
        w.operator_cmd(&["ls", "not-hex"]).output().unwrap(),
        &["no snapshot matches"],
    );
    // Make snapshots until two share a first hex digit (at most 17 by pigeonhole).
    let mut seen = std::collections::HashMap::new();
    let mut shared = None;
    for i in 0..17 {
        fs::write(src.join("a.csv"), format!("row {i}\n")).unwrap();
        let id = w.backup("customers", &src)["id"]
            .as_str()
            .unwrap()
            .to_string();
        let first = id[..1].to_string();
        if seen.insert(first.clone(), id).is_some() {
            shared = Some(first);
            break;
        }
    }
    let prefix = shared.expect("pigeonhole");
    fails_with(
        w.operator_cmd(&["ls", &prefix]).output().unwrap(),
        &["matches", "snapshots", "more characters"],
    );
    // Two sources make a bare `latest` ambiguous.
    w.backup("ledgers", &src);
    fails_with(
        w.operator_cmd(&["ls", "latest"]).output().unwrap(),
        &["--source"],
    );
    assert!(w
        .operator_cmd(&["ls", "latest", "--source", "ledgers"])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn non_empty_target_needs_overwrite() {
    let (w, src) = world_with_snapshot();
    let target = w.dir.path().join("busy");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("a.csv"), b"stale").unwrap();
    fails_with(
        w.operator_cmd(&["restore", "latest", "--target"])
            .arg(&target)
            .output()
            .unwrap(),
        &["is not empty", "--overwrite"],
    );
    assert_eq!(
        fs::read(target.join("a.csv")).unwrap(),
        b"stale",
        "refusing must not touch the target"
    );
    w.restore("latest", &target, &["--overwrite"]);
    assert_eq!(
        fs::read(target.join("a.csv")).unwrap(),
        fs::read(src.join("a.csv")).unwrap()
    );
}

#[test]
fn init_refuses_an_existing_repository_and_bad_recipients() {
    let (w, _) = world_with_snapshot();
    let fresh = w.dir.path().join("fresh-repo");
    let out = w
        .operator_cmd(&["init", "--recipient", "age1qqq", "--writer-key-out"])
        .arg(w.dir.path().join("w2.key"))
        .arg("--repo")
        .arg(&fresh)
        .output()
        .unwrap();
    fails_with(out, &["age1qqq", "not an age X25519 recipient"]);
    assert!(
        !fresh.join("config").exists(),
        "a failed init must not leave a repository"
    );
    let recipient = w.recipient();
    let out = w
        .operator_cmd(&["init", "--recipient", &recipient, "--writer-key-out"])
        .arg(w.dir.path().join("w3.key"))
        .output()
        .unwrap();
    fails_with(out, &["already holds a custodian repository"]);
}

#[test]
fn a_relative_repository_path_that_does_not_exist_yet_works() {
    let w = World::new(&[]);
    let recipient = w.recipient();
    let out = w
        .operator_cmd(&[
            "init",
            "--recipient",
            &recipient,
            "--writer-key-out",
            "w.key",
            "--repo",
            "new/nested/repo",
        ])
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(w.dir.path().join("new/nested/repo/config").is_file());
}
