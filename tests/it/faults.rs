//! Faults beyond kills: a full disk under the repository and under the state dir, a state dir
//! that turns read-only or is deleted mid-run, the clock stepping back an hour and forward a day,
//! and S3 answering 503 or dropping the connection on every kind of object. Each must end in a
//! clear error (or success) with nothing lost, and the run after it must succeed.
//!
//! The disk tests mount a small tmpfs, which needs root; where mounting is refused they say so
//! and skip.

use crate::common;

use common::proxy::{Fault, FaultProxy, Request};
use common::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// A tmpfs mounted at a path for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount `size` (e.g. "2m") at `path`, moving what is there onto it; None where this machine
    /// refuses (not root).
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        let old = path.with_extension("before-mount");
        let had = path.exists();
        if had {
            fs::rename(path, &old).unwrap();
        }
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!("note: skipped: cannot mount a tmpfs here ({})", text(&out));
            return None;
        }
        if had {
            let out = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", old.display()))
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        Some(Tmpfs(path.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Fill it to the last byte; returns the filler to delete.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 << 10];
        use std::io::Write;
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[7u8; 1]);
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// A record store with one snapshot; returns it, the store and a copy of what was saved.
fn world_with_a_snapshot() -> (World, PathBuf, String, PathBuf) {
    let w = World::new(SMALL_PACKS);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 512 << 10, 5).unwrap();
    let id = w.backup("records", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let saved = w.dir.path().join("saved");
    copy_tree(&src, &saved);
    (w, src, id, saved)
}

/// Check is clean and `id` restores to exactly `saved`.
fn intact(w: &World, id: &str, saved: &Path) {
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let target = w.dir.path().join(format!("restored-{}", rand_suffix()));
    w.restore(id, &target, &[]);
    assert_same_tree(saved, &target);
}

fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// A failure that is one clear paragraph, not a panic.
fn clear_failure(out: &Output, mentions: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("failed as it should: {}", err.trim());
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        mentions.iter().any(|m| err.contains(m)),
        "the error should say {mentions:?}: {err}"
    );
}

fn backup_out(w: &World, src: &Path) -> Output {
    w.writer_cmd(&["backup", "--json", "--source", "records"])
        .arg(src)
        .output()
        .unwrap()
}

#[test]
fn a_full_repository_disk_fails_clearly_and_loses_nothing() {
    let (w, src, id, saved) = world_with_a_snapshot();
    let used: u64 = du(&w.repo);
    let Some(disk) = Tmpfs::mount(&w.repo, &format!("{}k", used / 1024 + 256)) else {
        return;
    };
    fs::write(src.join("big.bin"), noise(3 << 20, 9)).unwrap();
    let out = backup_out(&w, &src);
    clear_failure(&out, &["the disk holding it is full. Free space there"]);
    assert_eq!(w.snapshots().len(), 1, "no partial snapshot");
    intact(&w, &id, &saved);
    disk.remount("size=64m");
    let out = backup_out(&w, &src);
    assert!(out.status.success(), "{}", text(&out));
    let latest = w.latest_id();
    intact(&w, &latest, &src);
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The state dir full: the backup succeeds without saving its file cache. Read-only: it fails
/// clearly before writing anything. Nothing is lost, and once writable the next one succeeds.
#[test]
fn a_full_or_read_only_state_dir_fails_clearly_and_loses_nothing() {
    let (w, src, id, saved) = world_with_a_snapshot();
    let Some(state) = Tmpfs::mount(&w.state, "4m") else {
        return;
    };
    let filler = state.fill();
    fs::write(src.join("new.csv"), noise(100_000, 3)).unwrap();
    // The file cache is saved after the commit: the backup succeeds and says the next one will
    // read every file again.
    let out = backup_out(&w, &src);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("file cache could not be"),
        "{}",
        text(&out)
    );
    intact(&w, &id, &saved);
    fs::remove_file(filler).unwrap();
    state.remount("ro");
    fs::write(src.join("newer.csv"), noise(100_000, 4)).unwrap();
    let out = backup_out(&w, &src);
    clear_failure(&out, &["read-only. Remount it read-write"]);
    intact(&w, &id, &saved);
    state.remount("rw");
    let out = backup_out(&w, &src);
    assert!(out.status.success(), "{}", text(&out));
    let latest = w.latest_id();
    intact(&w, &latest, &src);
}

/// The state dir removed while a backup runs (stopped at its second write, the directory
/// deleted, then let go): the backup makes it again and succeeds, and so does the next.
#[test]
fn a_state_dir_deleted_mid_run_is_survived() {
    let (w, src, id, saved) = world_with_a_snapshot();
    fs::write(src.join("new.csv"), noise(300_000, 3)).unwrap();
    let mut child = paused_at(
        w.writer_cmd(&["backup", "--source", "records"]).arg(&src),
        "op:2:before",
    );
    fs::remove_dir_all(&w.state).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let _ = &mut child;
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the state dir is made again: {}",
        text(&out)
    );
    intact(&w, &id, &saved);
    let out = backup_out(&w, &src);
    assert!(out.status.success(), "{}", text(&out));
    let latest = w.latest_id();
    intact(&w, &latest, &src);
}

/// `custodian ARGS` with the clock stepped by `offset` (`-1h`, `+1d`).
fn at(w: &World, offset: &str, args: &[&str]) -> serde_json::Value {
    let out = w
        .writer_cmd(args)
        .env("CUSTODIAN_TEST_CLOCK_OFFSET", offset)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} at {offset}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Back up the record store with the clock stepped by `offset`; returns the snapshot id.
fn backup_at(w: &World, offset: &str, src: &Path) -> String {
    let src = src.to_str().unwrap();
    let out = at(w, offset, &["backup", "--json", "--source", "records", src]);
    out["id"].as_str().unwrap().to_string()
}

/// The clock stepping back an hour between two backups: the later backup is still the newest
/// (for `latest`, the next backup's parent and retention), so `keep-last 1` keeps it; prune
/// with its grace period deletes nothing a snapshot needs.
#[test]
fn a_clock_stepped_back_an_hour_keeps_the_newest_data() {
    let (w, src, _, _) = world_with_a_snapshot();
    fs::write(src.join("after-the-step.csv"), noise(50_000, 8)).unwrap();
    let b = backup_at(&w, "-1h", &src);
    let snaps = w.snapshots();
    assert_eq!(
        snaps.last().unwrap()["id"],
        b,
        "the later backup lists last"
    );
    assert!(
        snaps[1]["time"].as_str() < snaps[0]["time"].as_str(),
        "its clock said it was older"
    );
    let c = backup_at(&w, "-1h", &src);
    let snaps = w.snapshots();
    assert_eq!(snaps.last().unwrap()["id"], c);
    assert_eq!(
        snaps.last().unwrap()["parent"],
        b,
        "the next backup's parent is the newest"
    );
    at(&w, "-1h", &["forget", "--keep-last", "1"]);
    let left: Vec<_> = w.snapshots().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(
        left,
        std::slice::from_ref(&c),
        "keep-last kept the newest data"
    );
    at(&w, "-1h", &["prune"]);
    at(&w, "+0s", &["prune"]);
    intact(&w, &c, &src);
}

/// The clock stepping forward a day: a prune then sees every pack as a day old, so it marks at
/// once what nothing references; back on time, markers stamped "tomorrow" wait a day more before
/// anything is deleted (erring towards keeping). The day-ahead backup is the newest, and
/// everything a snapshot needs stays.
#[test]
fn a_clock_stepped_forward_a_day_destroys_nothing_early() {
    let (w, src, _, _) = world_with_a_snapshot();
    fs::write(src.join("tomorrow.csv"), noise(200_000, 6)).unwrap();
    backup_at(&w, "+1d", &src);
    at(&w, "+1d", &["forget", "--keep-last", "1"]);
    let marked = at(&w, "+1d", &["prune", "--json", "--max-unused", "0"]);
    assert!(
        marked["marker"].is_string(),
        "the day-ahead prune marked: {marked}"
    );
    assert_eq!(marked["deleted_packs"], 0, "{marked}");
    let back = at(&w, "+0s", &["prune", "--json", "--max-unused", "0"]);
    assert_eq!(
        back["deleted_packs"], 0,
        "a marker from tomorrow waits: {back}"
    );
    let latest = w.latest_id();
    intact(&w, &latest, &src);
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Object kinds by the prefix of their names (`list-type=2`: listings).
const KINDS: [&str; 17] = [
    "exclusions/",
    "keys/trust-",
    "keys/writer-",
    "keys/metadata-",
    "keys/domains/",
    "sessions/",
    "holds/",
    "destruction/",
    "prune/",
    "locks/",
    "drills/",
    "index/",
    "snapshots/",
    "packs/",
    "config",
    "probe/",
    "list-type=2",
];

/// The prefix of an object name that says its kind (`keys/trust-`, `sessions/`, …).
fn kind_of(target: &str) -> Option<&'static str> {
    KINDS.iter().copied().find(|k| target.contains(k))
}

/// Every kind of object, on every method custodian uses for it: the first request answered 503,
/// the second dropped. A whole working day (init, a new source's backup, hold and release,
/// forget, prune, erase, a drill report) still succeeds, and restores exactly.
#[test]
fn s3_503s_and_dropped_connections_on_every_object_kind_are_survived() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    let seen: &'static Mutex<HashMap<(String, &'static str), usize>> =
        Box::leak(Box::new(Mutex::new(HashMap::new())));
    let proxy = FaultProxy::start(&server.endpoint, move |r: &Request| {
        let Some(kind) = kind_of(r.target) else {
            return Fault::Pass;
        };
        let mut seen = seen.lock().unwrap();
        let n = seen.entry((r.method.to_string(), kind)).or_insert(0);
        *n += 1;
        match *n {
            1 => Fault::Status(503),
            2 => Fault::Drop,
            _ => Fault::Pass,
        }
    });
    let mut through = server.clone();
    through.endpoint = proxy.endpoint.clone();
    let w = World::on_s3(&through, SMALL_PACKS);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 1 << 20, 12).unwrap();
    let first = w.backup("records", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = |mut c: Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    ok(w.writer_cmd(&["hold", &first, "--reason", "case"]));
    ok(w.operator_cmd(&["release", &first]));
    custodian::sample::mutate(&src, 13).unwrap();
    w.backup("records", &src);
    ok(w.writer_cmd(&["forget", "--keep-last", "1"]));
    ok(w.writer_cmd(&["prune", "--grace", "0s", "--max-unused", "0"]));
    let erase = ["erase", "--source", "records", "--path", "branch-01"];
    ok(w.operator_cmd(&erase));
    ok(w.operator_cmd(&["check", "--read-data"]));
    let log = proxy.log();
    // Every kind this working day uses; drill reports (drills/) are not part of it.
    for kind in KINDS.iter().filter(|k| **k != "drills/") {
        for fault in ["Status(503)", "Drop"] {
            assert!(
                log.iter().any(|l| l.contains(kind) && l.ends_with(fault)),
                "no {fault} on {kind}: {log:#?}"
            );
        }
    }
}
