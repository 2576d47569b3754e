//! Prune on the daemon's `prune-schedule`, on a thread: it is safe beside the daemon's own
//! backups (and other hosts'), which is what its two phases are for.

use super::state::{unix, RunResult};
use super::{Daemon, Msg};
use crate::error::Result;
use crate::prune::{PruneOptions, PruneReport};
use std::time::SystemTime;

impl Daemon {
    pub(super) fn schedule_prune(&mut self, now: SystemTime) {
        self.prune_next = self.config.daemon.prune_schedule.next_after(now);
    }

    pub(super) fn dispatch_prune(&mut self, now: SystemTime) {
        if self.prune_running || self.prune_next.is_none_or(|t| t > now) {
            return;
        }
        self.schedule_prune(now);
        self.prune_running = true;
        let opts = PruneOptions {
            rules: self.config.daemon.prune,
            dry_run: false,
            local_dir: self.config.repository.state_dir.join("destruction"),
            break_lease: None,
        };
        let (repo, tx) = (self.repo.clone(), self.tx.clone());
        let state_dir = self.config.repository.state_dir.clone();
        let work = move || {
            let result = repo.get().and_then(|repo| {
                let result = crate::prune::prune(&repo, &opts);
                let intent = crate::audit::Intent::write("prune", "prune schedule (daemon)");
                let outcome = if result.is_ok() { "ok" } else { "failed" };
                super::audit::record(&repo, &state_dir, intent, outcome, None);
                result
            });
            Msg::PruneDone(Box::new(result))
        };
        let panicked = |e| Msg::PruneDone(Box::new(Err(e)));
        let started = super::spawn_job("prune".into(), tx, work, panicked);
        if !started {
            self.prune_running = false;
        }
    }

    pub(super) fn on_prune_done(&mut self, result: Result<PruneReport>) {
        self.prune_running = false;
        let mut doc = match self.doc.lock() {
            Ok(doc) => doc,
            Err(_) => return,
        };
        let status = &mut doc.prune;
        status.last_run = Some(unix(crate::clock::now()));
        match result {
            Ok(report) => {
                status.last_result = RunResult::Ok;
                status.last_error = None;
                status.last_reclaimed_bytes = report.deleted_bytes;
                status.reclaimed_bytes_total += report.deleted_bytes;
                status.packs_deleted_total += report.deleted_packs;
                status.marked_bytes = report
                    .passes
                    .last()
                    .map_or(0, |p| p.mark_unused_bytes + p.mark_repack_bytes);
                tracing::info!(
                    deleted_packs = report.deleted_packs,
                    reclaimed_bytes = report.deleted_bytes,
                    marked_bytes = status.marked_bytes,
                    "prune done"
                );
            }
            Err(e) => {
                status.last_result = RunResult::Failed;
                status.last_error = Some(e.to_string());
                tracing::error!(error = %e, "prune failed; trying at the next scheduled time");
            }
        }
        drop(doc);
        self.save();
    }
}
