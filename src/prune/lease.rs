//! The prune lease (`locks/prune`): one prune at a time per repository. Backups never take it;
//! they are protected by the markers instead. Two prunes at once could each rewrite the index
//! from what it loaded and bring back entries the other removed, so prunes exclude each other.
//!
//! A lease expires: a prune that crashed blocks the next one for at most [`LEASE_TTL`], and a
//! prune checks before deleting that its own lease has comfortably not expired, so a prune that
//! took over a stale lease never deletes beside the one it replaced.

use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::repository::Repository;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime};

use crate::format::kind::LEASE_VERSION;

const LEASE_NAME: &str = "locks/prune";
/// How long a lease holds before another prune may take it over.
pub const LEASE_TTL: Duration = Duration::from_secs(2 * 3600);

/// [`LEASE_TTL`], or `CUSTODIAN_TEST_LEASE_TTL` so a test can see a lease go stale.
fn lease_ttl() -> Duration {
    std::env::var("CUSTODIAN_TEST_LEASE_TTL")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(LEASE_TTL)
}
/// A prune stops before deleting when less than this is left of its lease.
const LEASE_MARGIN: Duration = Duration::from_secs(15 * 60);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRecord {
    version: u32,
    by: String,
    host: String,
    pid: u32,
    /// RFC 3339; the lease is stale after this.
    taken: String,
    expires: String,
    /// This boot of the holder's host (`/proc/sys/kernel/random/boot_id`) and the holder's
    /// start time in clock ticks since boot: with the pid they tell a running prune from a dead
    /// one whose pid was reused. Absent in leases from before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<u64>,
}

/// This boot's id, if the kernel says.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process's start time (field 22 of `/proc/PID/stat`, after the parenthesised name, which
/// may itself hold spaces and parentheses).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl LeaseRecord {
    /// Whether the holder is a process of this host's current boot that no longer runs (its pid
    /// is gone, or belongs to a process started at another time): then nobody holds the lease.
    fn holder_gone_here(&self) -> bool {
        let here = self.host == crate::source::hostname();
        match (&self.boot_id, boot_id(), self.started) {
            (Some(theirs), Some(ours), _) if here && *theirs != ours => true,
            (Some(_), Some(_), Some(started)) if here => start_time(self.pid) != Some(started),
            _ => false,
        }
    }

    /// Past its expiry, or unbelievable: a lease may run at most [`LEASE_TTL`] from when it
    /// was taken, so one that claims to last longer (say until 9999) binds nobody.
    fn expired(&self, now: SystemTime) -> bool {
        let (Ok(taken), Ok(expires)) = (
            humantime::parse_rfc3339_weak(&self.taken),
            humantime::parse_rfc3339_weak(&self.expires),
        ) else {
            return true;
        };
        expires < now
            || expires
                .duration_since(taken)
                .map_or(true, |d| d > LEASE_TTL)
    }
}

/// An operator's decision to break a lease held from `host` (a prune there crashed, and the
/// host is down or the prune is known gone), and where the record of it is kept.
#[derive(Clone, Debug)]
pub struct BreakLease {
    pub host: String,
    pub record_dir: std::path::PathBuf,
}

impl BreakLease {
    /// Keep a record of the broken lease (until the audit log exists, in the state dir).
    fn record(&self, broken: &LeaseRecord, by: &str) -> Result<()> {
        crate::fsutil::private_dir(&self.record_dir)?;
        let now = humantime::format_rfc3339_seconds(crate::clock::now()).to_string();
        let file = self
            .record_dir
            .join(format!("{}-lease-break.json", now.replace(':', "")));
        let json = serde_json::json!({
            "action": "break-prune-lease", "time": now, "by": by,
            "holder": broken.by, "host": broken.host, "pid": broken.pid,
            "taken": broken.taken, "expires": broken.expires,
        });
        std::fs::write(&file, json.to_string()).map_err(|e| Error::io(&file, e))
    }
}

/// A held lease; released on drop.
pub struct Lease<'a> {
    repo: &'a Repository,
    bytes: Vec<u8>,
    taken: Instant,
}

impl<'a> Lease<'a> {
    /// Take the lease, taking over a stale one (or, with `breaking`, a live one held from the
    /// host the operator confirmed); fails naming the holder otherwise.
    pub fn acquire(repo: &'a Repository, breaking: Option<&BreakLease>) -> Result<Lease<'a>> {
        for _ in 0..3 {
            let now = crate::clock::now();
            let record = LeaseRecord {
                version: LEASE_VERSION,
                by: repo.opened_by.clone(),
                host: crate::source::hostname(),
                pid: std::process::id(),
                taken: humantime::format_rfc3339_seconds(now).to_string(),
                expires: humantime::format_rfc3339_seconds(now + lease_ttl()).to_string(),
                boot_id: boot_id(),
                started: start_time(std::process::id()),
            };
            let bytes = repo.seal_meta_at(ObjectKind::Lease, LEASE_NAME, &record)?;
            let taken = Instant::now();
            if repo.create_exclusive_deletable(LEASE_NAME, &bytes)? {
                return Ok(Lease { repo, bytes, taken });
            }
            // None: released in between; try again.
            let Some(held) = repo.get_named(LEASE_NAME)? else {
                continue;
            };
            let other = match repo.open_meta::<LeaseRecord>(ObjectKind::Lease, LEASE_NAME, &held) {
                Ok(other) => other,
                Err(e) if e.is_damage() => {
                    // Not written by a prune of this repository: it binds nobody.
                    tracing::warn!("removing a damaged or forged prune lease: {e}");
                    repo.delete_if_unchanged(LEASE_NAME, &held)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let why = if other.holder_gone_here() {
                "its prune on this host no longer runs"
            } else if other.expired(now) {
                "it expired (its prune stopped without releasing it)"
            } else if breaking.is_some_and(|b| b.host == other.host) {
                "an operator broke it (--break-lease)"
            } else {
                return Err(Error::Conflict(format!(
                    "another prune holds this repository's prune lease ({}, host {}, pid {}, \
                     since {}). Wait for it to finish. If that prune crashed, its lease expires \
                     by itself at {}; if you know it is gone, break it now with 'custodian prune \
                     --break-lease --confirm-host {}'.",
                    other.by, other.host, other.pid, other.taken, other.expires, other.host
                )));
            };
            tracing::warn!(
                holder = %other.by, host = %other.host, pid = other.pid,
                "taking over the prune lease: {why}"
            );
            if let Some(b) = breaking.filter(|b| b.host == other.host) {
                b.record(&other, &repo.opened_by)?;
            }
            // Delete only what we judged stale, not a lease another prune just took over.
            repo.delete_if_unchanged(LEASE_NAME, &held)?;
        }
        Err(Error::Conflict(
            "could not take the prune lease: other prunes keep taking it; try again later".into(),
        ))
    }

    /// Fail unless enough of the lease is left to delete under it.
    pub fn check(&self) -> Result<()> {
        if self.taken.elapsed() + LEASE_MARGIN.min(lease_ttl() / 4) > lease_ttl() {
            return Err(Error::Conflict(format!(
                "this prune has run for {}, too close to its lease's end to delete safely; \
                 nothing more was deleted. Run prune again: it continues where this one stopped.",
                humantime::format_duration(Duration::from_secs(self.taken.elapsed().as_secs()))
            )));
        }
        Ok(())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Release only our own lease (after an expiry another prune may hold the name).
        if let Err(e) = self.repo.delete_if_unchanged(LEASE_NAME, &self.bytes) {
            tracing::warn!(error = %e, "could not release the prune lease; it expires by itself");
        }
    }
}
