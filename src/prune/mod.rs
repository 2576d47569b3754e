//! Prune: give back the space of data no snapshot references, safely beside backups running in
//! other processes or on other hosts, with the writer credential alone.
//!
//! Two phases and a grace period, no lock that backups wait on (docs/FORMAT.md, "Prune"):
//! a run first finishes markers older than the grace period (copies out any blob that became
//! needed again, rewrites the index without the marked packs, deletes them), then marks what is
//! unused now (after copying the live blobs of partly used packs). Backups skip marked packs for
//! deduplication and, at commit, rescue what they reuse from packs marked since they started
//! ([`guard::secure_commit`]). Prunes exclude each other with an expiring lease.

pub mod guard;
pub mod lease;
pub mod plan;

pub use lease::LEASE_TTL;
pub use plan::{Plan, Rules};

use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::refs::{self, RefKey};
use crate::id::{BlobId, PackId};
use crate::repository::{
    pack_name, BlobReader, FrameCopier, MasterIndex, PackUploader, Repository, SnapshotInfo,
};
use lease::Lease;
use plan::{MarkerFacts, PackFacts};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How to prune.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub rules: Rules,
    /// Decide and report, write nothing.
    pub dry_run: bool,
    /// Where the local copies of destruction records go.
    pub local_dir: PathBuf,
    /// Take over a live-looking lease held from this host (`prune --break-lease`).
    pub break_lease: Option<lease::BreakLease>,
}

/// The default grace period: longer than a backup normally runs, so a running backup's packs
/// are never marked, and short enough that a daily prune frees yesterday's garbage.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);
/// The default `max-unused` (restic's default too).
pub const DEFAULT_MAX_UNUSED: f64 = 0.05;

/// Parse a percentage (`5%`, `5`, `0`) into a fraction, for `max-unused`.
pub fn parse_percent(text: &str) -> std::result::Result<f64, String> {
    let n: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{text}' is not a percentage; write e.g. \"5%\" or \"0\""))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("{text} is outside 0..100%"));
    }
    Ok(n / 100.0)
}

/// What a run found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    pub referenced_blobs: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    /// The decisions of each pass (two when the grace period is zero: mark, then finish).
    pub passes: Vec<Plan>,
    /// Objects and bytes deleted, blobs and bytes copied.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    pub copied_blobs: u64,
    pub copied_bytes: u64,
    pub marker: Option<String>,
    /// The destruction record's object name, when something was deleted.
    pub record: Option<String>,
    /// Temporary files of killed writers removed (a local disk's; see `LEFTOVER_AGE`).
    pub leftovers_removed: u64,
}

/// How old a killed writer's temporary file must be before prune removes it: a write in
/// progress touches its file until it publishes it, within seconds.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Run a prune.
pub fn prune(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    // Prune writes indexes and pack headers: only under the newest trust list (and so the
    // newest metadata key; a daemon that opened before a revocation reopens first).
    repo.require_current_trust()?;
    let lease = if opts.dry_run {
        None
    } else {
        Some(Lease::acquire(repo, opts.break_lease.as_ref())?)
    };
    crate::failpoint::pause("prune-leased", 0);
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    run_pass(repo, opts, lease.as_ref(), &mut report)?;
    let marked_now = report
        .passes
        .last()
        .is_some_and(|p| !p.to_mark().is_empty());
    if opts.rules.grace.is_zero() && marked_now && !opts.dry_run {
        // No grace: finish what this run just marked (only safe when no backup runs).
        run_pass(repo, opts, lease.as_ref(), &mut report)?;
    }
    if !opts.dry_run {
        // Each is a second name for an object it was about to publish: a key record among
        // them would outlive the record's destruction.
        report.leftovers_removed = repo.backend_ref().sweep_leftovers(LEFTOVER_AGE)?;
    }
    drop(lease);
    Ok(report)
}

/// Everything prune needs to decide, read fresh for each pass.
struct Facts {
    files: Vec<(crate::id::IndexId, crate::format::index::IndexFile)>,
    packs: Vec<PackFacts>,
    markers: Vec<MarkerFacts>,
    referenced: HashSet<RefKey>,
    snapshots: usize,
}

fn run_pass(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    lease: Option<&Lease>,
    report: &mut PruneReport,
) -> Result<()> {
    let facts = gather(repo, opts.rules.grace)?;
    let plan = plan::plan(
        &facts.packs,
        &facts.referenced,
        &facts.markers,
        crate::clock::now(),
        opts.rules,
    );
    report.snapshots = facts.snapshots;
    report.referenced_blobs = facts.referenced.len();
    report.packs = facts.packs.len();
    report.pack_bytes = facts.packs.iter().map(|p| p.size).sum();
    if opts.dry_run {
        report.passes.push(plan);
        return Ok(());
    }

    if !plan.copies.is_empty() {
        let uploader = PackUploader::start(repo.clone(), Vec::new(), repo.connections());
        let mut copier = FrameCopier::new(repo, &uploader);
        for job in &plan.copies {
            copier.copy(&job.pack, &job.domain, &job.blobs)?;
        }
        report.copied_blobs += copier.blobs;
        report.copied_bytes += copier.bytes;
        copier.flush()?;
        uploader.finish()?;
    }

    if !plan.finish_markers.is_empty() {
        if let Some(lease) = lease {
            lease.check()?;
        }
        rewrite_index(repo, &facts.files, &plan.finished_packs)?;
        let sizes: HashMap<PackId, u64> = facts.packs.iter().map(|p| (p.id, p.size)).collect();
        let objects: Vec<(String, u64)> = plan
            .delete
            .iter()
            .map(|id| (pack_name(id), sizes.get(id).copied().unwrap_or(0)))
            .collect();
        if !objects.is_empty() {
            let finished_by = facts
                .markers
                .iter()
                .filter(|m| plan.finish_markers.contains(&m.name))
                .map(|m| m.written)
                .max()
                .unwrap_or_else(SystemTime::now);
            let record = repo.destroy(
                "prune",
                snapshots_whose_data_went(repo, finished_by)?,
                objects,
                "Packs deleted: data that no snapshot referenced any longer, and blobs left \
                 unused by repacking. The snapshots listed are those destroyed before these \
                 packs were marked: their data is gone now, except blobs other snapshots still \
                 share. Copies the storage provider keeps (versioning, backups, replicas) \
                 are outside what custodian can destroy or attest."
                    .into(),
                None,
                &opts.local_dir,
            )?;
            report.deleted_packs += record.objects_deleted;
            report.deleted_bytes += record.bytes_deleted;
            report.record = Some(format!("{} ({})", record.time, record.action));
        }
        for name in &plan.finish_markers {
            repo.delete_object(name)?;
        }
    }

    let to_mark = plan.to_mark();
    if !to_mark.is_empty() {
        report.marker = Some(repo.write_prune_marker(to_mark)?);
    }
    report.passes.push(plan);
    Ok(())
}

/// Read packs, index objects, markers and every snapshot's reference list. Snapshots are listed
/// first: a writer indexes before it commits, so every snapshot seen has its index objects in the
/// listing that follows. (A snapshot committed after this listing is seen by the next pass,
/// which is why finishing a marker recomputes everything.)
fn gather(repo: &Repository, grace: Duration) -> Result<Facts> {
    let snapshots = repo.list_snapshots_strict()?;
    let marks = repo.prune_marks()?;
    let files = repo.load_index_files()?;
    let listed = repo.list_ids::<PackId>("packs/")?;
    let marked = marks.packs();
    let now = crate::clock::now();
    let mut packs = Vec::with_capacity(listed.len());
    let mut indexed: HashMap<PackId, &IndexPack> = HashMap::new();
    for (_, file) in &files {
        for pack in &file.packs {
            indexed.entry(pack.id).or_insert(pack);
        }
    }
    for (id, object) in &listed {
        let facts = |domain: String, blobs, indexed| PackFacts {
            id: *id,
            domain,
            size: object.size,
            indexed,
            modified: object.modified,
            blobs,
        };
        if let Some(pack) = indexed.get(id) {
            packs.push(facts(pack.domain.clone(), pack.blobs.clone(), true));
            continue;
        }
        // A leftover: worth reading only once it is old enough to act on (or marked).
        let old = object
            .modified
            .is_some_and(|m| now.duration_since(m).unwrap_or_default() >= grace);
        if old || marked.contains(id) || grace.is_zero() {
            // Read whole and checked against its own bytes: a real header spliced onto other
            // bytes must not make its blobs look safe here.
            match repo.adoptable_header(id, object.size) {
                Ok(header) => packs.push(facts(header.domain, header.blobs, false)),
                // Unreadable, unbound or in no index: nothing can use it.
                Err(_) => packs.push(facts(String::new(), Vec::new(), false)),
            }
        }
    }
    let markers = marks
        .markers
        .iter()
        .map(|(name, m)| MarkerFacts {
            name: name.clone(),
            written: m.written(),
            packs: m.packs.clone(),
        })
        .collect();
    let index = MasterIndex::build(marks, &files, repo.pack_span_cap());
    let referenced = referenced(repo, &index, &snapshots)?;
    Ok(Facts {
        files,
        packs,
        markers,
        referenced,
        snapshots: snapshots.len(),
    })
}

/// The snapshots whose data a prune deletes, for its record: those destroyed (forgotten, erased,
/// crypto-shredded) by records written before the newest marker this run finishes, and not
/// already named by an earlier prune record. So a compliance reader can follow each snapshot
/// from "forgotten" to "data deleted".
fn snapshots_whose_data_went(
    repo: &Repository,
    marked_at: SystemTime,
) -> Result<Vec<crate::repository::DestroyedSnapshot>> {
    let records = repo.destruction_records()?;
    let covered: HashSet<&str> = records
        .iter()
        .filter(|r| r.action == "prune")
        .flat_map(|r| r.snapshots.iter().map(|s| s.id.as_str()))
        .collect();
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.action != "prune") {
        let before = humantime::parse_rfc3339_weak(&r.time).is_ok_and(|t| t <= marked_at);
        if !before {
            continue;
        }
        for s in r
            .snapshots
            .iter()
            .filter(|s| !covered.contains(s.id.as_str()))
        {
            let mut s = s.clone();
            s.reason = format!("data no longer referenced after {} at {}", r.action, r.time);
            out.push(s);
        }
    }
    Ok(out)
}

/// Every blob some snapshot needs, from the reference lists (metadata key only). A list that
/// cannot be read stops the prune: it must never guess what is unused.
fn referenced(
    repo: &Repository,
    index: &MasterIndex,
    snapshots: &[SnapshotInfo],
) -> Result<HashSet<RefKey>> {
    let mut lists: Vec<BlobId> = snapshots
        .iter()
        .flat_map(|s| s.head.refs.iter().copied())
        .collect();
    lists.sort_unstable();
    lists.dedup();
    let mut keys: HashSet<RefKey> = lists.iter().map(RefKey::from).collect();
    let reader = BlobReader::new(repo, index);
    for batch in lists.chunks(256) {
        let plains = reader.read_many(batch).map_err(|e| {
            Error::Damaged(format!(
                "prune cannot read every snapshot's reference list, so it cannot tell what is \
                 unused, and deleted nothing: {e}"
            ))
        })?;
        for (id, plain) in plains {
            keys.extend(refs::decode(
                &plain,
                &format!("reference list {}", id.short()),
            )?);
        }
    }
    Ok(keys)
}

/// Write the index objects that name `gone` packs again without them, then delete the old
/// objects. New before old: a reader in between sees entries twice, never too few.
fn rewrite_index(
    repo: &Repository,
    files: &[(crate::id::IndexId, crate::format::index::IndexFile)],
    gone: &BTreeSet<PackId>,
) -> Result<()> {
    let mut replaced = Vec::new();
    for (id, file) in files {
        if !file.packs.iter().any(|p| gone.contains(&p.id)) {
            continue;
        }
        let kept: Vec<IndexPack> = file
            .packs
            .iter()
            .filter(|p| !gone.contains(&p.id))
            .cloned()
            .collect();
        if !kept.is_empty() {
            repo.write_index(kept)?;
        }
        replaced.push(*id);
    }
    for id in replaced {
        repo.delete_object(&format!("index/{id}"))?;
    }
    Ok(())
}
