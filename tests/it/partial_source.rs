//! Unreadable or vanishing files are reported and skipped; the snapshot still commits, lists
//! what was skipped, and the exit code is 3.

use crate::common;

use common::*;
use std::fs;
use std::os::unix::process::CommandExt;

const NOBODY: u32 = 65534;

#[test]
fn unreadable_entries_are_skipped_with_exit_code_3() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(src.join("locked-dir")).unwrap();
    fs::write(src.join("locked-dir/inside.csv"), b"x").unwrap();
    fs::write(src.join("readable.csv"), b"fine").unwrap();
    fs::write(src.join("secret.csv"), b"no access").unwrap();
    chmod(&src.join("secret.csv"), 0o000);
    chmod(&src.join("locked-dir"), 0o000);
    // Root reads everything, so as root run the backup as nobody (with its own repository).
    let (repo, writer, state) = if is_root() {
        let dir = w.dir.path().join("nobody");
        fs::create_dir_all(&dir).unwrap();
        for p in [w.dir.path(), &dir] {
            chmod(p, 0o777);
        }
        chmod(&src, 0o755);
        // The operator key, readable by nobody alone, to sign the repository at init.
        let ops = dir.join("ops.key");
        fs::copy(&w.operator, &ops).unwrap();
        std::os::unix::fs::chown(&ops, Some(NOBODY), Some(NOBODY)).unwrap();
        let out = w
            .cmd(&["init", "--writer-key-out"])
            .arg(dir.join("writer.key"))
            .arg("--identity")
            .arg(&ops)
            .arg("--repo")
            .arg(dir.join("repo"))
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        (dir.join("repo"), dir.join("writer.key"), dir.join("state"))
    } else {
        (w.repo.clone(), w.writer.clone(), w.state.clone())
    };
    let mut cmd = w.cmd(&["backup", "--json", "--source", "customers", "--writer-key"]);
    cmd.arg(&writer)
        .arg("--repo")
        .arg(&repo)
        .env("CUSTODIAN_STATE_DIR", &state)
        .arg(&src);
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped: Vec<String> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        skipped.contains(&"secret.csv".to_string()) && skipped.contains(&"locked-dir".to_string()),
        "{skipped:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped secret.csv"));

    let out = w
        .cmd(&["snapshots", "--json", "--identity"])
        .arg(&w.operator)
        .arg("--repo")
        .arg(&repo)
        .output()
        .unwrap();
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.len(), 1, "the backup must still commit");
    assert_eq!(snaps[0]["skipped"], 2);
    let target = w.dir.path().join("restored");
    let out = w
        .cmd(&["restore", "latest", "--identity"])
        .arg(&w.operator)
        .arg("--repo")
        .arg(&repo)
        .arg("--target")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(target.join("readable.csv")).unwrap(), b"fine");
    assert!(!target.join("secret.csv").exists());
    assert!(
        target.join("locked-dir").is_dir(),
        "an unreadable directory is kept, empty"
    );
    chmod(&src.join("locked-dir"), 0o755);
}

/// Back up `src`, stopping the backup after it listed the root and before it read a file, and
/// `change` the source there.
fn backup_changed_after_listing(
    w: &World,
    src: &std::path::Path,
    change: impl FnOnce(),
) -> std::process::Output {
    let child = paused_at(
        w.writer_cmd(&["backup", "--json", "--source", "customers"])
            .arg(src),
        "after-first-listing",
    );
    change();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    child.wait_with_output().unwrap()
}

#[test]
fn a_file_that_vanishes_during_the_backup_is_skipped() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("stays.csv"), b"stays").unwrap();
    fs::write(src.join("goes.csv"), b"goes").unwrap();
    let out = backup_changed_after_listing(&w, &src, || {
        fs::remove_file(src.join("goes.csv")).unwrap();
    });
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["skipped"][0]["path"], "goes.csv");
    assert_eq!(summary["stats"]["files"], 1);
}

#[test]
fn a_file_that_becomes_a_fifo_or_a_symlink_after_listing_is_skipped_not_followed() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    let outside = w.dir.path().join("outside-secret.txt");
    fs::write(&outside, b"not part of the source").unwrap();
    for name in ["a-fifo.csv", "b-link.csv", "c-stays.csv"] {
        fs::write(src.join(name), b"listed as a file").unwrap();
    }
    // A FIFO opened for reading would block until a writer came: the backup must not.
    let out = backup_changed_after_listing(&w, &src, || {
        fs::remove_file(src.join("a-fifo.csv")).unwrap();
        let fifo = src.join("a-fifo.csv").into_os_string().into_encoded_bytes();
        let fifo = std::ffi::CString::new(fifo).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        fs::remove_file(src.join("b-link.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, src.join("b-link.csv")).unwrap();
    });
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped: Vec<&str> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, vec!["a-fifo.csv", "b-link.csv"], "{summary}");
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_eq!(
        fs::read(target.join("c-stays.csv")).unwrap(),
        b"listed as a file"
    );
    assert!(
        !target.join("b-link.csv").exists(),
        "the outside file's bytes were not taken"
    );
    assert!(!target.join("a-fifo.csv").exists());
}
