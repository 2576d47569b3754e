//! `backup`: one snapshot of a record store, with the writer credential alone.

use super::common::{self, human_bytes};
use super::progress::Bar;
use super::{RepoArg, EXIT_PARTIAL, EXIT_SUSPICIOUS};
use anyhow::Result;
use custodian::archiver::changes::AnomalyThresholds;
use custodian::archiver::{backup, BackupOptions, Progress};
use custodian::repository::{Credential, Repository};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Writer credential.
    #[arg(long, env = "CUSTODIAN_WRITER_KEY")]
    writer_key: PathBuf,
    /// Name of the record store (snapshots are grouped by it).
    #[arg(long)]
    source: String,
    /// Key domain (default: the source name).
    #[arg(long)]
    domain: Option<String>,
    /// Glob to leave out; without '/' it matches names anywhere. Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Label for the snapshot. Repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// Host name recorded in the snapshot.
    #[arg(long)]
    host: Option<String>,
    /// Parallel uploads (default: 1 on local disk, 4 on S3). Each holds one pack (~17 MiB).
    #[arg(long)]
    connections: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Flag the snapshot suspicious (ransomware) when this share of known files changed…
    #[arg(long, default_value_t = AnomalyThresholds::default().changed_share)]
    suspicious_changed_share: f64,
    /// …and this share of the changed bytes turned incompressible.
    #[arg(long, default_value_t = AnomalyThresholds::default().incompressible_share)]
    suspicious_incompressible_share: f64,
    /// PATH is a live SQLite database: copy it consistently with SQLite's online backup API
    /// first (as the daemon does for `kind = "sqlite"`), so the application may keep writing.
    #[arg(long)]
    sqlite: bool,
    /// The record store directory (or, with --sqlite, the database file).
    path: PathBuf,
}

/// Remove the staging copies that killed `backup --sqlite` runs of this source left (under
/// `staging-cli/<source>/<pid>`, apart from the daemon's, the pid no longer running): they hold
/// customer data.
fn remove_dead_staging(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let pid = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn run(args: BackupArgs) -> Result<u8> {
    let repo = Arc::new(Repository::open(
        common::backend(&args.repo)?,
        &Credential::Writer(args.writer_key.clone()),
    )?);
    let create_if_absent = repo.probe_create_if_absent()?;
    let path = std::path::absolute(&args.path).unwrap_or(args.path.clone());
    let state_dir = common::state_dir();
    custodian::archiver::source_name_ok(&args.source)
        .map_err(|why| anyhow::anyhow!("--source '{}' {why}", args.source))?;
    let runs = state_dir.join("staging-cli").join(&args.source);
    let staging = runs.join(std::process::id().to_string());
    let (path, display_path) = if args.sqlite {
        remove_dead_staging(&runs);
        if let Err(e) = custodian::source::sqlite::capture(&path, &staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.into());
        }
        (staging.clone(), Some(path))
    } else {
        (path, None)
    };
    let opts = BackupOptions {
        source: args.source,
        domain: args.domain,
        path,
        excludes: args.exclude,
        tags: args.tag,
        host: args.host.unwrap_or_else(common::hostname),
        state_dir,
        time: custodian::clock::now(),
        connections: args.connections,
        one_file_system: false,
        display_path,
        cancel: None,
        anomaly: AnomalyThresholds {
            changed_share: args.suspicious_changed_share,
            incompressible_share: args.suspicious_incompressible_share,
            ..Default::default()
        },
    };
    let progress = Arc::new(Progress::default());
    let bar = {
        let p = progress.clone();
        Bar::start(common::interactive(args.json), "backup", true, move || {
            (
                p.bytes_done.load(Ordering::Relaxed),
                p.bytes_total.load(Ordering::Relaxed),
            )
        })
    };
    let outcome = backup(repo, &opts, &progress);
    drop(bar);
    if args.sqlite {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let outcome = outcome?;
    let s = &outcome.head.stats;
    for skip in &outcome.skipped {
        eprintln!("warning: skipped {}: {}", skip.path.display(), skip.error);
    }
    if args.json {
        common::print_json(&serde_json::json!({
            "id": outcome.id.to_hex(),
            "short_id": outcome.id.short(),
            "source": outcome.head.source,
            "time": outcome.head.time,
            "stats": s,
            "requests": common::requests(),
            "create_if_absent": create_if_absent,
            "changes": outcome.head.changes,
            "skipped": outcome.skipped.iter().map(|e| serde_json::json!({"path": e.path, "error": e.error})).collect::<Vec<_>>(),
        }))?;
    } else {
        outln!(
            "snapshot {} saved: {} files, {} dirs, {} ({} files read, {} read; {} new blobs, {} added in {} packs) in {:.2}s",
            outcome.id.short(),
            s.files,
            s.dirs,
            human_bytes(s.bytes),
            s.files_read,
            human_bytes(s.bytes_read),
            s.blobs_added,
            human_bytes(s.bytes_added),
            s.packs_added,
            s.duration_ms as f64 / 1000.0
        );
    }
    if let Some(c) = outcome.head.changes.as_ref().filter(|c| c.suspicious) {
        eprintln!(
            "warning: snapshot {} looks like ransomware or mass damage ({}). It was saved and \
             the previous one is kept; check the store before trusting it, and restore from an \
             earlier snapshot if the change was not wanted (exit code {EXIT_SUSPICIOUS}).",
            outcome.id.short(),
            c.reasons.join("; ")
        );
        return Ok(EXIT_SUSPICIOUS);
    }
    if outcome.skipped.is_empty() {
        Ok(0)
    } else {
        eprintln!("{} entries were skipped; the snapshot was saved without them (exit code {EXIT_PARTIAL}).", outcome.skipped.len());
        Ok(EXIT_PARTIAL)
    }
}
