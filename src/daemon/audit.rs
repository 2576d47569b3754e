//! The daemon's audit entries. It acts unattended, so it records each run after it (with the
//! result inside the entry): one PUT per backup, forget or prune, and a checkpoint at most
//! once an hour. Each entry also goes to the journal with structured fields, and the log's
//! length to the metrics, both out of the storage's reach.

use super::state::AccessReview;
use crate::audit::{Intent, Local, Touched};
use crate::repository::Repository;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the daemon adds a checkpoint to its entries.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(3600);

static LAST_CHECKPOINT: Mutex<Option<Instant>> = Mutex::new(None);

/// Append the entry for a run that ended with `result`; a failure is logged and counted, never
/// fatal (the run itself is done).
pub fn record(
    repo: &Repository,
    state_dir: &Path,
    intent: Intent,
    result: &str,
    touched: Option<Touched>,
) {
    let mut intent = intent;
    intent.result = Some(result.to_string());
    intent.touched = touched;
    let local = Local::new(state_dir.join("audit"));
    match crate::audit::append(repo, &intent, Some(&local)) {
        Ok(head) => {
            metrics::gauge!("custodian_audit_entries").set(head.seq as f64);
            refresh_review(repo, head.seq, true);
            let fields = crate::audit::export::journal_fields(
                head.seq,
                &intent.op,
                intent.source.as_deref(),
                result,
            );
            crate::audit::export::to_journal(&fields);
            if checkpoint_due() {
                if let Err(e) = crate::audit::checkpoint(repo, &head, None) {
                    tracing::warn!(error = %e, "audit checkpoint not written");
                }
            }
        }
        Err(e) => {
            metrics::counter!("custodian_audit_failures_total").increment(1);
            tracing::error!(op = %intent.op, error = %e, "the audit entry for this run could not be written");
        }
    }
}

/// The log's length at start-up, for the metrics.
pub fn publish_length(repo: &Repository, state_dir: &Path) {
    let local = Local::new(state_dir.join("audit"));
    let hint = local
        .anchor(&repo.location(), repo.config.repo_id)
        .ok()
        .flatten();
    match crate::audit::store(repo).and_then(|s| s.head(hint.as_ref())) {
        Ok(head) => {
            metrics::gauge!("custodian_audit_entries").set(head.seq as f64);
            refresh_review(repo, head.seq, false);
        }
        Err(e) => tracing::error!(error = %e, "the repository's audit log could not be read"),
    }
}

/// Access reviews seen so far: entries up to `scanned` were read once and never again.
struct ReviewCursor {
    scanned: u64,
    status: Option<AccessReview>,
}

static REVIEW: Mutex<ReviewCursor> = Mutex::new(ReviewCursor {
    scanned: 0,
    status: None,
});

/// Read the entries added since the last call for an access review's sign-off. `own`: the
/// head is the entry this daemon just wrote (never a review), so it need not be read back.
fn refresh_review(repo: &Repository, head: u64, own: bool) {
    let Ok(mut cursor) = REVIEW.lock() else {
        return;
    };
    if own && cursor.status.is_some() && cursor.scanned + 1 == head {
        cursor.scanned = head;
        return;
    }
    let found = crate::audit::store(repo).and_then(|store| {
        let open = |sealed: &[u8]| repo.open_audit(sealed);
        crate::audit::log::last_review(&store, &open, head, cursor.scanned)
    });
    match found {
        Ok(found) => {
            let last = found
                .map(|r| r.time)
                .or_else(|| cursor.status.as_ref().and_then(|s| s.last.clone()));
            cursor.status = Some(AccessReview {
                counting_from: last.clone().unwrap_or_else(|| repo.config.created.clone()),
                last,
            });
            cursor.scanned = head;
        }
        Err(e) => tracing::warn!(error = %e, "could not look for the last access review"),
    }
}

/// The last access review as known, published as `custodian_access_review_age_days`.
pub fn review_status() -> Option<AccessReview> {
    let status = REVIEW.lock().ok()?.status.clone()?;
    let age = status.age_days(crate::clock::now());
    metrics::gauge!("custodian_access_review_age_days").set(age as f64);
    Some(status)
}

fn checkpoint_due() -> bool {
    let Ok(mut last) = LAST_CHECKPOINT.lock() else {
        return false;
    };
    if last.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    true
}
