//! The random-time soak: a record store and a live SQLite database change every round; two
//! backups and a prune run at once, with forget and erase between, and each process is SIGKILLed
//! at a random moment with even odds. After every round `check` must be clean; at the end every
//! surviving snapshot is restored and compared with the generation it was taken from, and every
//! snapshot a run reported as saved is either still listed or was destroyed on the record.
//!
//! The default suite runs a short soak (a few dozen kills). `CUSTODIAN_SOAK=1` runs until
//! `CUSTODIAN_SOAK_KILLS` kills (default 1000) against local disk and, with
//! `CUSTODIAN_SOAK_S3_KILLS` (default 200), against the first S3 test server (moto under
//! scripts/test). `CUSTODIAN_SOAK_SEED` repeats a run.

use crate::common;

use common::*;
use custodian::sample::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a soak did, for the report line and the verdict.
#[derive(Default, Debug)]
struct Tally {
    rounds: u64,
    kills: u64,
    /// Runs that succeeded right after a run of the same command was killed.
    rescues: u64,
    /// Backups refused at commit because a concurrent prune deleted a pack they relied on:
    /// nothing committed, the designed outcome, retried by the next round.
    refused: u64,
    snapshots_restored: u64,
    lost: Vec<String>,
    wrong: Vec<String>,
}

/// A command of one round, how long it ran last time it finished (to aim the kills), and whether
/// the previous run of it was killed.
#[derive(Default)]
struct Aim {
    last: BTreeMap<&'static str, Duration>,
    killed_before: BTreeSet<&'static str>,
}

struct Soak {
    w: World,
    store: PathBuf,
    db: PathBuf,
    gens: PathBuf,
    rng: Rng,
    aim: Aim,
    tally: Tally,
    /// Snapshot time -> the generation copy it must equal (record store snapshots).
    generation_of: BTreeMap<String, PathBuf>,
    /// Snapshot time -> the committed row counts before and after its backup ran (database).
    rows_of: BTreeMap<String, (u64, u64)>,
    /// Every snapshot id a run reported as saved.
    reported: BTreeSet<String>,
    rows: Arc<AtomicU64>,
    /// What happened, round by round, printed when something is wrong.
    journal: Vec<String>,
}

/// A child and what it is.
struct Run {
    name: &'static str,
    child: Child,
    started: Instant,
    kill_at: Option<Duration>,
    killed: bool,
}

impl Soak {
    fn new(w: World, seed: u64) -> Soak {
        let store = w.dir.path().join("records");
        custodian::sample::generate(&store, 1 << 20, seed).unwrap();
        let db = w.dir.path().join("ledger").join("ledger.sqlite");
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE entries (id INTEGER PRIMARY KEY, amount INTEGER, memo BLOB);",
        )
        .unwrap();
        let gens = w.dir.path().join("generations");
        fs::create_dir_all(&gens).unwrap();
        Soak {
            store,
            db,
            gens,
            rng: Rng::new(seed),
            aim: Aim::default(),
            tally: Tally::default(),
            generation_of: BTreeMap::new(),
            rows_of: BTreeMap::new(),
            reported: BTreeSet::new(),
            rows: Arc::new(AtomicU64::new(0)),
            journal: Vec::new(),
            w,
        }
    }

    /// Appends, rewrites, a new file and a deleted one, and the file erase removes.
    fn mutate(&mut self, round: u64) {
        custodian::sample::mutate(&self.store, round).unwrap();
        let dir = self.store.join("branch-01");
        fs::write(dir.join(format!("new-{round}.csv")), noise(20_000, round)).unwrap();
        let old = round.saturating_sub(3);
        let _ = fs::remove_file(dir.join(format!("new-{old}.csv")));
        fs::write(
            self.store.join("erase-me.csv"),
            format!("customer {round}\n"),
        )
        .unwrap();
    }

    /// A command of this round, killed at a random moment with even odds.
    fn spawn(&mut self, name: &'static str, mut cmd: Command) -> Run {
        let kill_at = self.rng.next_u64().is_multiple_of(2).then(|| {
            let typical = self
                .aim
                .last
                .get(name)
                .copied()
                .unwrap_or(Duration::from_millis(300));
            let ms = typical.as_millis() as u64 * 5 / 4 + 1;
            Duration::from_millis(self.rng.next_u64() % ms)
        });
        let child = cmd
            .env("CUSTODIAN_TEST_DOMAIN_SETTLE", "1s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Run {
            name,
            child,
            started: Instant::now(),
            kill_at,
            killed: false,
        }
    }

    /// Wait for every run, killing each at its moment; returns the JSON output of those that
    /// finished (by name). A run that fails on its own is a finding.
    fn finish(&mut self, mut runs: Vec<Run>) -> BTreeMap<&'static str, Value> {
        let mut done = BTreeMap::new();
        while !runs.is_empty() {
            let mut i = 0;
            while i < runs.len() {
                let r = &mut runs[i];
                if let Some(status) = r.child.try_wait().unwrap() {
                    let r = runs.swap_remove(i);
                    self.settle(r, status, &mut done);
                    continue;
                }
                if r.kill_at.is_some_and(|at| r.started.elapsed() >= at) && !r.killed {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(r.child.id() as i32, libc::SIGKILL) };
                    r.killed = true;
                }
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        done
    }

    fn settle(
        &mut self,
        r: Run,
        status: std::process::ExitStatus,
        done: &mut BTreeMap<&'static str, Value>,
    ) {
        let out = r.child.wait_with_output().unwrap();
        let ms = r.started.elapsed().as_millis();
        if r.killed && status.code().is_none() {
            self.journal
                .push(format!("  {} killed after {ms} ms", r.name));
            self.tally.kills += 1;
            self.aim.killed_before.insert(r.name);
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.journal.push(format!(
            "  {} exited {:?} after {ms} ms",
            r.name,
            status.code()
        ));
        if !status.success() && stderr.contains("so nothing was committed. Run the backup again") {
            self.tally.refused += 1;
            return;
        }
        if !status.success() {
            self.tally
                .wrong
                .push(format!("{} failed on its own: {stderr}", r.name));
            return;
        }
        self.aim.last.insert(r.name, r.started.elapsed());
        if self.aim.killed_before.remove(r.name) {
            self.tally.rescues += 1;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            done.insert(r.name, v);
        }
    }

    fn round(&mut self, round: u64) {
        self.tally.rounds += 1;
        self.journal.push(format!("round {round}"));
        self.mutate(round);
        let generation = self.gens.join(round.to_string());
        copy_tree(&self.store, &generation);
        let store = self.store.to_str().unwrap().to_string();
        let db = self.db.to_str().unwrap().to_string();
        let before_ids: BTreeSet<String> = ids(&self.w.snapshots());
        let rows_before = self.rows.load(Ordering::SeqCst);
        let mut runs = vec![
            self.spawn(
                "backup records",
                self.w
                    .writer_cmd(&["backup", "--json", "--source", "records", &store]),
            ),
            self.spawn(
                "backup ledger",
                self.w
                    .writer_cmd(&["backup", "--json", "--sqlite", "--source", "ledger", &db]),
            ),
        ];
        if round.is_multiple_of(3) {
            // A grace period longer than any backup here runs (as the default 6 h is in
            // production), so this prune keeps its contract with the backups beside it.
            let prune = ["prune", "--grace", "5s", "--max-unused", "0"];
            runs.push(self.spawn("prune", self.w.writer_cmd(&prune)));
        }
        let done = self.finish(runs);
        let rows_after = self.rows.load(Ordering::SeqCst);
        for name in ["backup records", "backup ledger"] {
            if let Some(id) = done.get(name).and_then(|v| v["id"].as_str()) {
                self.reported.insert(id.to_string());
            }
        }
        for s in self.w.snapshots() {
            let (id, time) = (s["id"].as_str().unwrap(), s["time"].as_str().unwrap());
            if before_ids.contains(id) {
                continue;
            }
            match s["source"].as_str().unwrap() {
                "records" if !s["rewritten"].as_bool().unwrap() => {
                    self.generation_of.insert(time.into(), generation.clone());
                }
                "ledger" => {
                    self.rows_of.insert(time.into(), (rows_before, rows_after));
                }
                _ => {}
            }
        }
        self.check(round);
        if round % 4 == 2 {
            let forget = ["forget", "--keep-last", "4"];
            let run = self.spawn("forget", self.w.writer_cmd(&forget));
            self.finish(vec![run]);
            self.check(round);
        }
        let has_records = || self.w.snapshots().iter().any(|s| s["source"] == "records");
        if round % 5 == 4 && has_records() {
            let erase = ["erase", "--source", "records", "--path", "erase-me.csv"];
            let run = self.spawn("erase", self.w.operator_cmd(&erase));
            self.finish(vec![run]);
            self.check(round);
        }
        self.drop_unneeded_generations();
    }

    /// Delete the copies of generations no listed snapshot was taken from (forget removed
    /// them), so a long soak's disk use stays flat.
    fn drop_unneeded_generations(&mut self) {
        let live: BTreeSet<PathBuf> = self
            .w
            .snapshots()
            .iter()
            .filter_map(|s| s["time"].as_str())
            .filter_map(|t| self.generation_of.get(t).cloned())
            .collect();
        for e in fs::read_dir(&self.gens).unwrap().flatten() {
            if !live.contains(&e.path()) {
                fs::remove_dir_all(e.path()).unwrap();
            }
        }
    }

    /// The writer's check (what the server can see), and every tenth round the operator's
    /// reading every pack.
    fn check(&mut self, round: u64) {
        let out = self.w.writer_cmd(&["check"]).output().unwrap();
        let out = if out.status.success() && round.is_multiple_of(10) {
            self.w
                .operator_cmd(&["check", "--read-data"])
                .output()
                .unwrap()
        } else {
            out
        };
        if !out.status.success() {
            self.tally
                .wrong
                .push(format!("check after round {round}: {}", text(&out)));
        }
    }

    /// Restore every snapshot and compare; account for every reported one.
    fn verify(&mut self) {
        let snaps = self.w.snapshots();
        let listed = ids(&snaps);
        let destroyed = destroyed(&self.w);
        for id in &self.reported {
            if !listed.contains(id) && !destroyed.contains(id) {
                self.tally.lost.push(id.clone());
            }
        }
        for s in &snaps {
            self.verify_one(s);
        }
    }

    fn verify_one(&mut self, s: &Value) {
        let (id, time) = (s["id"].as_str().unwrap(), s["time"].as_str().unwrap());
        let target = self.w.dir.path().join("soak-restore");
        let _ = fs::remove_dir_all(&target);
        let out = self
            .w
            .operator_cmd(&["restore", id, "--target"])
            .arg(&target)
            .output()
            .unwrap();
        if !out.status.success() {
            self.tally
                .wrong
                .push(format!("restore {id}: {}", text(&out)));
            return;
        }
        self.tally.snapshots_restored += 1;
        let verdict = match s["source"].as_str().unwrap() {
            "records" => match self.generation_of.get(time) {
                // Any erase that got as far as its exclusion keeps the file out of every later
                // backup, so a snapshot may lack it; its other files must still be exact.
                Some(generation) => same_records(
                    generation,
                    &target,
                    s["rewritten"] == true
                        || (!target.join("erase-me.csv").exists() && excluded(&self.w)),
                ),
                None => Err("no generation recorded for it".into()),
            },
            _ => match self.rows_of.get(time) {
                Some(&(lo, hi)) => consistent_ledger(&target.join("ledger.sqlite"), lo, hi),
                None => Err("no row counts recorded for it".into()),
            },
        };
        if let Err(why) = verdict {
            self.tally.wrong.push(format!("snapshot {id}: {why}"));
        }
    }
}

fn ids(snaps: &[Value]) -> BTreeSet<String> {
    snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Snapshot ids named by destruction records (forget, erase).
fn destroyed(w: &World) -> BTreeSet<String> {
    let out = w
        .operator_cmd(&["destruction-records", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    records
        .iter()
        .flat_map(|r| r["snapshots"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

/// Whether an erase left an exclusion of the erased file in the repository.
fn excluded(w: &World) -> bool {
    let out = w.writer_cmd(&["exclusions", "--json"]).output().unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|list| list.iter().any(|e| e["pattern"] == "erase-me.csv"))
}

/// The restore equals its generation; for a snapshot erase rewrote, without the erased file.
fn same_records(generation: &Path, restored: &Path, rewritten: bool) -> Result<(), String> {
    let expected = if rewritten {
        let copy = restored.with_extension("expected");
        let _ = fs::remove_dir_all(&copy);
        copy_tree(generation, &copy);
        fs::remove_file(copy.join("erase-me.csv")).map_err(|e| e.to_string())?;
        let out = Command::new("touch")
            .arg("-r")
            .arg(generation)
            .arg(&copy)
            .output()
            .unwrap();
        assert!(out.status.success());
        copy
    } else {
        generation.to_path_buf()
    };
    std::panic::catch_unwind(|| assert_same_tree(&expected, restored)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "differs".into())
    })
}

/// The restored database opens, passes SQLite's integrity check, holds one transaction's
/// state (a whole window of consecutive ids: no insert without its delete), and its newest id is
/// between `lo` and `hi` (committed before its backup began, and by the time it ended).
fn consistent_ledger(db: &Path, lo: u64, hi: u64) -> Result<(), String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let (rows, first, last): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) FROM entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| e.to_string())?;
    let (rows, first, last) = (rows as u64, first as u64, last as u64);
    let whole = rows == 0 || (last - first + 1 == rows && rows == last.min(LEDGER_WINDOW));
    if check != "ok" || !whole || last < lo || last > hi {
        return Err(format!(
            "integrity {check}, {rows} rows with ids {first}..={last}, newest expected in {lo}..={hi}"
        ));
    }
    Ok(())
}

/// Rows the ledger keeps: the writer deletes older ones as it goes, so the database stays a
/// few MiB however long the soak runs, and is still rewritten while it is backed up.
const LEDGER_WINDOW: u64 = 20_000;

/// Insert rows (and drop those older than the window) until told to stop; `rows` is the
/// newest committed id.
fn ledger_writer(db: PathBuf, rows: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let tx = conn.transaction().unwrap();
        for _ in 0..20 {
            n += 1;
            tx.execute(
                "INSERT INTO entries (id, amount, memo) VALUES (?1, ?2, ?3)",
                rusqlite::params![n as i64, n as i64, noise(200, n)],
            )
            .unwrap();
        }
        let oldest = n.saturating_sub(LEDGER_WINDOW) as i64;
        tx.execute("DELETE FROM entries WHERE id <= ?1", [oldest])
            .unwrap();
        tx.commit().unwrap();
        rows.store(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Soak `w` until `kills` kills; returns the tally after verifying.
fn soak(w: World, kills: u64) -> Tally {
    let seed = std::env::var("CUSTODIAN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("soak seed {seed} (CUSTODIAN_SOAK_SEED repeats it)");
    let mut soak = Soak::new(w, seed);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, rows, stop) = (soak.db.clone(), soak.rows.clone(), stop.clone());
        std::thread::spawn(move || ledger_writer(db, rows, stop))
    };
    let mut round = 0;
    // Stop at the first finding, so the repository is kept as it was found.
    while soak.tally.kills < kills && soak.tally.wrong.is_empty() {
        round += 1;
        soak.round(round);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    soak.verify();
    if !soak.tally.wrong.is_empty() || !soak.tally.lost.is_empty() {
        eprintln!("{}", soak.journal.join("\n"));
        let kept = std::mem::replace(&mut soak.w.dir, tempfile::tempdir().unwrap()).keep();
        eprintln!("the soak's repository is kept at {}", kept.display());
    }
    let t = &soak.tally;
    eprintln!(
        "soak: {} rounds, {} kills, {} rescues, {} backups refused safely at commit, {} snapshots restored and compared, {} lost, {} wrong",
        t.rounds,
        t.kills,
        t.rescues,
        t.refused,
        t.snapshots_restored,
        t.lost.len(),
        t.wrong.len()
    );
    soak.tally
}

fn assert_clean(t: &Tally) {
    assert!(t.lost.is_empty(), "lost: {:?}", t.lost);
    assert!(t.wrong.is_empty(), "wrong:\n{}", t.wrong.join("\n"));
    assert!(t.snapshots_restored > 0);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn long() -> bool {
    std::env::var("CUSTODIAN_SOAK").is_ok_and(|v| v == "1")
}

#[test]
fn random_kills_lose_nothing_on_local_disk() {
    let kills = if long() {
        env_u64("CUSTODIAN_SOAK_KILLS", 1000)
    } else {
        40
    };
    assert_clean(&soak(World::new(SMALL_PACKS), kills));
}

#[test]
fn random_kills_lose_nothing_on_s3() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    let kills = if long() {
        env_u64("CUSTODIAN_SOAK_S3_KILLS", 200)
    } else {
        10
    };
    assert_clean(&soak(World::on_s3(&server, SMALL_PACKS), kills));
}
