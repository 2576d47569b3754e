//! `custodian prune` and `custodian erase`.

use super::common::{self, duration, human_bytes};
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::Intent;
use custodian::prune::{self, PruneOptions, PruneReport, Rules};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// How long packs wait between being marked and being deleted, and how old a pack must be
    /// to be marked. Longer than your longest backup. `0s` deletes at once: only when no
    /// backup is running.
    #[arg(long, value_parser = duration, default_value = "6h")]
    grace: Duration,
    /// Unused space tolerated in partly used packs before they are repacked (restic's
    /// --max-unused). `0` repacks every partly used pack (after an erase).
    #[arg(long, value_parser = prune::parse_percent, default_value = "5%")]
    max_unused: f64,
    /// Show what would be marked, copied and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take over the prune lease of a prune on another host that crashed (its lease would
    /// otherwise block prunes until it expires). Needs --confirm-host; a record is kept.
    #[arg(long)]
    break_lease: bool,
    /// The host holding the lease, as the refusal message names it.
    #[arg(long, requires = "break_lease")]
    confirm_host: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn prune(args: PruneArgs) -> Result<u8> {
    let repo = Arc::new(common::open(&args.repo, &args.keys, "prune")?);
    let opts = PruneOptions {
        rules: Rules {
            grace: args.grace,
            max_unused: args.max_unused,
        },
        dry_run: args.dry_run,
        local_dir: common::state_dir().join("destruction"),
        break_lease: match (args.break_lease, args.confirm_host) {
            (false, _) => None,
            (true, Some(host)) => Some(prune::lease::BreakLease {
                host,
                record_dir: common::state_dir().join("lease-breaks"),
            }),
            (true, None) => anyhow::bail!(
                "--break-lease takes over a lease another prune holds: confirm by naming the \
                 holder's host with --confirm-host HOST (the host the refusal message names), \
                 and only when that prune is known to be gone"
            ),
        },
    };
    let op = if args.dry_run {
        "prune --dry-run"
    } else {
        "prune"
    };
    let audit = common::audit(&repo, Intent::write(op, ""))?;
    let report = prune::prune(&repo, &opts)?;
    audit.done("ok", None);
    if args.json {
        common::print_json(&report)?;
    } else {
        print_report(&report, args.grace.is_zero());
    }
    Ok(0)
}

fn print_report(r: &PruneReport, no_grace: bool) {
    outln!(
        "{} snapshot(s) reference {} blob(s) in {} pack(s), {}",
        r.snapshots,
        r.referenced_blobs,
        r.packs,
        human_bytes(r.pack_bytes)
    );
    let would = if r.dry_run { "would " } else { "" };
    for p in &r.passes {
        if !p.finish_markers.is_empty() {
            outln!(
                "{would}finish {} marker(s) past their grace period: delete {} pack(s), {}",
                p.finish_markers.len(),
                p.delete.len(),
                human_bytes(p.delete_bytes)
            );
        }
        if p.copy_blobs > 0 {
            outln!(
                "{would}copy {} live blob(s), {}, out of packs that go",
                p.copy_blobs,
                human_bytes(p.copy_bytes)
            );
        }
        if !p.mark_unused.is_empty() || !p.mark_repack.is_empty() {
            // With no grace period a real run deletes what it marks in the same run.
            let when = if no_grace {
                "and delete them in this same run (--grace 0s)"
            } else {
                "for deletion after the grace period"
            };
            outln!(
                "{would}mark {} unused pack(s) ({}) and {} partly used pack(s) ({}) {when}",
                p.mark_unused.len(),
                human_bytes(p.mark_unused_bytes),
                p.mark_repack.len(),
                human_bytes(p.mark_repack_bytes)
            );
        }
        if p.waiting_markers > 0 || p.young_packs > 0 {
            outln!(
                "waiting: {} marker(s) in their grace period, {} pack(s) too young to judge",
                p.waiting_markers,
                p.young_packs
            );
        }
    }
    if r.dry_run {
        outln!("dry run: nothing changed");
    } else if r.deleted_packs > 0 {
        outln!(
            "deleted {} pack(s), {}; destruction record written: {}",
            r.deleted_packs,
            human_bytes(r.deleted_bytes),
            r.record.as_deref().unwrap_or("-")
        );
    } else {
        outln!("nothing deleted this run");
    }
    if r.leftovers_removed > 0 {
        outln!(
            "removed {} temporary file(s) that killed writers left",
            r.leftovers_removed
        );
    }
    print_when(r, no_grace);
}

/// When the space still waiting comes back, so nobody runs prune again and again in vain.
fn print_when(r: &PruneReport, no_grace: bool) {
    let Some(last) = r.passes.last() else {
        return;
    };
    let Some(at) = last.eligible_at.as_deref() else {
        if last.young_packs > 0 && r.deleted_packs == 0 {
            outln!(
                "{} pack(s) in use or written within the grace period were left alone",
                last.young_packs
            );
        }
        return;
    };
    if no_grace && !r.dry_run {
        return;
    }
    outln!(
        "{} pack(s) ({}) become eligible for deletion at {}; run prune again after that, or \
         use --grace 0s if no backup is running",
        last.waiting_packs,
        human_bytes(last.waiting_bytes),
        custodian::when::show_stored(at)
    );
}

#[derive(clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// The source whose snapshots are rewritten (every one of them).
    #[arg(long)]
    source: String,
    /// What to erase: a glob; without `/` it matches a name anywhere (`*.scan`), with `/` a
    /// path from the source root (`clients/acme/**` or `clients/acme`).
    #[arg(long)]
    path: String,
    /// Show which snapshots would be rewritten, how many files go, and which hold would block
    /// the real run; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub fn erase(args: EraseArgs) -> Result<u8> {
    let repo = Arc::new(common::open_operator(
        &args.repo,
        &args.keys,
        "erasing files from snapshots",
    )?);
    let opts = custodian::erase::EraseOptions {
        source: args.source.clone(),
        pattern: args.path.clone(),
        dry_run: args.dry_run,
        local_dir: common::state_dir().join("destruction"),
    };
    let op = if args.dry_run {
        "erase --dry-run"
    } else {
        "erase"
    };
    let audit = common::audit(&repo, Intent::write(op, "").source(Some(&args.source)))?;
    let report = custodian::erase::erase(&repo, &opts)?;
    let files = report.files_removed as u64;
    audit.done("ok", Some(custodian::audit::Touched { files, bytes: 0 }));
    if args.json {
        common::print_json(&report)?;
        return Ok(0);
    }
    for s in &report.snapshots {
        outln!(
            "{} {}  {} file(s) removed{}",
            custodian::id::short_text(&s.old),
            custodian::when::show_stored(&s.time),
            s.files_removed,
            s.new
                .as_deref()
                .map(|n| format!(" -> {}", custodian::id::short_text(n)))
                .unwrap_or_default()
        );
    }
    if report.snapshots.is_empty() {
        outln!(
            "nothing matches '{}' in the {} snapshot(s) of source {}",
            args.path,
            report.unchanged,
            args.source
        );
    } else if report.dry_run {
        outln!(
            "dry run: {} snapshot(s) would be rewritten, {} file(s) removed; nothing changed",
            report.snapshots.len(),
            report.files_removed
        );
        if !report.held.is_empty() {
            outln!(
                "the real run would be refused: held snapshot(s) {} (a hold outranks erasure; \
                 release it first with 'custodian release ID')",
                report.held.join(", ")
            );
        }
    } else {
        outln!(
            "rewrote {} snapshot(s) without {} file(s); the old heads are deleted and a destruction record is written.\n\
             The data goes with the next prunes: 'custodian prune --max-unused 0' marks it, and the same command after the grace period deletes it.",
            report.snapshots.len(),
            report.files_removed
        );
        outln!(
            "The record store itself still holds the files: delete them there if they must go. \
             Until then every backup of {} leaves '{}' out (exclusion {}; 'custodian exclusions' \
             lists them, and only an operator removes one).",
            args.source,
            args.path,
            report
                .exclusion
                .as_deref()
                .map(|e| custodian::id::short_text(e.trim_start_matches("exclusions/")))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct ExclusionsArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Only this source's.
    #[arg(long)]
    source: Option<String>,
    /// Remove this exclusion (id prefix; operator identity): later backups store those paths
    /// again.
    #[arg(long, value_name = "ID")]
    remove: Option<String>,
    #[arg(long)]
    json: bool,
}

/// `custodian exclusions`: the paths erases keep out of later backups.
pub fn exclusions(args: ExclusionsArgs) -> Result<u8> {
    if let Some(id) = &args.remove {
        let repo = common::open_operator(&args.repo, &args.keys, "removing an erase exclusion")?;
        let audit = common::audit(&repo, Intent::write("exclusions --remove", ""))?;
        let removed = repo.remove_exclusion(id)?;
        audit.done("ok", None);
        match removed {
            Some(gone) => outln!(
                "exclusion of '{}' from source {} removed: its next backup stores those paths again",
                gone.pattern,
                gone.source
            ),
            None => outln!("exclusion {id} is not there (already removed); nothing to do"),
        }
        return Ok(0);
    }
    let repo = common::open(&args.repo, &args.keys, "listing erase exclusions")?;
    let list = repo.exclusions(args.source.as_deref())?;
    if args.json {
        let out: Vec<_> = list
            .iter()
            .map(|(name, e)| {
                serde_json::json!({
                    "id": name.trim_start_matches("exclusions/"), "source": e.source,
                    "pattern": e.pattern, "time": e.time, "by": e.by,
                })
            })
            .collect();
        common::print_json(&out)?;
        return Ok(0);
    }
    for (name, e) in &list {
        outln!(
            "{}  {:<14} {}  by {}  {}",
            custodian::id::short_text(name.trim_start_matches("exclusions/")),
            e.source,
            custodian::when::show_stored(&e.time),
            e.by,
            e.pattern
        );
    }
    outln!("{} exclusion(s)", list.len());
    Ok(0)
}
