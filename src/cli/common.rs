//! Helpers every verb shares: logging, opening the repository with the right key, output.

use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::backend::{Counting, RequestCounts};
use custodian::repository::{Credential, Repository};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Logs go to stderr at `default_level` (`RUST_LOG` overrides): plain lines, without
/// timestamps under systemd (the journal adds them), or JSON objects. File names are never
/// logged at info.
pub fn init_logging(default_level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// The backend for a `--repo` value.
/// Requests are counted for the whole process (one repository per command) and reported in
/// `--json` summaries.
static COUNTER: std::sync::OnceLock<Arc<Counting>> = std::sync::OnceLock::new();

pub fn backend(repo: &RepoArg) -> Result<Arc<dyn custodian::backend::Backend>> {
    let inner = match (&repo.repo, &repo.config) {
        (Some(url), _) => custodian::backend::open(url)?,
        (None, Some(_)) => custodian::daemon::open_backend(&daemon_config(repo)?)?,
        (None, None) => anyhow::bail!(
            "no repository given: pass --repo PATH|s3://BUCKET/PREFIX (or set CUSTODIAN_REPO), \
             or --config FILE to use the daemon's repository"
        ),
    };
    let counting = Arc::new(Counting::new(inner));
    let _ = COUNTER.set(counting.clone());
    Ok(counting)
}

/// The daemon's config named by --config, read for its form (a missing source path does not
/// stop a listing or a prune).
pub fn daemon_config(repo: &RepoArg) -> Result<custodian::config::Config> {
    let Some(file) = &repo.config else {
        anyhow::bail!("this needs the daemon's config: pass --config FILE");
    };
    Ok(custodian::config::Config::load_form(file)?)
}

/// How the repository was named, for messages and suggested commands.
pub fn repo_text(repo: &RepoArg) -> String {
    match (&repo.repo, &repo.config) {
        (Some(url), _) => format!("--repo {url}"),
        (None, Some(file)) => format!("--config {}", file.display()),
        (None, None) => "--repo REPO".into(),
    }
}

/// Requests made so far by this command.
pub fn requests() -> RequestCounts {
    COUNTER.get().map(|c| c.counts()).unwrap_or_default()
}

/// The operator identity if given, else the writer credential.
pub fn credential(keys: &KeyArgs, what: &str) -> Result<Credential> {
    match (&keys.identity, &keys.writer_key) {
        (Some(id), _) => Ok(Credential::Operator(id.clone())),
        (None, Some(w)) => Ok(Credential::Writer(w.clone())),
        (None, None) => Err(custodian::Error::NeedsKey {
            what: what.to_string(),
        }
        .into()),
    }
}

/// The same, falling back to the writer credential the daemon's config names.
pub fn credential_for(repo: &RepoArg, keys: &KeyArgs, what: &str) -> Result<Credential> {
    if keys.identity.is_none() && keys.writer_key.is_none() && repo.config.is_some() {
        let config = daemon_config(repo)?;
        return Ok(Credential::Writer(config.repository.writer_key_file));
    }
    credential(keys, what)
}

/// Open with the operator identity if given, else the writer credential. An operator pins the
/// repository's trust list under the state dir (see `repository::trust`).
pub fn open(repo: &RepoArg, keys: &KeyArgs, what: &str) -> Result<Repository> {
    Ok(Repository::open_pinned(
        backend(repo)?,
        &credential_for(repo, keys, what)?,
        Some(state_dir().join("trust")),
    )?)
}

/// Open for reading content: an operator identity is required.
pub fn open_operator(repo: &RepoArg, keys: &KeyArgs, what: &str) -> Result<Repository> {
    match &keys.identity {
        Some(id) => Ok(Repository::open_pinned(
            backend(repo)?,
            &Credential::Operator(id.clone()),
            Some(state_dir().join("trust")),
        )?),
        None => Err(custodian::Error::NeedsIdentity {
            what: what.to_string(),
        }
        .into()),
    }
}

/// `--reason` and `--audit-offline`, for every command's audit entry.
static AUDIT_FLAGS: std::sync::OnceLock<(Option<String>, Option<String>)> =
    std::sync::OnceLock::new();

/// Remember the audit flags for [`audit`].
pub fn set_audit(reason: Option<String>, offline: Option<String>) {
    let _ = AUDIT_FLAGS.set((reason, offline));
}

/// `--reason`, if given.
pub fn reason() -> Option<String> {
    AUDIT_FLAGS.get().and_then(|(r, _)| r.clone())
}

/// Where this machine keeps audit anchors and offline entries.
pub fn audit_local() -> custodian::audit::Local {
    custodian::audit::Local::new(state_dir().join("audit"))
}

/// A command's audit entry: written before the command acts, closed with its result. Dropped
/// without [`Audited::done`] (an error on the way), it is closed as failed.
pub struct Audited<'r> {
    repo: &'r Repository,
    begun: custodian::audit::Begun,
    closed: bool,
}

impl Audited<'_> {
    /// Where the log stood with this entry: (entries, head hash); `None` when it was kept
    /// offline or the repository has no log.
    pub fn head(&self) -> Option<(u64, String)> {
        match &self.begun {
            custodian::audit::Begun::Written(h) => {
                Some((h.seq, h.hash.clone().unwrap_or_default()))
            }
            _ => None,
        }
    }

    /// Close the entry with `result` ("ok", "partial") and what was touched.
    pub fn done(mut self, result: &str, touched: Option<custodian::audit::Touched>) {
        custodian::audit::close(self.repo, &self.begun, result, touched);
        self.closed = true;
    }

    /// Close a drill's entry with what each drill measured.
    pub fn done_drills(mut self, result: &str, drills: Vec<custodian::audit::DrillFigures>) {
        custodian::audit::close_drills(self.repo, &self.begun, result, None, drills);
        self.closed = true;
    }

    /// Close the entry by exit code: 0 ok, 3 partial, anything else failed.
    pub fn exit(self, code: u8, touched: Option<custodian::audit::Touched>) -> u8 {
        let result = match code {
            0 => "ok",
            super::EXIT_PARTIAL => "partial",
            super::EXIT_SUSPICIOUS => "suspicious",
            _ => "failed",
        };
        self.done(result, touched);
        code
    }
}

impl Drop for Audited<'_> {
    fn drop(&mut self) {
        if !self.closed {
            custodian::audit::close(self.repo, &self.begun, "failed", None);
        }
    }
}

/// Append this command's audit entry (its reason: `--reason`, else `default_reason`) before it
/// acts; refused when the entry cannot be written, unless `--audit-offline` was given.
pub fn audit<'r>(repo: &'r Repository, intent: custodian::audit::Intent) -> Result<Audited<'r>> {
    let mut intent = intent;
    if let Some(r) = reason() {
        intent.reason = r;
    }
    let offline = AUDIT_FLAGS.get().and_then(|(_, o)| o.as_deref());
    let begun = custodian::audit::begin(repo, &intent, Some(&audit_local()), offline)?;
    Ok(Audited {
        repo,
        begun,
        closed: false,
    })
}

/// An operator's change: open with the identity, append the entry for `op` (a write), run
/// `act`, and close the entry.
pub fn operator_change<T>(
    repo: &RepoArg,
    keys: &KeyArgs,
    op: &str,
    act: impl FnOnce(&Repository) -> custodian::Result<T>,
) -> Result<T> {
    let opened = open_operator(repo, keys, op)?;
    let audit = audit(&opened, custodian::audit::Intent::write(op, ""))?;
    let done = act(&opened)?;
    audit.done("ok", None);
    Ok(done)
}

/// `--quiet` was given.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Remember `--quiet` for `interactive`.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Progress bars only for people: a terminal on stdout, no `--json` and no `--quiet`.
pub fn interactive(json: bool) -> bool {
    !json && !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stdout().is_terminal()
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Where caches live: `$CUSTODIAN_STATE_DIR`, else `~/.local/state/custodian`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CUSTODIAN_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/custodian"));
    home.join(".local/state/custodian")
}

/// A `--source` the repository has no snapshots of is a typo until shown otherwise: refuse it
/// with the real sources listed, rather than answer "0 snapshots".
pub fn known_source(
    all: &[custodian::repository::SnapshotInfo],
    source: Option<&str>,
) -> Result<()> {
    known_source_or(all, source, "")
}

/// The same, with `fix` (a sentence) added to the refusal.
pub fn known_source_or(
    all: &[custodian::repository::SnapshotInfo],
    source: Option<&str>,
    fix: &str,
) -> Result<()> {
    let Some(want) = source else {
        return Ok(());
    };
    let mut known: Vec<&str> = all.iter().map(|s| s.head.source.as_str()).collect();
    known.sort_unstable();
    known.dedup();
    if known.is_empty() || known.contains(&want) {
        return Ok(());
    }
    anyhow::bail!(
        "the repository has no snapshots of source '{want}'; its sources are: {}.{fix}",
        known.join(", ")
    )
}

/// A clap value parser for durations (`30d`, `7y`, `6h`, `0s`).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 30d, 6h or 0s"))
}

pub use custodian::human::bytes as human_bytes;

/// This machine's host name, for snapshot labels.
pub fn hostname() -> String {
    custodian::source::hostname()
}
