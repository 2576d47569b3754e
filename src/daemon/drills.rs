//! Scheduled restore drills (a `[drills]` section, on a drill host): each runbook with a
//! schedule runs on its own thread; results go to the status, the metrics, and the report files.

use super::state::{unix, DrillResult, DrillStatus, StatusDoc};
use super::{Daemon, Msg};
use crate::error::Result;
use crate::repository::Repository;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// A runbook the daemon drills on its schedule.
pub(super) struct DrillJob {
    pub(super) runbook: crate::runbook::Runbook,
    pub(super) next_run: Option<SystemTime>,
    pub(super) running: bool,
    pub(super) status: DrillStatus,
}

/// Scratch directories of drills that never finished hold restored customer data: remove them.
pub(super) fn remove_stale_scratch(dir: &Path) {
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

impl Daemon {
    /// (Re)build the scheduled drills from the config.
    pub(super) fn install_drills(&mut self, previous: &StatusDoc) {
        let now = crate::clock::now();
        let Some(cfg) = &self.config.drills else {
            self.drills.clear();
            return;
        };
        for e in &cfg.broken_runbooks {
            tracing::error!("runbook not drilled until fixed (the others run): {e}");
        }
        self.broken_runbooks = cfg.broken_runbooks.iter().map(|e| e.to_string()).collect();
        let old: Vec<DrillJob> = std::mem::take(&mut self.drills);
        for rb in &cfg.runbooks {
            let status = old
                .iter()
                .find(|d| d.runbook.id == rb.id)
                .map(|d| d.status.clone())
                .or_else(|| previous.drills.iter().find(|d| d.runbook == rb.id).cloned())
                .unwrap_or_else(|| DrillStatus {
                    runbook: rb.id.clone(),
                    last_result: DrillResult::Never,
                    ..Default::default()
                });
            let running = old.iter().any(|d| d.runbook.id == rb.id && d.running);
            let next_run = rb.schedule.as_ref().and_then(|s| s.next_after(now));
            self.drills.push(DrillJob {
                runbook: rb.clone(),
                next_run,
                running,
                status,
            });
        }
    }

    pub(super) fn dispatch_drills(&mut self, now: SystemTime) {
        let due = self
            .drills
            .iter()
            .any(|j| !j.running && j.next_run.is_some_and(|t| t <= now));
        if !due {
            return;
        }
        let Some(operator) = self.operator.clone() else {
            return;
        };
        for job in &mut self.drills {
            if job.running || job.next_run.is_none_or(|t| t > now) {
                continue;
            }
            job.next_run = job
                .runbook
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(now));
            job.running = true;
            let (rb, repo, tx) = (job.runbook.clone(), operator.clone(), self.tx.clone());
            let state_dir = self.config.repository.state_dir.clone();
            tracing::info!(runbook = %rb.id, "drill started");
            let (name, runbook) = (format!("drill-{}", rb.id), rb.id.clone());
            let work = move || {
                let started = Instant::now();
                let result = repo
                    .get()
                    .and_then(|repo| run_drill(&repo, &rb, &state_dir));
                Msg::DrillDone {
                    runbook: rb.id.clone(),
                    result: Box::new(result),
                    took: started.elapsed(),
                }
            };
            let panicked = move |e| Msg::DrillDone {
                runbook,
                result: Box::new(Err(e)),
                took: std::time::Duration::ZERO,
            };
            let started = super::spawn_job(name, tx, work, panicked);
            if !started {
                job.running = false;
            }
        }
    }

    pub(super) fn on_drill_done(
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
        s.last_run = Some(unix(crate::clock::now()));
        s.duration_seconds = took.as_secs_f64();
        match result {
            Ok(report) => {
                s.last_result = if report.passed {
                    DrillResult::Pass
                } else {
                    DrillResult::Fail
                };
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
                s.last_result = DrillResult::Error;
                s.last_error = Some(e.to_string());
                tracing::error!(runbook = %id, error = %e, "drill could not run");
            }
        }
        self.save();
    }
}

/// One drill: run it, keep the report locally (state dir, mode 0700) and in the repository.
fn run_drill(
    repo: &Repository,
    rb: &crate::runbook::Runbook,
    state_dir: &Path,
) -> Result<crate::drill::DrillReport> {
    let intent =
        crate::audit::Intent::read("drill", &format!("scheduled drill of runbook {}", rb.id))
            .source(
                rb.sources
                    .first()
                    .filter(|_| rb.sources.len() == 1)
                    .map(String::as_str),
            );
    let local = crate::audit::Local::new(state_dir.join("audit"));
    let begun = crate::audit::begin(repo, &intent, Some(&local), None)?;
    let report = crate::drill::drill(
        repo,
        rb,
        &crate::drill::DrillOptions {
            scratch_parent: state_dir.join("scratch"),
            now: crate::clock::now(),
        },
    );
    let result = match &report {
        Ok(r) if r.passed => "ok",
        _ => "failed",
    };
    let figures = report.iter().map(|r| r.figures()).collect();
    crate::audit::close_drills(repo, &begun, result, None, figures);
    let report = report?;
    repo.store_drill_report(&report)?;
    report.save_local(&state_dir.join("drills"))?;
    Ok(report)
}
