//! `restore SNAPSHOT[:PATH] --target DIR`.

use super::common::{self, human_bytes};
use super::progress::Bar;
use super::{KeyArgs, RepoArg};
use anyhow::Result;
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
    /// Keep setuid, setgid and sticky bits. Off by default: a snapshot is only as trustworthy as
    /// every key that could write one, and a setuid file restored as root is a way in.
    #[arg(long)]
    keep_special_bits: bool,
    /// Source, for `latest`.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: RestoreArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "restore")?;
    let (spec, sub) = match args.snapshot.split_once(':') {
        Some((s, p)) => (s, Some(PathBuf::from(p.trim_start_matches('/')))),
        None => (args.snapshot.as_str(), None),
    };
    let snap = repo.resolve_snapshot(spec, args.source.as_deref())?;
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
        overwrite: args.overwrite,
        keep_special_bits: args.keep_special_bits,
    };
    let summary = restore(&repo, &snap, &opts, &progress)?;
    drop(bar);
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        common::print_json(
            &serde_json::json!({"snapshot": snap.id.to_hex(), "target": args.target, "summary": summary, "seconds": secs, "requests": common::requests()}),
        )?;
    } else {
        outln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} links, {} from {} packs in {secs:.2}s (every blob verified)",
            snap.id.short(),
            args.target.display(),
            summary.files,
            summary.dirs,
            summary.links,
            human_bytes(summary.bytes),
            summary.packs
        );
    }
    Ok(0)
}
