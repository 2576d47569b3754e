//! `backup`: one snapshot of a record store, with the writer credential alone.

use super::common::{self, human_bytes};
use super::progress::Bar;
use super::{RepoArg, EXIT_PARTIAL, EXIT_SUSPICIOUS};
use anyhow::Result;
use custodian::archiver::changes::AnomalyThresholds;
use custodian::archiver::{backup, BackupOptions, Progress};
use custodian::audit::Touched;
use custodian::config::{Config, SourceKind};
use custodian::repository::{Credential, Repository};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Writer credential (with --config: the config's writer-key-file).
    #[arg(long, env = "CUSTODIAN_WRITER_KEY")]
    writer_key: Option<PathBuf>,
    /// Name of the record store (snapshots are grouped by it). With --config: which configured
    /// source to back up (default: all of them).
    #[arg(long, required_unless_present = "config")]
    source: Option<String>,
    /// Allow a source name the repository has no snapshots of yet (and so a new key domain):
    /// without it a mistyped --source is refused with the known sources listed.
    #[arg(long)]
    new_source: bool,
    /// Key domain (default: the source name).
    #[arg(long)]
    domain: Option<String>,
    /// Glob to leave out (gitignore style: `*.tmp`, `/cache`, `cache/`). Repeatable.
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
    /// Walk the source and say what a backup would hold; write nothing.
    #[arg(long)]
    dry_run: bool,
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
    /// The record store directory (or, with --sqlite, the database file). With --config, the
    /// configured path is used.
    #[arg(required_unless_present = "config")]
    path: Option<PathBuf>,
}

/// One source to back up, from the command line or from the daemon's config.
struct Job {
    source: String,
    domain: Option<String>,
    path: PathBuf,
    excludes: Vec<String>,
    one_file_system: bool,
    sqlite: bool,
    anomaly: AnomalyThresholds,
}

/// The jobs this command runs, the writer credential and the state dir for the cache.
fn jobs(args: &BackupArgs) -> Result<(Vec<Job>, PathBuf, PathBuf)> {
    let flag_anomaly = AnomalyThresholds {
        changed_share: args.suspicious_changed_share,
        incompressible_share: args.suspicious_incompressible_share,
        ..Default::default()
    };
    let Some(file) = &args.repo.config else {
        let (Some(source), Some(path), Some(key)) = (&args.source, &args.path, &args.writer_key)
        else {
            anyhow::bail!(
                "backup needs --source NAME, the PATH to back up and --writer-key FILE (or \
                 CUSTODIAN_WRITER_KEY); or --config FILE to back up the daemon's sources"
            );
        };
        let job = Job {
            source: source.clone(),
            domain: args.domain.clone(),
            path: path.clone(),
            excludes: args.exclude.clone(),
            one_file_system: false,
            sqlite: args.sqlite,
            anomaly: flag_anomaly,
        };
        return Ok((vec![job], key.clone(), common::state_dir()));
    };
    if args.path.is_some() || args.sqlite || args.domain.is_some() {
        anyhow::bail!(
            "with --config the source's path, kind and domain come from {}: drop PATH, --sqlite \
             and --domain, or drop --config",
            file.display()
        );
    }
    let config = Config::load_form(file)?;
    let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    if let Some(want) = &args.source {
        if !known.contains(&want.as_str()) {
            anyhow::bail!(
                "{} has no source '{want}'; its sources are: {}",
                file.display(),
                known.join(", ")
            );
        }
    }
    let jobs = config
        .sources
        .iter()
        .filter(|s| args.source.as_ref().is_none_or(|w| *w == s.name))
        .map(|s| Job {
            source: s.name.clone(),
            domain: s.domain.clone(),
            path: s.path.clone(),
            excludes: s.exclude.iter().chain(&args.exclude).cloned().collect(),
            one_file_system: s.one_file_system,
            sqlite: s.kind == SourceKind::Sqlite,
            anomaly: config.anomaly,
        })
        .collect();
    let key = args
        .writer_key
        .clone()
        .unwrap_or(config.repository.writer_key_file.clone());
    Ok((jobs, key, config.repository.state_dir))
}

/// A source the repository has never seen is refused unless asked for: a typo must not make a
/// new source and key domain. The first backup into an empty repository needs no flag.
fn check_known_source(repo: &Repository, job: &Job) -> Result<()> {
    let source = job.source.as_str();
    if repo.domain_exists(job.domain.as_deref().unwrap_or(source))? {
        return Ok(());
    }
    common::known_source_or(
        &repo.list_snapshots()?,
        Some(source),
        &format!(
            " If '{source}' is a new record store, run again with --new-source (it gets its \
             own key domain); otherwise correct --source."
        ),
    )
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
    let (jobs, writer_key, state_dir) = jobs(&args)?;
    let repo = Arc::new(Repository::open(
        common::backend(&args.repo)?,
        &Credential::Writer(writer_key),
    )?);
    let single = (jobs.len() == 1).then(|| jobs[0].source.clone());
    let op = if args.dry_run {
        "backup --dry-run"
    } else {
        "backup"
    };
    let audit = common::audit(
        &repo,
        custodian::audit::Intent::write(op, "").source(single.as_deref()),
    )?;
    let mut touched = Touched::default();
    let mut worst = 0;
    for job in jobs {
        custodian::archiver::source_name_ok(&job.source)
            .map_err(|why| anyhow::anyhow!("--source '{}' {why}", job.source))?;
        if !args.new_source && args.repo.config.is_none() {
            check_known_source(&repo, &job)?;
        }
        let code = if args.dry_run {
            dry_run(&repo, &job, args.json)?
        } else {
            let (code, t) = one(&repo, &args, job, &state_dir)?;
            touched.files += t.files;
            touched.bytes += t.bytes;
            code
        };
        worst = worst.max(code);
    }
    Ok(audit.exit(worst, Some(touched)))
}

/// `--dry-run`: the walk a backup would make, with its excludes and the source's erase
/// exclusions; nothing is written.
fn dry_run(repo: &Repository, job: &Job, json: bool) -> Result<u8> {
    let erased = repo
        .exclusions(Some(&job.source))?
        .into_iter()
        .map(|(_, e)| e.pattern);
    let patterns: Vec<String> = job.excludes.iter().cloned().chain(erased).collect();
    let excludes = custodian::source::Excludes::new(&patterns)?;
    let (mut walk, _) = custodian::source::Walk::start(&job.path, &excludes, job.one_file_system)?;
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    for listing in walk.by_ref() {
        dirs += 1;
        for child in &listing.children {
            if child.node.kind == custodian::format::tree::NodeKind::File {
                files += 1;
                bytes += child.node.size;
            }
        }
    }
    if json {
        common::print_json(&serde_json::json!({
            "dry_run": true, "source": job.source, "files": files, "dirs": dirs, "bytes": bytes,
            "skipped": walk.skipped.len(),
        }))?;
    } else {
        outln!(
            "dry run: source {} would hold {files} files, {dirs} dirs, {} ({} unreadable); \
             nothing was written",
            job.source,
            human_bytes(bytes),
            walk.skipped.len()
        );
    }
    Ok(0)
}

/// One backup, with its summary and exit code.
fn one(
    repo: &Arc<Repository>,
    args: &BackupArgs,
    job: Job,
    state_dir: &Path,
) -> Result<(u8, Touched)> {
    let create_if_absent = repo.probe_create_if_absent()?;
    let path = std::path::absolute(&job.path).unwrap_or(job.path.clone());
    let runs = state_dir.join("staging-cli").join(&job.source);
    let staging = runs.join(std::process::id().to_string());
    let (path, display_path) = if job.sqlite {
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
        source: job.source,
        domain: job.domain,
        path,
        excludes: job.excludes,
        tags: args.tag.clone(),
        host: args.host.clone().unwrap_or_else(common::hostname),
        state_dir: state_dir.to_path_buf(),
        time: custodian::clock::now(),
        connections: args.connections,
        one_file_system: job.one_file_system,
        display_path,
        cancel: None,
        anomaly: job.anomaly,
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
    let outcome = backup(repo.clone(), &opts, &progress);
    drop(bar);
    if job.sqlite {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let outcome = outcome?;
    let touched = Touched {
        files: outcome.head.stats.files,
        bytes: outcome.head.stats.bytes,
    };
    Ok((report(&outcome, args.json, create_if_absent)?, touched))
}

fn report(
    outcome: &custodian::archiver::BackupOutcome,
    json: bool,
    create_if_absent: impl serde::Serialize,
) -> Result<u8> {
    let s = &outcome.head.stats;
    for skip in &outcome.skipped {
        eprintln!("warning: skipped {}: {}", skip.path.display(), skip.error);
    }
    if json {
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
            "snapshot {} of {} saved: {} files, {} dirs, {} ({} files read, {} read; {} new blobs, {} added in {} packs) in {:.2}s",
            outcome.id.short(),
            outcome.head.source,
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
