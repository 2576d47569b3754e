//! Creating an object only if it is absent, even on stores whose create-if-absent cannot be
//! trusted (safe mode). Only names shared between writers need this (`config`, key domains,
//! later locks); every other name is random or content-addressed and can never collide.
//!
//! On a local disk create-if-absent (link(2)) is atomic and needs nothing more
//! ([`Repository::create_exclusive`]). Every other store, and the prune lease everywhere, gets
//! check, write, settle, verify: look for the name, write it (create-if-absent), wait at least
//! twice as long as the check-to-write took plus a settle time, then read it back.
//! In safe mode (a store the probe caught racing or ignoring the condition) the settle time is
//! [`SETTLE`]; on a store it found atomic, [`SETTLE_TRUSTED`]. Two writers whose checks
//! both missed wrote within one check-to-write gap of each other, so after the wait both writes
//! are visible to both read-backs, both see the same last write, and exactly one keeps its own.
//! This needs read-after-write consistency (S3 has it since 2020) and a peer whose gap is under
//! the wait, which is why the wait is seconds while a gap is one request.

use super::Repository;
use crate::backend::probe::{self, CreateIfAbsent};
use crate::error::Result;
use std::time::{Duration, Instant};

/// The least wait between writing and verifying in safe mode.
const SETTLE: Duration = Duration::from_secs(2);
/// The same on an S3 store the probe found atomic. The probe can only ever catch a race, never
/// rule one out: moto passed it and then let two of six concurrent creators win on a loaded CI
/// machine. So shared names are verified on every object store, briefly where it is trusted.
const SETTLE_TRUSTED: Duration = Duration::from_millis(250);

impl Repository {
    /// Probe the store's create-if-absent (two requests) before writing, and warn once if
    /// custodian has to fall back to safe mode. Writers call it when they open.
    pub fn probe_create_if_absent(&self) -> Result<CreateIfAbsent> {
        if let Some(found) = self.create_if_absent.get() {
            return Ok(*found);
        }
        let found = probe::at_open(self.backend.as_ref())?;
        if !found.is_atomic() {
            warn_safe_mode(&self.backend.location(), found);
        }
        Ok(*self.create_if_absent.get_or_init(|| found))
    }

    /// How long two writers' racing creates of one name may take to settle on this store;
    /// `None` where create is atomic (a local disk).
    pub fn settle_time(&self) -> Result<Option<Duration>> {
        if self.backend.atomic_create() {
            return Ok(None);
        }
        Ok(Some(if self.probe_create_if_absent()?.is_atomic() {
            SETTLE_TRUSTED
        } else {
            SETTLE
        }))
    }

    /// Create `name` unless it exists; false if another writer has it (or got there first). For
    /// `config` and audit entries, never deleted, and a domain's operator record, deleted only by
    /// a roll-back of a pair that stayed broken for the domain settle time (30 s) and checked
    /// against its writer record on every read. On a local disk link(2) lets exactly one creator
    /// succeed, so there is no wait (the first backup of a source spent 250 ms here verifying
    /// it; a verify that short never covered a roll-back anyway).
    pub(crate) fn create_exclusive(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        match self.settle_time()? {
            None => Ok(self.backend.put_new(name, bytes)?),
            Some(settle) => self.create_verified(name, bytes, settle),
        }
    }

    /// [`Self::create_exclusive`] for a name that is deleted and created again (the prune
    /// lease): verified on every store, since a peer's delete can come between another's check
    /// and its create even where create itself is atomic.
    pub(crate) fn create_exclusive_deletable(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        let settle = self.settle_time()?.unwrap_or(SETTLE_TRUSTED);
        self.create_verified(name, bytes, settle)
    }

    /// Check, write, settle, verify (see the module's doc).
    fn create_verified(&self, name: &str, bytes: &[u8], settle: Duration) -> Result<bool> {
        let started = Instant::now();
        if self.backend.get_if_present(name)?.is_some() {
            return Ok(false);
        }
        if !self.backend.put_new(name, bytes)? {
            return Ok(false);
        }
        std::thread::sleep(settle + started.elapsed() * 2);
        Ok(self.backend.get(name)? == bytes)
    }
}

/// The one warning a user of such a store sees, naming the store and what custodian does.
pub(crate) fn warn_safe_mode(location: &str, found: CreateIfAbsent) {
    let how = match found {
        CreateIfAbsent::Ignored => "ignores create-if-absent (a conditional PUT overwrote)",
        _ => "does not keep create-if-absent under concurrent writers",
    };
    tracing::warn!(
        "the store at {location} {how}; custodian runs in safe mode: shared names (new key \
         domains) are written with check, write, settle, verify, which adds a few seconds the \
         first time a source is backed up. See docs/DESIGN.md, \"Safe mode\"."
    );
}
