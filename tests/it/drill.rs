//! Restore drills through the real binary: a good drill passes and cleans up; each broken
//! promise fails it with the reason in the report; a drill that cannot run exits 2; lint catches
//! each class of runbook error.

use crate::common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const RUNBOOK: &str = r#"+++
id = "drill-test"
title = "Test drill"
sources = ["customers"]
owner = "tests"
rto = "10m"
rpo = "1h"
select = "latest"
[checks.files]
paths = ["branch-01/clients", "branch-01/ledger.sqlite"]
min-files = 20
min-bytes = 10000
[[checks.sqlite]]
path = "branch-01/ledger.sqlite"
queries = [{ sql = "SELECT count(*) FROM clients", min = 1 }]
[[checks.command]]
run = "test -d \"$CUSTODIAN_RESTORE_DIR/branch-01\" && test -n \"$CUSTODIAN_SNAPSHOT\" && echo looked"
timeout = "30s"
[checks.compare-live]
sample = 20
tolerance = 0.0
+++

# Steps for people
"#;

/// A change to the default runbook's text.
type Edit = Box<dyn Fn(&str) -> String>;

fn world() -> (World, PathBuf) {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 1 << 20, 81).unwrap();
    w.backup("customers", &src);
    (w, src)
}

/// Write a runbook (the default one with `edit` applied) and drill it; (exit code, JSON reports, stderr).
fn drill_with(w: &World, edit: impl Fn(&str) -> String) -> (Option<i32>, Option<Value>, String) {
    let file = w.dir.path().join("runbook.md");
    std::fs::write(&file, edit(RUNBOOK)).unwrap();
    let out = w
        .operator_cmd(&["drill", "--json", "--report-dir"])
        .arg(w.dir.path().join("reports"))
        .arg(&file)
        .output()
        .unwrap();
    let json = serde_json::from_slice::<Value>(&out.stdout).ok();
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn reasons(json: &Option<Value>) -> String {
    json.as_ref()
        .map_or(String::new(), |j| j[0]["reasons"].to_string())
}

fn empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn a_good_drill_passes_reports_and_removes_the_restore() {
    let (w, _) = world();
    let (code, json, err) = drill_with(&w, |t| t.to_string());
    let report = &json.as_ref().unwrap_or_else(|| panic!("{err}"))[0];
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert_eq!(report["passed"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "manifest customers",
        "files",
        "sqlite branch-01/ledger.sqlite",
        "compare-live",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("command")));
    assert!(report["rto"]["achieved_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["rpo"]["newest_age_seconds"].as_u64().unwrap() < 60);
    // The restored customer data is gone; the reports are kept, locally and in the repository.
    assert!(
        empty_or_missing(&w.state.join("scratch")),
        "scratch left behind"
    );
    let local: Vec<_> = std::fs::read_dir(w.dir.path().join("reports"))
        .unwrap()
        .collect();
    assert_eq!(local.len(), 2, "a .json and a .txt report");
    let out = w
        .operator_cmd(&["drill", "reports", "--json"])
        .output()
        .unwrap();
    let stored: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["runbook"], "drill-test");
    // Reports name customer files, so the stored copy is sealed.
    for (path, bytes) in all_bytes(&w.repo.join("drills")) {
        assert!(
            !contains(&bytes, b"branch-01"),
            "{} holds plaintext",
            path.display()
        );
    }
    // The human page.
    let txt = std::fs::read_dir(w.dir.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "txt"))
        .unwrap();
    let page = std::fs::read_to_string(txt).unwrap();
    assert!(page.starts_with("PASS"), "{page}");
    assert!(
        page.contains("RTO [") && page.contains("RPO [") && page.contains("timeline"),
        "{page}"
    );
}

#[test]
fn broken_promises_fail_the_drill_with_the_reason() {
    let (w, _) = world();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "RTO missed",
            Box::new(|t: &str| t.replace("rto = \"10m\"", "rto = \"1ms\"")),
        ),
        (
            "check sqlite",
            Box::new(|t: &str| t.replace("min = 1 }", "min = 1000000 }")),
        ),
        (
            "check command",
            Box::new(|t: &str| t.replace("&& echo looked", "&& exit 3")),
        ),
        (
            "check files",
            Box::new(|t: &str| t.replace("min-files = 20", "min-files = 100000")),
        ),
    ];
    for (expected, edit) in cases {
        let (code, json, err) = drill_with(&w, edit);
        assert_eq!(code, Some(1), "{expected}: {err}");
        assert_eq!(json.as_ref().unwrap()[0]["passed"], false);
        assert!(
            reasons(&json).contains(expected),
            "{expected}: {}",
            reasons(&json)
        );
    }
    // The newest snapshot is older than the RPO.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, json, _) = drill_with(&w, |t| t.replace("rpo = \"1h\"", "rpo = \"1s\""));
    assert_eq!(code, Some(1));
    assert!(reasons(&json).contains("RPO missed"), "{}", reasons(&json));
}

#[test]
fn a_corrupted_pack_fails_the_drill() {
    let (w, _) = world();
    let mut packs: Vec<(PathBuf, Vec<u8>)> = all_bytes(&w.repo.join("packs"));
    packs.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
    let (path, mut bytes) = packs.remove(0);
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x55;
    chmod(&path, 0o644);
    std::fs::write(&path, bytes).unwrap();
    let (code, json, err) = drill_with(&w, |t| t.to_string());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        reasons(&json).contains("restore customers"),
        "{}",
        reasons(&json)
    );
    assert!(
        empty_or_missing(&w.state.join("scratch")),
        "scratch left behind"
    );
}

#[test]
fn a_drill_that_cannot_run_exits_2() {
    let (w, _) = world();
    let (code, _, err) = drill_with(&w, |t| {
        t.replace("sources = [\"customers\"]", "sources = [\"ledgers\"]")
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no snapshot of source 'ledgers'"), "{err}");
    // Without an operator identity there is nothing to restore with.
    let file = w.dir.path().join("runbook.md");
    std::fs::write(&file, RUNBOOK).unwrap();
    let out = w.writer_cmd(&["drill"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator identity"));
}

#[test]
fn lint_catches_each_class_of_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("custodian.toml");
    std::fs::write(
        &config,
        "[repository]\nurl = \"/srv/backup\"\nwriter-key-file = \"w.key\"\n\n[[source]]\nname = \"customers\"\npath = \"/srv/records\"\nschedule = \"0 * * * *\"\n",
    )
    .unwrap();
    let cases = [
        (
            RUNBOOK.replace("owner = \"tests\"", "owner = \"tests\"\ncolour = \"red\""),
            ":6:",
            "colour",
        ),
        (
            RUNBOOK.replace("rto = \"10m\"", "rto = \"ten minutes\""),
            ":6:",
            "rto",
        ),
        (
            RUNBOOK.replace("select = \"latest\"", "schedule = \"61 * * * *\""),
            ":8:",
            "schedule",
        ),
        (
            RUNBOOK.replace("select = \"latest\"", "select = \"newest\""),
            ":8:",
            "select",
        ),
        (
            RUNBOOK.replace("sources = [\"customers\"]", "sources = [\"payroll\"]"),
            ":4:",
            "payroll",
        ),
    ];
    for (runbook, line, what) in cases {
        let books = tempfile::tempdir().unwrap();
        std::fs::write(books.path().join("broken.md"), runbook).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["runbook", "lint", "--runbooks"])
            .arg(books.path())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("broken.md{line}")) && err.contains(what),
            "{what}: {err}"
        );
    }
    // The shipped runbooks are clean against the shipped config.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(BIN)
        .args(["runbook", "lint", "--runbooks"])
        .arg(root.join("runbooks"))
        .arg("--config")
        .arg(root.join("config/custodian.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Rewrite every other file under `dir` with random bytes of the same length, as ransomware does.
fn encrypt_half(dir: &Path, seed: u64) -> usize {
    let mut files: Vec<PathBuf> = all_bytes(dir).into_iter().map(|(p, _)| p).collect();
    files.sort();
    let mut n = 0;
    for (i, path) in files.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let len = std::fs::metadata(path).unwrap().len() as usize;
        std::fs::write(path, noise(len.max(512), seed + i as u64)).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_ransomware_pass_is_flagged_and_its_runbook_restores_the_snapshot_before_it() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 2 << 20, 91).unwrap();
    let first = w.backup("customers", &src);
    custodian::sample::mutate(&src, 92).unwrap();
    let second = w.backup("customers", &src);
    let before_attack = w.dir.path().join("before-attack");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&before_attack)
        .status()
        .unwrap()
        .success());
    let encrypted = encrypt_half(&src, 93);
    assert!(encrypted > 20);
    // Exit code 4: saved, but flagged suspicious.
    let attacked = w.backup_expect("customers", &src, 4);
    for (summary, flagged) in [(&first, false), (&second, false), (&attacked, true)] {
        assert_eq!(summary["changes"]["suspicious"], flagged, "{summary:#}");
    }
    let snaps = w.snapshots();
    assert_eq!(snaps[2]["suspicious"], true);
    let out = w.writer_cmd(&["snapshots"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUSPICIOUS"),
        "{}",
        text(&out)
    );
    // One more ordinary backup after the attack: not flagged itself, but encrypted all the same.
    std::fs::write(src.join("after.txt"), "written after the attack").unwrap();
    w.backup("customers", &src);

    let runbook = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/ransomware.md"),
    )
    .unwrap();
    let file = w.dir.path().join("ransomware.md");
    std::fs::write(&file, runbook).unwrap();
    let out = w
        .operator_cmd(&["drill", "--json", "--report-dir"])
        .arg(w.dir.path().join("reports"))
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report[0]["sources"][0]["snapshot"], second["id"],
        "{report:#}"
    );
    let target = w.dir.path().join("restored");
    w.restore(second["id"].as_str().unwrap(), &target, &[]);
    assert_same_tree(&before_attack, &target);
}
