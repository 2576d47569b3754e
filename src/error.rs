//! The library's error type. Every message names the object it is about and, where there is one,
//! the fix, because the person reading it may be an incident responder under stress.

use std::path::PathBuf;

// A backend's failure is defined here, in the pure layer, so that `error` imports no adapter;
// `backend` re-exports it.
/// How a backend failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// Worth retrying (timeouts, resets, 5xx).
    Transient,
    /// Retrying cannot help (permissions, full disk, 4xx).
    Permanent,
}

/// A failed backend operation, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("{operation} '{object}' in {location}: {message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub operation: &'static str,
    pub object: String,
    pub location: String,
    pub message: String,
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Problems decoding an on-repository type.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Written by a newer custodian; refusing beats misreading.
    #[error(
        "{what} has format version {found}, but this custodian understands versions up to {supported}. \
         Upgrade custodian to read this repository; do not write to it with this version."
    )]
    UnknownVersion {
        what: String,
        found: u32,
        supported: u32,
    },
    /// Bytes that do not decode: damage or a foreign file.
    #[error("{what} is malformed ({reason}). The object is damaged or not custodian's; run 'custodian check' on the repository.")]
    Malformed { what: String, reason: String },
}

/// Problems with keys and sealed data.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// None of the keys we hold opens this object.
    #[error("{what} cannot be decrypted with the key you gave. {hint}")]
    NoMatchingKey { what: String, hint: String },
    /// Authentication failed: the bytes were changed after they were written.
    #[error(
        "{what} failed authentication: its bytes were changed or damaged after it was written"
    )]
    Tampered { what: String },
    /// age refused to encrypt (e.g. an empty recipient list).
    #[error("encrypting {what} failed: {reason}")]
    Encrypt { what: String, reason: String },
}

/// Everything the library can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {}", path.display(), io_reason(cause))]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "'{0}' is not a custodian repository: it has no 'config' object. Check --repo (or CUSTODIAN_REPO), \
         or create a repository there with 'custodian init'."
    )]
    NotARepository(String),
    #[error("'{0}' already holds a custodian repository; choose an empty location for 'custodian init'.")]
    RepositoryExists(String),
    #[error(
        "{what} needs an operator identity: the writer credential can add backups but can never read them. \
         Pass --identity FILE (or set CUSTODIAN_IDENTITY) with an operator's age identity."
    )]
    NeedsIdentity { what: String },
    #[error("{what} needs a key: pass --writer-key FILE (or CUSTODIAN_WRITER_KEY), or --identity FILE (or CUSTODIAN_IDENTITY).")]
    NeedsKey { what: String },
    #[error(
        "key file {} is readable by group or others (mode {mode:o}). Keys must be private: run 'chmod 600 {}'.",
        path.display(), path.display()
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("no snapshot matches '{0}'. List them with 'custodian snapshots'.")]
    SnapshotNotFound(String),
    #[error("'{prefix}' matches {count} snapshots ({examples}); give more characters of the id.")]
    AmbiguousSnapshot {
        prefix: String,
        count: usize,
        examples: String,
    },
    #[error("restore target {} is not empty. Choose an empty directory, or pass --overwrite to replace files there.", .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("the backup was stopped before it committed (shutdown requested); no partial snapshot was written, and the next run reuses what was uploaded")]
    Cancelled,
    /// A legal or incident hold stands in the way: a hold outranks every destruction.
    #[error(
        "{action} would destroy held snapshot(s) {held}, and a hold outranks {action}: nothing was \
         changed. Release the hold (operator identity: 'custodian release ID') once it may end, \
         then run {action} again."
    )]
    Held { action: String, held: String },
    /// A command that cannot leave its audit entry does not run (reads fail closed).
    #[error(
        "{op} was refused: its audit entry could not be written to the repository ({cause}). \
         custodian does not touch customer records without leaving evidence. Give the \
         repository back write access to its audit/ folder and run the command again; in an \
         emergency, when the storage is read-only, run it again with --audit-offline 'WHY': the \
         entry is kept on this machine, uploaded at the next contact, and flagged in every \
         report."
    )]
    AuditUnavailable { op: String, cause: String },
    /// The caller's identity is not on the trust list in `role`: the CLI then tries the other
    /// role (an auditor's identity given where an operator's would also do).
    #[error("{message}")]
    NotListed { role: &'static str, message: String },
    /// An operator granted only some sources asked for another (`access add-operator
    /// --sources`): its identity was never given that source's keys.
    #[error(
        "operator '{operator}' is not granted source '{domain}': its keys are sealed only to the \
         operators granted it ('custodian access list' shows who). Ask one of them, or an \
         operator granted every source, to do this."
    )]
    NotGranted { operator: String, domain: String },
    /// A store that was handed over to another owner: nothing more is written into it here.
    #[error(
        "source '{domain}' was handed over to {to} on {time} (handover {handover}): custodian \
         no longer backs it up into this repository. Remove it from the daemon's config, or \
         back it up into the new owner's repository with their writer credential."
    )]
    HandedOver {
        domain: String,
        handover: String,
        to: String,
        time: String,
    },
    /// The record store cannot be read at all: unmounted, moved, or not ours to read.
    #[error(
        "source path {} cannot be read: {cause}. Check the path given to 'backup' (or the \
         daemon's config), and that the store is mounted.",
        path.display()
    )]
    SourceUnreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// An object that cannot be used as stored (the message names it): damaged, or forged by
    /// someone who may write to the storage. Listings name such objects and go on.
    #[error("{0}")]
    Damaged(String),
    /// Another process holds or changed what this one relied on (the trust list, the audit
    /// log's head, a prune meanwhile, a key change in progress, a database's lock): nothing was
    /// committed, and running again is the fix.
    #[error("{0}")]
    Conflict(String),
    /// A broken invariant of custodian itself, not of the input: worth a bug report.
    #[error("{0}")]
    Internal(String),
    /// The command or config asked for something malformed or absent: an argument, a pattern,
    /// a name, a key file that holds no key. Fixing the request is the fix.
    #[error("{0}")]
    Usage(String),
    /// A well-formed request that the repository's rules refuse (removing the last operator, a
    /// revoked or expired credential, a handover not made out to the caller): nothing changed.
    #[error("{0}")]
    Refused(String),
    /// Something that must come from a known signer does not: a pinned repository replaced, a
    /// config its operators did not sign, an altered handover list. custodian does not act on
    /// it, and a person must find out who changed it.
    #[error("{0}")]
    Untrusted(String),
    /// A directory listing that breaks the format's rules (see `Tree::validate`): damaged, or
    /// forged by someone holding a writer credential. Nothing is written for it.
    #[error(
        "{}listing of directory '/{dir}' (tree {tree}) is refused: {source}. The snapshot was damaged \
         or forged (anyone holding the writer credential can write a listing), so nothing was \
         restored from it. Run 'custodian check --read-data' and use an earlier snapshot.",
        snapshot.as_ref().map(|s| format!("snapshot {s}: ")).unwrap_or_default()
    )]
    RefusedListing {
        snapshot: Option<String>,
        dir: String,
        tree: String,
        source: crate::format::tree::TreeError,
    },
}

impl Error {
    /// Name the directory a refused listing belongs to (the reader only knows the tree id).
    pub fn in_dir(self, path: &std::path::Path) -> Self {
        match self {
            Error::RefusedListing {
                snapshot,
                tree,
                source,
                ..
            } => Error::RefusedListing {
                snapshot,
                dir: path.display().to_string(),
                tree,
                source,
            },
            other => other,
        }
    }

    /// Name the snapshot a refused listing came from.
    pub fn in_snapshot(self, id: &crate::id::SnapshotId) -> Self {
        match self {
            Error::RefusedListing {
                dir, tree, source, ..
            } => Error::RefusedListing {
                snapshot: Some(id.short()),
                dir,
                tree,
                source,
            },
            other => other,
        }
    }

    /// Whether this says an object is damaged or forged (as opposed to the store failing):
    /// listings skip such objects and name them instead of failing.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::Format(_) | Error::Crypto(_) | Error::Damaged(_) | Error::RefusedListing { .. }
        )
    }

    /// Whether running the same thing later may succeed with nobody's help: the store did not
    /// answer or failed (after the client's own retries), or another process changed what this
    /// one relied on. Everything else (a wrong or revoked key, a damaged or forged object, bad
    /// input, a refused operation, a file it may not read) needs an operator, and the daemon stops
    /// retrying it until one acts (`status` says so).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend(b) => b.kind == ErrorKind::Transient,
            Error::Conflict(_) | Error::AuditUnavailable { .. } => true,
            // A source that vanished (an unmounted share), a full disk: they may come back.
            // A refusal does not.
            Error::Io { cause, .. } | Error::SourceUnreadable { cause, .. } => !matches!(
                cause.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            _ => false,
        }
    }

    /// Whether an object the caller expected is gone (a prune deleted it since it was listed).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Backend(b) if b.kind == ErrorKind::NotFound)
    }

    /// Attach a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}

/// Extension to tag `io::Result`s with the path they are about.
pub trait IoContext<T> {
    /// Turn an io error into [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// An io error with what to do about the common ones (one paragraph, for the operator).
/// The fix for a read-only path. Under systemd it is almost always the shipped unit's
/// ProtectSystem=strict, not a read-only disk, so the message names the unit setting.
fn read_only_fix(under_systemd: bool) -> &'static str {
    if under_systemd {
        "the path is read-only for this service: the shipped unit has ProtectSystem=strict and \
         may write only /var/lib/custodian. For a repository on local disk or a NAS mount, add \
         its directory to ReadWritePaths= in a drop-in (systemctl edit custodian; example: \
         systemd/local-repository.conf), then restart the service"
    } else {
        "the file system is read-only. Remount it read-write, or point custodian elsewhere (for \
         the state dir: CUSTODIAN_STATE_DIR)"
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let fix = match e.kind() {
        StorageFull | QuotaExceeded => {
            "the disk holding it is full. Free space there (or move it elsewhere), then run \
             again; nothing that was committed before is affected"
        }
        // systemd sets INVOCATION_ID for every unit it runs.
        ReadOnlyFilesystem => read_only_fix(std::env::var_os("INVOCATION_ID").is_some()),
        PermissionDenied => {
            "permission denied. Give the user custodian runs as access, or point custodian \
             elsewhere"
        }
        _ => return e.to_string(),
    };
    format!("{e}: {fix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_only_path_under_systemd_names_the_unit_setting() {
        assert!(super::read_only_fix(true).contains("ReadWritePaths="));
        assert!(super::read_only_fix(true).contains("local-repository.conf"));
        assert!(super::read_only_fix(false).contains("Remount"));
    }
}

#[cfg(test)]
mod transient_tests {
    use super::*;

    fn backend(kind: ErrorKind) -> Error {
        Error::Backend(BackendError {
            kind,
            operation: "reading",
            object: "config".into(),
            location: "s3://b".into(),
            message: String::new(),
        })
    }

    #[test]
    fn only_what_can_pass_by_itself_is_transient() {
        let io = |kind| std::io::Error::new(kind, "x");
        for transient in [
            backend(ErrorKind::Transient),
            Error::Conflict("the trust list moved".into()),
            Error::AuditUnavailable {
                op: "backup".into(),
                cause: "store down".into(),
            },
            Error::SourceUnreadable {
                path: "/srv/records".into(),
                cause: io(std::io::ErrorKind::NotFound),
            },
        ] {
            assert!(transient.is_transient(), "{transient}");
        }
        for needs_operator in [
            backend(ErrorKind::Permanent),
            backend(ErrorKind::NotFound),
            Error::Damaged("pack x does not match its hash".into()),
            Error::Usage("bad input".into()),
            Error::Refused("the last operator".into()),
            Error::Untrusted("a replaced config".into()),
            Error::Internal("a bug".into()),
            Error::NeedsIdentity { what: "x".into() },
            Error::HandedOver {
                domain: "d".into(),
                handover: "h".into(),
                to: "t".into(),
                time: "now".into(),
            },
            Error::SourceUnreadable {
                path: "/srv/records".into(),
                cause: io(std::io::ErrorKind::PermissionDenied),
            },
        ] {
            assert!(!needs_operator.is_transient(), "{needs_operator}");
        }
    }
}
