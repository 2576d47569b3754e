//! `demo`: the whole job on an embedded default, for a first look. Creates sample records under
//! `./custodian-demo`, a local repository and keys, backs up, changes records, backs up again,
//! restores the latest snapshot to a scratch directory, verifies it byte for byte, and reports.
//! Also the hidden `sample` command that the benchmark uses to generate record stores.

use super::common::human_bytes;
use anyhow::{bail, Context, Result};
use custodian::archiver::{backup, BackupOptions, Progress};
use custodian::backend::LocalBackend;
use custodian::check::{check, CheckProgress};
use custodian::crypto::keys::{identity_file_text, write_private};
use custodian::drill::{drill, DrillOptions};
use custodian::repository::{init, Credential, InitOptions, Repository};
use custodian::restorer::{restore, RestoreOptions, RestoreProgress};
use custodian::runbook::Runbook;
use custodian::sample;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const MARKER: &str = ".custodian-demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where to put everything; re-created on each run.
    #[arg(long, default_value = "custodian-demo")]
    dir: PathBuf,
    /// Size of the sample record store, e.g. 24M.
    #[arg(long, default_value = "24M", value_parser = parse_size)]
    size: u64,
}

#[derive(clap::Args)]
pub struct SampleArgs {
    /// Directory to create the store in (must not exist), or to change with --mutate.
    dir: PathBuf,
    /// Approximate size, e.g. 1536M or 2G.
    #[arg(long, default_value = "1536M", value_parser = parse_size)]
    size: u64,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Apply a day of changes to an existing store instead.
    #[arg(long)]
    mutate: bool,
}

/// `123`, `24M`, `1.5G` (binary units).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .map(|n| (n * mult as f64) as u64)
        .map_err(|_| format!("'{text}' is not a size like 24M or 1.5G"))
}

pub fn sample(args: SampleArgs) -> Result<u8> {
    if args.mutate {
        let touched = sample::mutate(&args.dir, args.seed)?;
        outln!("changed {touched} files under {}", args.dir.display());
    } else {
        if args.dir.exists() {
            bail!(
                "{} already exists; give a new directory for the sample store",
                args.dir.display()
            );
        }
        let stats = sample::generate(&args.dir, args.size, args.seed)?;
        outln!(
            "generated {} files, {} under {}",
            stats.files,
            human_bytes(stats.bytes),
            args.dir.display()
        );
    }
    Ok(0)
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).exists() && fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} exists and was not made by the demo; remove it or pass --dir elsewhere",
                dir.display()
            );
        }
        fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo at {}", dir.display()))?;
    }
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join(MARKER),
        "made by 'custodian demo'; safe to delete\n",
    )?;
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Compare two trees: same names, types, contents, modes and mtimes. Returns files compared.
fn verify_same(a: &Path, b: &Path) -> Result<u64> {
    let mut count = 0;
    let mut names: Vec<_> = fs::read_dir(a)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut other: Vec<_> = fs::read_dir(b)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    other.sort();
    if names != other {
        bail!("{} and {} hold different names", a.display(), b.display());
    }
    for name in names {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (fs::symlink_metadata(&pa)?, fs::symlink_metadata(&pb)?);
        if ma.mode() != mb.mode()
            || (!ma.is_dir() && (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()))
        {
            bail!("{} differs in mode or mtime after restore", pb.display());
        }
        if ma.is_dir() {
            count += verify_same(&pa, &pb)?;
        } else {
            if fs::read(&pa)? != fs::read(&pb)? {
                bail!("{} differs in content after restore", pb.display());
            }
            count += 1;
        }
    }
    Ok(count)
}

/// The runbook the demo drills, as shipped.
const DEMO_RUNBOOK: &str = include_str!("../../runbooks/whole-store-lost.md");

pub fn run(args: DemoArgs) -> Result<u8> {
    let dir = std::path::absolute(&args.dir)?;
    fresh_dir(&dir)?;
    let (records, repo_dir, keys, state, scratch) = (
        dir.join("records"),
        dir.join("repo"),
        dir.join("keys"),
        dir.join("state"),
        dir.join("restore"),
    );
    fs::create_dir_all(&keys)?;
    let mut timeline: Vec<(String, f64)> = Vec::new();
    let mut step = |label: &str, started: Instant| {
        timeline.push((label.to_string(), started.elapsed().as_secs_f64()))
    };

    let t = Instant::now();
    let stats = sample::generate(&records, args.size, 2026)?;
    step("create sample records", t);

    let t = Instant::now();
    let operator = age::x25519::Identity::generate();
    let operator_key = keys.join("operator.key");
    write_private(
        &operator_key,
        &identity_file_text(
            &operator,
            &humantime::format_rfc3339_seconds(custodian::clock::now()).to_string(),
        ),
    )?;
    let backend: Arc<dyn custodian::backend::Backend> = Arc::new(LocalBackend::new(&repo_dir));
    let writer_key = keys.join("writer.key");
    init(
        backend.clone(),
        InitOptions {
            operator: operator.clone(),
            recipients: Vec::new(),
            chunker: custodian::chunker::ChunkerParams {
                min: custodian::constants::CHUNK_MIN,
                avg: custodian::constants::CHUNK_AVG,
                max: custodian::constants::CHUNK_MAX,
            },
            zstd_level: custodian::constants::ZSTD_LEVEL,
            pack_target: custodian::constants::PACK_TARGET,
            created: humantime::format_rfc3339_seconds(custodian::clock::now()).to_string(),
        },
        |text| write_private(&writer_key, text),
    )?;
    step("generate keys, init repository (signed by the operator)", t);

    let writer = Arc::new(Repository::open(
        backend.clone(),
        &Credential::Writer(writer_key.clone()),
    )?);
    let opts = |time| BackupOptions {
        source: "customers".into(),
        domain: None,
        path: records.clone(),
        excludes: vec![],
        tags: vec!["demo".into()],
        host: "demo-host".into(),
        state_dir: state.clone(),
        time,
        connections: None,
        one_file_system: false,
        display_path: None,
        cancel: None,
        anomaly: Default::default(),
    };
    let t = Instant::now();
    let first = backup(
        writer.clone(),
        &opts(custodian::clock::now()),
        &Progress::default(),
    )?;
    step("first backup (writer credential)", t);

    let t = Instant::now();
    let touched = sample::mutate(&records, 7)?;
    step("change records (a day of work)", t);

    let t = Instant::now();
    let second = backup(
        writer.clone(),
        &opts(custodian::clock::now()),
        &Progress::default(),
    )?;
    step("second backup (incremental)", t);

    let t = Instant::now();
    let operator_repo = Repository::open(backend, &Credential::Operator(operator_key.clone()))?;
    let latest = operator_repo.resolve_snapshot("latest", Some("customers"))?;
    // The operator's reads leave evidence first, as every command's do.
    let audit_local = custodian::audit::Local::new(state.join("audit"));
    let read = custodian::audit::Intent::read("restore, check, drill", "demo: prove recovery")
        .source(Some("customers"))
        .snapshots([latest.id.to_hex()]);
    let begun = custodian::audit::begin(&operator_repo, &read, Some(&audit_local), None)?;
    let restored = restore(
        &operator_repo,
        &latest,
        &RestoreOptions {
            keep_special_bits: false,
            target: scratch.clone(),
            subpath: None,
            include: vec![],
            exclude: vec![],
            overwrite: false,
            dry_run: false,
        },
        &RestoreProgress::default(),
    )?;
    step("restore latest (operator identity)", t);

    let t = Instant::now();
    let compared =
        verify_same(&records, &scratch).context("verifying the restore against the records")?;
    let report = check(
        &operator_repo,
        Some(custodian::check::Subset::All),
        &CheckProgress::default(),
    )?;
    if !report.errors.is_empty() {
        bail!("check found errors: {}", report.errors.join("; "));
    }
    step("verify byte for byte + check --read-data", t);

    // The emergency plan, rehearsed: the shipped "whole store lost" runbook as a drill.
    let t = Instant::now();
    let runbook = Runbook::parse(Path::new("runbooks/whole-store-lost.md"), DEMO_RUNBOOK)?;
    let drilled = drill(
        &operator_repo,
        &runbook,
        &DrillOptions {
            scratch_parent: state.join("scratch"),
            now: custodian::clock::now(),
        },
    )?;
    let report_file = dir.join("drill-report.txt");
    fs::write(&report_file, drilled.render())?;
    if !drilled.passed {
        bail!("the drill failed:\n{}", drilled.render());
    }
    step("restore drill (runbook whole-store-lost)", t);
    custodian::audit::close(&operator_repo, &begun, "ok", None);

    let t = Instant::now();
    let store = custodian::audit::store(&operator_repo)?;
    let kept = audit_local.anchor(&operator_repo.location(), operator_repo.config.repo_id)?;
    let audited = custodian::audit::verify::verify(&store, kept.as_ref(), 2)?;
    if let Some(p) = audited.problems.first() {
        bail!("the audit log does not verify: {} {}", p.object, p.what);
    }
    step("verify the audit log (chain, signatures, checkpoints)", t);

    let repo_size = dir_size(&repo_dir);
    let logical = first.head.stats.bytes + second.head.stats.bytes;
    outln!("custodian demo: all steps passed\n");
    outln!(
        "  sample records   {} files, {} in {}",
        stats.files,
        human_bytes(stats.bytes),
        records.display()
    );
    outln!(
        "  snapshots        {} (first), {} (after {touched} files changed)",
        first.id.short(),
        second.id.short()
    );
    outln!(
        "  second backup    read {} of {} files, added {}",
        second.head.stats.files_read,
        second.head.stats.files,
        human_bytes(second.head.stats.bytes_added)
    );
    outln!(
        "  repository       {} for {} backed up: dedup+compression ratio {:.2}x",
        human_bytes(repo_size),
        human_bytes(logical),
        logical as f64 / repo_size.max(1) as f64
    );
    outln!(
        "  restore          {} files, {} verified byte for byte in {}",
        restored.files,
        compared,
        scratch.display()
    );
    outln!(
        "  check            {} packs, {} blobs read and verified, every signature checked, no errors",
        report.packs_read, report.blobs
    );
    let signed_by = operator_repo
        .list_snapshots()?
        .pop()
        .and_then(|s| s.writer)
        .unwrap_or_default();
    outln!(
        "  trust            trust list signed by {}; snapshots signed by {signed_by}",
        operator_repo
            .auth()
            .map(|a| a.list.by.as_str())
            .unwrap_or("nobody (format 1)")
    );
    outln!(
        "  audit log        {} entries chained and signed, {} checkpoint(s), verified",
        audited.entries,
        audited.checkpoints
    );
    outln!(
        "  drill            {} '{}': RTO {:.1}s of {:.0}s, RPO {}s of {}s, {} checks passed",
        if drilled.passed { "PASS" } else { "FAIL" },
        drilled.runbook,
        drilled.rto.achieved_seconds,
        drilled.rto.target_seconds,
        drilled.rpo.newest_age_seconds,
        drilled.rpo.target_seconds,
        drilled.checks.iter().filter(|c| c.passed).count()
    );
    outln!("\n  timeline");
    for (label, secs) in &timeline {
        outln!("    {secs:>7.2}s  {label}");
    }
    outln!("\n  where things are");
    outln!("    repository        {}", repo_dir.display());
    outln!("    drill report      {}", report_file.display());
    outln!(
        "    operator identity {}  (reads backups; keep offline)",
        operator_key.display()
    );
    outln!(
        "    writer credential {}  (for the server; cannot read backups)",
        writer_key.display()
    );
    outln!(
        "\n  try: custodian snapshots --repo {} --writer-key {}",
        repo_dir.display(),
        writer_key.display()
    );
    Ok(0)
}
