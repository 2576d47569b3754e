//! `custodian access review`: the periodic review of who may do what (定期审查). It lists
//! every principal with its last use, those unused for long, those whose access ends soon,
//! and the registry changes since the last sign-off; `--approve` signs the review off as an
//! audit entry naming the trust list version approved, which the daemon's
//! `custodian_access_review_age_days` and `status` count from.

use super::access::{last_use, rows, Row};
use super::audit::Reader;
use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::{bail, Result};
use custodian::audit::log::{Record, Review};
use custodian::format::audit::REVIEW_OP;
use serde::Serialize;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
pub struct ReviewArgs {
    /// List principals not used for more than this many days.
    #[arg(long, default_value_t = 90)]
    unused_days: u64,
    /// List principals whose access ends within this many days.
    #[arg(long, default_value_t = 30)]
    expiring_days: u64,
    /// Sign the review off (an operator, with --reason): an audit entry naming the trust list
    /// version approved.
    #[arg(long)]
    approve: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

/// A registry change since the last review, from the audit log.
#[derive(Serialize)]
struct Change {
    seq: u64,
    time: String,
    op: String,
    by: String,
    reason: String,
}

/// What a review shows, and what `--json` prints.
#[derive(Serialize)]
struct ReviewDoc {
    trust_list: u64,
    last_review: Option<Review>,
    principals: Vec<Row>,
    unused: Vec<String>,
    expiring: Vec<String>,
    changes: Vec<Change>,
    /// The sign-off written by this run (`--approve`): its entry number.
    approved: Option<u64>,
}

/// Run `access review`.
pub fn review(args: ReviewArgs) -> Result<u8> {
    if args.approve && common::reason().is_none() {
        bail!(
            "'access review --approve' signs the review off for the record and needs \
             --reason (for example --reason \"Q4 2026 access review, ticket 118\")"
        );
    }
    let reader = Reader::open(&args.repo, &args.keys)?;
    let list = reader.trust_list()?;
    let records = reader.records()?;
    let now = custodian::clock::now();
    let principals = rows(&list, &last_use(&reader)?, &reader.source_names()?);
    let mut doc = ReviewDoc {
        trust_list: list.seq,
        last_review: records.iter().rev().find_map(Review::of),
        unused: unused(&principals, now, days(args.unused_days)),
        expiring: expiring(&principals, now, days(args.expiring_days)),
        principals,
        changes: Vec::new(),
        approved: None,
    };
    doc.changes = changes_since(&records, doc.last_review.as_ref());
    if args.approve {
        let Reader::Repo(repo) = &reader else {
            bail!("an auditor reads the review; an operator signs it off ('--approve')");
        };
        let mut intent = custodian::audit::Intent::write(REVIEW_OP, "");
        intent.reviewed = Some(list.seq);
        let audit = common::audit(repo, intent)?;
        audit.done("ok", None);
        doc.approved = Some(custodian::audit::store(repo)?.head(None)?.seq);
    }
    if args.json {
        common::print_json(&doc)?;
    } else {
        show(&doc);
    }
    Ok(0)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn when(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// Principals in force whose last use (or, never used, their addition) is older than `limit`.
fn unused(rows: &[Row], now: SystemTime, limit: Duration) -> Vec<String> {
    rows.iter()
        .filter(|r| r.revoked.is_none())
        .filter(|r| {
            let since = r.last_use.as_deref().unwrap_or(&r.added);
            when(since).is_some_and(|t| now.duration_since(t).unwrap_or_default() > limit)
        })
        .map(|r| {
            let last = r.last_use.as_deref().unwrap_or("never");
            format!("{} '{}' (last use {last})", r.role, r.name)
        })
        .collect()
}

/// Principals in force whose access ends within `within` (or has ended).
fn expiring(rows: &[Row], now: SystemTime, within: Duration) -> Vec<String> {
    rows.iter()
        .filter(|r| r.revoked.is_none())
        .filter_map(|r| {
            let ends = r.expires.as_deref()?;
            let soon = when(ends).is_none_or(|t| t <= now + within);
            soon.then(|| format!("{} '{}' (expires {ends})", r.role, r.name))
        })
        .collect()
}

/// Changes of the registry (access and operator-key commands) after the last review.
fn changes_since(records: &[Record], last: Option<&Review>) -> Vec<Change> {
    let after = last.map_or(0, |r| r.seq);
    records
        .iter()
        .filter(|r| r.seq > after)
        .filter_map(|r| {
            let d = r.details.as_ref()?;
            let registry = d.op.starts_with("access ") || d.op == "key add-operator";
            (registry && d.op != REVIEW_OP).then(|| Change {
                seq: r.seq,
                time: r.time.clone(),
                op: d.op.clone(),
                by: d.name.clone().unwrap_or_else(|| r.signed_by.clone()),
                reason: d.reason.clone(),
            })
        })
        .collect()
}

fn show(doc: &ReviewDoc) {
    match &doc.last_review {
        Some(r) => outln!(
            "last review: {} (entry {}, trust list version {})",
            custodian::when::show_stored(&r.time),
            r.seq,
            r.trust_seq
        ),
        None => outln!("last review: never"),
    }
    outln!("principals (trust list version {}):", doc.trust_list);
    for r in &doc.principals {
        let last = r.last_use.as_deref().unwrap_or("never");
        let state = r.revoked.as_deref().map_or("", |_| " [no longer in force]");
        outln!("  {:<9} {:<20} last use {last}{state}", r.role, r.name);
    }
    section("unused", &doc.unused);
    section("expiring", &doc.expiring);
    outln!("changes since the last review: {}", doc.changes.len());
    for c in &doc.changes {
        outln!("  #{} {} {} by {}: {}", c.seq, c.time, c.op, c.by, c.reason);
    }
    if let Some(seq) = doc.approved {
        outln!(
            "review signed off in audit entry {seq} (trust list version {})",
            doc.trust_list
        );
    }
}

fn section(title: &str, items: &[String]) {
    outln!("{title}: {}", if items.is_empty() { "none" } else { "" });
    for i in items {
        outln!("  {i}");
    }
}
