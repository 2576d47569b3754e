//! The daemon as a server runs it: the real binary, real signals, the real metrics endpoint, a
//! real SQLite writer.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `custodian daemon` with its config and log file.
struct Daemon {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for world `w` with the given `[[source]]` blocks (and metrics on `port`).
fn write_config(w: &World, port: u16, sources: &str) -> PathBuf {
    write_config_with(w, port, "", sources)
}

/// The same with extra `[daemon]` lines.
fn write_config_with(w: &World, port: u16, daemon: &str, sources: &str) -> PathBuf {
    let path = w.dir.path().join("custodian.toml");
    std::fs::write(
        &path,
        format!(
            "[repository]\nurl = {:?}\nwriter-key-file = {:?}\nstate-dir = {:?}\n\n\
             [daemon]\nretry-initial = \"1s\"\n{daemon}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{sources}",
            w.repo, w.writer, w.state
        ),
    )
    .unwrap();
    path
}

/// A config for world `w` whose one source is `name` at `path`, with `extra` lines in its
/// `[[source]]`.
fn source_config(w: &World, name: &str, path: &Path, extra: &str) -> PathBuf {
    let block = format!("[[source]]\nname = \"{name}\"\npath = {path:?}\n{extra}");
    write_config(w, free_port(), &block)
}

/// A world whose `records` store (`size` bytes of sample `seed`) is the daemon's one source,
/// `customers`, with `extra` lines in its `[[source]]` (a schedule, watch settings).
fn customers(size: u64, seed: u64, extra: &str) -> (World, PathBuf, PathBuf) {
    customers_on(free_port(), size, seed, extra)
}

/// The same with metrics on `port`.
fn customers_on(port: u16, size: u64, seed: u64, extra: &str) -> (World, PathBuf, PathBuf) {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, size, seed).unwrap();
    let config = write_config(
        &w,
        port,
        &format!("[[source]]\nname = \"customers\"\npath = {src:?}\n{extra}"),
    );
    (w, src, config)
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    /// Start with extra environment (a stepped clock).
    fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = config.with_extension("log");
        let child = Command::new(BIN)
            .args(["daemon", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            config: config.to_path_buf(),
            log,
        };
        d.wait_for_log("daemon ready", Duration::from_secs(30));
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no '{text}' in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// SIGTERM, then the exit code (it must come within `limit`).
    fn stop(mut self, limit: Duration) -> (Option<i32>, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop in {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; the daemon must exit 0 within `limit`. Its log.
    fn stops_cleanly(self, limit: Duration) -> String {
        let (code, log) = self.stop(limit);
        assert_eq!(code, Some(0), "{log}");
        log
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        // 0 all good, 1 degraded, 2 failing: each is a status, not a failure to give one.
        assert!(matches!(out.status.code(), Some(0..=2)), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` over plain HTTP: the exposition text.
fn scrape_text(port: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// `GET /metrics`, parsed into (name{labels}, value) pairs.
fn scrape(port: u16) -> Vec<(String, f64)> {
    scrape_text(port)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

/// Scrape until `ready` holds (at most 20 s), and return that scrape.
fn scrape_until(port: u16, ready: impl Fn(&[(String, f64)]) -> bool) -> Vec<(String, f64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(port);
        if ready(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(metrics: &[(String, f64)], name: &str, source: &str) -> Option<f64> {
    let key = format!("{name}{{source=\"{source}\"}}");
    metrics.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The metrics port a config listens on.
fn metrics_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let at = text.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    text[at..].split('"').next().unwrap().parse().unwrap()
}

fn snapshot_count(w: &World, source: &str) -> usize {
    w.snapshots()
        .iter()
        .filter(|s| s["source"] == source)
        .count()
}

#[test]
fn per_second_schedule_snapshots_metrics_status_and_clean_stop() {
    let port = free_port();
    let (w, src, config) = customers_on(port, 200 << 10, 61, "schedule = \"* * * * * *\"\n");
    let d = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot_count(&w, "customers") < 3 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Metrics follow the repository by one turn of the daemon's loop.
    let m = scrape_until(port, |m| {
        metric(m, "custodian_source_snapshots", "customers").is_some_and(|n| n >= 3.0)
    });
    assert_eq!(
        metric(&m, "custodian_source_last_result", "customers"),
        Some(1.0),
        "{m:?}"
    );
    assert!(metric(&m, "custodian_source_rpo_age_seconds", "customers").unwrap() < 10.0);
    assert!(metric(&m, "custodian_source_files", "customers").unwrap() > 10.0);
    let status = d.status();
    assert_eq!(status["live"], true, "{status}");
    assert_eq!(status["sources"][0]["last_result"], "ok");
    let log = d.stops_cleanly(Duration::from_secs(30));
    assert!(
        !log.contains(src.to_str().unwrap()),
        "no file names at info level:\n{log}"
    );
    // Stopped: status comes from disk.
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["live"], false, "{status}");
    assert_eq!(status["sources"][0]["name"], "customers");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a stopped daemon is down: {status}"
    );
    assert_eq!(status["health"], "failing", "{status}");
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("NOT RUNNING"), "{said}");
    assert!(
        !said.contains("next run") && !said.contains("watcher"),
        "a stopped daemon schedules and watches nothing: {said}"
    );
    let out = w.operator_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_burst_of_changes_in_a_watched_store_makes_one_snapshot() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 100 << 10, 62).unwrap();
    let config = source_config(
        &w,
        "customers",
        &src,
        "watch = true\ndebounce = \"2s\"\nmax-delay = \"30s\"\n",
    );
    let d = Daemon::start(&config);
    let status = d.status();
    assert!(status["sources"][0]["last_attempt"].is_null(), "{status}");
    assert_eq!(status["sources"][0]["pending_change"], false, "{status}");
    assert_eq!(
        snapshot_count(&w, "customers"),
        0,
        "nothing runs without a change"
    );
    // A burst, including a new subdirectory whose own change must be seen too.
    for i in 0..5 {
        std::fs::write(src.join(format!("new-{i}.txt")), format!("note {i}")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::create_dir(src.join("branch-new")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(src.join("branch-new/ledger.csv"), "a,b\n1,2\n").unwrap();
    d.wait_for_log("backup committed", Duration::from_secs(20));
    // The backup's own reads are no change: once it is done the source is idle, with nothing
    // pending (the status says when a change waits for its debounce).
    let idle = |s: &serde_json::Value| {
        s["sources"][0]["pending_change"] == false && s["sources"][0]["running"] == false
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !idle(&d.status()) {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(snapshot_count(&w, "customers"), 1, "{}", d.log());
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
    d.stops_cleanly(Duration::from_secs(30));
}

#[test]
fn sigterm_during_a_large_backup_stops_cleanly_and_loses_nothing() {
    let w = World::new(SMALL_PACKS);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 300 << 10, 63).unwrap();
    let pristine = w.dir.path().join("pristine");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&pristine)
        .status()
        .unwrap()
        .success());
    w.backup("customers", &src);
    for i in 0..6 {
        std::fs::write(src.join(format!("scan-{i}.bin")), noise(24 << 20, 70 + i)).unwrap();
    }
    let config = source_config(&w, "customers", &src, "schedule = \"* * * * * *\"\n");
    // The daemon stops itself once its second pack is uploaded: the backup is then provably
    // half way, however fast the machine (waiting a fixed time raced it on fast hardware).
    let d = Daemon::start_with(&config, &[("CUSTODIAN_TEST_PAUSE_AT", "pack:2")]);
    wait_until_stopped(d.child.id());
    d.signal(libc::SIGTERM);
    d.signal(libc::SIGCONT);
    let log = d.stops_cleanly(Duration::from_secs(60));
    assert!(
        log.contains("stopped at a safe point"),
        "the backup was still running:\n{log}"
    );
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 1, "no partial snapshot");
    let target = w.dir.path().join("restored");
    w.restore(snaps[0]["id"].as_str().unwrap(), &target, &[]);
    assert_same_tree(&pristine, &target);
    // The next run completes and reuses what the stopped one uploaded.
    let summary = w.backup("customers", &src);
    assert!(summary["stats"]["files_read"].as_u64().unwrap() >= 6);
}

#[test]
fn sigterm_in_the_middle_of_a_huge_file_stops_within_seconds() {
    // A 20 GiB file (sparse: no disk, but every byte is read, chunked and hashed), which takes
    // far longer than the stop may: the stop must reach into the file, not wait for its end.
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::File::create(src.join("disk.img"))
        .unwrap()
        .set_len(20 << 30)
        .unwrap();
    let config = source_config(&w, "images", &src, "schedule = \"* * * * * *\"\n");
    let d = Daemon::start(&config);
    d.wait_for_log("backup started", Duration::from_secs(10));
    // Reading has begun once the backup thread has used a second of CPU.
    let pid = d.child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cpu_seconds(pid) < 1.0 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let log = d.stops_cleanly(Duration::from_secs(15));
    assert!(log.contains("stopped at a safe point"), "{log}");
    assert!(asked.elapsed() < Duration::from_secs(15));
    assert_eq!(w.snapshots().len(), 0, "no partial snapshot");
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let (w, _, config) = customers(100 << 10, 64, "schedule = \"* * * * * *\"\n");
    let d = Daemon::start(&config);
    d.wait_for_log("backup committed", Duration::from_secs(20));
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("* * * * * *", "every second please")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_log("still running the previous one", Duration::from_secs(10));
    // The old schedule keeps running: a new snapshot comes (polled, not slept for).
    let before = snapshot_count(&w, "customers");
    let deadline = Instant::now() + Duration::from_secs(20);
    while snapshot_count(&w, "customers") <= before {
        assert!(
            Instant::now() < deadline,
            "the old schedule stopped: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        d.log().contains("custodian.toml:"),
        "the error names the file and line"
    );
    // A good config is taken: this one only watches, so scheduled runs stop.
    std::fs::write(
        &config,
        good.replace("schedule = \"* * * * * *\"", "watch = true"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_log("configuration reloaded", Duration::from_secs(10));
    d.stops_cleanly(Duration::from_secs(30));
}

#[test]
fn a_live_sqlite_database_is_captured_consistently() {
    let w = World::new(&[]);
    let db_dir = w.dir.path().join("branch");
    std::fs::create_dir(&db_dir).unwrap();
    let db = db_dir.join("ledger.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE entries(id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, memo TEXT);
         CREATE TABLE totals(n INTEGER NOT NULL); INSERT INTO totals VALUES (0);",
    )
    .unwrap();
    drop(conn);
    // A writer that keeps inserting, each transaction adding a row and bumping the total.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                conn.execute_batch(&format!(
                    "BEGIN; INSERT INTO entries(amount, memo) VALUES ({n}, '{}');
                     UPDATE totals SET n = n + 1; COMMIT;",
                    "x".repeat(200)
                ))
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let config = write_config(
        &w,
        free_port(),
        &format!(
            "[[source]]\nname = \"ledger\"\nkind = \"sqlite\"\npath = {db:?}\nschedule = \"* * * * * *\"\n"
        ),
    );
    let d = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot_count(&w, "ledger") < 2 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, log) = d.stop(Duration::from_secs(30));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert_eq!(code, Some(0), "{log}");
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    let restored = rusqlite::Connection::open(target.join("ledger.sqlite")).unwrap();
    let check: String = restored
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (rows, total): (i64, i64) = restored
        .query_row(
            "SELECT (SELECT count(*) FROM entries), (SELECT n FROM totals)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    eprintln!("snapshot holds {rows} of {written} rows written");
    assert_eq!(rows, total, "every transaction is wholly in or wholly out");
    assert!(rows > 0 && (rows as u64) <= written);
    assert_eq!(w.snapshots()[0]["path"], db.to_str().unwrap());
}

#[test]
fn bad_configs_and_keys_fail_at_start_before_anything_runs() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 50 << 10, 65).unwrap();
    let good =
        format!("[[source]]\nname = \"customers\"\npath = {src:?}\nschedule = \"* * * * * *\"\n");
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("* * * * * *", "61 * * * *"),
            "source[0].schedule",
        ),
        (
            good.replace(src.to_str().unwrap(), "/no/such/records"),
            "source[0].path",
        ),
        (format!("{good}colour = \"blue\"\n"), "colour"),
    ];
    for (sources, expected) in cases {
        let config = write_config(&w, free_port(), &sources);
        for verb in [
            &["daemon", "--config"][..],
            &["config", "check", "--config"][..],
        ] {
            let started = Instant::now();
            let out = Command::new(BIN).args(verb).arg(&config).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("custodian.toml:") && err.contains(expected),
                "{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }
    // An unreadable writer key: the daemon refuses to start.
    let config = write_config(&w, free_port(), &good);
    let text_with_bad_key = std::fs::read_to_string(&config)
        .unwrap()
        .replace(w.writer.to_str().unwrap(), "/no/such/writer.key");
    std::fs::write(&config, text_with_bad_key).unwrap();
    let out = Command::new(BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/writer.key"));
    assert!(w.snapshots().is_empty(), "nothing ran");
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let (w, _, config) = customers(50 << 10, 66, "schedule = \"0 3 * * *\"\n");
    let socket_path = w.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new(BIN)
        .args(["daemon", "--log-format", "json", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline
        && !(heard.iter().any(|m: &String| m.contains("READY=1"))
            && heard.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3)
    {
        let n = socket.recv(&mut buf).unwrap();
        heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(heard.iter().any(|m| m.contains("READY=1")), "{heard:?}");
    assert!(
        heard.iter().any(|m| m.contains("STATUS=1 sources")),
        "{heard:?}"
    );
    assert!(
        heard.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "pings at half of WatchdogSec: {heard:?}"
    );
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // --log-format json: one object per line.
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "custodian daemon ready"),
        "{log}"
    );
}

/// The loop never waits on the store. Whether the access registry changed (a listing), and a
/// reopen, are asked on the job's own thread: while every request hangs, the daemon goes on
/// pinging systemd's watchdog, which would otherwise kill it as hung.
#[test]
fn a_hanging_store_never_stalls_the_watchdog() {
    use common::proxy::{Fault, FaultProxy};
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(moto) = s3_servers().into_iter().find(|s| s.name == "moto") else {
        return;
    };
    let w = World::on_s3(&moto, &[]);
    let hang = Arc::new(AtomicBool::new(false));
    let proxy = FaultProxy::start(&moto.endpoint, {
        let hang = hang.clone();
        move |_| match hang.load(Ordering::SeqCst) {
            true => Fault::Slow(Duration::from_secs(8)),
            false => Fault::Pass,
        }
    });
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 50 << 10, 68).unwrap();
    let config = w.dir.path().join("custodian.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\nwriter-key-file = {:?}\nstate-dir = {:?}\n\n\
             [[source]]\nname = \"customers\"\npath = {src:?}\nschedule = \"* * * * * *\"\n",
            w.s3.as_ref().unwrap().0,
            w.writer,
            w.state
        ),
    )
    .unwrap();
    let socket_path = w.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut env = moto.env_via(&proxy.endpoint);
    env.push(("NOTIFY_SOCKET", socket_path.display().to_string()));
    env.push(("WATCHDOG_USEC", "400000".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with(&config, &env);
    d.wait_for_log("backup committed", Duration::from_secs(30));
    hang.store(true, Ordering::SeqCst);
    // Let the requests in flight finish, then watch three seconds of hanging.
    std::thread::sleep(Duration::from_secs(1));
    let mut buf = [0u8; 4096];
    while socket.recv(&mut buf).is_ok() {}
    let (mut pings, watched) = (0, Instant::now());
    while watched.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = socket.recv(&mut buf) {
            pings += usize::from(String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"));
        }
    }
    hang.store(false, Ordering::SeqCst);
    assert!(
        pings >= 6,
        "{pings} watchdog pings in 3 s of a hanging store (one per 200 ms is due):\n{}",
        d.log()
    );
    let hung = proxy.log().iter().filter(|l| l.contains("Slow")).count();
    assert!(hung > 0, "the store was asked nothing while it hung");
    // Nobody reads the notifications any more: a full socket would block the daemon's sends.
    drop(socket);
    std::fs::remove_file(&socket_path).unwrap();
    d.stops_cleanly(Duration::from_secs(60));
}

#[test]
fn a_run_missed_while_down_runs_at_start_and_failures_retry_without_stopping() {
    let (w, src, config) = customers(50 << 10, 67, "schedule = \"0 * * * *\"\n");
    // The daemon last tried two hours ago: the hourly run in between was missed.
    std::fs::create_dir_all(&w.state).unwrap();
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    std::fs::write(
        w.state.join("daemon-status.json"),
        format!(r#"{{"sources": [{{"name": "customers", "last_attempt": {two_hours_ago}, "last_result": "ok"}}]}}"#),
    )
    .unwrap();
    let d = Daemon::start(&config);
    d.wait_for_log("backup committed", Duration::from_secs(20));
    assert!(
        d.log().contains("missed while the daemon was down"),
        "{}",
        d.log()
    );
    assert_eq!(snapshot_count(&w, "customers"), 1);
    drop(d);

    // Failures: the store disappears; runs fail, are counted and retried; the daemon stays up.
    let config = source_config(&w, "customers", &src, "schedule = \"* * * * * *\"\n");
    let port = metrics_port(&config);
    let d = Daemon::start(&config);
    let moved = w.dir.path().join("records-away");
    std::fs::rename(&src, &moved).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let failures = metric(
            &scrape(port),
            "custodian_source_consecutive_failures",
            "customers",
        );
        if failures.is_some_and(|f| f >= 2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = d.status();
    assert_eq!(status["sources"][0]["last_result"], "failed", "{status}");
    assert_eq!(status["health"], "failing", "{status}");
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failing source: {}",
        text(&out)
    );
    assert!(text(&out).contains("PROBLEM: source customers: the last backup failed"));
    assert!(d.log().contains("retrying later"));
    std::fs::rename(&moved, &src).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&scrape(port), "custodian_source_last_result", "customers") != Some(1.0) {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric(
            &scrape(port),
            "custodian_source_consecutive_failures",
            "customers"
        ),
        Some(0.0)
    );
    d.stops_cleanly(Duration::from_secs(30));
}

#[test]
fn scheduled_drills_run_and_export_their_margins() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 300 << 10, 68).unwrap();
    let runbooks = w.dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("every-second.md"),
        "+++\nid = \"every-second\"\ntitle = \"Drill\"\nsources = [\"customers\"]\nowner = \"tests\"\n\
         rto = \"10m\"\nrpo = \"1h\"\nschedule = \"* * * * * *\"\n[checks.files]\nmin-files = 5\n+++\n# Steps\n",
    )
    .unwrap();
    // A broken runbook beside it: reported, and the good one still runs.
    std::fs::write(
        runbooks.join("broken.md"),
        "+++\nid = \"broken\"\nrto = 5\n+++\n",
    )
    .unwrap();
    let port = free_port();
    let config = write_config(
        &w,
        port,
        &format!(
            "[drills]\nrunbooks = {runbooks:?}\nidentity-file = {:?}\n\n\
             [[source]]\nname = \"customers\"\npath = {src:?}\nschedule = \"* * * * * *\"\n",
            w.operator
        ),
    );
    let d = Daemon::start(&config);
    d.wait_for_log("drill passed", Duration::from_secs(30));
    let key = |name: &str| format!("{name}{{runbook=\"every-second\"}}");
    // The first drill may run before the first snapshot exists and fail to run; wait for a pass.
    let m = scrape_until(port, |m| {
        m.iter()
            .any(|(k, v)| *k == key("custodian_drill_last_result") && *v == 1.0)
    });
    let get = |name: &str| m.iter().find(|(k, _)| *k == key(name)).map(|(_, v)| *v);
    assert_eq!(get("custodian_drill_last_result"), Some(1.0), "{m:?}");
    assert!(get("custodian_drill_rto_margin_seconds").unwrap() > 500.0);
    assert!(get("custodian_drill_rpo_margin_seconds").unwrap() > 3000.0);
    assert_eq!(
        m.iter()
            .find(|(k, _)| k == "custodian_runbooks_broken")
            .map(|(_, v)| *v),
        Some(1.0),
        "{m:?}"
    );
    let status = d.status();
    assert_eq!(status["drills"][0]["last_result"], "pass", "{status}");
    assert!(
        status["broken_runbooks"][0]
            .as_str()
            .unwrap()
            .contains("broken.md"),
        "{status}"
    );
    assert!(d.log().contains("broken.md"), "{}", d.log());
    d.stops_cleanly(Duration::from_secs(60));
    let out = w
        .operator_cmd(&["drill", "reports", "--json"])
        .output()
        .unwrap();
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!reports.is_empty() && reports.iter().all(|r| r["passed"] == true));
    let scratch = w.state.join("scratch");
    assert!(
        std::fs::read_dir(&scratch).map_or(true, |mut d| d.next().is_none()),
        "restored data left behind"
    );
}

#[test]
fn retention_and_prune_run_on_their_schedules_with_destruction_records_and_metrics() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 50 << 10, 69).unwrap();
    let port = free_port();
    let config = write_config_with(
        &w,
        port,
        "forget-schedule = \"*/2 * * * * *\"\nprune-schedule = \"*/2 * * * * *\"\nprune-grace = \"1s\"\nprune-max-unused = \"0%\"",
        &format!(
            "[[source]]\nname = \"customers\"\npath = {src:?}\nschedule = \"* * * * * *\"\nkeep-last = 2\n"
        ),
    );
    let d = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(40);
    let unlabelled =
        |m: &[(String, f64)], name: &str| m.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let mut round = 0;
    loop {
        // Changing content, so forgotten snapshots leave data for prune to reclaim.
        round += 1;
        std::fs::write(src.join("changing.bin"), noise(40_000, round)).unwrap();
        let m = scrape(port);
        let forgotten = metric(&m, "custodian_source_forgotten_snapshots", "customers");
        // A prune marks, and one after the grace period deletes.
        let reclaimed = unlabelled(&m, "custodian_prune_reclaimed_bytes_total");
        if forgotten.is_some_and(|f| f >= 2.0) && reclaimed.is_some_and(|b| b > 0.0) {
            assert_eq!(unlabelled(&m, "custodian_prune_last_result"), Some(1.0));
            assert!(unlabelled(&m, "custodian_prune_last_run_timestamp_seconds").unwrap() > 1.7e9);
            assert!(unlabelled(&m, "custodian_prune_deleted_packs_total").unwrap() >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Wait for a snapshot of the final state, so the restore below can be compared with it.
    let last_write = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w
        .snapshots()
        .iter()
        .any(|s| humantime::parse_rfc3339_weak(s["time"].as_str().unwrap()).unwrap() > last_write)
    {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    d.stops_cleanly(Duration::from_secs(30));
    assert!(
        w.snapshots().len() <= 4,
        "keep-last 2 plus what came since the last run"
    );
    let out = w
        .writer_cmd(&["destruction-records", "--json"])
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(records.iter().any(|r| r["action"] == "forget"));
    let pruned: Vec<_> = records.iter().filter(|r| r["action"] == "prune").collect();
    assert!(!pruned.is_empty());
    assert!(pruned
        .iter()
        .all(|r| r["bytes_deleted"].as_u64().unwrap() > 0));
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // What survived restores exactly (the source did not change).
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
    // The status file remembers the prunes.
    let out = w
        .cmd(&["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["prune"]["reclaimed_bytes_total"].as_u64().unwrap() > 0,
        "{status}"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused_and_the_first_keeps_its_status() {
    let (w, src, config) = customers(100 << 10, 9, "schedule = \"0 3 * * *\"\n");
    // A snapshot taken with the CLI before the daemon ever ran: the daemon knows its age from
    // the first scrape, with no run of its own.
    w.backup("customers", &src);
    let first = Daemon::start(&config);
    let port = metrics_port(&config);
    let m = scrape_until(port, |m| {
        metric(m, "custodian_source_rpo_age_seconds", "customers").is_some()
    });
    assert!(
        metric(&m, "custodian_source_rpo_age_seconds", "customers").is_some_and(|a| a < 600.0),
        "{m:?}"
    );
    assert!(metric(
        &m,
        "custodian_source_last_success_timestamp_seconds",
        "customers"
    )
    .is_some());
    assert_eq!(
        first.status()["health"],
        "ok",
        "a snapshot in the repository is a success"
    );
    // Every sample is described, and totals are counters.
    let exposition = scrape_text(port);
    for (sample, _) in &m {
        let name = sample.split('{').next().unwrap();
        assert!(
            exposition.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        assert!(
            exposition.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
    }
    assert!(
        exposition.contains("# TYPE custodian_prune_reclaimed_bytes_total counter"),
        "{exposition}"
    );
    // The second one gets its own metrics port, so only the state dir is shared.
    let second_config = w.dir.path().join("second.toml");
    let first_text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let replaced: String = first_text
        .lines()
        .map(|l| {
            if l.starts_with("listen") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&second_config, replaced).unwrap();
    let said = exits(
        Command::new(BIN)
            .args(["daemon", "--config"])
            .arg(&second_config)
            .env_remove("RUST_LOG"),
        1,
    );
    assert!(
        said.contains(&format!("pid {}", first.child.id())) && said.contains("already running"),
        "{said}"
    );
    let status = first.status();
    assert_eq!(status["live"], true, "{status}");
    assert_eq!(status["pid"], first.child.id(), "{status}");
    first.stops_cleanly(Duration::from_secs(30));
    // Once it is gone, the state dir is free again.
    let again = Daemon::start(&config);
    again.stops_cleanly(Duration::from_secs(30));
}

#[test]
fn an_overdue_access_review_shows_in_status_and_metrics_until_signed_off() {
    let port = free_port();
    let (w, _, config) = customers_on(port, 20 << 10, 5, "schedule = \"0 0 3 * * *\"\n");
    let later = [("CUSTODIAN_TEST_CLOCK_OFFSET", "+100d")];
    let age = |port| {
        let m = scrape_until(port, |m| {
            m.iter()
                .any(|(k, _)| k == "custodian_access_review_age_days")
        });
        m.iter()
            .find(|(k, _)| k == "custodian_access_review_age_days")
            .map(|(_, v)| *v)
    };
    // A hundred days after init, never reviewed: overdue in the metrics and in status.
    let d = Daemon::start_with(&config, &later);
    assert!(age(port).is_some_and(|v| v >= 100.0), "{}", d.log());
    // `status` judges with its own clock, stepped the same way.
    let status = |config: &Path| -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "--config"])
            .arg(config)
            .envs(later)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let problems = status(&config)["problems"].to_string();
    assert!(problems.contains("access review overdue"), "{problems}");
    d.stop(Duration::from_secs(30));

    // Signed off that day: current again.
    let out = w
        .operator_cmd(&[
            "access",
            "review",
            "--approve",
            "--reason",
            "Q1 access review",
        ])
        .envs(later)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("review signed off in audit entry"),
        "{}",
        text(&out)
    );
    let d = Daemon::start_with(&config, &later);
    assert!(age(port).is_some_and(|v| v < 1.0), "{}", d.log());
    let status = status(&config);
    assert!(
        !status["problems"].to_string().contains("access review"),
        "{status}"
    );
    assert!(
        status["access_review"]["last"].as_str().is_some(),
        "{status}"
    );
}

#[test]
fn a_revoked_writer_needs_an_operator_instead_of_retries_and_a_reload_tries_again() {
    // Watched, no schedule: after the first failure only a change or the operator starts runs.
    let (w, src, config) = customers(20 << 10, 11, "watch = true\ndebounce = \"1s\"\n");
    let d = Daemon::start(&config);
    std::fs::write(src.join("first.txt"), "1").unwrap();
    d.wait_for_log("backup committed", Duration::from_secs(20));
    // The daemon's own credential is revoked (a stolen server): reopening cannot succeed.
    let listed = w
        .operator_cmd(&["access", "list", "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let writer = rows
        .iter()
        .find(|r| r["role"] == "writer" && r["revoked"].is_null())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w
        .operator_cmd(&[
            "access",
            "revoke-writer",
            &writer,
            "--reason",
            "server stolen",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(src.join("second.txt"), "2").unwrap();
    let source = |d: &Daemon| d.status()["sources"][0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while source(&d)["needs_operator"] != true {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log();
    assert!(log.contains("needs an operator"), "{log}");
    assert!(
        !log.contains("retrying later"),
        "a revoked key is not retried: {log}"
    );
    let said = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(text(&said).contains("NEEDS AN OPERATOR"), "{}", text(&said));
    // A change is seen but starts no run that cannot succeed...
    let tried = source(&d)["last_attempt"].clone();
    std::fs::write(src.join("third.txt"), "3").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while source(&d)["pending_change"] != true {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...not within twice its debounce.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(source(&d)["last_attempt"], tried, "{}", d.log());
    // A reload is the operator's act: the source is tried again at once.
    d.signal(libc::SIGHUP);
    d.wait_for_log("configuration reloaded", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(30);
    while source(&d)["last_attempt"] == tried {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    d.stops_cleanly(Duration::from_secs(30));
}
