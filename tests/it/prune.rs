//! prune through the real binary: two phases, repacking, destruction records, the lease, and
//! many rounds of backups and prunes racing in separate processes.

use crate::common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tiny packs and chunks: a few hundred KiB make dozens of packs.
const TINY_PACKS: &[&str] = &["--pack-size", "65536", "--chunk-sizes", "4096,16384,65536"];

fn json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Generation `gen` of source `source`: file k changes every (k % 4 + 1) generations, so
/// consecutive snapshots share most blobs and old packs end up partly used; one file flips
/// between two versions every 4 generations, so content comes back after being forgotten. Deterministic,
/// mtimes included, so any generation can be rebuilt to compare a restore with.
fn generation(dir: &Path, source: u64, gen: u64) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("ledgers")).unwrap();
    for k in 0..17u64 {
        let version = if k == 16 {
            (gen / 4) % 2
        } else {
            gen - gen % (k % 4 + 1)
        };
        let len = 6_000 + ((k * 3_001 + version * 977) % 30_000) as usize;
        let path = if k % 2 == 0 {
            dir.join(format!("client-{k}.dat"))
        } else {
            dir.join("ledgers").join(format!("l{k}.csv"))
        };
        fs::write(&path, noise(len, source * 1_000_000 + k * 1_000 + version)).unwrap();
        let t = filetime::FileTime::from_unix_time(1_700_000_000 + (version * 100 + k) as i64, 0);
        filetime::set_file_mtime(&path, t).unwrap();
    }
    let t = filetime::FileTime::from_unix_time(1_700_000_000 + gen as i64, 0);
    filetime::set_file_mtime(dir.join("ledgers"), t).unwrap();
    filetime::set_file_mtime(dir, t).unwrap();
}

fn prune(w: &World, args: &[&str]) -> Value {
    let mut all = vec!["prune", "--json"];
    all.extend_from_slice(args);
    json(w.writer_cmd(&all).output().unwrap())
}

fn pack_count(w: &World) -> usize {
    walk_files(&w.repo.join("packs")).len()
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Restore every snapshot and compare it with the generation its tag names.
fn restore_every_snapshot(w: &World, sources: &[&str]) -> usize {
    let snaps = w.snapshots();
    for s in &snaps {
        let id = s["id"].as_str().unwrap();
        let source = s["source"].as_str().unwrap();
        let gen: u64 = s["tags"][0].as_str().unwrap()["gen-".len()..]
            .parse()
            .unwrap();
        let n = sources.iter().position(|x| *x == source).unwrap() as u64;
        let expected = w.dir.path().join("expected");
        generation(&expected, n, gen);
        let target = w.dir.path().join("restored");
        let _ = fs::remove_dir_all(&target);
        w.restore(&id[..12], &target, &[]);
        assert_same_tree(&expected, &target);
    }
    snaps.len()
}

/// `gens` generations of source `a` backed up, then all but the last `keep` forgotten: packs
/// holding only forgotten blobs are left for a prune.
fn backed_up_then_forgotten(w: &World, gens: u64, keep: u32) {
    for gen in 0..gens {
        let out = backup_gen(w, "a", 0, gen);
        assert!(out.status.success(), "{}", text(&out));
    }
    forget_keep(w, keep);
}

fn forget_keep(w: &World, n: u32) {
    let out = w
        .writer_cmd(&["forget", "--keep-last", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Nothing left to mark: every pack is fully used.
fn assert_fully_packed(w: &World) {
    let again = prune(w, &["--grace", "0s", "--max-unused", "0", "--dry-run"]);
    let pass = &again["passes"][0];
    assert!(
        pass["mark_repack"].as_array().unwrap().is_empty(),
        "{again}"
    );
    assert!(
        pass["mark_unused"].as_array().unwrap().is_empty(),
        "{again}"
    );
    assert_eq!(pass["unused_bytes_left"], 0, "{again}");
}

fn check_read_data(w: &World) {
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "check failed: {}", text(&out));
}

fn backup_gen(w: &World, source: &str, n: u64, gen: u64) -> std::process::Output {
    let dir = w.dir.path().join(format!("src-{source}"));
    generation(&dir, n, gen);
    w.writer_cmd(&[
        "backup",
        "--json",
        "--source",
        source,
        "--tag",
        &format!("gen-{gen}"),
    ])
    .arg(&dir)
    .env("RUST_LOG", "info")
    .output()
    .unwrap()
}

#[test]
fn prune_marks_then_deletes_after_the_grace_period_and_keeps_every_snapshot_whole() {
    let w = World::new(TINY_PACKS);
    backed_up_then_forgotten(&w, 4, 2);
    let before = pack_count(&w);

    // Dry run: decisions, no change.
    let dry = prune(&w, &["--grace", "0s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let would = dry["passes"][0]["mark_unused"].as_array().unwrap().len()
        + dry["passes"][0]["mark_repack"].as_array().unwrap().len();
    assert!(would > 0, "forgetting two snapshots leaves garbage: {dry}");
    assert_eq!(pack_count(&w), before);
    assert!(walk_files(&w.repo.join("prune")).is_empty());

    // Everything is younger than an hour: the wholly unused packs would be marked at once (one
    // grace period suffices), partly used ones wait until they are old; the operator is told
    // when the space comes back.
    let young = prune(&w, &["--grace", "1h", "--dry-run", "--max-unused", "0"]);
    let pass = &young["passes"][0];
    assert!(
        !pass["mark_unused"].as_array().unwrap().is_empty(),
        "{young}"
    );
    assert!(
        pass["mark_repack"].as_array().unwrap().is_empty(),
        "{young}"
    );
    assert!(pass["young_packs"].as_u64().unwrap() > 0, "{young}");
    let at = humantime::parse_rfc3339(pass["eligible_at"].as_str().unwrap()).unwrap();
    let hour = std::time::SystemTime::now() + Duration::from_secs(3600);
    assert!(at > hour - Duration::from_secs(120) && at < hour + Duration::from_secs(120));
    let out = w
        .writer_cmd(&["prune", "--grace", "1h", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("become eligible for deletion at") && said.contains("--grace 0s"),
        "{said}"
    );
    let out = w
        .writer_cmd(&["prune", "--grace", "0s", "--dry-run"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("delete them in this same run"), "{said}");
    assert!(!said.contains("after the grace period"), "{said}");

    // Phase one marks, deletes nothing.
    std::thread::sleep(Duration::from_millis(1100));
    let marked = prune(&w, &["--grace", "1s"]);
    assert!(marked["marker"].is_string(), "{marked}");
    assert_eq!(marked["deleted_packs"], 0);
    assert_eq!(walk_files(&w.repo.join("prune")).len(), 1);
    let after_mark = pack_count(&w);
    check_read_data(&w);
    assert_eq!(restore_every_snapshot(&w, &["a"]), 2);

    // Phase two, after the grace period: the marked packs go, with a destruction record.
    std::thread::sleep(Duration::from_millis(1100));
    let done = prune(&w, &["--grace", "1s", "--max-unused", "100"]);
    let deleted = done["deleted_packs"].as_u64().unwrap();
    assert_eq!(
        deleted as usize, would,
        "the packs marked are the packs deleted: {done}"
    );
    assert!(walk_files(&w.repo.join("prune")).is_empty());
    assert_eq!(pack_count(&w), after_mark - would);
    check_read_data(&w);
    assert_eq!(restore_every_snapshot(&w, &["a"]), 2);

    let records = json(
        w.writer_cmd(&["destruction-records", "--json"])
            .output()
            .unwrap(),
    );
    let pruned: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "prune")
        .collect();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["objects_deleted"].as_u64().unwrap(), deleted);
    assert_eq!(
        pruned[0]["bytes_deleted"], done["deleted_bytes"],
        "the record states the bytes deleted"
    );
    // It names the snapshots whose data went: the two forgotten before the marking.
    let named = pruned[0]["snapshots"].as_array().unwrap();
    assert_eq!(named.len(), 2, "{}", pruned[0]);
    assert!(named
        .iter()
        .all(|s| s["reason"].as_str().unwrap().contains("after forget")));
    assert!(pruned[0]["data_from"].is_string());
    assert!(pruned[0]["by"]
        .as_str()
        .unwrap()
        .starts_with("writer credential"));
    // The local copy too.
    let local = walk_files(&w.state.join("destruction"));
    assert!(local
        .iter()
        .any(|p| p.to_string_lossy().contains("-prune-")));

    // Nothing left to do: a further prune with no tolerance marks nothing it has not copied.
    let idle = prune(&w, &["--grace", "0s", "--max-unused", "100", "--dry-run"]);
    assert!(
        idle["passes"][0]["mark_unused"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{idle}"
    );
}

#[test]
fn repacking_copies_live_blobs_without_any_read_key_and_frees_the_rest() {
    let w = World::new(TINY_PACKS);
    backed_up_then_forgotten(&w, 6, 1);
    let bytes_before: u64 = walk_files(&w.repo.join("packs"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    // The writer credential alone (it cannot decrypt a single file) repacks everything.
    let r = prune(&w, &["--grace", "0s", "--max-unused", "0"]);
    assert!(r["copied_blobs"].as_u64().unwrap() > 0, "{r}");
    assert!(r["deleted_packs"].as_u64().unwrap() > 0, "{r}");
    let bytes_after: u64 = walk_files(&w.repo.join("packs"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(
        bytes_after < bytes_before * 6 / 10,
        "one generation of six should need well under 60% of the space: {bytes_before} -> {bytes_after}"
    );
    check_read_data(&w);
    assert_eq!(restore_every_snapshot(&w, &["a"]), 1);
    // Every pack left is fully used.
    assert_fully_packed(&w);
}

#[test]
fn a_second_prune_is_refused_while_the_lease_is_held_and_a_stale_lease_is_taken_over() {
    let w = World::new(TINY_PACKS);
    assert!(backup_gen(&w, "a", 0, 0).status.success());
    let lease = w.repo.join("locks/prune");
    // A real prune stopped right after taking its lease (with a 3 s lease, so the test need
    // not wait two hours for it to go stale).
    let mut child = w
        .writer_cmd(&["prune", "--grace", "0s"])
        .env("CUSTODIAN_TEST_PAUSE_AT", "prune-leased")
        .env("CUSTODIAN_TEST_LEASE_TTL", "3s")
        .spawn()
        .unwrap();
    wait_until_stopped(child.id());
    assert!(lease.exists(), "a running prune holds the lease");
    let out = w.writer_cmd(&["prune", "--grace", "0s"]).output().unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("another prune holds") && msg.contains("expires"),
        "{msg}"
    );
    // Kill it: the lease stays behind, but its holder was on this host and is gone (pid and
    // start time), so the next prune takes it over at once instead of waiting for the expiry.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lease.exists());
    let out = w
        .writer_cmd(&["prune", "--grace", "0s"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a dead local holder's lease is taken over: {}",
        text(&out)
    );
    assert!(text(&out).contains("no longer runs"), "{}", text(&out));
    assert!(!lease.exists(), "released after use");
}

#[test]
fn prune_removes_what_killed_writers_left_an_hour_ago_and_nothing_younger() {
    let w = World::new(TINY_PACKS);
    assert!(backup_gen(&w, "a", 0, 0).status.success());
    // A writer killed between link and unlink leaves its temporary name: a second name for a
    // key record, which would outlive the record's destruction.
    let domains = w.repo.join("keys/domains");
    let record = fs::read_dir(&domains)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".operator"))
        .expect("the source's operator record");
    let old = domains.join(".tmp-0123456789abcdef");
    fs::hard_link(&record, &old).unwrap();
    let two_hours_ago =
        filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 7200, 0);
    filetime::set_file_mtime(&old, two_hours_ago).unwrap();
    let young = w.repo.join("packs/.tmp-fedcba9876543210");
    fs::write(&young, b"a pack being written right now").unwrap();
    let report = prune(&w, &["--grace", "0s"]);
    assert_eq!(report["leftovers_removed"], 1, "{report}");
    assert!(
        !old.exists() && record.exists(),
        "the leftover went, the record stayed"
    );
    assert!(young.exists(), "a write in progress is left alone");
    check_read_data(&w);
}

#[test]
fn a_lease_held_from_another_host_is_broken_only_with_its_host_confirmed() {
    let w = World::new(TINY_PACKS);
    assert!(backup_gen(&w, "a", 0, 0).status.success());
    // A prune on another host took the lease an hour ago and vanished.
    let f = common::forge::Forger::new(w.repo.to_str().unwrap(), &w.writer, "a");
    let now = std::time::SystemTime::now();
    let stamp = |t| humantime::format_rfc3339_seconds(t).to_string();
    let lease = serde_json::json!({"version": 1, "by": "writer credential x", "host": "branch-07",
        "pid": 4242, "taken": stamp(now - Duration::from_secs(3600)),
        "expires": stamp(now + Duration::from_secs(3600))});
    let sealed = f
        .repo
        .seal_meta_at(custodian::format::ObjectKind::Lease, "locks/prune", &lease)
        .unwrap();
    f.repo
        .store_for_mirror()
        .put_new("locks/prune", &sealed)
        .unwrap();
    let out = exits(&mut w.writer_cmd(&["prune", "--grace", "0s"]), 1);
    assert!(
        out.contains("--break-lease --confirm-host branch-07"),
        "{}",
        out
    );
    let out = exits(&mut w.writer_cmd(&["prune", "--break-lease"]), 1);
    assert!(out.contains("--confirm-host"), "{}", out);
    let break_from = |host: &str| {
        w.writer_cmd(&[
            "prune",
            "--grace",
            "0s",
            "--break-lease",
            "--confirm-host",
            host,
        ])
        .output()
        .unwrap()
    };
    let out = break_from("elsewhere");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the wrong host breaks nothing: {}",
        text(&out)
    );
    let out = break_from("branch-07");
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<_> = std::fs::read_dir(w.state.join("lease-breaks"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    assert!(
        records[0].contains("branch-07") && records[0].contains("4242"),
        "{}",
        records[0]
    );
}

/// A backup that loaded its index before a prune marked the packs it reuses: at commit it sees
/// the new marker and copies what it needs out (rescue), or, when the prune has already deleted
/// them (grace 0), refuses to commit. Either way no snapshot points at missing data.
#[test]
fn a_backup_started_before_a_prune_rescues_what_it_reuses_or_refuses_to_commit() {
    let w = World::new(TINY_PACKS);
    // Generation 0, then unrelated content, and forget generation 0: its packs are garbage.
    assert!(backup_gen(&w, "a", 0, 0).status.success());
    assert!(backup_gen(&w, "a", 0, 1000).status.success());
    forget_keep(&w, 1);
    std::thread::sleep(Duration::from_millis(300));

    for (grace, rescued) in [("250ms", true), ("0s", false)] {
        // Generation 0 again: its index says those blobs exist, so it reuses them.
        let dir = w.dir.path().join("src-a");
        generation(&dir, 0, 0);
        let child = paused_at(
            w.writer_cmd(&["backup", "--json", "--source", "a", "--tag", "gen-0"])
                .arg(&dir)
                .env("RUST_LOG", "info"),
            "after-first-listing",
        );
        let r = prune(&w, &["--grace", grace, "--max-unused", "0"]);
        assert!(r["marker"].is_string(), "{r}");
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGCONT) }, 0);
        let out = child.wait_with_output().unwrap();
        let log = text(&out);
        if rescued {
            assert!(out.status.success(), "{log}");
            assert!(
                log.contains("copied blobs out of packs a concurrent prune marked"),
                "{log}"
            );
            // The marked packs go; the new snapshot does not miss them.
            std::thread::sleep(Duration::from_millis(300));
            let done = prune(&w, &["--grace", grace, "--max-unused", "0"]);
            assert!(done["deleted_packs"].as_u64().unwrap() > 0, "{done}");
        } else {
            assert!(!out.status.success(), "{log}");
            assert!(log.contains("nothing was committed"), "{log}");
            assert!(
                backup_gen(&w, "a", 0, 0).status.success(),
                "the next run stores it afresh"
            );
        }
        check_read_data(&w);
        restore_every_snapshot(&w, &["a"]);
        forget_keep(&w, 1);
        assert!(backup_gen(&w, "a", 0, 1000).status.success());
        forget_keep(&w, 1);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The proof: backups and prunes in separate processes, many rounds, then every
/// surviving snapshot is checked and restored byte for byte.
#[test]
fn backups_and_prunes_racing_in_separate_processes_never_lose_a_snapshot() {
    let w = Arc::new(World::new(TINY_PACKS));
    let sources = ["a", "b"];
    let rounds: u64 = std::env::var("CUSTODIAN_PRUNE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let stop = Arc::new(AtomicBool::new(false));
    // Backups go on until the prunes have had enough rounds among them.
    let prunes_done = Arc::new(AtomicU64::new(0));
    let min_prunes = rounds / 2;
    let (ok, failed, rescued) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let backups: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(n, source)| {
            let (w, ok, failed, rescued) = (w.clone(), ok.clone(), failed.clone(), rescued.clone());
            let prunes_done = prunes_done.clone();
            let source = source.to_string();
            std::thread::spawn(move || {
                let mut gen = 0;
                while gen < rounds
                    || (prunes_done.load(Ordering::Relaxed) < min_prunes && gen < 20 * rounds)
                {
                    gen += 1;
                    let out = backup_gen(&w, &source, n as u64, gen);
                    let log = text(&out);
                    if log.contains("copied blobs out of packs a concurrent prune marked") {
                        rescued.fetch_add(1, Ordering::Relaxed);
                    }
                    if out.status.success() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // The one failure a race may cause: refused before committing.
                        assert!(
                            log.contains("nothing was committed") || log.contains("pack upload"),
                            "a backup failed for another reason: {log}"
                        );
                        eprintln!("refused: {}", log.lines().last().unwrap_or(""));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let pruner = {
        let (w, stop, prunes_done) = (w.clone(), stop.clone(), prunes_done.clone());
        std::thread::spawn(move || {
            let (mut runs, mut deleted) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                forget_keep(&w, 3);
                let out = w
                    .writer_cmd(&["prune", "--json", "--grace", "250ms", "--max-unused", "0"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "prune failed: {}", text(&out));
                let r: Value = serde_json::from_slice(&out.stdout).unwrap();
                deleted += r["deleted_packs"].as_u64().unwrap();
                runs += 1;
                prunes_done.store(runs, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
            (runs, deleted)
        })
    };
    for b in backups {
        b.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (runs, deleted) = pruner.join().unwrap();
    let (ok, failed, rescued) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        rescued.load(Ordering::Relaxed),
    );
    eprintln!(
        "{ok} backups committed, {failed} refused safely, {rescued} rescued blobs at commit; \
         {runs} prunes deleted {deleted} packs"
    );
    assert!(ok >= rounds, "most backups commit: {ok} of {}", 2 * rounds);
    assert!(
        runs >= min_prunes && deleted > 0,
        "prunes ran and deleted: {runs} runs, {deleted} packs"
    );
    check_read_data(&w);
    let survivors = restore_every_snapshot(&w, &sources);
    assert!(survivors >= 2, "{survivors} snapshots survived");

    // Quiet now: two more prunes finish every marker, and every snapshot is still whole.
    std::thread::sleep(Duration::from_millis(1100));
    prune(&w, &["--grace", "1s", "--max-unused", "0"]);
    std::thread::sleep(Duration::from_millis(1100));
    prune(&w, &["--grace", "1s", "--max-unused", "0"]);
    assert!(walk_files(&w.repo.join("prune")).is_empty());
    check_read_data(&w);
    restore_every_snapshot(&w, &sources);
}

/// The same two phases against real S3 servers (moto, s3s-fs): modification times from
/// listings, the lease through create-if-absent, deletes, and every snapshot still whole.
#[test]
fn prune_on_s3_servers_reclaims_space_and_keeps_snapshots_whole() {
    for server in s3_servers() {
        eprintln!("server: {}", server.name);
        let w = World::on_s3(&server, TINY_PACKS);
        backed_up_then_forgotten(&w, 4, 1);
        // Listings carry times: young partly used packs are left alone.
        let young = prune(&w, &["--grace", "1h", "--max-unused", "0"]);
        assert!(
            young["passes"][0]["mark_repack"]
                .as_array()
                .unwrap()
                .is_empty()
                && young["passes"][0]["young_packs"].as_u64().unwrap() > 0,
            "{}: listings carry times: {young}",
            server.name
        );
        let done = prune(&w, &["--grace", "0s", "--max-unused", "0"]);
        assert!(
            done["deleted_packs"].as_u64().unwrap() > 0,
            "{}: {done}",
            server.name
        );
        check_read_data(&w);
        assert_eq!(restore_every_snapshot(&w, &["a"]), 1);
        assert_fully_packed(&w);
    }
}

/// A world whose last snapshot (generation 3) has packs a full repack would replace; `cmd`
/// (paused at failpoint `point` right after loading its index) then races such a prune, which
/// repacks and deletes under it. Returns the world and the command's output.
fn race_with_a_finishing_prune(args: &[&str], point: &str) -> (World, std::process::Output) {
    let w = World::new(TINY_PACKS);
    backed_up_then_forgotten(&w, 4, 1);
    let child = paused_at(w.operator_cmd(args).env("RUST_LOG", "info"), point);
    let done = prune(&w, &["--grace", "0s", "--max-unused", "0"]);
    assert!(done["deleted_packs"].as_u64().unwrap() > 0, "{done}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (w, out)
}

/// A restore that loaded its index before a prune repacked and deleted the packs it names reads
/// the index again once and finishes, byte for byte (the limit DESIGN.md used to state).
#[test]
fn a_restore_racing_a_finishing_prune_reads_the_index_again() {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("racing");
    let target_arg = target.to_str().unwrap().to_string();
    let (w, out) = race_with_a_finishing_prune(
        &["restore", "latest", "--target", &target_arg],
        "restore-indexed",
    );
    assert!(
        text(&out).contains("reading the index again"),
        "{}",
        text(&out)
    );
    let expected = w.dir.path().join("expected-racing");
    generation(&expected, 0, 3);
    assert_same_tree(&expected, &target);
}

/// `check --read-data` that loaded its index before a prune deleted packs calls them pruned,
/// not missing, and still verifies everything else.
#[test]
fn a_check_racing_a_finishing_prune_tells_pruned_from_missing() {
    let (_, out) = race_with_a_finishing_prune(&["check", "--read-data"], "check-indexed");
    assert!(
        text(&out).contains("pruned while check ran"),
        "{}",
        text(&out)
    );
}

/// Forget, then prune: the space comes back after one grace period, not two.
#[test]
fn prune_right_after_forget_gives_space_back_after_one_grace_period() {
    let w = World::new(TINY_PACKS);
    backed_up_then_forgotten(&w, 3, 1);
    let before = pack_count(&w);
    let first = prune(&w, &["--grace", "3s"]);
    assert!(
        first["marker"].is_string(),
        "young unused packs are marked: {first}"
    );
    assert_eq!(first["deleted_packs"], 0);
    let at = humantime::parse_rfc3339(first["passes"][0]["eligible_at"].as_str().unwrap()).unwrap();
    // Poll until the promised moment has passed, then the next run deletes.
    while std::time::SystemTime::now() < at + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = prune(&w, &["--grace", "3s"]);
    assert!(second["deleted_packs"].as_u64().unwrap() > 0, "{second}");
    let after = pack_count(&w);
    assert!(
        after < before,
        "packs {before} -> {after}: {first} {second}"
    );
    check_read_data(&w);
    assert_eq!(restore_every_snapshot(&w, &["a"]), 1);
}
