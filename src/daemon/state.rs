//! What the daemon knows about each source, kept on disk (`daemon-status.json` in the state
//! dir) so that `custodian status` works while the daemon is down and a run missed while it was
//! down can be caught up at start-up. Holds no file names.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// File name of the persisted status, in the state dir.
const STATUS_FILE: &str = "daemon-status.json";

/// How a backup or a prune last ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Ok,
    Failed,
    /// Stopped at a safe point for a shutdown.
    Cancelled,
    /// Not run yet.
    #[default]
    Never,
    /// A word this build does not know (a status file or socket of another version): shown,
    /// and judged degraded, never taken for a success.
    #[serde(other)]
    Unknown,
}

/// How a scheduled drill last ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillResult {
    Pass,
    Fail,
    /// The drill could not run.
    Error,
    #[default]
    Never,
    /// A word this build does not know: judged degraded.
    #[serde(other)]
    Unknown,
}

/// A watched source's file watcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatcherState {
    Healthy,
    /// Events were lost or watching failed: full scans only.
    Failed,
    /// Not watched (also what an unknown word in an older status file reads as).
    #[default]
    #[serde(other)]
    Off,
}

macro_rules! shown_as_word {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let word = serde_json::to_value(self).ok();
                f.write_str(word.as_ref().and_then(|w| w.as_str()).unwrap_or("?"))
            }
        }
    )*};
}
shown_as_word!(RunResult, DrillResult, WatcherState);

/// One source's last results.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SourceStatus {
    pub name: String,
    /// Unix seconds.
    pub last_success: Option<u64>,
    pub last_attempt: Option<u64>,
    pub last_result: RunResult,
    pub last_error: Option<String>,
    pub last_snapshot: Option<String>,
    pub last_duration_ms: u64,
    pub files: u64,
    pub bytes: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    /// Snapshots of this source in the repository.
    pub snapshots: u64,
    pub consecutive_failures: u32,
    /// The last failure cannot pass by itself (a wrong or revoked key, a damaged repository, a
    /// store that refuses, a handed-over store): no retries and no change-triggered runs until
    /// the next scheduled run or full scan, a reload or a restart.
    pub needs_operator: bool,
    /// A backup of the source is running now.
    pub running: bool,
    /// A change was seen and its backup waits for the debounce.
    pub pending_change: bool,
    /// The last snapshot was flagged as looking like ransomware.
    pub suspicious: bool,
    /// Snapshots this daemon has forgotten by the source's retention policy, and when it last
    /// applied it.
    pub forgotten: u64,
    pub last_forget: Option<u64>,
    pub next_run: Option<u64>,
    pub watcher: WatcherState,
    /// Erase exclusions the last backup applied (paths an operator erased; counted, never
    /// named).
    pub erase_exclusions: u64,
}

/// One scheduled drill's last result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DrillStatus {
    pub runbook: String,
    pub last_run: Option<u64>,
    pub last_result: DrillResult,
    pub last_error: Option<String>,
    pub duration_seconds: f64,
    /// Target minus achieved: negative when the promise was missed.
    pub rto_margin_seconds: f64,
    pub rpo_margin_seconds: f64,
    pub next_run: Option<u64>,
}

/// The daemon's prunes (repository-wide, not per source).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PruneStatus {
    pub last_run: Option<u64>,
    pub last_result: RunResult,
    pub last_error: Option<String>,
    /// Bytes deleted by the last run, and by every run this status file has seen.
    pub last_reclaimed_bytes: u64,
    pub reclaimed_bytes_total: u64,
    pub packs_deleted_total: u64,
    /// Bytes marked and waiting for their grace period after the last run.
    pub marked_bytes: u64,
    pub next_run: Option<u64>,
}

/// The whole status document (`custodian status --json` prints it).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StatusDoc {
    /// True when read from the running daemon, false when read from disk.
    pub live: bool,
    pub pid: Option<u32>,
    pub started: Option<u64>,
    pub config: String,
    pub repository: String,
    pub sources: Vec<SourceStatus>,
    pub drills: Vec<DrillStatus>,
    /// Runbooks that could not be parsed (file, line and fault): not drilled until fixed.
    pub broken_runbooks: Vec<String>,
    pub prune: PruneStatus,
    /// The last access review's sign-off as the audit log holds it (`None`: unknown yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_review: Option<AccessReview>,
}

/// When access was last reviewed (`access review --approve`); counted from the repository's
/// creation when it never was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessReview {
    pub last: Option<String>,
    pub counting_from: String,
}

impl AccessReview {
    /// Whole days since the last review (or the creation), at `now`.
    pub fn age_days(&self, now: SystemTime) -> u64 {
        humantime::parse_rfc3339_weak(&self.counting_from)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0, |d| d.as_secs() / 86_400)
    }
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATUS_FILE)
}

/// The last status the daemon wrote; an empty one if there is none.
pub fn load(state_dir: &Path) -> Result<StatusDoc> {
    let path = status_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Damaged(format!(
                "{} is not a status file ({e}); delete it and the daemon writes a new one",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StatusDoc::default()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Write atomically (temporary file, fsync, rename), mode 0600.
pub fn save(state_dir: &Path, doc: &StatusDoc) -> Result<()> {
    let json = serde_json::to_vec_pretty(doc).map_err(|e| {
        Error::Internal(format!(
            "internal error: the status could not be serialised: {e}"
        ))
    })?;
    crate::fsutil::write_atomic(&status_path(state_dir), &json)
}

#[cfg(test)]
mod word_tests {
    use super::*;

    #[test]
    fn results_keep_their_words_and_unknown_ones_read_as_not_run() {
        let words = serde_json::to_string(&(
            RunResult::Ok,
            RunResult::Failed,
            RunResult::Cancelled,
            RunResult::Never,
            DrillResult::Pass,
            DrillResult::Error,
            WatcherState::Healthy,
            WatcherState::Off,
        ))
        .unwrap();
        assert_eq!(
            words,
            r#"["ok","failed","cancelled","never","pass","error","healthy","off"]"#
        );
        let old: SourceStatus =
            serde_json::from_str(r#"{"last_result": "stalled", "watcher": "sleepy"}"#).unwrap();
        assert_eq!(
            (old.last_result, old.watcher),
            (RunResult::Unknown, WatcherState::Off)
        );
        assert_eq!(RunResult::Cancelled.to_string(), "cancelled");
    }
}
