//! The crash-point sweep: every object write and delete a command makes is a kill point (before
//! and after it), enumerated by the failpoint hook itself (`CUSTODIAN_TEST_OP_LOG`), not listed
//! by hand. At each point the real binary is SIGKILLed, then: `check` finds no error (leftovers
//! are named as harmless warnings), the same command run again succeeds, every snapshot
//! committed before restores byte for byte, and no partial snapshot is visible.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn cp(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The state a command starts from (repository and state dir), to go back to before each kill.
struct Baseline {
    saved: tempfile::TempDir,
}

impl Baseline {
    fn save(w: &World) -> Baseline {
        let saved = tempfile::tempdir().unwrap();
        cp(&w.repo, &saved.path().join("repo"));
        if w.state.exists() {
            cp(&w.state, &saved.path().join("state"));
        }
        Baseline { saved }
    }

    fn restore(&self, w: &World) {
        cp(&self.saved.path().join("repo"), &w.repo);
        let state = self.saved.path().join("state");
        if state.exists() {
            cp(&state, &w.state);
        }
    }
}

/// Every snapshot listed restores, and those of `expected` (id -> source copy) byte for byte.
fn all_restore(w: &World, expected: &[(String, std::path::PathBuf)]) -> usize {
    let snaps = w.snapshots();
    for s in &snaps {
        let id = s["id"].as_str().unwrap();
        let target = w.dir.path().join("sweep-restore");
        let _ = fs::remove_dir_all(&target);
        w.restore(id, &target, &[]);
        if let Some((_, src)) = expected.iter().find(|(e, _)| e == id) {
            assert_same_tree(src, &target);
        }
    }
    snaps.len()
}

/// Kill `args` at every write/delete point; returns the number of points swept.
/// `adds`: how many snapshots more than before may be visible after a kill: a backup commits at
/// most one; an erase killed between writing the rewritten heads and deleting the old ones shows
/// both (the next run deletes the old ones); the rest only remove.
fn sweep(
    w: &World,
    args: &[&str],
    expected: &[(String, std::path::PathBuf)],
    adds: usize,
) -> usize {
    sweep_as(w, args, expected, adds, false)
}

/// [`sweep`], with the operator identity when `operator`.
fn sweep_as(
    w: &World,
    args: &[&str],
    expected: &[(String, std::path::PathBuf)],
    adds: usize,
    operator: bool,
) -> usize {
    let run = |args: &[&str]| {
        if operator {
            w.operator_cmd(args)
        } else {
            w.writer_cmd(args)
        }
    };
    let base = Baseline::save(w);
    let before = w.snapshots().len();
    let log = w.dir.path().join("ops.log");
    let _ = fs::remove_file(&log);
    let out = run(args)
        .env("CUSTODIAN_TEST_OP_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    let ops = fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert!(ops > 0, "{args:?} wrote nothing");
    let mut points = 0;
    for n in 1..=ops {
        for phase in ["before", "after"] {
            base.restore(w);
            let point = format!("op:{n}:{phase}");
            let mut child = run(args)
                .env("CUSTODIAN_TEST_PAUSE_AT", &point)
                .env("CUSTODIAN_TEST_DOMAIN_SETTLE", "1s")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            if !stopped_or_exited(&mut child) {
                continue; // this run made fewer operations (a concurrent order): not a point
            }
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            points += 1;
            let check = w.writer_cmd(&["check"]).output().unwrap();
            assert!(
                check.status.success(),
                "{args:?} killed at {point}: check: {}",
                text(&check)
            );
            let now = w.snapshots().len();
            let whole = now <= before + adds;
            assert!(
                whole,
                "{args:?} at {point}: {now} snapshots, {before} before"
            );
            all_restore(w, expected);
            let again = run(args)
                .env("CUSTODIAN_TEST_DOMAIN_SETTLE", "1s")
                .output()
                .unwrap();
            assert!(
                again.status.success(),
                "{args:?} after a kill at {point}: {}",
                text(&again)
            );
            all_restore(w, expected);
        }
    }
    base.restore(w);
    points
}

/// Wait until the child stopped itself at its point (true) or exited without reaching it.
fn stopped_or_exited(child: &mut std::process::Child) -> bool {
    for _ in 0..600 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("T") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the child neither stopped nor exited");
}

#[test]
fn every_write_and_delete_of_backup_forget_and_prune_is_a_safe_kill_point() {
    let w = World::new(SMALL_PACKS);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), noise(300_000, 1)).unwrap();
    fs::write(src.join("b.csv"), b"1,2,3\n").unwrap();
    let first = w.backup("s", &src)["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let first_copy = w.dir.path().join("first-copy");
    cp(&src, &first_copy);
    let expected = vec![(first.clone(), first_copy)];
    fs::write(src.join("c.csv"), noise(200_000, 2)).unwrap();

    let mut table = Vec::new();
    let new_source = ["backup", "--source", "fresh", src.to_str().unwrap()];
    table.push((
        "backup (first of a new source)",
        sweep(&w, &new_source, &expected, 1),
    ));
    let again = ["backup", "--source", "s", src.to_str().unwrap()];
    table.push(("backup", sweep(&w, &again, &expected, 1)));
    // Two snapshots of s, so forget and prune have work.
    w.backup("s", &src);
    table.push((
        "forget",
        sweep(
            &w,
            &["forget", "--keep-last", "1", "--source", "s"],
            &expected,
            0,
        ),
    ));
    assert!(w
        .writer_cmd(&["forget", "--keep-last", "1", "--source", "s"])
        .output()
        .unwrap()
        .status
        .success());
    table.push((
        "prune",
        sweep(&w, &["prune", "--grace", "0s", "--max-unused", "0"], &[], 0),
    ));
    let latest = w.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hold = ["hold", latest.as_str(), "--reason", "sweep"];
    table.push(("hold", sweep(&w, &hold, &[], 0)));
    let erase = ["erase", "--source", "s", "--path", "c.csv"];
    table.push(("erase", sweep_as(&w, &erase, &[], 1, true)));
    for (command, points) in &table {
        eprintln!("sweep: {command}: {points} kill points");
        assert!(*points >= 2, "{command}");
    }
}
