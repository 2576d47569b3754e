//! The daemon's sources: when each is due (cron, watcher debounce, retries, missed runs), one
//! backup thread per run, and what a finished run changes in the source's status.

use super::state::{unix, RunResult, SourceStatus, StatusDoc, WatcherState};
use super::watch::WatchEvent;
use super::{metrics, watch, Daemon, Msg};
use crate::archiver::{backup, BackupOptions, BackupOutcome, Progress};
use crate::config::{SourceConfig, SourceKind};
use crate::error::{Error, Result};
use crate::repository::Repository;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One source as the loop tracks it.
pub(super) struct Source {
    pub(super) cfg: SourceConfig,
    pub(super) next_run: Option<SystemTime>,
    pub(super) retry_at: Option<SystemTime>,
    /// A missed run or a watcher fallback asks for a run as soon as possible.
    pub(super) due_now: bool,
    /// First and last change since the last run started (watched sources).
    pub(super) dirty_since: Option<Instant>,
    pub(super) last_event: Option<Instant>,
    /// The cancel flag of the run in progress.
    pub(super) running: Option<Arc<AtomicBool>>,
    pub(super) watcher: Option<watch::Watch>,
    /// Set by the watcher when it reports a change, cleared when the loop takes it: at most
    /// one change message per source is ever queued, however many events a storm brings.
    pub(super) change_queued: Arc<AtomicBool>,
    pub(super) status: SourceStatus,
}

/// The next time `cfg`'s schedule fires after `after`, plus up to `jitter`.
fn next_fire(cfg: &SourceConfig, after: SystemTime, jitter: Duration) -> Option<SystemTime> {
    let next = cfg.schedule.as_ref()?.next_after(after)?;
    let spread = if jitter.is_zero() {
        Duration::ZERO
    } else {
        jitter.mul_f64(rand::random::<f64>())
    };
    Some(next + spread)
}

/// Whether a watcher's event needs a message to the loop: a change only when none is queued
/// already (the loop clears the flag when it takes one), a loss always.
fn worth_a_message(queued: &AtomicBool, e: &WatchEvent) -> bool {
    match e {
        WatchEvent::Changed => !queued.swap(true, Ordering::SeqCst),
        WatchEvent::Lost(_) => true,
    }
}

/// What the repository says about a source at start-up, so that the RPO age and the last
/// success are known from the first scrape, not only after this daemon's first run (a fresh
/// state dir, a new host, snapshots taken with the CLI).
#[derive(Default)]
pub(super) struct Seen {
    pub(super) count: u64,
    /// Unix seconds and id of the newest snapshot.
    pub(super) newest: Option<(u64, String)>,
}

impl Seen {
    fn apply(&self, status: &mut SourceStatus) {
        status.snapshots = self.count;
        if let Some((time, id)) = &self.newest {
            if status.last_success.is_none_or(|t| t < *time) {
                status.last_success = Some(*time);
                status.last_snapshot = Some(id.clone());
            }
        }
    }
}

impl Daemon {
    /// (Re)build the sources from the config, keeping what is known about same-named ones.
    pub(super) fn install_sources(&mut self, previous: &StatusDoc, seen: &HashMap<String, Seen>) {
        let now = crate::clock::now();
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
                            last_result: RunResult::Never,
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
                        change_queued: Arc::default(),
                        status,
                    }
                }
            };
            if let Some(seen) = seen.get(&source.cfg.name) {
                seen.apply(&mut source.status);
            }
            // A reload or a restart is the operator's act: a source that needed one runs now.
            if source.status.needs_operator && source.running.is_none() {
                source.status.needs_operator = false;
                source.due_now = true;
            }
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

    pub(super) fn start_watcher(&self, source: &mut Source) {
        source.status.watcher = WatcherState::Off;
        if !source.cfg.watch {
            return;
        }
        let (tx, name) = (self.tx.clone(), source.cfg.name.clone());
        let queued = source.change_queued.clone();
        match watch::start(&source.cfg, move |e| {
            if worth_a_message(&queued, &e) {
                let _ = tx.send(Msg::Watch(name.clone(), e));
            }
        }) {
            Ok(w) => {
                source.watcher = Some(w);
                source.status.watcher = WatcherState::Healthy;
            }
            Err(e) => {
                tracing::warn!(source = %source.cfg.name, error = %e, "cannot watch the source; falling back to its schedule and daily full scans");
                source.status.watcher = WatcherState::Failed;
            }
        }
    }

    pub(super) fn is_due(&self, s: &Source, now: SystemTime) -> bool {
        let facts = super::schedule::Facts {
            next_run: s.next_run,
            retry_at: s.retry_at,
            dirty_since: s.dirty_since,
            last_event: s.last_event,
            debounce: s.cfg.debounce,
            max_delay: s.cfg.max_delay,
            due_now: s.due_now,
            needs_operator: s.status.needs_operator,
            watched_only: s.cfg.watch && s.cfg.schedule.is_none(),
            last_success: s.status.last_success,
            last_attempt: s.status.last_attempt,
            full_scan_interval: self.config.daemon.full_scan_interval,
        };
        super::schedule::due(&facts, now, Instant::now())
    }

    pub(super) fn dispatch(&mut self, now: SystemTime) {
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
            // Never two backups of one source (the running one covers the fire); the global
            // limit queues the rest: a source waiting for a slot runs as soon as one frees.
            if s.running.is_some() {
                continue;
            }
            if running >= self.config.daemon.max_concurrent {
                s.due_now = true;
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

    pub(super) fn start_run(&mut self, i: usize) {
        let cancel = Arc::new(AtomicBool::new(false));
        let repo = self.repo.clone();
        let s = &mut self.sources[i];
        s.running = Some(cancel.clone());
        s.status.last_attempt = Some(unix(crate::clock::now()));
        let (cfg, tx) = (s.cfg.clone(), self.tx.clone());
        let (state_dir, connections, anomaly) = (
            self.config.repository.state_dir.clone(),
            self.config.repository.connections,
            self.config.anomaly,
        );
        tracing::info!(source = %cfg.name, "backup started");
        let (source, source_name) = (cfg.name.clone(), cfg.name.clone());
        let work = move || {
            let started = Instant::now();
            let result = repo.get().and_then(|repo| {
                run_backup(repo, &cfg, &state_dir, (connections, anomaly), cancel)
            });
            Msg::Done {
                source: cfg.name.clone(),
                result: Box::new(result),
                took: started.elapsed(),
            }
        };
        let panicked = move |e| Msg::Done {
            source,
            result: Box::new(Err(e)),
            took: Duration::ZERO,
        };
        let started = super::spawn_job(format!("backup-{source_name}"), tx, work, panicked);
        if !started {
            self.sources[i].running = None;
        }
    }

    pub(super) fn on_watch(&mut self, name: &str, event: WatchEvent) {
        let Some(s) = self.sources.iter_mut().find(|s| s.cfg.name == name) else {
            return;
        };
        let now = Instant::now();
        match event {
            WatchEvent::Changed => {
                s.change_queued.store(false, Ordering::SeqCst);
                s.dirty_since.get_or_insert(now);
                s.last_event = Some(now);
            }
            WatchEvent::Lost(reason) => {
                tracing::warn!(source = %name, %reason, "file watcher lost events; running a full scan");
                s.status.watcher = WatcherState::Failed;
                s.due_now = true;
            }
        }
    }

    pub(super) fn on_done(&mut self, name: &str, result: Result<BackupOutcome>, took: Duration) {
        let Some(s) = self.sources.iter_mut().find(|s| s.cfg.name == name) else {
            return;
        };
        s.running = None;
        let now = crate::clock::now();
        s.status.last_duration_ms = took.as_millis() as u64;
        let result_name = match result {
            Ok(outcome) => {
                let stats = &outcome.head.stats;
                s.status.last_success = Some(unix(now));
                s.status.last_result = RunResult::Ok;
                s.status.last_error = None;
                s.status.last_snapshot = Some(outcome.id.to_hex());
                s.status.files = stats.files;
                s.status.bytes = stats.bytes;
                s.status.bytes_read = stats.bytes_read;
                s.status.bytes_added = stats.bytes_added;
                s.status.snapshots += 1;
                s.status.suspicious = outcome.head.changes.as_ref().is_some_and(|c| c.suspicious);
                s.status.erase_exclusions = outcome.erase_exclusions as u64;
                s.status.consecutive_failures = 0;
                s.status.needs_operator = false;
                if s.cfg.watch && s.watcher.is_some() {
                    s.status.watcher = WatcherState::Healthy;
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
                s.status.last_result = RunResult::Cancelled;
                tracing::info!(source = %name, "backup stopped at a safe point for shutdown; nothing partial was committed");
                "cancelled"
            }
            Err(e) => {
                s.status.last_result = RunResult::Failed;
                s.status.last_error = Some(e.to_string());
                s.status.consecutive_failures += 1;
                s.status.needs_operator = !e.is_transient();
                if s.status.needs_operator {
                    s.retry_at = None;
                    tracing::error!(source = %name, error = %e, "backup failed and needs an operator: not retried until its next scheduled run, a reload or a restart");
                } else {
                    let d = &self.config.daemon;
                    let backoff = super::schedule::backoff(
                        s.status.consecutive_failures,
                        d.retry_initial,
                        d.retry_max,
                    );
                    s.retry_at = Some(now + backoff);
                    tracing::error!(source = %name, error = %e, failures = s.status.consecutive_failures, retry_in = %humantime::format_duration(backoff), "backup failed; retrying later");
                }
                "failed"
            }
        };
        metrics::count_run(name, result_name);
        self.save();
    }
}

/// One backup of one source (a SQLite source is first copied consistently into the state dir).
pub(super) fn run_backup(
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
        time: crate::clock::now(),
        connections,
        one_file_system: cfg.one_file_system,
        display_path,
        cancel: Some(cancel),
        anomaly,
    };
    let result = backup(repo.clone(), &opts, &Progress::default());
    if cfg.kind == SourceKind::Sqlite {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let intent =
        crate::audit::Intent::write("backup", "scheduled backup (daemon)").source(Some(&cfg.name));
    let (intent, outcome, touched) = match &result {
        Ok(o) => (
            intent.snapshots([o.id.to_hex()]),
            "ok",
            Some(crate::audit::Touched {
                files: o.head.stats.files,
                bytes: o.head.stats.bytes,
            }),
        ),
        Err(Error::Cancelled) => (intent, "cancelled", None),
        Err(_) => (intent, "failed", None),
    };
    super::audit::record(&repo, state_dir, intent, outcome, touched);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_changes_queues_one_message_until_the_loop_takes_it() {
        let queued = AtomicBool::new(false);
        let sent = (0..1_000_000)
            .filter(|_| worth_a_message(&queued, &WatchEvent::Changed))
            .count();
        assert_eq!(sent, 1);
        assert!(worth_a_message(
            &queued,
            &WatchEvent::Lost("overflow".into())
        ));
        // The loop took the change: the next one is worth a message again.
        queued.store(false, Ordering::SeqCst);
        assert!(worth_a_message(&queued, &WatchEvent::Changed));
        assert!(!worth_a_message(&queued, &WatchEvent::Changed));
    }
}
