//! Restore drills: run a runbook's front matter against the repository and prove that recovery
//! works within the promised RTO and RPO. A drill selects a snapshot per source, restores it into
//! a private scratch directory, runs the checks, measures RTO and RPO, removes the restored
//! customer data, and returns a report (see [`report`]).
//!
//! Outcomes: `Ok(report)` with `report.passed` true or false (exit 0 or 1); `Err` when the drill
//! could not run at all (no snapshot, no key: exit 2).

pub mod checks;
pub mod report;

pub use report::DrillReport;

use crate::error::{Error, Result};
use crate::format::tree::NodeKind;
use crate::fsutil::private_dir;
use crate::repository::{BlobReader, Repository, SnapshotInfo};
use crate::restorer::{plan, restore, RestoreOptions, RestoreProgress, Selection};
use crate::runbook::{Runbook, Select};
use checks::{timed, CheckResult};
use report::{RpoResult, SourceResult, Step};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where a drill may put its scratch directory, and the drill's clock.
pub struct DrillOptions {
    /// A private directory (mode 0700) is made inside it and removed afterwards.
    pub scratch_parent: PathBuf,
    pub now: SystemTime,
}

/// Run one runbook's drill.
pub fn drill(repo: &Repository, rb: &Runbook, opts: &DrillOptions) -> Result<DrillReport> {
    repo.require_operator("a restore drill")?;
    let all = repo.list_snapshots()?;
    let mut report = DrillReport::new(rb, opts.now);
    // Select first: without a snapshot for every source there is nothing to drill.
    let mut selected = Vec::new();
    for source in &rb.sources {
        let started = Instant::now();
        let of_source: Vec<&SnapshotInfo> =
            all.iter().filter(|s| &s.head.source == source).collect();
        let (snap, how) = select(&of_source, &rb.select, opts.now).ok_or_else(|| {
            Error::Usage(format!(
                "runbook '{}': no snapshot of source '{source}' matches select = \"{}\"; back it up first",
                rb.id, rb.select
            ))
        })?;
        repo.require_granted(&snap.head.domain)?;
        report
            .steps
            .push(Step::new(format!("select {source}"), started));
        report.rpo.merge(rpo_of(&of_source, snap, rb, opts.now));
        selected.push((source.clone(), snap.clone(), how));
    }
    let scratch = opts.scratch_parent.join(format!(
        "drill-{}-{}",
        rb.id,
        hex::encode(rand::random::<[u8; 6]>())
    ));
    private_dir(&scratch)?;
    let result = restore_and_check(repo, rb, &selected, &scratch, &mut report);
    // The restored customer data never outlives the drill.
    let removed = std::fs::remove_dir_all(&scratch);
    result?;
    if let Err(e) = removed {
        report.fail(format!(
            "the scratch directory {} could not be removed: {e}",
            scratch.display()
        ));
    }
    report.rto.achieved_seconds = report
        .steps
        .iter()
        .filter(|s| s.name.starts_with("restore") || s.name.starts_with("check"))
        .map(|s| s.seconds)
        .sum();
    report.rto.passed = report.rto.achieved_seconds <= report.rto.target_seconds;
    if !report.rto.passed {
        report.fail(format!(
            "RTO missed: restore and checks took {:.1}s, the target is {:.1}s",
            report.rto.achieved_seconds, report.rto.target_seconds
        ));
    }
    if !report.rpo.passed {
        report.fail(format!(
            "RPO missed: newest snapshot {}s old, worst gap {}s, the target is {}s",
            report.rpo.newest_age_seconds, report.rpo.worst_gap_seconds, report.rpo.target_seconds
        ));
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("check {} failed: {}", c.name, c.evidence))
        .collect();
    for reason in failed {
        report.fail(reason);
    }
    Ok(report)
}

/// Pick the snapshot the runbook asks for; returns it and how it was chosen.
pub fn select<'a>(
    snaps: &[&'a SnapshotInfo],
    how: &Select,
    now: SystemTime,
) -> Option<(&'a SnapshotInfo, String)> {
    match how {
        Select::Latest => snaps.last().map(|s| (*s, "latest".into())),
        Select::LatestBefore(t) => snaps
            .iter()
            .rev()
            .find(|s| s.time < *t)
            .map(|s| (*s, format!("latest before {}", crate::when::rfc3339(*t)))),
        Select::LatestBeforeSuspicious => {
            // The snapshot just before the most recent flagged one: later snapshots hold the
            // encrypted files too, even when they changed too little to be flagged themselves.
            let suspicious =
                |s: &SnapshotInfo| s.head.changes.as_ref().is_some_and(|c| c.suspicious);
            match snaps.iter().rposition(|s| suspicious(s)) {
                None => snaps
                    .last()
                    .map(|s| (*s, "latest (no snapshot is flagged suspicious)".into())),
                Some(0) => None,
                Some(i) => Some((
                    snaps[i - 1],
                    format!("latest before suspicious snapshot {}", snaps[i].id.short()),
                )),
            }
        }
        Select::RandomWithin(days) => {
            let since = now - Duration::from_secs(u64::from(*days) * 86_400);
            let recent: Vec<_> = snaps.iter().filter(|s| s.time >= since).collect();
            if recent.is_empty() {
                return None;
            }
            let pick = recent[rand::random::<usize>() % recent.len()];
            Some((*pick, format!("random within {days} days")))
        }
    }
}

/// RPO facts for one source: the newest snapshot's age and the worst gap in the window.
fn rpo_of(
    snaps: &[&SnapshotInfo],
    selected: &SnapshotInfo,
    rb: &Runbook,
    now: SystemTime,
) -> RpoResult {
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
    let since = now
        .checked_sub(rb.rpo_window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let window: Vec<SystemTime> = snaps
        .iter()
        .map(|s| s.time)
        .filter(|t| *t >= since)
        .collect();
    let worst_gap = window
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default().as_secs())
        .max()
        .unwrap_or(0);
    let newest = snaps.last().map_or(u64::MAX, |s| age(s.time));
    let target = rb.rpo.as_secs();
    RpoResult {
        target_seconds: target,
        newest_age_seconds: newest,
        selected_age_seconds: age(selected.time),
        worst_gap_seconds: worst_gap,
        window_seconds: rb.rpo_window.as_secs(),
        passed: newest <= target && worst_gap <= target,
    }
}

fn restore_and_check(
    repo: &Repository,
    rb: &Runbook,
    selected: &[(String, SnapshotInfo, String)],
    scratch: &Path,
    report: &mut DrillReport,
) -> Result<()> {
    let index = repo.load_index()?;
    let reader = BlobReader::new(repo, &index);
    for (i, (source, snap, how)) in selected.iter().enumerate() {
        let target = scratch.join(source);
        let started = Instant::now();
        let mut restored = Vec::new();
        let scopes: Vec<Option<PathBuf>> = if rb.scope.is_empty() {
            vec![None]
        } else {
            rb.scope
                .iter()
                .map(|p| Some(PathBuf::from(p.trim_matches('/'))))
                .collect()
        };
        let mut restore_error = None;
        for scope in &scopes {
            match restore_scope(repo, &reader, snap, scope.as_deref(), &target) {
                Ok(r) => restored.push(r),
                Err(e) => {
                    restore_error = Some(e);
                    break;
                }
            }
        }
        report
            .steps
            .push(Step::new(format!("restore {source}"), started));
        let (files, bytes) = restored
            .iter()
            .flat_map(|(_, p)| &p.entries)
            .filter(|e| e.node.kind == NodeKind::File)
            .fold((0, 0), |(f, b), e| (f + 1, b + e.node.size));
        report.sources.push(SourceResult {
            source: source.clone(),
            domain: Some(snap.head.domain.clone()),
            snapshot: snap.id.to_hex(),
            snapshot_time: snap.head.time.clone(),
            selected_by: how.clone(),
            files,
            bytes,
        });
        if let Some(e) = restore_error {
            report.checks.push(CheckResult {
                name: format!("restore {source}"),
                passed: false,
                evidence: e.to_string(),
                seconds: started.elapsed().as_secs_f64(),
            });
            continue;
        }
        let checks_started = Instant::now();
        let domain = reader.domain(&snap.head.domain)?;
        for (root, plan) in &restored {
            report.checks.push(timed(format!("manifest {source}"), || {
                checks::manifest(root, plan, &domain)
            }));
        }
        // The runbook's own checks apply to its first source, from the snapshot's root.
        if i > 0 {
            report
                .steps
                .push(Step::new(format!("checks {source}"), checks_started));
            continue;
        }
        let restored_plan = &restored[0].1;
        let c = &rb.checks;
        if let Some(f) = &c.files {
            report.checks.push(timed("files".into(), || {
                checks::files(&target, restored_plan, f)
            }));
        }
        for s in &c.sqlite {
            report.checks.push(timed(format!("sqlite {}", s.path), || {
                checks::sqlite(&target, s)
            }));
        }
        let env = [
            ("CUSTODIAN_RESTORE_DIR", target.display().to_string()),
            ("CUSTODIAN_SNAPSHOT", snap.id.to_hex()),
            ("CUSTODIAN_SNAPSHOT_TIME", snap.head.time.clone()),
            ("CUSTODIAN_SOURCE", source.clone()),
            ("CUSTODIAN_RUNBOOK", rb.id.clone()),
        ];
        for (n, cmd) in c.command.iter().enumerate() {
            let log = scratch.join(format!("command-{n}.log"));
            report
                .checks
                .push(timed(format!("command {}", cmd.run), || {
                    checks::command(&target, cmd, &env, &log)
                }));
        }
        if let Some(cl) = &c.compare_live {
            let live = PathBuf::from(&snap.head.root_path);
            report.checks.push(timed("compare-live".into(), || {
                checks::compare_live(&target, &live, restored_plan, cl)
            }));
        }
        report
            .steps
            .push(Step::new(format!("checks {source}"), checks_started));
    }
    Ok(())
}

/// Restore the whole snapshot or one path of it, keeping paths relative to the snapshot root.
/// Returns where the scope landed and its plan.
fn restore_scope(
    repo: &Repository,
    reader: &BlobReader,
    snap: &SnapshotInfo,
    scope: Option<&Path>,
    target: &Path,
) -> Result<(PathBuf, crate::restorer::RestorePlan)> {
    let (root_node, dest) = match scope {
        None => (snap.head.root.clone(), target.to_path_buf()),
        Some(sub) => {
            let node = plan::descend(reader, &snap.head.root, sub)?;
            let dest = if node.kind == NodeKind::Dir {
                target.join(sub)
            } else {
                target.join(sub.parent().unwrap_or(Path::new("")))
            };
            (node, dest)
        }
    };
    std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
    let opts = RestoreOptions {
        keep_special_bits: false,
        target: dest.clone(),
        subpath: scope.map(Path::to_path_buf),
        include: Vec::new(),
        exclude: Vec::new(),
        overwrite: true,
        dry_run: false,
    };
    restore(repo, snap, &opts, &RestoreProgress::default())?;
    // A directory's plan is relative to it; a single file's entry is its name, in `dest`.
    let planned = plan::plan(reader, &root_node, &Selection::new(&[], &[])?)?;
    Ok((dest, planned))
}
