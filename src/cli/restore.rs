//! `restore SNAPSHOT[:PATH] --target DIR`.

use super::common::{self, human_bytes};
use super::progress::Bar;
use super::{FilterArgs, KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::{Intent, Touched};
use custodian::repository::SnapshotSelector;
use custodian::restorer::{restore, RestoreOptions, RestoreProgress};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Snapshot id prefix or `latest`, optionally with `:sub/path` inside it.
    snapshot: String,
    /// Directory to restore into (created if missing; must be empty unless --overwrite).
    #[arg(long)]
    target: PathBuf,
    /// Replace files in a non-empty target.
    #[arg(long)]
    overwrite: bool,
    /// Only paths matching this glob (relative to the restored root). Repeatable.
    #[arg(long)]
    include: Vec<String>,
    /// Leave out what matches (gitignore style, as backup's --exclude), with everything
    /// below it. Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Say what would be restored and whether the target takes it; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep setuid, setgid and sticky bits. Off by default: a snapshot is only as trustworthy as
    /// every key that could write one, and a setuid file restored as root is a way in.
    #[arg(long)]
    keep_special_bits: bool,
    /// Which snapshot `latest` means.
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(args: RestoreArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "restore")?;
    let (spec, sub) = match args.snapshot.split_once(':') {
        Some((s, p)) => (s, Some(PathBuf::from(p.trim_start_matches('/')))),
        None => (args.snapshot.as_str(), None),
    };
    let snap = repo.find_snapshot(&SnapshotSelector::parse_filtered(
        spec,
        args.filter.filter(),
    ))?;
    let audit = common::audit(
        &repo,
        Intent::read(
            if args.dry_run {
                "restore --dry-run"
            } else {
                "restore"
            },
            "",
        )
        .source(Some(&snap.head.source))
        .snapshots([snap.id.to_hex()]),
    )?;
    let progress = Arc::new(RestoreProgress::default());
    let bar = {
        let p = progress.clone();
        Bar::start(common::interactive(args.json), "restore", true, move || {
            (
                p.bytes_done.load(Ordering::Relaxed),
                p.bytes_total.load(Ordering::Relaxed),
            )
        })
    };
    let started = Instant::now();
    let opts = RestoreOptions {
        target: args.target.clone(),
        subpath: sub,
        include: args.include,
        exclude: args.exclude,
        overwrite: args.overwrite,
        dry_run: args.dry_run,
        keep_special_bits: args.keep_special_bits,
    };
    let summary = restore(&repo, &snap, &opts, &progress)?;
    drop(bar);
    audit.done(
        "ok",
        Some(Touched {
            files: summary.files,
            bytes: summary.bytes,
        }),
    );
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        common::print_json(
            &serde_json::json!({"snapshot": snap.id.to_hex(), "dry_run": args.dry_run, "target": args.target, "summary": summary, "seconds": secs, "requests": common::requests()}),
        )?;
    } else {
        let (verb, tail) = if args.dry_run {
            (
                "dry run: would restore",
                "; nothing was written".to_string(),
            )
        } else {
            (
                "restored",
                format!(
                    " from {} packs in {secs:.2}s (every blob verified)",
                    summary.packs
                ),
            )
        };
        outln!(
            "{verb} snapshot {} to {}: {} files, {} dirs, {} links, {}{tail}",
            snap.id.short(),
            args.target.display(),
            summary.files,
            summary.dirs,
            summary.links,
            human_bytes(summary.bytes),
        );
    }
    Ok(0)
}
