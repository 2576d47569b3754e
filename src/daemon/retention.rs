//! Retention on the daemon's `forget-schedule`: each source's policy applied on a thread, with
//! a destruction record before anything is deleted.

use super::state::unix;
use super::{Daemon, Msg};
use crate::error::Result;
use crate::repository::Repository;
use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

impl Daemon {
    /// Retention runs on its schedule even with no policy configured: a handed-over store kept
    /// until a date is destroyed by it on the day (one listing when there is none).
    pub(super) fn schedule_forget(&mut self, now: SystemTime) {
        self.forget_next = self.config.daemon.forget_schedule.next_after(now);
    }

    /// Apply every source's retention policy on a thread (forgetting only deletes snapshot
    /// heads, after writing a destruction record, so it is safe beside running backups).
    pub(super) fn dispatch_forget(&mut self, now: SystemTime) {
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
        let work = move || {
            let result = repo
                .get()
                .and_then(|repo| apply_retention(&repo, &policies, &local));
            Msg::ForgetDone(Box::new(result))
        };
        let panicked = |e| Msg::ForgetDone(Box::new(Err(e)));
        let started = super::spawn_job("forget".into(), tx, work, panicked);
        if !started {
            self.forget_running = false;
        }
    }

    pub(super) fn on_forget_done(&mut self, result: Result<HashMap<String, u64>>) {
        self.forget_running = false;
        let now = unix(crate::clock::now());
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
}

/// Forget by each source's policy; returns how many snapshots each lost.
fn apply_retention(
    repo: &Repository,
    policies: &[(String, crate::retention::Policy)],
    local: &Path,
) -> Result<HashMap<String, u64>> {
    let now = crate::clock::now();
    // Each store on its own: one that cannot be destroyed never stops the policies below.
    expire_handovers(repo, now, local);
    if policies.is_empty() {
        return Ok(HashMap::new());
    }
    let holds = repo.holds()?;
    let all = repo.list_snapshots()?;
    let mut counts = HashMap::new();
    let groups = crate::retention::groups(&all);
    for (source, policy) in policies {
        let mut doomed = Vec::new();
        for ((_, _), snaps) in groups.iter().filter(|((s, _), _)| s == source) {
            doomed.extend(crate::retention::plan(snaps, &holds, policy, now).1);
        }
        if !doomed.is_empty() {
            let ids = doomed.iter().map(|(id, _)| id.to_hex());
            let intent = crate::audit::Intent::write("forget", "retention policy (daemon)")
                .source(Some(source))
                .snapshots(ids);
            let forgot = repo.forget(&doomed, local);
            let result = if forgot.is_ok() { "ok" } else { "failed" };
            let state_dir = local.parent().unwrap_or(local);
            super::audit::record(repo, state_dir, intent, result, None);
            forgot?;
        }
        counts.insert(source.clone(), doomed.len() as u64);
    }
    Ok(counts)
}

/// Destroy the handed-over stores whose retention ended, each with its audit entry; what
/// fails is logged and audited, and tried again at the next run.
fn expire_handovers(repo: &Repository, now: SystemTime, local: &Path) {
    let state_dir = local.parent().unwrap_or(local);
    let expired = repo.expire_handovers(now, local);
    match &expired {
        Ok(done) => {
            for problem in &done.problems {
                let intent = crate::audit::Intent::write(
                    "handover retention expired",
                    "retention of a handed-over store ended (daemon)",
                );
                super::audit::record(repo, state_dir, intent, "failed", None);
                tracing::error!(problem = %problem, "a handed-over store's retention ended but it could not be destroyed");
            }
            for r in &done.destroyed {
                let intent = crate::audit::Intent::write(
                    "handover retention expired",
                    "retention of a handed-over store ended (daemon)",
                )
                .source(r.domain.as_deref())
                .snapshots(r.snapshots.iter().map(|s| s.id.clone()));
                super::audit::record(repo, state_dir, intent, "ok", None);
                tracing::info!(domain = ?r.domain, "a handed-over store's retention ended: destroyed");
            }
        }
        // The handover records could not be listed: nothing was touched, so there is no access
        // to record (retention runs even where no store was ever handed over).
        Err(e) => {
            tracing::error!(error = %e, "the handover records cannot be read; a handed-over store whose retention ended is destroyed at the next run that can")
        }
    }
}
