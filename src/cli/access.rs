//! `custodian access`: the access registry (who may do what, by key), and its changes, each an
//! audit entry signed by the operator who made it.

use super::audit::Reader;
use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::{bail, Result};
use custodian::format::trust::TrustList;
use custodian::repository::trust::{key_who_hex, writer_who, Role};
use custodian::repository::Principal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AccessCommand {
    /// Every principal: name, role, key, sources, who added it and when, expiry, last use.
    List(super::ReadArgs),
    /// Issue a writer credential for a server (operator identity); written mode 0600.
    IssueWriter(IssueArgs),
    /// Revoke a writer credential: what it signed afterwards is refused everywhere.
    RevokeWriter(NamedArgs),
    /// Add an operator: it may read every source; starts a new generation of domain keys and
    /// seals every key record to the operators in office.
    AddOperator(AddPrincipalArgs),
    /// Remove an operator: key records are sealed without it, and what is backed up from now
    /// on goes to new domain keys it never held. Prints what it could already read.
    RemoveOperator(NamedArgs),
    /// Add an auditor: it verifies and reads the audit log, never a record.
    AddAuditor(AddPrincipalArgs),
    /// Remove an auditor: entries from now on are no longer sealed to it.
    RemoveAuditor(NamedArgs),
    /// The periodic review: every principal, unused and expiring ones, changes since the last
    /// review; `--approve --reason …` signs it off.
    Review(super::review::ReviewArgs),
}

#[derive(clap::Args)]
pub struct IssueArgs {
    /// The server's name in the registry.
    #[arg(long)]
    name: String,
    /// Where to write the credential (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
    /// When it stops working (a date or time).
    #[arg(long)]
    expires: Option<String>,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(clap::Args)]
pub struct NamedArgs {
    /// The principal's name (or a writer credential's id prefix).
    name: String,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(clap::Args)]
pub struct AddPrincipalArgs {
    /// The person's age recipient (age1…, from 'custodian key generate' on their machine).
    recipient: String,
    /// Their signing key, from 'custodian key show' on their machine.
    #[arg(long)]
    key: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    expires: Option<String>,
    /// Operators only: the sources (key domains) it may read, comma-separated; without it,
    /// every source, including ones backed up later.
    #[arg(long, value_delimiter = ',')]
    sources: Option<Vec<String>>,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

/// Run an `access` subcommand.
pub fn access(cmd: AccessCommand) -> Result<u8> {
    match cmd {
        AccessCommand::List(a) => list(a),
        AccessCommand::IssueWriter(a) => issue_writer(a),
        AccessCommand::RevokeWriter(a) => revoke_writer(a),
        AccessCommand::AddOperator(a) => add_operator(a),
        AccessCommand::RemoveOperator(a) => remove_operator(a),
        AccessCommand::AddAuditor(a) => add_auditor(a),
        AccessCommand::RemoveAuditor(a) => remove_auditor(a),
        AccessCommand::Review(a) => super::review::review(a),
    }
}

/// One principal as the registry and the audit log know it.
#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub role: &'static str,
    pub key: String,
    pub sources: String,
    pub added: String,
    pub added_by: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
    pub last_use: Option<String>,
    /// An operator granted only some sources: their names (or keyed ids, for an auditor, who
    /// cannot name them); `None`: every source.
    pub granted: Option<Vec<String>>,
}

/// Every principal of `list`, with its last use from the audit log (`last`: signer -> time,
/// signers named as the trust list names them) and its grants named by `names` (keyed id ->
/// source name; empty for an auditor).
pub fn rows(
    list: &TrustList,
    last: &HashMap<String, String>,
    names: &BTreeMap<String, String>,
) -> Vec<Row> {
    let last_use = |who: Option<String>| who.and_then(|w| last.get(&w).cloned());
    let mut out = Vec::new();
    for o in &list.operators {
        let key = o.signing_key.clone().unwrap_or_default();
        let reg = o.registry.as_ref();
        let granted = o.sources.as_ref().map(|ids| {
            ids.iter()
                .map(|id| match names.get(id) {
                    Some(name) => name.clone(),
                    // From the plaintext trust list: shown only if it looks like an id.
                    None if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        format!("id {id}")
                    }
                    None => "(malformed id)".into(),
                })
                .collect::<Vec<_>>()
        });
        out.push(Row {
            name: reg.map_or_else(|| "(from init)".into(), |r| r.name.clone()),
            role: "operator",
            key: format!("{} (signing {})", o.recipient, short(&key)),
            sources: granted
                .as_ref()
                .map_or_else(|| "all".into(), |g| g.join(", ")),
            granted,
            added: reg.map_or_else(|| list.config.created.clone(), |r| r.added.clone()),
            added_by: reg.map_or_else(|| "init".into(), |r| r.added_by.clone()),
            expires: reg.and_then(|r| r.expires.clone()),
            revoked: o
                .removed
                .as_ref()
                .map(|r| format!("{} by {} (removed)", r.time, r.by)),
            last_use: last_use(key_who_hex(Role::Operator, &key)),
        });
    }
    for w in &list.writers {
        out.push(Row {
            name: w.name.clone(),
            role: "writer",
            key: format!("credential {}", w.id),
            sources: "all (back up and list; never read)".into(),
            granted: None,
            added: w.added.clone(),
            added_by: w.added_by.clone().unwrap_or_else(|| "init".into()),
            expires: w.expires.clone(),
            revoked: w
                .revoked
                .as_ref()
                .map(|r| format!("{} by {}", r.time, r.by)),
            last_use: last_use(Some(writer_who(w))),
        });
    }
    for a in &list.auditors {
        out.push(Row {
            name: a.registry.name.clone(),
            role: "auditor",
            key: format!("{} (signing {})", a.recipient, short(&a.signing_key)),
            sources: "audit log and structure only".into(),
            granted: None,
            added: a.registry.added.clone(),
            added_by: a.registry.added_by.clone(),
            expires: a.registry.expires.clone(),
            revoked: None,
            last_use: last_use(key_who_hex(Role::Auditor, &a.signing_key)),
        });
    }
    out
}

fn short(text: &str) -> &str {
    text.get(..16).unwrap_or(text)
}

/// Last use of each signer ("operator 1a2b…", "writer credential …"), from the audit log.
pub fn last_use(reader: &Reader) -> Result<HashMap<String, String>> {
    let mut last = HashMap::new();
    for r in reader.records()? {
        let who = r
            .signed_by
            .trim_end_matches(" (before its revocation)")
            .to_string();
        last.insert(who, r.time);
    }
    Ok(last)
}

fn list(args: super::ReadArgs) -> Result<u8> {
    let reader = Reader::open(&args.repo, &args.keys)?;
    let list = reader.trust_list()?;
    let rows = rows(&list, &last_use(&reader)?, &reader.source_names()?);
    if args.json {
        common::print_json(&rows)?;
        return Ok(0);
    }
    for r in &rows {
        outln!(
            "{:<9} {:<20} {}\n          sources: {}; added {} by {}; expires {}; last use {}{}",
            r.role,
            r.name,
            r.key,
            r.sources,
            custodian::when::show_stored(&r.added),
            r.added_by,
            r.expires
                .as_deref()
                .map_or_else(|| "never".into(), custodian::when::show_stored),
            r.last_use
                .as_deref()
                .map_or_else(|| "never".into(), custodian::when::show_stored),
            r.revoked
                .as_deref()
                .map(|t| format!("; REVOKED {t}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

fn expires(text: Option<&str>) -> Result<Option<String>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let moment = custodian::when::parse(text).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
    Ok(Some(custodian::when::rfc3339(moment.time)))
}

fn issue_writer(args: IssueArgs) -> Result<u8> {
    let who = Principal {
        name: &args.name,
        expires: expires(args.expires.as_deref())?,
    };
    let issued = common::operator_change(&args.repo, &args.keys, "access issue-writer", |r| {
        r.issue_writer(&who, &args.out)
    })?;
    let id = issued.id;
    if issued.already {
        outln!(
            "writer credential {} in {} is already issued and listed; nothing to do",
            custodian::id::short_text(&id),
            args.out.display()
        );
        return Ok(0);
    }
    outln!(
        "issued writer credential {} ('{}') to {} (mode 0600): give it to the server; it cannot \
         read backups",
        custodian::id::short_text(&id),
        args.name,
        args.out.display()
    );
    Ok(0)
}

fn revoke_writer(args: NamedArgs) -> Result<u8> {
    let revoked = common::operator_change(&args.repo, &args.keys, "access revoke-writer", |r| {
        r.revoke_writer(&args.name)
    })?;
    match &revoked.already {
        Some(when) if !revoked.rotated => {
            outln!(
                "writer credential {} ('{}') was already revoked ({when}); nothing to do",
                custodian::id::short_text(&revoked.id),
                revoked.name
            );
            return Ok(0);
        }
        Some(when) => outln!(
            "writer credential {} ('{}') was already revoked ({when}) but still held the newest \
             metadata key.",
            custodian::id::short_text(&revoked.id),
            revoked.name
        ),
        None => outln!(
            "writer credential {} ('{}') revoked: the {} object(s) and {} pack(s) it wrote \
             until now stay valid; anything it signs from now on is refused, and its next \
             backup too.",
            custodian::id::short_text(&revoked.id),
            revoked.name,
            revoked.objects,
            revoked.packs
        ),
    }
    if revoked.rotated {
        outln!(
            "The metadata key was rotated: what is written from now on (snapshot lists, \
             indexes, dedup keys, audit details) is sealed to a key it never held. What it saw \
             until now it keeps; revoke its storage credentials too."
        );
    } else {
        outln!(
            "It was issued before the newest metadata key and never held it: nothing to rotate."
        );
    }
    say_reissue(&revoked.reissue);
    Ok(0)
}

/// After a metadata key rotation: which writers need new credentials, and how.
fn say_reissue(writers: &[String]) {
    if writers.is_empty() {
        return;
    }
    outln!(
        "Every writer credential issued before now lacks the new metadata key and is refused \
         until replaced: issue each server a new one ('custodian access issue-writer --name NEW \
         --out FILE'), install it, then revoke the old one (that rotates nothing more; until \
         then what is signed with the old key still verifies). Writers to replace: {}.",
        writers.join(", ")
    );
}

fn add_auditor(args: AddPrincipalArgs) -> Result<u8> {
    if args.sources.is_some() {
        bail!(
            "--sources is for operators: an auditor never reads a record of any source, so it \
             has no grants. Run the command again without --sources."
        );
    }
    let who = Principal {
        name: &args.name,
        expires: expires(args.expires.as_deref())?,
    };
    let seq = common::operator_change(&args.repo, &args.keys, "access add-auditor", |r| {
        r.add_auditor(&args.recipient, &args.key, &who)
    })?;
    match seq {
        Some(seq) => outln!(
            "trust list version {seq}: auditor '{}' added; entries from now on are sealed to it too",
            args.name
        ),
        None => outln!("auditor '{}' is listed already; nothing to do", args.name),
    }
    Ok(0)
}

fn remove_auditor(args: NamedArgs) -> Result<u8> {
    let seq = common::operator_change(&args.repo, &args.keys, "access remove-auditor", |r| {
        r.remove_auditor(&args.name)
    })?;
    outln!("trust list version {seq}: auditor '{}' removed", args.name);
    Ok(0)
}

/// An operator change: the trust list (`act`, under this command's audit entry), then, on the
/// repository reopened with the new list, every key record re-sealed to the operators in
/// office. A rerun after a kill finds the list changed and re-seals again.
fn change_operators<T>(
    repo: &RepoArg,
    keys: &KeyArgs,
    op: &str,
    act: impl FnOnce(&custodian::repository::Repository) -> custodian::Result<T>,
) -> Result<(T, custodian::repository::Resealed, usize)> {
    let opened = common::open_operator(repo, keys, op)?;
    let audit = common::audit(&opened, custodian::audit::Intent::write(op, ""))?;
    let done = act(&opened)?;
    let fresh = common::open_operator(repo, keys, op)?;
    let resealed = fresh.reseal_for_operators()?;
    let snapshots = fresh.list_snapshots()?.len();
    audit.done("ok", None);
    Ok((done, resealed, snapshots))
}

fn add_operator(args: AddPrincipalArgs) -> Result<u8> {
    let who = Principal {
        name: &args.name,
        expires: expires(args.expires.as_deref())?,
    };
    let (seq, resealed, _) =
        change_operators(&args.repo, &args.keys, "access add-operator", |r| {
            r.add_operator(&args.recipient, &args.key, &who, args.sources.as_deref())
        })?;
    let granted = match &args.sources {
        Some(names) => format!("granted {}", names.join(", ")),
        None => "granted every source".into(),
    };
    let head = match seq {
        Some(seq) => format!(
            "trust list version {seq}: operator '{}' added, {granted}",
            args.name
        ),
        None => format!("operator '{}' is listed already", args.name),
    };
    outln!(
        "{head}; {} key domain(s) and {} record(s) sealed to the operators in office. On first \
         use they compare the repository's fingerprint with you and run 'custodian key trust'.",
        resealed.domains,
        resealed.records
    );
    Ok(0)
}

fn remove_operator(args: NamedArgs) -> Result<u8> {
    let (removed, resealed, snapshots) =
        change_operators(&args.repo, &args.keys, "access remove-operator", |r| {
            r.remove_operator(&args.name)
        })?;
    let who = format!("'{}' ({})", removed.name, removed.recipient);
    if let Some(when) = &removed.already {
        outln!("operator {who} was already removed ({when}); key records re-sealed again");
    } else {
        outln!(
            "operator {who} removed; the {} object(s) it signed stay valid, anything it signs \
             from now on is refused.",
            removed.signed
        );
    }
    outln!(
        "What it could already read, and still can from any copy it kept: the {snapshots} \
         snapshot(s) in this repository now, their files and names, and the bookkeeping \
         (snapshot list, sizes, source names, audit details). Copies of the repository made \
         before now, and old versions the storage provider keeps, still open with its \
         identity.\nWhat it cannot read: anything backed up from now on, neither files (new \
         domain keys) nor bookkeeping (a new metadata key), all keys it never held. {} key \
         domain(s) and {} record(s) were re-sealed without it.",
        resealed.domains,
        resealed.records
    );
    say_reissue(&removed.reissue);
    Ok(0)
}
