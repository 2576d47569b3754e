//! `custodian prune` and `custodian erase`.

use super::common::{self, human_bytes};
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::prune::{self, PruneOptions, PruneReport, Rules};
use std::sync::Arc;
use std::time::Duration;

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 6h, 30m or 0s"))
}

fn percent(text: &str) -> Result<f64, String> {
    let n: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{text}' is not a percentage; write e.g. 5% or 0"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("{text} is outside 0..100%"));
    }
    Ok(n / 100.0)
}

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
    #[arg(long, value_parser = percent, default_value = "5%")]
    max_unused: f64,
    /// Show what would be marked, copied and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
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
    };
    let report = prune::prune(&repo, &opts)?;
    if args.json {
        common::print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(0)
}

fn print_report(r: &PruneReport) {
    println!(
        "{} snapshot(s) reference {} blob(s) in {} pack(s), {}",
        r.snapshots,
        r.referenced_blobs,
        r.packs,
        human_bytes(r.pack_bytes)
    );
    let would = if r.dry_run { "would " } else { "" };
    for p in &r.passes {
        if !p.finish_markers.is_empty() {
            println!(
                "{would}finish {} marker(s) past their grace period: delete {} pack(s), {}",
                p.finish_markers.len(),
                p.delete.len(),
                human_bytes(p.delete_bytes)
            );
        }
        if p.copy_blobs > 0 {
            println!(
                "{would}copy {} live blob(s), {}, out of packs that go",
                p.copy_blobs,
                human_bytes(p.copy_bytes)
            );
        }
        if !p.mark_unused.is_empty() || !p.mark_repack.is_empty() {
            println!(
                "{would}mark {} unused pack(s) ({}) and {} partly used pack(s) ({}) for deletion after the grace period",
                p.mark_unused.len(),
                human_bytes(p.mark_unused_bytes),
                p.mark_repack.len(),
                human_bytes(p.mark_repack_bytes)
            );
        }
        if p.waiting_markers > 0 || p.young_packs > 0 {
            println!(
                "waiting: {} marker(s) in their grace period, {} pack(s) too young to judge",
                p.waiting_markers, p.young_packs
            );
        }
    }
    if r.dry_run {
        println!("dry run: nothing changed");
    } else if r.deleted_packs > 0 {
        println!(
            "deleted {} pack(s), {}; destruction record written: {}",
            r.deleted_packs,
            human_bytes(r.deleted_bytes),
            r.record.as_deref().unwrap_or("-")
        );
    } else {
        println!("nothing deleted this run");
    }
}
