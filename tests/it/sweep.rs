//! The crash-point sweep: every object write and delete a command makes is a kill point (before
//! and after it), enumerated by the failpoint hook itself (`CUSTODIAN_TEST_OP_LOG`), not listed
//! by hand. At each point the real binary is SIGKILLed, then: `check` finds no error (leftovers
//! are named as harmless warnings), the same command run again succeeds, every snapshot
//! committed before restores byte for byte, and no partial snapshot is visible.

use crate::common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The state a command starts from (repository, state dir, and files the command creates), to
/// go back to before each kill.
struct Baseline {
    saved: tempfile::TempDir,
    paths: Vec<std::path::PathBuf>,
}

impl Baseline {
    fn save(paths: &[&Path]) -> Baseline {
        let saved = tempfile::tempdir().unwrap();
        for (i, p) in paths.iter().enumerate() {
            if p.exists() {
                copy_tree(p, &saved.path().join(i.to_string()));
            }
        }
        Baseline {
            saved,
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    fn restore(&self) {
        for (i, p) in self.paths.iter().enumerate() {
            let copy = self.saved.path().join(i.to_string());
            if copy.exists() {
                copy_tree(&copy, p);
            } else if p.is_dir() {
                fs::remove_dir_all(p).unwrap();
            } else if p.exists() {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

/// Snapshots (id -> a copy of what they hold) that must restore exactly, and whether only
/// content counts (a committed fixture, whose times git does not keep).
type Expected = Vec<(String, std::path::PathBuf)>;

/// Every snapshot listed restores, and those of `expected` byte for byte.
fn all_restore(w: &World, expected: &[(String, std::path::PathBuf)], content_only: bool) -> usize {
    let snaps = snapshots_of(w);
    for s in &snaps {
        let id = s["id"].as_str().unwrap();
        let target = w.dir.path().join("sweep-restore");
        let _ = fs::remove_dir_all(&target);
        w.restore(id, &target, &[]);
        match expected.iter().find(|(e, _)| e == id) {
            Some((_, src)) if content_only => assert_same_content(src, &target),
            Some((_, src)) => assert_same_tree(src, &target),
            None => {}
        }
    }
    snaps.len()
}

/// `snapshots --json` as the operator sees them (the writer credential may be the one a
/// migrate replaces), or none where no repository exists yet.
fn snapshots_of(w: &World) -> Vec<serde_json::Value> {
    if !w.repo.join("config").exists() {
        return Vec::new();
    }
    let out = w.operator_cmd(&["snapshots", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One command to sweep.
pub(crate) struct Case<'a> {
    /// The repository the command changes (checked, listed and restored after each kill).
    pub(crate) at: &'a World,
    pub(crate) args: Vec<String>,
    /// Run with the operator identity rather than the writer credential.
    pub(crate) operator: bool,
    /// How to build the command; by default `at`'s own.
    pub(crate) via: Option<&'a World>,
    /// Snapshots (id -> source copy) that must restore byte for byte throughout.
    pub(crate) expected: &'a [(String, std::path::PathBuf)],
    /// How many snapshots more than before may be visible after a kill: a backup commits at most
    /// one; an erase killed between writing the rewritten heads and deleting the old ones shows
    /// both (the next run deletes the old ones); the rest only remove.
    pub(crate) adds: usize,
    /// Files the command creates outside the repository (a credential), reset with it.
    pub(crate) creates: Vec<std::path::PathBuf>,
    /// Compare restores by content only.
    pub(crate) content_only: bool,
}

impl<'a> Case<'a> {
    pub(crate) fn new(at: &'a World, args: &[&str]) -> Case<'a> {
        Case {
            at,
            args: args.iter().map(|a| a.to_string()).collect(),
            operator: false,
            via: None,
            expected: &[],
            adds: 0,
            creates: Vec::new(),
            content_only: false,
        }
    }

    fn command(&self) -> Command {
        let w = self.via.unwrap_or(self.at);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut c = if self.operator {
            w.operator_cmd(&args)
        } else {
            w.writer_cmd(&args)
        };
        c.env("CUSTODIAN_TEST_DOMAIN_SETTLE", "1s");
        c
    }
}

/// Kill the command of `case` at every write/delete point; returns the number of points swept.
pub(crate) fn sweep(case: &Case) -> usize {
    let w = case.at;
    let mut paths: Vec<&Path> = vec![&w.repo, &w.state];
    paths.extend(case.creates.iter().map(|p| p.as_path()));
    // A command run from another world keeps its audit anchors there: it goes back too, or the
    // reset repository would look truncated to that machine (as it should).
    if let Some(via) = case.via {
        paths.extend([via.repo.as_path(), via.state.as_path()]);
    }
    let base = Baseline::save(&paths);
    let before = snapshots_of(w).len();
    let log = w.dir.path().join("ops.log");
    let _ = fs::remove_file(&log);
    let out = case
        .command()
        .env("CUSTODIAN_TEST_OP_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}: {}", case.args, text(&out));
    let ops = fs::read_to_string(&log).unwrap_or_default().lines().count();
    assert!(ops > 0, "{:?} wrote nothing", case.args);
    let mut points = 0;
    for n in 1..=ops {
        for phase in ["before", "after"] {
            base.restore();
            let point = format!("op:{n}:{phase}");
            if kill_at(case, &point) {
                points += 1;
                after_kill(case, &point, before);
            }
        }
    }
    base.restore();
    points
}

/// Run the command until it stops at `point` and SIGKILL it there; false if it never got there
/// (this run made fewer operations, a concurrent order).
fn kill_at(case: &Case, point: &str) -> bool {
    let mut child = case
        .command()
        .env("CUSTODIAN_TEST_PAUSE_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    if !stopped_or_exited(&mut child) {
        return false;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    true
}

/// The four promises after a kill at `point`: check is clean (where a repository exists), no
/// partial snapshot shows, what was committed restores, and the rerun succeeds.
fn after_kill(case: &Case, point: &str, before: usize) {
    let (w, args) = (case.at, &case.args);
    if w.repo.join("config").exists() {
        let check = w.operator_cmd(&["check"]).output().unwrap();
        assert!(
            check.status.success(),
            "{args:?} killed at {point}: check: {}",
            text(&check)
        );
    }
    let now = snapshots_of(w).len();
    assert!(
        now <= before + case.adds,
        "{args:?} at {point}: {now} snapshots, {before} before"
    );
    all_restore(w, case.expected, case.content_only);
    let again = case.command().output().unwrap();
    assert!(
        again.status.success(),
        "{args:?} after a kill at {point}: {}",
        text(&again)
    );
    all_restore(w, case.expected, case.content_only);
}

/// Wait until the child stopped itself at its point (true) or exited without reaching it.
fn stopped_or_exited(child: &mut std::process::Child) -> bool {
    for _ in 0..600 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if is_stopped(child.id()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the child neither stopped nor exited");
}

/// Print the table and require that every command was swept at two points at least.
pub(crate) fn report(table: &[(&str, usize)]) {
    for (command, points) in table {
        eprintln!("sweep: {command}: {points} kill points");
        assert!(*points >= 2, "{command}");
    }
}

/// A world with snapshot `s` of a small record store; returns it, the store, and the first
/// snapshot with a copy of what it holds.
fn world_with_a_snapshot(extra: &[&str]) -> (World, std::path::PathBuf, Expected) {
    let w = World::new(&[SMALL_PACKS, extra].concat());
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), noise(300_000, 1)).unwrap();
    fs::write(src.join("b.csv"), b"1,2,3\n").unwrap();
    let first = w.backup("s", &src)["id"].as_str().unwrap().to_string();
    let first_copy = w.dir.path().join("first-copy");
    copy_tree(&src, &first_copy);
    (w, src, vec![(first, first_copy)])
}

fn ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_write_and_delete_of_backup_forget_prune_hold_and_erase_is_a_safe_kill_point() {
    let (w, src, expected) = world_with_a_snapshot(&[]);
    fs::write(src.join("c.csv"), noise(200_000, 2)).unwrap();
    let src = src.to_str().unwrap();
    let mut table = Vec::new();
    let mut case = Case::new(&w, &["backup", "--source", "fresh", src]);
    case.expected = &expected;
    case.adds = 1;
    table.push(("backup (first of a new source)", sweep(&case)));
    case.args[2] = "s".into();
    table.push(("backup", sweep(&case)));
    // Two snapshots of s, so forget and prune have work.
    w.backup("s", Path::new(src));
    let forget = ["forget", "--keep-last", "1", "--source", "s"];
    let mut case = Case::new(&w, &forget);
    case.expected = &expected;
    table.push(("forget", sweep(&case)));
    ok(w.writer_cmd(&forget));
    let prune = ["prune", "--grace", "0s", "--max-unused", "0"];
    table.push(("prune (marking)", sweep(&Case::new(&w, &prune))));
    ok(w.writer_cmd(&prune));
    table.push(("prune (finishing marks)", sweep(&Case::new(&w, &prune))));
    let latest = w.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hold = ["hold", latest.as_str(), "--reason", "sweep"];
    table.push(("hold", sweep(&Case::new(&w, &hold))));
    ok(w.writer_cmd(&hold));
    let mut case = Case::new(&w, &["release", &latest]);
    case.operator = true;
    table.push(("release", sweep(&case)));
    ok(w.operator_cmd(&["release", &latest]));
    let mut case = Case::new(&w, &["erase", "--source", "s", "--path", "c.csv"]);
    case.operator = true;
    case.adds = 1;
    table.push(("erase", sweep(&case)));
    // Lifting the exclusion that erase writes.
    ok(w.operator_cmd(&["erase", "--source", "s", "--path", "c.csv"]));
    let out = w.writer_cmd(&["exclusions", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let mut case = Case::new(&w, &["exclusions", "--remove", &id]);
    case.operator = true;
    table.push(("exclusions --remove", sweep(&case)));
    report(&table);
}

#[test]
fn every_write_of_init_and_migrate_is_a_safe_kill_point() {
    let w = World::new(SMALL_PACKS);
    for p in [&w.repo, &w.state] {
        fs::remove_dir_all(p).unwrap();
    }
    fs::remove_file(&w.writer).unwrap();
    let (recipient, writer) = (w.recipient(), w.writer.to_str().unwrap().to_string());
    let mut args = vec![
        "init",
        "--recipient",
        &recipient,
        "--writer-key-out",
        &writer,
    ];
    args.extend_from_slice(SMALL_PACKS);
    let mut case = Case::new(&w, &args);
    case.operator = true;
    case.creates = vec![w.writer.clone()];
    let mut table = vec![("init", sweep(&case))];

    // A copy of the format-1 fixture, migrated with a new credential.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    let v1 = World {
        repo: dir.path().join("repo"),
        operator: dir.path().join("operator.key"),
        writer: dir.path().join("writer.key"),
        state: dir.path().join("state"),
        s3: None,
        dir,
    };
    copy_tree(&fixture.join("repo"), &v1.repo);
    for (from, to) in [("operator.key", &v1.operator), ("writer.key", &v1.writer)] {
        fs::copy(fixture.join(from), to).unwrap();
        chmod(to, 0o600);
    }
    let id = snapshots_of(&v1)[0]["id"].as_str().unwrap().to_string();
    let expected = vec![(id, fixture.join("source"))];
    let new_key = v1.dir.path().join("new-writer.key");
    let new_key_arg = new_key.to_str().unwrap().to_string();
    let mut case = Case::new(&v1, &["migrate", "--writer-key-out", &new_key_arg]);
    case.operator = true;
    case.expected = &expected;
    case.creates = vec![new_key.clone()];
    case.content_only = true;
    table.push(("migrate", sweep(&case)));
    report(&table);
}

#[test]
fn every_write_of_copy_key_changes_and_drill_reports_is_a_safe_kill_point() {
    // A second operator, on the recipients list but not yet on the trust list.
    let keys = tempfile::tempdir().unwrap();
    let other = keys.path().join("other.key");
    let recipient = generate_identity(&other);
    let (w, src, expected) = world_with_a_snapshot(&["--recipient", &recipient]);
    let mut table = Vec::new();
    // copy, into a mirror it creates and into one it adds to.
    let dest = World {
        dir: tempfile::tempdir().unwrap(),
        repo: w.dir.path().join("mirror"),
        operator: w.operator.clone(),
        writer: w.writer.clone(),
        state: w.dir.path().join("mirror-state"),
        s3: None,
    };
    let (from, to) = (w.repo.to_str().unwrap(), dest.repo.to_str().unwrap());
    let copy = ["copy", "--from", from, "--to", to];
    let mut case = Case::new(&dest, &copy);
    case.via = Some(&w);
    case.adds = 1;
    table.push(("copy (creating the mirror)", sweep(&case)));
    ok(w.writer_cmd(&copy));
    let second = w.backup("s", &src)["id"].as_str().unwrap().to_string();
    let mut case = Case::new(&dest, &copy);
    case.via = Some(&w);
    case.adds = 1;
    case.expected = &expected;
    table.push(("copy (adding to the mirror)", sweep(&case)));
    let _ = second;

    // A drill's report saved into the repository.
    let runbook = w.dir.path().join("runbook.md");
    fs::write(&runbook, RUNBOOK).unwrap();
    let reports = w.dir.path().join("reports");
    let (runbook, reports) = (runbook.to_str().unwrap(), reports.to_str().unwrap());
    let mut case = Case::new(&w, &["drill", "--report-dir", reports, runbook]);
    case.operator = true;
    case.expected = &expected;
    table.push(("drill (saving its report)", sweep(&case)));

    // The second operator's signing key joins the trust list.
    let key = signing_key_of(&other);
    let add = [
        "key",
        "add-operator",
        "--recipient",
        &recipient,
        "--key",
        &key,
    ];
    let mut case = Case::new(&w, &add);
    case.operator = true;
    case.expected = &expected;
    table.push(("key add-operator", sweep(&case)));

    // The access registry: a writer credential issued, an auditor added, a writer revoked.
    let issued = w.dir.path().join("branch.key");
    let issue = [
        "access",
        "issue-writer",
        "--name",
        "branch",
        "--out",
        issued.to_str().unwrap(),
    ];
    let mut case = Case::new(&w, &issue);
    case.operator = true;
    case.expected = &expected;
    case.creates = vec![issued.clone()];
    table.push(("access issue-writer", sweep(&case)));
    let auditor_key = keys.path().join("auditor.key");
    let auditor_recipient = generate_identity(&auditor_key);
    let auditor_signing = signing_key_of(&auditor_key);
    let auditor = [
        "access",
        "add-auditor",
        &auditor_recipient,
        "--key",
        &auditor_signing,
        "--name",
        "auditor",
    ];
    let mut case = Case::new(&w, &auditor);
    case.operator = true;
    case.expected = &expected;
    table.push(("access add-auditor", sweep(&case)));
    // An operator added, then removed: each a new key generation with every record re-sealed.
    let third_key = keys.path().join("third.key");
    let third_recipient = generate_identity(&third_key);
    let third_signing = signing_key_of(&third_key);
    let add_third = [
        "access",
        "add-operator",
        &third_recipient,
        "--key",
        &third_signing,
        "--name",
        "third",
    ];
    let mut case = Case::new(&w, &add_third);
    case.operator = true;
    case.expected = &expected;
    table.push(("access add-operator", sweep(&case)));
    ok(w.operator_cmd(&add_third));
    let mut case = Case::new(&w, &["access", "remove-operator", "third"]);
    case.operator = true;
    case.expected = &expected;
    table.push(("access remove-operator", sweep(&case)));
    ok(w.operator_cmd(&issue));
    let mut case = Case::new(&w, &["access", "revoke-writer", "branch"]);
    case.operator = true;
    case.expected = &expected;
    table.push(("access revoke-writer", sweep(&case)));

    // A second source's domain, crypto-shredded.
    w.backup("doomed", &src);
    let mut case = Case::new(
        &w,
        &["key", "destroy-domain", "doomed", "--confirm", "doomed"],
    );
    case.operator = true;
    case.expected = &expected;
    table.push(("key destroy-domain", sweep(&case)));
    report(&table);
}

/// A drill of source `s` that checks the restore has files and keeps its report.
const RUNBOOK: &str = r#"+++
id = "sweep-drill"
title = "Sweep drill"
sources = ["s"]
owner = "tests"
rto = "10m"
rpo = "1h"
select = "latest"
[checks.files]
paths = ["a.csv"]
min-files = 1
+++

# Steps for people
"#;
