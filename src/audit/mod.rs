//! The audit log (`audit/` in the repository): every command that touches a repository
//! appends one entry before it acts, chained to the entry before, signed by the key that acts,
//! and closes it with a signed checkpoint (count, head, result). A read that cannot append its
//! entry does not happen: the repository refuses to unwrap a domain identity until this
//! process's entry is written (or kept offline with `--audit-offline`). docs/FORMAT.md ("Audit
//! log") gives the construction and its argument.

pub mod auditor;
pub mod chain;
pub mod export;
pub mod html;
mod local;
pub mod log;
pub mod report;
pub mod verify;

pub use crate::format::audit::{Access, DrillFigures, Touched};
pub use chain::Head;
pub use local::{Local, Pending};

use crate::error::{Error, Result};
use crate::format::audit::{Checkpoint, Closing, Details, EntryBody, Offline, AUDIT_VERSION};
use crate::format::ObjectKind;
use crate::repository::Repository;

/// What a command is about to do, for its entry.
#[derive(Clone, Debug)]
pub struct Intent {
    pub op: String,
    pub access: Access,
    pub source: Option<String>,
    pub snapshots: Vec<String>,
    pub reason: String,
    /// Set when the entry is written after the act (the daemon's backups).
    pub result: Option<String>,
    pub touched: Option<Touched>,
    /// An access review's sign-off: the trust list version approved.
    pub reviewed: Option<u64>,
}

impl Intent {
    /// A command that reads customer records.
    pub fn read(op: &str, reason: &str) -> Self {
        Self::new(op, Access::Read, reason)
    }

    /// A command that changes the repository.
    pub fn write(op: &str, reason: &str) -> Self {
        Self::new(op, Access::Write, reason)
    }

    fn new(op: &str, access: Access, reason: &str) -> Self {
        Intent {
            op: op.to_string(),
            access,
            source: None,
            snapshots: Vec::new(),
            reason: reason.to_string(),
            result: None,
            touched: None,
            reviewed: None,
        }
    }

    /// The record store it is about.
    pub fn source(mut self, source: Option<&str>) -> Self {
        self.source = source.map(str::to_string);
        self
    }

    /// The snapshots it names.
    pub fn snapshots(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.snapshots = ids.into_iter().collect();
        self
    }
}

/// A command's entry, once written: closed by [`close`] with the command's result.
#[derive(Clone, Debug)]
pub enum Begun {
    /// In the log as entry `head.seq`.
    Written(Head),
    /// Kept on this machine (`--audit-offline`); uploaded at the next contact.
    KeptOffline,
    /// A format-1 repository has no signatures, hence no audit log.
    Unsigned,
}

/// Append the entry for `intent` (after any entries this machine kept offline), before the
/// command acts. If the storage cannot take it: with `offline` (the break-glass reason) the
/// entry is kept in `local` instead; without, the command is refused.
pub fn begin(
    repo: &Repository,
    intent: &Intent,
    local: Option<&Local>,
    offline: Option<&str>,
) -> Result<Begun> {
    if repo.auth().is_none() {
        tracing::warn!("format-1 repository: no audit log (run 'custodian migrate')");
        repo.mark_audited();
        return Ok(Begun::Unsigned);
    }
    match append(repo, intent, local) {
        Ok(head) => {
            repo.mark_audited();
            Ok(Begun::Written(head))
        }
        // What evidence kept here cannot fix (a damaged or forged log, a caller the rules
        // refuse, a trust list that moved since this process opened the repository: run again)
        // is said as it is; only a store that cannot take the entry may fall back to this machine.
        Err(
            e @ (Error::Damaged(_) | Error::Untrusted(_) | Error::Refused(_) | Error::Conflict(_)),
        ) => Err(e),
        Err(e) => match (offline, local) {
            (Some(reason), Some(local)) => {
                keep_offline(repo, intent, local, reason)?;
                repo.mark_audited();
                Ok(Begun::KeptOffline)
            }
            _ => Err(Error::AuditUnavailable {
                op: intent.op.clone(),
                cause: e.to_string(),
            }),
        },
    }
}

/// Append an entry now (pending offline entries first); the daemon's after-the-act record.
pub fn append(repo: &Repository, intent: &Intent, local: Option<&Local>) -> Result<Head> {
    let store = store(repo)?;
    // Details are sealed to the metadata key: never to one a revocation retired since.
    repo.require_current_trust()?;
    let location = repo.location();
    let repo_id = repo.config.repo_id;
    let settle = repo.settle_time()?;
    let mut hint = match local {
        Some(l) => l.anchor(&location, repo_id)?,
        None => None,
    };
    // A head this machine recorded at least one settle time ago has held still since, if the
    // log still ends there: a race's loser never lasts that long. So has one this process
    // wrote itself (on an object store `Repository::create_exclusive` verified it after a
    // settle; a local disk has no settle and needs none).
    let mut steady = match (local, settle) {
        (Some(l), Some(settle)) if l.anchor_age(&location) >= Some(settle) => hint.clone(),
        _ => None,
    };
    if let Some(local) = local {
        for (file, pending) in local.pending(&location, repo_id)? {
            let head = store.append(
                hint.as_ref(),
                settle,
                steady.as_ref(),
                |h| entry_bytes(repo, h, pending.sealed.clone(), true),
                |name, bytes| repo.create_exclusive(name, bytes),
            )?;
            remember(local, &location, repo_id, &head);
            std::fs::remove_file(&file).map_err(|e| Error::io(&file, e))?;
            hint = Some(head.clone());
            steady = Some(head);
        }
    }
    let sealed = hex::encode(repo.seal_for_audit(&details(repo, intent, None)?)?);
    let head = store.append(
        hint.as_ref(),
        settle,
        steady.as_ref(),
        |h| entry_bytes(repo, h, sealed.clone(), false),
        |name, bytes| repo.create_exclusive(name, bytes),
    )?;
    if let Some(local) = local {
        remember(local, &location, repo_id, &head);
    }
    Ok(head)
}

/// Record the head on this machine. The entry is in the repository already, so a state dir
/// that cannot be written costs only this anchor: said, not fatal.
fn remember(local: &Local, location: &str, repo_id: crate::id::RepoId, head: &Head) {
    if let Err(e) = local.remember(location, repo_id, head) {
        tracing::warn!("this machine's audit anchor was not updated: {e}");
    }
}

/// Close the command's entry with a checkpoint: the head, and the result ("ok", "failed",
/// "partial") with what was touched. A checkpoint that cannot be written is logged, not fatal:
/// the entry is in the log already.
pub fn close(repo: &Repository, begun: &Begun, result: &str, touched: Option<Touched>) {
    close_drills(repo, begun, result, touched, Vec::new())
}

/// [`close`] for drills: the closing checkpoint also carries what each drill measured.
pub fn close_drills(
    repo: &Repository,
    begun: &Begun,
    result: &str,
    touched: Option<Touched>,
    drills: Vec<DrillFigures>,
) {
    let Begun::Written(head) = begun else {
        return;
    };
    let closes = Closing {
        seq: head.seq,
        result: result.to_string(),
        touched,
        drills,
    };
    if let Err(e) = checkpoint(repo, head, Some(closes)) {
        tracing::warn!(
            "the audit checkpoint for entry {} was not written: {e}",
            head.seq
        );
    }
}

/// Write a checkpoint of `head` (periodic when `closes` is `None`).
pub fn checkpoint(repo: &Repository, head: &Head, closes: Option<Closing>) -> Result<()> {
    let Some(hash) = &head.hash else {
        return Ok(());
    };
    let seq = closes.as_ref().map_or(0, |c| c.seq);
    let body = Checkpoint {
        version: AUDIT_VERSION,
        count: head.seq,
        head: hash.clone(),
        time: now(),
        closes,
    };
    store(repo)?.checkpoint(head, &body, seq)
}

/// The store view of an opened repository's log.
pub fn store(repo: &Repository) -> Result<chain::Store<'_>> {
    let auth = repo.auth().ok_or_else(|| {
        Error::Usage("a format-1 repository has no audit log; run 'custodian migrate' first".into())
    })?;
    Ok(chain::Store {
        backend: repo.backend_ref(),
        auth,
    })
}

fn keep_offline(repo: &Repository, intent: &Intent, local: &Local, reason: &str) -> Result<()> {
    let kept = Offline {
        reason: reason.to_string(),
        kept: now(),
    };
    let sealed = hex::encode(repo.seal_for_audit(&details(repo, intent, Some(kept))?)?);
    let pending = Pending {
        version: AUDIT_VERSION,
        repo_id: repo.config.repo_id,
        time: now(),
        reason: reason.to_string(),
        sealed,
    };
    let file = local.keep(&repo.location(), &pending)?;
    tracing::warn!(
        "AUDIT OFFLINE: the repository's audit log could not be written; this {} is recorded \
         in {} and will be uploaded, flagged, at the next contact",
        intent.op,
        file.display()
    );
    Ok(())
}

fn details(repo: &Repository, intent: &Intent, offline: Option<Offline>) -> Result<Vec<u8>> {
    let auth = store(repo)?.auth;
    let (key, signer) = auth.own();
    let (actor, role, name) = match signer {
        Some(s) => (s.who.clone(), s.role.name().to_string(), s.name.clone()),
        None => (
            format!("key {}", crate::crypto::sign::key_id(&key)),
            "unknown".into(),
            None,
        ),
    };
    let details = Details {
        version: AUDIT_VERSION,
        actor,
        role,
        name,
        op: intent.op.clone(),
        access: intent.access,
        source: intent.source.clone(),
        snapshots: intent.snapshots.clone(),
        reason: intent.reason.clone(),
        host: crate::source::hostname(),
        result: intent.result.clone(),
        touched: intent.touched,
        offline,
        reviewed: intent.reviewed,
    };
    crate::compress::pack_json(&details)
}

fn entry_bytes(repo: &Repository, head: &Head, sealed: String, offline: bool) -> Result<Vec<u8>> {
    let seq = head.seq + 1;
    let body = EntryBody {
        version: AUDIT_VERSION,
        seq,
        prev: head.hash.clone(),
        time: now(),
        offline,
        sealed,
    };
    let json = crate::compress::json_bytes(&body)?;
    repo.sign(
        ObjectKind::AuditEntry,
        &crate::format::audit::entry_name(seq),
        json,
    )
}

fn now() -> String {
    crate::when::rfc3339(crate::clock::now())
}
