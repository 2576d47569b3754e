//! `custodian forget`, `hold`, `release` and `destruction-records`.

use super::common::{self, duration};
use super::{FilterArgs, KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::Intent;
use custodian::retention::{plan, Policy};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Which snapshots to judge (each source and host is decided on its own anyway).
    #[command(flatten)]
    filter: FilterArgs,
    /// Keep the newest N snapshots.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours (UTC) that have one.
    #[arg(long)]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days (UTC) that have one.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long)]
    keep_yearly: Option<u32>,
    /// Keep everything within this long of the newest snapshot (e.g. 30d).
    #[arg(long, value_parser = duration)]
    keep_within: Option<Duration>,
    /// The legal maximum: destroy anything older, whatever else would keep it (holds excepted).
    #[arg(long, value_parser = duration)]
    max_age: Option<Duration>,
    /// Never forget anything younger.
    #[arg(long, value_parser = duration)]
    min_age: Option<Duration>,
    /// Show the decisions, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct HoldArgs {
    /// Snapshot id prefix (or `latest` with --source).
    snapshot: String,
    /// With `latest`: whose latest snapshot (needed when the repository has several sources).
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

/// The policy per source: the flags for every source, or (with --config and no flags) each
/// configured source's own, as the daemon applies them.
/// Which policy applies to a source (none: leave it alone).
type PolicyOf = Box<dyn Fn(&str) -> Option<Policy>>;

fn policies(args: &ForgetArgs) -> Result<PolicyOf> {
    let flags = Policy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within,
        max_age: args.max_age,
        min_age: args.min_age,
    };
    if !flags.is_empty() {
        flags.validate().map_err(anyhow::Error::msg)?;
        return Ok(Box::new(move |_| Some(flags.clone())));
    }
    if args.repo.config.is_none() {
        anyhow::bail!("forget needs a policy: give at least one --keep-* option or --max-age, or --config FILE for the daemon's (use --dry-run to see the decisions first)");
    }
    let config = common::daemon_config(&args.repo)?;
    let by_source: BTreeMap<String, Policy> = config
        .sources
        .into_iter()
        .filter(|s| !s.retention.is_empty())
        .map(|s| (s.name, s.retention))
        .collect();
    Ok(Box::new(move |source| by_source.get(source).cloned()))
}

pub fn forget(args: ForgetArgs) -> Result<u8> {
    let policy_of = policies(&args)?;
    let repo = common::open(&args.repo, &args.keys, "forget")?;
    let op = if args.dry_run {
        "forget --dry-run"
    } else {
        "forget"
    };
    let audit = common::audit(
        &repo,
        Intent::write(op, "").source(args.filter.source.as_deref()),
    )?;
    let holds = repo.holds()?;
    let now = custodian::clock::now();
    let all = repo.list_snapshots()?;
    let filter = args.filter.filter();
    common::known_source(&all, filter.source)?;
    let mut report = Vec::new();
    let mut doomed = Vec::new();
    for ((source, host), snaps) in
        custodian::retention::groups(all.iter().filter(|s| filter.matches(s)))
    {
        let Some(policy) = policy_of(&source) else {
            continue;
        };
        let (decisions, forget) = plan(&snaps, &holds, &policy, now);
        doomed.extend(forget);
        for (snap, d) in snaps.iter().zip(decisions) {
            report.push(serde_json::json!({
                "id": snap.id.to_hex(), "short_id": snap.id.short(), "source": source,
                "host": host, "time": snap.head.time, "keep": d.keep, "reasons": d.reasons,
            }));
        }
    }
    let record = if args.dry_run || doomed.is_empty() {
        None
    } else {
        Some(repo.forget(&doomed, &common::state_dir().join("destruction"))?)
    };
    audit.done("ok", None);
    if args.json {
        common::print_json(&serde_json::json!({
            "dry_run": args.dry_run, "snapshots": report, "forgotten": doomed.len(),
            "destruction_record": record,
        }))?;
        return Ok(0);
    }
    for r in &report {
        outln!(
            "{} {:<10} {:<14} {}  {}",
            if r["keep"] == true {
                "keep  "
            } else {
                "remove"
            },
            r["short_id"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or(""),
            custodian::when::show_stored(r["time"].as_str().unwrap_or("")),
            r["reasons"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
    }
    match (&record, args.dry_run) {
        (_, true) => outln!("dry run: {} snapshot(s) would be forgotten", doomed.len()),
        (Some(r), _) => outln!(
            "forgot {} snapshot(s); destruction record written (data stays until 'custodian prune'): {}",
            r.snapshots.len(),
            r.time
        ),
        (None, _) => outln!("nothing to forget"),
    }
    Ok(0)
}

pub fn hold(args: HoldArgs) -> Result<u8> {
    let repo = common::open(&args.repo, &args.keys, "hold")?;
    let snap = repo.resolve_snapshot(&args.snapshot, args.source.as_deref())?;
    let reason = common::reason().unwrap_or_else(|| "held by hand".into());
    let audit = common::audit(&repo, snap_intent("hold", &snap))?;
    let held = repo.hold(&snap.id, &reason)?;
    audit.done("ok", None);
    if held {
        outln!("snapshot {} is held: {reason}", snap.id.short());
    } else {
        outln!("snapshot {} was already held", snap.id.short());
    }
    Ok(0)
}

pub fn release(args: HoldArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "releasing a hold")?;
    let snap = repo.resolve_snapshot(&args.snapshot, args.source.as_deref())?;
    let audit = common::audit(&repo, snap_intent("release", &snap))?;
    let released = repo.release(&snap.id)?;
    audit.done("ok", None);
    if released {
        outln!("snapshot {} is no longer held", snap.id.short());
    } else {
        outln!(
            "snapshot {} was not held; nothing to release",
            snap.id.short()
        );
    }
    Ok(0)
}

pub fn records(args: super::ReadArgs) -> Result<u8> {
    let repo = common::open(&args.repo, &args.keys, "listing destruction records")?;
    let records = repo.destruction_records()?;
    if args.json {
        common::print_json(&records)?;
        return Ok(0);
    }
    for r in &records {
        outln!(
            "{}  {:<8} by {}: {} snapshot(s) covering {} .. {}, {} object(s), {} bytes",
            r.time,
            r.action,
            r.by,
            r.snapshots.len(),
            r.data_from.as_deref().unwrap_or("-"),
            r.data_to.as_deref().unwrap_or("-"),
            r.objects_deleted,
            r.bytes_deleted
        );
        for s in &r.snapshots {
            outln!(
                "    {} {} {} ({})",
                custodian::id::short_text(&s.id),
                s.source,
                custodian::when::show_stored(&s.time),
                s.reason
            );
        }
    }
    outln!("{} destruction record(s)", records.len());
    Ok(0)
}

/// The audit entry of a command about one snapshot.
fn snap_intent(op: &str, snap: &custodian::repository::SnapshotInfo) -> Intent {
    Intent::write(op, "")
        .source(Some(&snap.head.source))
        .snapshots([snap.id.to_hex()])
}
