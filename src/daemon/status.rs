//! `custodian status`: the running daemon answers on a unix socket in its state dir (mode
//! 0600, so only its user and root can ask); without a daemon, the status file on disk answers.

use super::state::{self, DrillResult, RunResult, StatusDoc, WatcherState};
use crate::error::{Error, IoContext, Result};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Socket file name in the state dir.
const SOCKET: &str = "daemon.sock";

/// Largest status answer read from the socket.
const STATUS_MAX: u64 = 16 << 20;

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// Serve `doc` to every connection, on a thread of its own, until the process ends.
pub fn serve(state_dir: &Path, doc: Arc<Mutex<StatusDoc>>) -> Result<()> {
    let path = socket_path(state_dir);
    // A socket left by a killed daemon would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).at(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).at(&path)?;
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            for mut conn in listener.incoming().flatten() {
                // A status that cannot be produced says so, rather than answering nothing.
                let text = doc
                    .lock()
                    .map_err(|_| "the daemon's status lock is poisoned".to_string())
                    .and_then(|d| crate::compress::json_bytes(&*d).map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| serde_json::json!({ "error": e }).to_string().into_bytes());
                let _ = conn.write_all(&text);
            }
        })
        .map_err(|e| Error::io(&path, e))?;
    Ok(())
}

/// Ask the running daemon, else read the status it last wrote.
pub fn fetch(state_dir: &Path) -> Result<StatusDoc> {
    let path = socket_path(state_dir);
    if let Ok(conn) = UnixStream::connect(&path) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut text = Vec::new();
        // A status is a few KiB per source; anything far larger is not one.
        if conn.take(STATUS_MAX).read_to_end(&mut text).is_ok() {
            let answer: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            if let Some(why) = answer.get("error").and_then(|e| e.as_str()) {
                return Err(Error::Internal(format!(
                    "the running daemon could not give its status ({why}); restart it \
                     (systemctl restart custodian) and look at its log"
                )));
            }
            if let Ok(mut doc) = serde_json::from_value::<StatusDoc>(answer) {
                if doc.pid.is_some() {
                    doc.live = true;
                    return Ok(doc);
                }
            }
        }
    }
    let mut doc = state::load(state_dir)?;
    doc.live = false;
    Ok(doc)
}

/// How healthy the daemon is, for a monitoring check (Nagios and systemd style exit codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every source's last run succeeded; nothing needs anyone.
    Ok = 0,
    /// Backups work, but something needs a look: a failed watcher, a suspicious snapshot, a
    /// failed drill or prune, a broken runbook, a source not yet backed up.
    Degraded = 1,
    /// A source's backups are failing, or the daemon is not running.
    Failing = 2,
}

/// Days an access review stays current (a quarter), as the alert rule also says.
pub const REVIEW_EVERY_DAYS: u64 = 90;

/// Judge a status document: the worst finding, and every finding in words.
pub fn health(doc: &StatusDoc) -> (Health, Vec<String>) {
    let mut found: Vec<(Health, String)> = Vec::new();
    if !doc.live {
        found.push((Health::Failing, "the daemon is not running".into()));
    }
    for s in &doc.sources {
        match s.last_result {
            RunResult::Failed => found.push((
                Health::Failing,
                format!("source {}: the last backup failed", s.name),
            )),
            RunResult::Ok | RunResult::Cancelled => {}
            RunResult::Unknown => found.push((
                Health::Degraded,
                format!(
                    "source {}: its last result is one this custodian does not know",
                    s.name
                ),
            )),
            // Not run by this daemon yet, but the repository holds its snapshots.
            _ if s.last_success.is_some() => {}
            _ => found.push((
                Health::Degraded,
                format!("source {}: no backup has finished yet", s.name),
            )),
        }
        if s.suspicious {
            found.push((
                Health::Degraded,
                format!("source {}: the last snapshot is flagged suspicious", s.name),
            ));
        }
        if doc.live && s.watcher == WatcherState::Failed {
            found.push((
                Health::Degraded,
                format!("source {}: the watcher failed (full scans only)", s.name),
            ));
        }
    }
    for d in doc.drills.iter().filter(|d| {
        matches!(
            d.last_result,
            DrillResult::Fail | DrillResult::Error | DrillResult::Unknown
        )
    }) {
        found.push((
            Health::Degraded,
            format!("drill {}: the last drill did not pass", d.runbook),
        ));
    }
    for b in &doc.broken_runbooks {
        found.push((Health::Degraded, format!("broken runbook: {b}")));
    }
    if doc.prune.last_result == RunResult::Failed {
        found.push((Health::Degraded, "the last prune failed".into()));
    }
    if let Some(review) = &doc.access_review {
        let age = review.age_days(crate::clock::now());
        if age > REVIEW_EVERY_DAYS {
            let last = review.last.as_deref().unwrap_or("never");
            found.push((
                Health::Degraded,
                format!(
                    "access review overdue: last signed off {last} ({age} days ago; due every \
                     {REVIEW_EVERY_DAYS}). An operator runs 'custodian access review' and \
                     signs it off with --approve --reason …"
                ),
            ));
        }
    }
    let worst = found.iter().map(|(h, _)| *h).max().unwrap_or(Health::Ok);
    (worst, found.into_iter().map(|(_, m)| m).collect())
}
