//! `custodian daemon`: snapshots each configured source on its cron schedule and when it
//! changes, for months without anyone watching. One loop owns all state; backups run on their
//! own threads (one per source at most, `max-concurrent` in all) and report back over a channel,
//! as do signals and file watchers. Nothing here ever names a customer file at info level.
//!
//! Shutdown (SIGTERM/SIGINT): scheduling stops, running backups are told to stop at their next
//! safe point (they commit nothing partial and leave uploaded packs for the next run), and the
//! daemon exits 0 once they have. SIGHUP reloads the config; a bad one is logged and ignored.

mod metrics;
pub mod state;
pub mod status;
mod watch;

pub use state::{DrillStatus, SourceStatus, StatusDoc};

use crate::archiver::{backup, private_dir, BackupOptions, BackupOutcome, Progress};
use crate::backend::{Backend, LocalBackend, ObjectStoreBackend};
use crate::config::{Config, ConfigError, SourceConfig, SourceKind};
use crate::error::{Error, Result};
use crate::repository::{Credential, Repository};
use chrono::{DateTime, Local};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use state::unix;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use watch::WatchEvent;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] Error),
}

/// The longest the loop sleeps: metrics (RPO age) and the watchdog are refreshed this often.
const TICK: Duration = Duration::from_secs(1);

enum Msg {
    Signal(i32),
    Watch(String, WatchEvent),
    Done {
        source: String,
        result: Box<Result<BackupOutcome>>,
        took: Duration,
    },
    DrillDone {
        runbook: String,
        result: Box<Result<crate::drill::DrillReport>>,
        took: Duration,
    },
    /// Snapshots forgotten per source, or why retention could not run.
    ForgetDone(Box<Result<HashMap<String, u64>>>),
}

/// A runbook the daemon drills on its schedule.
struct DrillJob {
    runbook: crate::runbook::Runbook,
    next_run: Option<SystemTime>,
    running: bool,
    status: DrillStatus,
}

/// One source as the loop tracks it.
struct Source {
    cfg: SourceConfig,
    next_run: Option<SystemTime>,
    retry_at: Option<SystemTime>,
    /// A missed run or a watcher fallback asks for a run as soon as possible.
    due_now: bool,
    /// First and last change since the last run started (watched sources).
    dirty_since: Option<Instant>,
    last_event: Option<Instant>,
    /// The cancel flag of the run in progress.
    running: Option<Arc<AtomicBool>>,
    watcher: Option<notify::RecommendedWatcher>,
    status: SourceStatus,
}

/// Run the daemon with the configuration in `config_file` until SIGTERM.
pub fn run(config_file: &Path) -> std::result::Result<(), DaemonError> {
    let config = Config::load(config_file)?;
    let backend = open_backend(&config)?;
    let repo = Arc::new(open_writer(&config, backend.clone())?);
    let state_dir = config.repository.state_dir.clone();
    private_dir(&state_dir)?;
    // Restored customer data from a drill that a crash or SIGKILL interrupted.
    remove_stale_scratch(&state_dir.join("scratch"));
    let operator = match &config.drills {
        Some(d) => Some(Arc::new(Repository::open(
            backend,
            &Credential::Operator(d.identity_file.clone()),
        )?)),
        None => None,
    };
    let persisted = state::load(&state_dir)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    listen_for_signals(tx.clone())?;
    if let Some(addr) = config.metrics {
        metrics::install(addr)?;
    }
    let mut daemon = Daemon {
        doc: Arc::new(Mutex::new(StatusDoc {
            live: true,
            pid: Some(std::process::id()),
            started: Some(unix(SystemTime::now())),
            config: config.file.display().to_string(),
            repository: config.repository.url.clone(),
            sources: Vec::new(),
            drills: Vec::new(),
        })),
        sources: Vec::new(),
        drills: Vec::new(),
        repo,
        operator,
        tx,
        stopping: false,
        forget_next: None,
        forget_running: false,
        watchdog: sd_notify::watchdog_enabled().map(|d| (d / 2, Instant::now())),
        last_status_line: String::new(),
        config,
    };
    let counts = daemon.snapshot_counts()?;
    daemon.install_sources(&persisted, &counts);
    daemon.install_drills(&persisted);
    daemon.schedule_forget(SystemTime::now());
    status::serve(&state_dir, daemon.doc.clone())?;
    daemon.publish(SystemTime::now());
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        sources = daemon.sources.len(),
        repository = %daemon.config.repository.url,
        "custodian daemon ready"
    );
    daemon.main_loop(&rx);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    daemon.save();
    tracing::info!("custodian daemon stopped");
    Ok(())
}

/// The configured repository's storage.
pub fn open_backend(config: &Config) -> Result<Arc<dyn Backend>> {
    let url = &config.repository.url;
    Ok(if url.starts_with("s3://") {
        Arc::new(ObjectStoreBackend::s3_with(url, &config.repository.s3)?)
    } else {
        Arc::new(LocalBackend::new(url))
    })
}

/// Scratch directories of drills that never finished hold restored customer data: remove them.
fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("drill-") {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::warn!("removed the restore of an interrupted drill"),
                Err(err) => {
                    tracing::error!(error = %err, path = %e.path().display(), "cannot remove an interrupted drill's restore")
                }
            }
        }
    }
}

/// Open the repository with the writer credential, probing create-if-absent.
fn open_writer(config: &Config, backend: Arc<dyn Backend>) -> Result<Repository> {
    let repo = Repository::open(
        backend,
        &Credential::Writer(config.repository.writer_key_file.clone()),
    )?;
    repo.probe_create_if_absent()?;
    Ok(repo)
}

fn listen_for_signals(tx: Sender<Msg>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::Invalid(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(Msg::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Invalid(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// The next time `cfg`'s schedule fires after `after`, plus up to `jitter`.
fn next_fire(cfg: &SourceConfig, after: SystemTime, jitter: Duration) -> Option<SystemTime> {
    let schedule = cfg.schedule.as_ref()?;
    let next = schedule
        .cron
        .after(&DateTime::<Local>::from(after))
        .next()?;
    let spread = if jitter.is_zero() {
        Duration::ZERO
    } else {
        jitter.mul_f64(rand::random::<f64>())
    };
    Some(SystemTime::from(next) + spread)
}

struct Daemon {
    config: Config,
    repo: Arc<Repository>,
    /// Opened with the drill identity, only when `[drills]` is configured.
    operator: Option<Arc<Repository>>,
    sources: Vec<Source>,
    drills: Vec<DrillJob>,
    tx: Sender<Msg>,
    doc: Arc<Mutex<StatusDoc>>,
    stopping: bool,
    /// Next retention run, and whether one is running.
    forget_next: Option<SystemTime>,
    forget_running: bool,
    /// Ping interval (half of WatchdogSec) and the last ping.
    watchdog: Option<(Duration, Instant)>,
    last_status_line: String,
}

impl Daemon {
    /// Snapshots per source, counted once at start (then kept up to date in memory).
    fn snapshot_counts(&self) -> Result<HashMap<String, u64>> {
        let mut counts = HashMap::new();
        for snap in self.repo.list_snapshots()? {
            *counts.entry(snap.head.source).or_default() += 1;
        }
        Ok(counts)
    }

    /// (Re)build the sources from the config, keeping what is known about same-named ones.
    fn install_sources(&mut self, previous: &StatusDoc, counts: &HashMap<String, u64>) {
        let now = SystemTime::now();
        let mut old: HashMap<String, Source> = std::mem::take(&mut self.sources)
            .into_iter()
            .map(|s| (s.cfg.name.clone(), s))
            .collect();
        for cfg in self.config.sources.clone() {
            let mut source = match old.remove(&cfg.name) {
                Some(mut s) => {
                    s.cfg = cfg;
                    s.watcher = None;
                    s
                }
                None => {
                    let status = previous
                        .sources
                        .iter()
                        .find(|s| s.name == cfg.name)
                        .cloned()
                        .unwrap_or_else(|| SourceStatus {
                            name: cfg.name.clone(),
                            last_result: "never".into(),
                            ..Default::default()
                        });
                    Source {
                        cfg,
                        next_run: None,
                        retry_at: None,
                        due_now: false,
                        dirty_since: None,
                        last_event: None,
                        running: None,
                        watcher: None,
                        status,
                    }
                }
            };
            source.status.snapshots = counts
                .get(&source.cfg.name)
                .copied()
                .unwrap_or(source.status.snapshots);
            source.next_run = next_fire(&source.cfg, now, self.config.daemon.jitter);
            // A run the schedule wanted while the daemon was down runs once now.
            if let Some(last) = source.status.last_attempt {
                let last = SystemTime::UNIX_EPOCH + Duration::from_secs(last);
                if source.running.is_none()
                    && next_fire(&source.cfg, last, Duration::ZERO).is_some_and(|t| t <= now)
                {
                    tracing::info!(source = %source.cfg.name, "a scheduled run was missed while the daemon was down; running it now");
                    source.due_now = true;
                }
            }
            self.start_watcher(&mut source);
            self.sources.push(source);
        }
        for (name, s) in old {
            if s.running.is_some() {
                tracing::info!(source = %name, "source removed from the config; its running backup finishes first");
            }
        }
    }

    /// (Re)build the scheduled drills from the config.
    fn install_drills(&mut self, previous: &StatusDoc) {
        let now = SystemTime::now();
        let Some(cfg) = &self.config.drills else {
            self.drills.clear();
            return;
        };
        let old: Vec<DrillJob> = std::mem::take(&mut self.drills);
        for rb in &cfg.runbooks {
            let status = old
                .iter()
                .find(|d| d.runbook.id == rb.id)
                .map(|d| d.status.clone())
                .or_else(|| previous.drills.iter().find(|d| d.runbook == rb.id).cloned())
                .unwrap_or_else(|| DrillStatus {
                    runbook: rb.id.clone(),
                    last_result: "never".into(),
                    ..Default::default()
                });
            let running = old.iter().any(|d| d.runbook.id == rb.id && d.running);
            let next_run = rb.schedule.as_ref().and_then(|s| {
                s.cron
                    .after(&DateTime::<Local>::from(now))
                    .next()
                    .map(SystemTime::from)
            });
            self.drills.push(DrillJob {
                runbook: rb.clone(),
                next_run,
                running,
                status,
            });
        }
    }

    fn dispatch_drills(&mut self, now: SystemTime) {
        let Some(operator) = self.operator.clone() else {
            return;
        };
        for job in &mut self.drills {
            if job.running || job.next_run.is_none_or(|t| t > now) {
                continue;
            }
            job.next_run = job.runbook.schedule.as_ref().and_then(|s| {
                s.cron
                    .after(&DateTime::<Local>::from(now))
                    .next()
                    .map(SystemTime::from)
            });
            job.running = true;
            let (rb, repo, tx) = (job.runbook.clone(), operator.clone(), self.tx.clone());
            let state_dir = self.config.repository.state_dir.clone();
            tracing::info!(runbook = %rb.id, "drill started");
            let spawned = std::thread::Builder::new()
                .name(format!("drill-{}", rb.id))
                .spawn(move || {
                    let started = Instant::now();
                    let result = run_drill(&repo, &rb, &state_dir);
                    let _ = tx.send(Msg::DrillDone {
                        runbook: rb.id.clone(),
                        result: Box::new(result),
                        took: started.elapsed(),
                    });
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a drill thread");
                job.running = false;
            }
        }
    }

    fn on_drill_done(
        &mut self,
        id: &str,
        result: Result<crate::drill::DrillReport>,
        took: Duration,
    ) {
        let Some(job) = self.drills.iter_mut().find(|d| d.runbook.id == id) else {
            return;
        };
        job.running = false;
        let s = &mut job.status;
        s.last_run = Some(unix(SystemTime::now()));
        s.duration_seconds = took.as_secs_f64();
        match result {
            Ok(report) => {
                s.last_result = if report.passed { "pass" } else { "fail" }.into();
                s.last_error = None;
                s.rto_margin_seconds = report.rto.target_seconds - report.rto.achieved_seconds;
                let used = report
                    .rpo
                    .newest_age_seconds
                    .max(report.rpo.worst_gap_seconds);
                s.rpo_margin_seconds = report.rpo.target_seconds as f64 - used as f64;
                if report.passed {
                    tracing::info!(runbook = %id, rto_margin = s.rto_margin_seconds, rpo_margin = s.rpo_margin_seconds, "drill passed");
                } else {
                    // Reasons can quote restored file names: they stay in the (private) report.
                    tracing::warn!(runbook = %id, reasons = report.reasons.len(), "drill FAILED; see its report ('custodian drill reports')");
                }
            }
            Err(e) => {
                s.last_result = "error".into();
                s.last_error = Some(e.to_string());
                tracing::error!(runbook = %id, error = %e, "drill could not run");
            }
        }
        self.save();
    }

    fn schedule_forget(&mut self, now: SystemTime) {
        let any_policy = self.sources.iter().any(|s| !s.cfg.retention.is_empty());
        self.forget_next = any_policy
            .then(|| {
                self.config
                    .daemon
                    .forget_schedule
                    .cron
                    .after(&DateTime::<Local>::from(now))
                    .next()
                    .map(SystemTime::from)
            })
            .flatten();
    }

    /// Apply every source's retention policy on a thread (forgetting only deletes snapshot
    /// heads, after writing a destruction record, so it is safe beside running backups).
    fn dispatch_forget(&mut self, now: SystemTime) {
        if self.forget_running || self.forget_next.is_none_or(|t| t > now) {
            return;
        }
        self.schedule_forget(now);
        self.forget_running = true;
        let policies: Vec<(String, crate::retention::Policy)> = self
            .sources
            .iter()
            .filter(|s| !s.cfg.retention.is_empty())
            .map(|s| (s.cfg.name.clone(), s.cfg.retention.clone()))
            .collect();
        let (repo, tx) = (self.repo.clone(), self.tx.clone());
        let local = self.config.repository.state_dir.join("destruction");
        let spawned = std::thread::Builder::new()
            .name("forget".into())
            .spawn(move || {
                let result = apply_retention(&repo, &policies, &local);
                let _ = tx.send(Msg::ForgetDone(Box::new(result)));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the retention thread");
            self.forget_running = false;
        }
    }

    fn on_forget_done(&mut self, result: Result<HashMap<String, u64>>) {
        self.forget_running = false;
        let now = unix(SystemTime::now());
        match result {
            Ok(counts) => {
                for s in &mut self.sources {
                    if let Some(n) = counts.get(&s.cfg.name) {
                        s.status.forgotten += n;
                        s.status.snapshots = s.status.snapshots.saturating_sub(*n);
                        s.status.last_forget = Some(now);
                    }
                }
                let total: u64 = counts.values().sum();
                tracing::info!(forgotten = total, "retention applied");
            }
            Err(e) => {
                tracing::error!(error = %e, "retention could not run; trying at the next scheduled time")
            }
        }
        self.save();
    }

    fn start_watcher(&self, source: &mut Source) {
        source.status.watcher = "off".into();
        if !source.cfg.watch {
            return;
        }
        let (tx, name) = (self.tx.clone(), source.cfg.name.clone());
        match watch::start(&source.cfg, move |e| {
            let _ = tx.send(Msg::Watch(name.clone(), e));
        }) {
            Ok(w) => {
                source.watcher = Some(w);
                source.status.watcher = "healthy".into();
            }
            Err(e) => {
                tracing::warn!(source = %source.cfg.name, error = %e, "cannot watch the source; falling back to its schedule and daily full scans");
                source.status.watcher = "failed".into();
            }
        }
    }

    fn main_loop(&mut self, rx: &Receiver<Msg>) {
        loop {
            let now = SystemTime::now();
            self.dispatch(now);
            if !self.stopping {
                self.dispatch_drills(now);
                self.dispatch_forget(now);
            }
            self.publish(now);
            // A running drill finishes (and removes its restore) before the daemon exits.
            if self.stopping
                && self.sources.iter().all(|s| s.running.is_none())
                && self.drills.iter().all(|d| !d.running)
                && !self.forget_running
            {
                return;
            }
            match rx.recv_timeout(self.wait(now)) {
                Ok(Msg::Signal(signal_hook::consts::SIGHUP)) => self.reload(),
                Ok(Msg::Signal(_)) => self.stop(),
                Ok(Msg::Watch(name, event)) => self.on_watch(&name, event),
                Ok(Msg::Done {
                    source,
                    result,
                    took,
                }) => self.on_done(&source, *result, took),
                Ok(Msg::DrillDone {
                    runbook,
                    result,
                    took,
                }) => self.on_drill_done(&runbook, *result, took),
                Ok(Msg::ForgetDone(result)) => self.on_forget_done(*result),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long to sleep: until the next thing is due, at most a tick.
    fn wait(&self, now: SystemTime) -> Duration {
        let mut wait = TICK;
        if let Some((every, _)) = self.watchdog {
            wait = wait.min(every);
        }
        for s in &self.sources {
            for t in [s.next_run, s.retry_at].into_iter().flatten() {
                wait = wait.min(t.duration_since(now).unwrap_or_default());
            }
        }
        for t in self
            .drills
            .iter()
            .filter_map(|d| d.next_run)
            .chain(self.forget_next)
        {
            wait = wait.min(t.duration_since(now).unwrap_or_default());
        }
        wait.max(Duration::from_millis(5))
    }

    fn is_due(&self, s: &Source, now: SystemTime) -> bool {
        let at = Instant::now();
        let scheduled = s.next_run.is_some_and(|t| t <= now);
        let retry = s.retry_at.is_some_and(|t| t <= now);
        let settled = match (s.dirty_since, s.last_event) {
            (Some(first), Some(last)) => {
                at.duration_since(last) >= s.cfg.debounce
                    || at.duration_since(first) >= s.cfg.max_delay
            }
            _ => false,
        };
        // The safety net for watched sources without a schedule.
        let full_scan = s.cfg.watch
            && s.cfg.schedule.is_none()
            && s.status.last_success.is_some_and(|t| {
                unix(now).saturating_sub(t) >= self.config.daemon.full_scan_interval.as_secs()
            });
        scheduled || retry || settled || s.due_now || full_scan
    }

    fn dispatch(&mut self, now: SystemTime) {
        if self.stopping {
            return;
        }
        let mut running = self.sources.iter().filter(|s| s.running.is_some()).count();
        for i in 0..self.sources.len() {
            if !self.is_due(&self.sources[i], now) {
                continue;
            }
            let jitter = self.config.daemon.jitter;
            let s = &mut self.sources[i];
            if s.next_run.is_some_and(|t| t <= now) {
                s.next_run = next_fire(&s.cfg, now, jitter);
            }
            // Never two backups of one source; the global limit queues the rest.
            if s.running.is_some() || running >= self.config.daemon.max_concurrent {
                continue;
            }
            s.due_now = false;
            s.retry_at = None;
            s.dirty_since = None;
            s.last_event = None;
            running += 1;
            self.start_run(i);
        }
    }

    fn start_run(&mut self, i: usize) {
        let cancel = Arc::new(AtomicBool::new(false));
        let s = &mut self.sources[i];
        s.running = Some(cancel.clone());
        s.status.last_attempt = Some(unix(SystemTime::now()));
        let (cfg, repo, tx) = (s.cfg.clone(), self.repo.clone(), self.tx.clone());
        let (state_dir, connections, anomaly) = (
            self.config.repository.state_dir.clone(),
            self.config.repository.connections,
            self.config.anomaly,
        );
        tracing::info!(source = %cfg.name, "backup started");
        let spawned = std::thread::Builder::new()
            .name(format!("backup-{}", cfg.name))
            .spawn(move || {
                let started = Instant::now();
                let result = run_backup(repo, &cfg, &state_dir, (connections, anomaly), cancel);
                let _ = tx.send(Msg::Done {
                    source: cfg.name.clone(),
                    result: Box::new(result),
                    took: started.elapsed(),
                });
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a backup thread");
            self.sources[i].running = None;
        }
    }

    fn on_watch(&mut self, name: &str, event: WatchEvent) {
        let Some(s) = self.sources.iter_mut().find(|s| s.cfg.name == name) else {
            return;
        };
        let now = Instant::now();
        match event {
            WatchEvent::Changed => {
                s.dirty_since.get_or_insert(now);
                s.last_event = Some(now);
            }
            WatchEvent::Lost(reason) => {
                tracing::warn!(source = %name, %reason, "file watcher lost events; running a full scan");
                s.status.watcher = "failed".into();
                s.due_now = true;
            }
        }
    }

    fn on_done(&mut self, name: &str, result: Result<BackupOutcome>, took: Duration) {
        let Some(s) = self.sources.iter_mut().find(|s| s.cfg.name == name) else {
            return;
        };
        s.running = None;
        let now = SystemTime::now();
        s.status.last_duration_ms = took.as_millis() as u64;
        let result_name = match result {
            Ok(outcome) => {
                let stats = &outcome.head.stats;
                s.status.last_success = Some(unix(now));
                s.status.last_result = "ok".into();
                s.status.last_error = None;
                s.status.last_snapshot = Some(outcome.id.to_hex());
                s.status.files = stats.files;
                s.status.bytes = stats.bytes;
                s.status.bytes_read = stats.bytes_read;
                s.status.bytes_added = stats.bytes_added;
                s.status.snapshots += 1;
                s.status.suspicious = outcome.head.changes.as_ref().is_some_and(|c| c.suspicious);
                s.status.consecutive_failures = 0;
                if s.cfg.watch && s.watcher.is_some() {
                    s.status.watcher = "healthy".into();
                }
                tracing::info!(
                    source = %name,
                    snapshot = %outcome.id.short(),
                    files = stats.files,
                    files_read = stats.files_read,
                    bytes_added = stats.bytes_added,
                    seconds = took.as_secs_f64(),
                    "backup committed"
                );
                if !outcome.skipped.is_empty() {
                    tracing::warn!(source = %name, skipped = outcome.skipped.len(), "some entries could not be read and were skipped (names with RUST_LOG=debug or 'custodian ls')");
                    for skip in &outcome.skipped {
                        tracing::debug!(source = %name, path = %skip.path.display(), error = %skip.error, "skipped");
                    }
                }
                "ok"
            }
            Err(Error::Cancelled) => {
                s.status.last_result = "cancelled".into();
                tracing::info!(source = %name, "backup stopped at a safe point for shutdown; nothing partial was committed");
                "cancelled"
            }
            Err(e) => {
                s.status.last_result = "failed".into();
                s.status.last_error = Some(e.to_string());
                s.status.consecutive_failures += 1;
                let d = &self.config.daemon;
                let backoff = d
                    .retry_initial
                    .saturating_mul(1 << (s.status.consecutive_failures - 1).min(16))
                    .min(d.retry_max);
                s.retry_at = Some(now + backoff);
                tracing::error!(source = %name, error = %e, failures = s.status.consecutive_failures, retry_in = %humantime::format_duration(backoff), "backup failed; retrying later");
                "failed"
            }
        };
        metrics::count_run(name, result_name);
        self.save();
    }

    fn stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let running: Vec<&str> = self
            .sources
            .iter()
            .filter_map(|s| {
                s.running.as_ref().map(|cancel| {
                    cancel.store(true, Ordering::SeqCst);
                    s.cfg.name.as_str()
                })
            })
            .collect();
        tracing::info!(
            running = running.len(),
            "stopping: scheduling ended, running backups stop at their next safe point"
        );
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
    }

    fn reload(&mut self) {
        let new = match Config::load(&self.config.file) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the new configuration is invalid; still running the previous one");
                return;
            }
        };
        let r = (&new.repository, &self.config.repository);
        if r.0.url != r.1.url
            || r.0.writer_key_file != r.1.writer_key_file
            || r.0.state_dir != r.1.state_dir
            || new.metrics != self.config.metrics
        {
            tracing::warn!("repository, state-dir and metrics settings change only on restart");
        }
        let keep_repo = self.config.repository.clone();
        let keep_metrics = self.config.metrics;
        self.config = new;
        self.config.repository = keep_repo;
        self.config.metrics = keep_metrics;
        let doc = self.doc.lock().map(|d| d.clone()).unwrap_or_default();
        self.install_sources(&doc, &HashMap::new());
        self.schedule_forget(SystemTime::now());
        if self.operator.is_some() {
            self.install_drills(&doc);
        } else if self.config.drills.is_some() {
            tracing::warn!("[drills] was added: it takes effect on restart");
        }
        tracing::info!(sources = self.sources.len(), "configuration reloaded");
    }

    /// Metrics, the status document and systemd's STATUS and watchdog.
    fn publish(&mut self, now: SystemTime) {
        let now_unix = unix(now);
        for s in &mut self.sources {
            s.status.next_run = s.next_run.map(unix);
            metrics::publish(&s.status, now_unix);
        }
        for d in &mut self.drills {
            d.status.next_run = d.next_run.map(unix);
            metrics::publish_drill(&d.status);
        }
        if let Ok(mut doc) = self.doc.lock() {
            doc.sources = self.sources.iter().map(|s| s.status.clone()).collect();
            doc.drills = self.drills.iter().map(|d| d.status.clone()).collect();
        }
        let failing = self
            .sources
            .iter()
            .filter(|s| s.status.last_result == "failed")
            .count();
        let running = self.sources.iter().filter(|s| s.running.is_some()).count();
        let oldest = self
            .sources
            .iter()
            .map(|s| {
                s.status
                    .last_success
                    .map_or(u64::MAX, |t| now_unix.saturating_sub(t))
            })
            .max()
            .unwrap_or(0);
        let line = format!(
            "{} sources, {running} running, {failing} failing, oldest snapshot {}",
            self.sources.len(),
            if oldest == u64::MAX {
                "none yet".to_string()
            } else {
                format!("{}m old", oldest / 60)
            }
        );
        if line != self.last_status_line {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
            self.last_status_line = line;
        }
        if let Some((every, last)) = &mut self.watchdog {
            if last.elapsed() >= *every {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                *last = Instant::now();
            }
        }
    }

    fn save(&self) {
        let doc = self.doc.lock().map(|d| d.clone()).unwrap_or_default();
        let doc = StatusDoc {
            sources: self.sources.iter().map(|s| s.status.clone()).collect(),
            drills: self.drills.iter().map(|d| d.status.clone()).collect(),
            ..doc
        };
        if let Err(e) = state::save(&self.config.repository.state_dir, &doc) {
            tracing::warn!(error = %e, "cannot save the daemon status");
        }
    }
}

/// Forget by each source's policy; returns how many snapshots each lost.
fn apply_retention(
    repo: &Repository,
    policies: &[(String, crate::retention::Policy)],
    local: &Path,
) -> Result<HashMap<String, u64>> {
    let holds = repo.holds()?;
    let all = repo.list_snapshots()?;
    let now = SystemTime::now();
    let mut counts = HashMap::new();
    for (source, policy) in policies {
        let snaps: Vec<_> = all.iter().filter(|s| &s.head.source == source).collect();
        let (_, doomed) = crate::retention::plan(&snaps, &holds, policy, now);
        if !doomed.is_empty() {
            repo.forget(&doomed, local)?;
        }
        counts.insert(source.clone(), doomed.len() as u64);
    }
    Ok(counts)
}

/// One drill: run it, keep the report locally (state dir, mode 0700) and in the repository.
fn run_drill(
    repo: &Repository,
    rb: &crate::runbook::Runbook,
    state_dir: &Path,
) -> Result<crate::drill::DrillReport> {
    let report = crate::drill::drill(
        repo,
        rb,
        &crate::drill::DrillOptions {
            scratch_parent: state_dir.join("scratch"),
            now: SystemTime::now(),
        },
    )?;
    repo.store_drill_report(&report)?;
    let dir = state_dir.join("drills");
    private_dir(&dir)?;
    let stem = dir.join(format!(
        "{}-{}",
        report.time.replace(':', ""),
        report.runbook
    ));
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    std::fs::write(stem.with_extension("json"), json).map_err(|e| Error::io(&stem, e))?;
    std::fs::write(stem.with_extension("txt"), report.render()).map_err(|e| Error::io(&stem, e))?;
    Ok(report)
}

/// One backup of one source (a SQLite source is first copied consistently into the state dir).
fn run_backup(
    repo: Arc<Repository>,
    cfg: &SourceConfig,
    state_dir: &Path,
    (connections, anomaly): (Option<usize>, crate::archiver::changes::AnomalyThresholds),
    cancel: Arc<AtomicBool>,
) -> Result<BackupOutcome> {
    let staging = state_dir.join("staging").join(&cfg.name);
    let (path, display_path) = match cfg.kind {
        SourceKind::Directory => (cfg.path.clone(), None),
        SourceKind::Sqlite => {
            crate::source::sqlite::capture(&cfg.path, &staging)?;
            (staging.clone(), Some(cfg.path.clone()))
        }
    };
    let opts = BackupOptions {
        source: cfg.name.clone(),
        domain: cfg.domain.clone(),
        path,
        excludes: cfg.exclude.clone(),
        tags: Vec::new(),
        host: crate::source::hostname(),
        state_dir: state_dir.to_path_buf(),
        time: SystemTime::now(),
        connections,
        one_file_system: cfg.one_file_system,
        display_path,
        cancel: Some(cancel),
        anomaly,
    };
    let result = backup(repo, &opts, &Progress::default());
    if cfg.kind == SourceKind::Sqlite {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
