//! `custodian audit log|verify|export`: the repository's audit log for people, for auditors and
//! for other systems. Any key opens it: a writer credential, an operator or an auditor identity.

use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::auditor::AuditorView;
use custodian::audit::chain::Store;
use custodian::audit::log::{Query, Record};
use custodian::repository::Repository;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Who did what, when and why: every entry, newest last.
    Log(LogArgs),
    /// Check the chain, every signature and checkpoint, and this machine's anchor; name the
    /// first bad entry.
    Verify(super::ReadArgs),
    /// Every entry for another system: JSON lines, or RFC 5424 syslog lines.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Only entries about this record store.
    #[arg(long)]
    source: Option<String>,
    /// Only entries since this time (RFC 3339, a local time, or a duration ago such as 30d).
    #[arg(long)]
    since: Option<String>,
    /// Only entries by this actor: a credential or key id, or a name from the access registry.
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// jsonl (one JSON object a line) or syslog (RFC 5424).
    #[arg(long, default_value = "jsonl")]
    format: String,
}

/// Run an `audit` subcommand.
pub fn audit(cmd: AuditCommand) -> Result<u8> {
    match cmd {
        AuditCommand::Log(a) => log(a),
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Export(a) => export(a),
    }
}

/// After `first` refused the identity as no operator of the repository: open it as an auditor
/// instead. If it is no auditor either, the operator's refusal stands; any other error (an
/// unpinned trust list, a forged one) is the auditor's.
pub fn as_auditor(repo: &RepoArg, keys: &KeyArgs, first: anyhow::Error) -> Result<AuditorView> {
    let not_operator = matches!(
        first.downcast_ref::<custodian::Error>(),
        Some(custodian::Error::NotListed { .. })
    );
    let (Some(identity), true) = (&keys.identity, not_operator) else {
        return Err(first);
    };
    let pins = Some(common::state_dir().join("trust"));
    match AuditorView::open(common::backend(repo)?, identity, pins) {
        Ok(view) => Ok(view),
        Err(custodian::Error::NotListed { .. }) => Err(first),
        Err(e) => Err(e.into()),
    }
}

/// The repository opened by whoever asks: an auditor identity opens only the audit log.
pub enum Reader {
    Repo(Box<Repository>),
    Auditor(Box<AuditorView>),
}

impl Reader {
    /// Open with the key given; an identity that is not an operator is tried as an auditor.
    pub fn open(repo: &RepoArg, keys: &KeyArgs) -> Result<Reader> {
        match common::open(repo, keys, "reading the audit log") {
            Ok(r) => Ok(Reader::Repo(Box::new(r))),
            Err(first) => Ok(Reader::Auditor(Box::new(as_auditor(repo, keys, first)?))),
        }
    }

    /// Source names by keyed id, for naming grants; an auditor, who holds no metadata key,
    /// gets none.
    pub fn source_names(&self) -> Result<std::collections::BTreeMap<String, String>> {
        match self {
            Reader::Repo(r) => Ok(r.source_names()?),
            Reader::Auditor(_) => Ok(Default::default()),
        }
    }

    /// The log's store view.
    pub fn store(&self) -> Result<Store<'_>> {
        match self {
            Reader::Repo(r) => Ok(custodian::audit::store(r)?),
            Reader::Auditor(a) => Ok(a.store()),
        }
    }

    fn open_details(&self, sealed: &[u8]) -> custodian::Result<Vec<u8>> {
        match self {
            Reader::Repo(r) => r.open_audit(sealed),
            Reader::Auditor(a) => a.open_details(sealed),
        }
    }

    /// Every entry, opened.
    pub fn records(&self) -> Result<Vec<Record>> {
        let open = |sealed: &[u8]| self.open_details(sealed);
        Ok(custodian::audit::log::read(&self.store()?, &open, 2)?)
    }

    /// The trust list in force (the access registry), as this reader verified it.
    pub fn trust_list(&self) -> Result<custodian::format::trust::TrustList> {
        match self {
            Reader::Repo(r) => r.auth().map(|a| a.list.clone()).ok_or_else(|| {
                anyhow::anyhow!(
                    "a format-1 repository has no access registry; run 'custodian migrate'"
                )
            }),
            Reader::Auditor(a) => Ok(a.auth.list.clone()),
        }
    }

    /// Where the repository is and its id, for this machine's anchor.
    pub fn anchor_key(&self) -> (String, custodian::id::RepoId) {
        match self {
            Reader::Repo(r) => (r.location(), r.config.repo_id),
            Reader::Auditor(a) => (a.backend.location(), a.repo_id),
        }
    }
}

fn log(args: LogArgs) -> Result<u8> {
    let reader = Reader::open(&args.repo, &args.keys)?;
    let since = match &args.since {
        None => None,
        Some(text) => Some(since(text)?),
    };
    let query = Query {
        source: args.source,
        since,
        actor: args.actor,
    };
    let records: Vec<Record> = reader
        .records()?
        .into_iter()
        .filter(|r| query.matches(r))
        .collect();
    if args.json {
        common::print_json(&records)?;
        return Ok(0);
    }
    for r in &records {
        outln!("{}", line(r));
    }
    eprintln!(
        "{} entr{}",
        records.len(),
        if records.len() == 1 { "y" } else { "ies" }
    );
    Ok(0)
}

/// `--since`: a time, or a duration ago.
pub fn since(text: &str) -> Result<std::time::SystemTime> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(custodian::clock::now()
            .checked_sub(ago)
            .unwrap_or(std::time::UNIX_EPOCH));
    }
    let moment = custodian::when::parse(text).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    Ok(moment.time)
}

/// One entry on one line: number, time, actor, operation, source, snapshots, result, reason.
fn line(r: &Record) -> String {
    let Some(d) = &r.details else {
        return format!(
            "{:>6}  {}  signed by {}  (not sealed to your key: written before you could read the log)",
            r.seq,
            custodian::when::show_stored(&r.time),
            r.signed_by
        );
    };
    let who = match &d.name {
        Some(n) if !d.actor.contains(&format!("({n})")) => format!("{} ({n})", d.actor),
        _ => d.actor.clone(),
    };
    let snaps: Vec<String> = d
        .snapshots
        .iter()
        .map(|s| custodian::id::short_text(s))
        .collect();
    format!(
        "{:>6}  {}  {:<5}  {who}  {}{}{}  {}  reason: {}{}",
        r.seq,
        custodian::when::show_stored(&r.time),
        format!("{:?}", d.access).to_lowercase(),
        d.op,
        d.source
            .as_ref()
            .map(|s| format!(" source {s}"))
            .unwrap_or_default(),
        if snaps.is_empty() {
            String::new()
        } else {
            format!(" [{}]", snaps.join(" "))
        },
        r.result(),
        if d.reason.is_empty() {
            "(none given)"
        } else {
            &d.reason
        },
        match &d.offline {
            Some(o) => format!("  OFFLINE since {} ({})", o.kept, o.reason),
            None => String::new(),
        }
    )
}

fn verify(args: super::ReadArgs) -> Result<u8> {
    let reader = Reader::open(&args.repo, &args.keys)?;
    let (location, repo_id) = reader.anchor_key();
    let local = common::audit_local();
    let kept = local.anchor(&location, repo_id)?;
    let store = reader.store()?;
    let started = std::time::Instant::now();
    let verified = custodian::audit::verify::verify(&store, kept.as_ref(), 2)?;
    let seconds = started.elapsed().as_secs_f64();
    if verified.problems.is_empty() {
        let head = custodian::audit::Head {
            seq: verified.entries,
            hash: verified.head.clone(),
        };
        local.remember(&location, repo_id, &head)?;
    }
    if args.json {
        let mut value = serde_json::to_value(&verified)?;
        value["seconds"] = serde_json::json!(seconds);
        value["anchor"] = serde_json::json!(kept.as_ref().map(|h| h.seq));
        common::print_json(&value)?;
    } else {
        print_verified(&verified, kept.as_ref(), seconds);
    }
    Ok(if verified.problems.is_empty() { 0 } else { 1 })
}

fn print_verified(
    v: &custodian::audit::verify::Verified,
    kept: Option<&custodian::audit::Head>,
    seconds: f64,
) {
    if let Some(first) = v.problems.first() {
        outln!("FIRST BAD: {} {}", first.object, first.what);
        for p in &v.problems[1..] {
            outln!("also: {} {}", p.object, p.what);
        }
        outln!(
            "the audit log does NOT verify: {} entries are good up to the first bad one. Keep \
             the repository as it is and compare it with a copy.",
            v.entries
        );
        return;
    }
    outln!(
        "audit log verified: {} entries, every signature and link checked in {seconds:.2}s",
        v.entries
    );
    match &v.latest_checkpoint {
        Some((count, time)) => outln!(
            "{} checkpoint(s) agree; the latest covers {count} entries ({})",
            v.checkpoints,
            custodian::when::show_stored(time)
        ),
        None => outln!("no checkpoints in the repository"),
    }
    match kept {
        Some(h) => outln!("this machine's anchor (entry {}) is in the log", h.seq),
        None => outln!("this machine had no anchor for this repository; it keeps one now"),
    }
    if v.offline_entries > 0 {
        outln!(
            "{} entr(ies) were kept offline (--audit-offline) and uploaded later",
            v.offline_entries
        );
    }
}

fn export(args: ExportArgs) -> Result<u8> {
    let format = match args.format.as_str() {
        "jsonl" => custodian::audit::export::jsonl,
        "syslog" => custodian::audit::export::syslog,
        other => anyhow::bail!("--format {other} is not known: use jsonl or syslog"),
    };
    let reader = Reader::open(&args.repo, &args.keys)?;
    for r in reader.records()? {
        outln!("{}", format(&r));
    }
    Ok(0)
}
