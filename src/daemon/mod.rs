//! `custodian daemon`: snapshots each configured source on its cron schedule and when it
//! changes, for months without anyone watching. One loop owns all state; backups run on their
//! own threads (one per source at most, `max-concurrent` in all) and report back over a channel,
//! as do signals and file watchers. Nothing here ever names a customer file at info level.
//!
//! Shutdown (SIGTERM/SIGINT): scheduling stops, running backups are told to stop at their next
//! safe point (they commit nothing partial and leave uploaded packs for the next run), and the
//! daemon exits 0 once they have. SIGHUP reloads the config; a bad one is logged and ignored.

mod audit;
mod drills;
mod lock;
mod metrics;
mod prune;
mod reopen;
mod retention;
mod schedule;
mod sources;
pub mod state;
pub mod status;
mod watch;

pub use state::{DrillStatus, SourceStatus, StatusDoc};

use crate::archiver::BackupOutcome;
use crate::backend::{Backend, LocalBackend, ObjectStoreBackend};
use crate::config::{Config, ConfigError};
use crate::error::{Error, Result};
use crate::fsutil::private_dir;
use crate::repository::{Credential, Repository};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use drills::{remove_stale_scratch, DrillJob};
use reopen::Reopening;
use sources::Source;
use state::unix;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
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
    PruneDone(Box<Result<crate::prune::PruneReport>>),
}

/// Run the daemon with the configuration in `config_file` until SIGTERM.
pub fn run(config_file: &Path) -> std::result::Result<(), DaemonError> {
    let config = Config::load(config_file)?;
    let state_dir = config.repository.state_dir.clone();
    private_dir(&state_dir)?;
    let _lock = lock::take(&state_dir)?;
    let backend = open_backend(&config)?;
    let repo = open_writer(&config, backend.clone())?;
    // Restored customer data from a drill that a crash or SIGKILL interrupted.
    remove_stale_scratch(&state_dir.join("scratch"));
    let operator = match &config.drills {
        Some(d) => Some(Reopening::new(
            open_operator(&config, &d.identity_file, backend)?,
            "drills' repository",
            {
                let (config, identity) = (config.clone(), d.identity_file.clone());
                move || open_operator(&config, &identity, open_backend(&config)?)
            },
        )),
        None => None,
    };
    let repo = Reopening::new(repo, "repository", {
        let config = config.clone();
        move || open_writer(&config, open_backend(&config)?)
    });
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
            started: Some(unix(crate::clock::now())),
            config: config.file.display().to_string(),
            repository: config.repository.url.clone(),
            sources: Vec::new(),
            drills: Vec::new(),
            broken_runbooks: Vec::new(),
            prune: persisted.prune.clone(),
            access_review: None,
        })),
        sources: Vec::new(),
        drills: Vec::new(),
        broken_runbooks: Vec::new(),
        repo,
        operator,
        tx,
        stopping: false,
        forget_next: None,
        forget_running: false,
        prune_next: None,
        prune_running: false,
        watchdog: sd_notify::watchdog_enabled().map(|d| (d / 2, Instant::now())),
        last_status_line: String::new(),
        config,
    };
    audit::publish_length(&daemon.repo.last(), &state_dir);
    let counts = daemon.snapshot_counts()?;
    daemon.install_sources(&persisted, &counts);
    daemon.install_drills(&persisted);
    daemon.schedule_forget(crate::clock::now());
    daemon.schedule_prune(crate::clock::now());
    status::serve(&state_dir, daemon.doc.clone())?;
    daemon.publish(crate::clock::now());
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

/// Run `work` on a thread of its own named `name`, and send what it returns to the loop; if it
/// panics, `panicked(error)` is sent instead, so the job never stays "running" for ever (which
/// would also hang the shutdown). False (logged) when no thread could be started: the caller
/// marks the job not running.
fn spawn_job(
    name: String,
    tx: Sender<Msg>,
    work: impl FnOnce() -> Msg + Send + 'static,
    panicked: impl FnOnce(crate::Error) -> Msg + Send + 'static,
) -> bool {
    let job = name.clone();
    let spawned = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let msg =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
                    panicked(crate::Error::Internal(format!(
                        "internal error: the {job} job panicked (the log has where); nothing it \
                         was writing was committed"
                    )))
                });
            let _ = tx.send(msg);
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, job = %name, "cannot start a job thread");
            false
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

/// Open the repository with the drills' operator identity, pinned to what this machine knows.
fn open_operator(
    config: &Config,
    identity: &Path,
    backend: Arc<dyn Backend>,
) -> Result<Repository> {
    Repository::open_pinned(
        backend,
        &Credential::Operator(identity.to_path_buf()),
        Some(config.repository.state_dir.join("trust")),
    )
}

fn listen_for_signals(tx: Sender<Msg>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(Msg::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

struct Daemon {
    config: Config,
    /// The writer's repository, for backups, retention and prune.
    repo: Arc<Reopening>,
    /// Opened with the drill identity, only when `[drills]` is configured.
    operator: Option<Arc<Reopening>>,
    sources: Vec<Source>,
    drills: Vec<DrillJob>,
    /// Runbooks that could not be parsed, for the status and the metrics.
    broken_runbooks: Vec<String>,
    tx: Sender<Msg>,
    doc: Arc<Mutex<StatusDoc>>,
    stopping: bool,
    /// Next retention run, and whether one is running.
    forget_next: Option<SystemTime>,
    forget_running: bool,
    /// Next prune, and whether one is running.
    prune_next: Option<SystemTime>,
    prune_running: bool,
    /// Ping interval (half of WatchdogSec) and the last ping.
    watchdog: Option<(Duration, Instant)>,
    last_status_line: String,
}

impl Daemon {
    /// Snapshots per source and the newest of each, read once at start (then kept up to date
    /// in memory).
    fn snapshot_counts(&self) -> Result<HashMap<String, sources::Seen>> {
        let mut seen: HashMap<String, sources::Seen> = HashMap::new();
        for snap in self.repo.last().list_snapshots()? {
            let entry = seen.entry(snap.head.source.clone()).or_default();
            entry.count += 1;
            let time = unix(snap.time);
            if entry.newest.as_ref().is_none_or(|(t, _)| *t <= time) {
                entry.newest = Some((time, snap.id.to_hex()));
            }
        }
        Ok(seen)
    }

    fn main_loop(&mut self, rx: &Receiver<Msg>) {
        loop {
            let now = crate::clock::now();
            self.dispatch(now);
            if !self.stopping {
                self.dispatch_drills(now);
                self.dispatch_forget(now);
                self.dispatch_prune(now);
            }
            self.publish(now);
            // A running drill finishes (and removes its restore) before the daemon exits.
            if self.stopping && self.idle() {
                return;
            }
            let msg = rx.recv_timeout(self.wait(now));
            let job_ended = matches!(
                msg,
                Ok(Msg::Done { .. }
                    | Msg::DrillDone { .. }
                    | Msg::ForgetDone(_)
                    | Msg::PruneDone(_))
            );
            match msg {
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
                Ok(Msg::PruneDone(result)) => self.on_prune_done(*result),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if job_ended && self.idle() {
                crate::memory::give_back();
            }
        }
    }

    /// No job runs: no backup, drill, retention or prune.
    fn idle(&self) -> bool {
        self.sources.iter().all(|s| s.running.is_none())
            && self.drills.iter().all(|d| !d.running)
            && !self.forget_running
            && !self.prune_running
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
            .chain(self.prune_next)
        {
            wait = wait.min(t.duration_since(now).unwrap_or_default());
        }
        wait.max(Duration::from_millis(5))
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
            || new.drills.as_ref().map(|d| &d.identity_file)
                != self.config.drills.as_ref().map(|d| &d.identity_file)
        {
            tracing::warn!(
                "repository, state-dir, metrics and drill identity settings change only on restart"
            );
        }
        let keep_repo = self.config.repository.clone();
        let keep_metrics = self.config.metrics;
        self.config = new;
        self.config.repository = keep_repo;
        self.config.metrics = keep_metrics;
        let doc = self.doc.lock().map(|d| d.clone()).unwrap_or_default();
        self.install_sources(&doc, &HashMap::new());
        self.schedule_forget(crate::clock::now());
        self.schedule_prune(crate::clock::now());
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
            s.status.running = s.running.is_some();
            s.status.pending_change = s.dirty_since.is_some();
            metrics::publish(&s.status, now_unix);
        }
        for d in &mut self.drills {
            d.status.next_run = d.next_run.map(unix);
            metrics::publish_drill(&d.status);
        }
        if let Ok(mut doc) = self.doc.lock() {
            doc.sources = self.sources.iter().map(|s| s.status.clone()).collect();
            doc.drills = self.drills.iter().map(|d| d.status.clone()).collect();
            doc.broken_runbooks = self.broken_runbooks.clone();
            doc.prune.next_run = self.prune_next.map(unix);
            metrics::publish_prune(&doc.prune);
            doc.access_review = audit::review_status();
        }
        metrics::publish_broken_runbooks(self.broken_runbooks.len());
        let failing = self
            .sources
            .iter()
            .filter(|s| s.status.last_result == state::RunResult::Failed)
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
            broken_runbooks: self.broken_runbooks.clone(),
            ..doc
        };
        if let Err(e) = state::save(&self.config.repository.state_dir, &doc) {
            tracing::warn!(error = %e, "cannot save the daemon status");
        }
    }
}
