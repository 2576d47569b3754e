//! The repository a daemon job works on, reopened when an operator changed the access registry
//! since (a new key generation, a revoked credential). Asking whether it changed is a listing,
//! and reopening is an open and a probe: network round trips that run on the job's own thread,
//! so a slow or hanging store never stalls the loop (its schedule, its watchdog ping).

use crate::error::Result;
use crate::repository::Repository;
use std::sync::{Arc, Mutex};

/// How a job's repository is opened again.
type Opener = Box<dyn Fn() -> Result<Repository> + Send + Sync>;

/// One repository shared by the jobs of one credential (the writer's, or the drills' operator).
pub(super) struct Reopening {
    current: Mutex<Arc<Repository>>,
    open: Opener,
    /// For the log: "repository" or "drills' repository".
    what: &'static str,
}

impl Reopening {
    /// Share `repo`, reopened with `open` when its trust list is no longer the newest.
    pub(super) fn new(
        repo: Repository,
        what: &'static str,
        open: impl Fn() -> Result<Repository> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Reopening {
            current: Mutex::new(Arc::new(repo)),
            open: Box::new(open),
            what,
        })
    }

    /// The repository as last opened, asking the store nothing (start-up reads).
    pub(super) fn last(&self) -> Arc<Repository> {
        // The guarded value is one Arc, replaced whole: a panic elsewhere cannot leave it torn.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The repository under the newest trust list. Reopening that fails for good (this
    /// credential was revoked, or predates a rotated metadata key) is the job's error, which
    /// the daemon shows as needing an operator. Failing for now (the store did not answer)
    /// keeps the repository it has: everything that writes checks that its trust list is still
    /// the newest and refuses otherwise. Jobs starting together wait for one reopening, not for
    /// each other's listings.
    pub(super) fn get(&self) -> Result<Arc<Repository>> {
        // Asked without the lock, so jobs starting together do not queue behind one listing.
        let seen = self.last();
        if !matches!(seen.trust_is_current(), Ok(false)) {
            return Ok(seen);
        }
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another job may have reopened it meanwhile.
        if !Arc::ptr_eq(&current, &seen) {
            return Ok(current.clone());
        }
        match (self.open)() {
            Ok(repo) => {
                tracing::info!(what = self.what, "the access registry changed: reopened");
                *current = Arc::new(repo);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, what = self.what, "the access registry changed and reopening failed; trying again at the next run");
            }
            Err(e) => {
                tracing::error!(error = %e, what = self.what, "the access registry changed and this credential can no longer open the repository");
                return Err(e);
            }
        }
        Ok(current.clone())
    }
}
