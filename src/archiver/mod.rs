//! Backup: walk, reuse unchanged files from the cache, read and chunk the rest through the
//! pipeline, build trees bottom-up, write the reference list, then commit in order:
//! packs -> index -> snapshot head -> local cache.

mod cache;
mod cache_format;
pub mod changes;
pub mod commit;
mod pipeline;

pub use cache::{private_dir, write_atomic};
pub use pipeline::Progress;

use crate::error::{Error, Result};
use crate::format::snapshot::{SnapshotHead, SnapshotStats, SNAPSHOT_VERSION};
use crate::format::tree::{Node, NodeKind, SkippedEntry, SkippedList, Tree, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::{BlobId, SnapshotId};
use crate::repository::{PackUploader, Repository};
use crate::source::{walk, Excludes, WalkEntry};
use cache::FileCache;
use commit::CommitSession;
use pipeline::{FileJob, Pipeline};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What to back up and how to label it.
pub struct BackupOptions {
    pub source: String,
    /// Key domain; defaults to the source name.
    pub domain: Option<String>,
    pub path: PathBuf,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub host: String,
    pub state_dir: PathBuf,
    pub time: SystemTime,
    /// Parallel uploads; default: what the backend prefers (1 local, 4 S3).
    pub connections: Option<usize>,
    /// Stay on the file system of `path` (mount points below it are recorded, not entered).
    pub one_file_system: bool,
    /// The path to record in the snapshot when `path` is a staging copy (SQLite sources).
    pub display_path: Option<PathBuf>,
    /// Set by a shutdown: the backup stops reading and returns [`Error::Cancelled`] before it
    /// commits anything (uploaded packs stay for the next run to reuse).
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// When to flag the snapshot suspicious (ransomware).
    pub anomaly: changes::AnomalyThresholds,
}

/// A committed backup.
pub struct BackupOutcome {
    pub id: SnapshotId,
    pub head: SnapshotHead,
    /// Entries not backed up, with reasons (names: show to the operator, never log at info).
    pub skipped: Vec<SkippedEntry>,
    /// Erase exclusions of the source that this backup applied.
    pub erase_exclusions: usize,
}

/// Run one backup and commit its snapshot.
/// A source name names a directory in the state dir (cache, staging), so it must be one plain
/// path component: not empty, no '/', no NUL, not `.` or `..`. `Err` says what is wrong.
pub fn source_name_ok(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err("must be a non-empty name without '/', and not '.' or '..'");
    }
    Ok(())
}

pub fn backup(
    repo: Arc<Repository>,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    source_name_ok(&opts.source)
        .map_err(|why| Error::Invalid(format!("source name '{}' {why}", opts.source)))?;
    let domain = Arc::new(repo.domain_for_write(opts.domain.as_deref().unwrap_or(&opts.source))?);
    let mut index = repo.load_index()?;
    let recovered = repo.unindexed_packs(&index)?;
    for pack in &recovered {
        index.add_pack(pack);
    }
    // Paths an operator erased stay out of every later snapshot (repository::exclusions).
    let erased: Vec<String> = repo
        .exclusions(Some(&opts.source))?
        .into_iter()
        .map(|(_, e)| e.pattern)
        .collect();
    let excludes = Excludes::new(&[opts.excludes.as_slice(), &erased].concat())?;
    let walked = walk(&opts.path, &excludes, opts.one_file_system)?;
    crate::failpoint::pause("after-walk", 0);
    let mut entries = walked.entries;
    let mut skipped = walked.skipped;
    tracing::debug!(
        entries = entries.len(),
        unreadable = skipped.len(),
        erase_exclusions = erased.len(),
        "walked the source"
    );

    let cache_key = repo.meta.derive("custodian 2026 cache path names");
    let source_key = blake3::keyed_hash(
        &cache_key,
        format!("{}\0{}", opts.source, opts.path.display()).as_bytes(),
    )
    .to_hex();
    let mut cache = FileCache::open(
        &opts.state_dir,
        &repo.config.repo_id.to_hex(),
        &source_key,
        cache_key,
    )?;

    let session = repo.start_session(&domain.recipient)?;
    let connections = opts.connections.unwrap_or_else(|| repo.connections());
    let uploader = Arc::new(PackUploader::start(repo.clone(), recovered, connections));
    // Downstream "stopped" errors give way to the upload error that caused them.
    let root_cause = |e: Error| uploader.take_failure().unwrap_or(e);
    let index = Arc::new(index);
    let cancel = opts.cancel.clone().unwrap_or_default();
    let pipeline = Pipeline::start(
        repo.clone(),
        domain.clone(),
        session,
        index.clone(),
        uploader.clone(),
        cancel.clone(),
    );

    // Unchanged files come from the cache; the rest go to the readers.
    let mut jobs = Vec::new();
    let mut keys = vec![[0u8; 32]; entries.len()];
    // Per file: whether its content looks incompressible (carried over for unchanged files).
    let mut incompressible = vec![false; entries.len()];
    for (slot, e) in entries.iter_mut().enumerate() {
        if e.node.kind != NodeKind::File {
            continue;
        }
        keys[slot] = cache.path_key(&e.rel);
        match cache.lookup(&keys[slot], &e.stat, |id| index.dedupable(id)) {
            Some(content) => {
                e.node.content = content;
                incompressible[slot] = cache
                    .previous(&keys[slot])
                    .is_some_and(|p| p.incompressible);
            }
            None => {
                progress
                    .bytes_total
                    .fetch_add(e.stat.size, Ordering::Relaxed);
                jobs.push(FileJob {
                    slot,
                    path: opts.path.join(&e.rel),
                });
            }
        }
    }
    progress
        .files_total
        .store(jobs.len() as u64, Ordering::Relaxed);
    let files_read = jobs.len() as u64;
    let mut gone = vec![false; entries.len()];
    let mut bytes_read = 0;
    let mut changes = changes::ChangeTracker::default();
    for done in pipeline.read_files(jobs, repo.config.chunker, progress) {
        match done.result {
            Ok(read) => {
                bytes_read += read.len;
                match cache.previous(&keys[done.slot]) {
                    Some(before) => {
                        changes.modified(read.len, read.high_entropy_bytes, before.incompressible)
                    }
                    None => changes.added(),
                }
                incompressible[done.slot] = read.high_entropy_bytes * 2 > read.len;
                let e = &mut entries[done.slot];
                e.node.content = read.content;
                e.node.size = read.len;
            }
            Err(reason) => {
                skipped.push(SkippedEntry {
                    path: crate::format::tree::Name::from_os(entries[done.slot].rel.as_os_str()),
                    error: reason,
                });
                gone[done.slot] = true;
            }
        }
    }

    if cancel.load(Ordering::SeqCst) {
        // Finish the packs in flight so they are durable and reusable, then stop uncommitted.
        pipeline.finish().map_err(root_cause)?;
        return Err(Error::Cancelled);
    }
    let mut refs: Vec<BlobId> = Vec::new();
    let mut stats = SnapshotStats {
        files_read,
        bytes_read,
        ..Default::default()
    };
    build_trees(
        &mut entries,
        &gone,
        &pipeline,
        &domain,
        &mut refs,
        &mut stats,
    )
    .map_err(root_cause)?;
    for (slot, e) in entries.iter().enumerate() {
        if e.node.kind == NodeKind::File && !gone[slot] {
            cache.record(
                keys[slot],
                cache::CacheEntry {
                    stat: e.stat,
                    content: e.node.content.clone(),
                    incompressible: incompressible[slot],
                },
            );
        }
    }
    let change_summary = changes.finish(cache.known(), cache.not_seen(), &opts.anomaly);
    if change_summary.suspicious {
        tracing::warn!(
            source = %opts.source,
            reasons = %change_summary.reasons.join("; "),
            "this backup looks like ransomware at work: the snapshot is flagged suspicious"
        );
    }
    let skipped_list = if skipped.is_empty() {
        None
    } else {
        let json = serde_json::to_vec(&SkippedList {
            version: TREE_VERSION,
            entries: skipped.clone(),
        })
        .unwrap_or_default();
        let id = domain.blob_id(&json);
        pipeline
            .submit(id, BlobKind::Tree, json)
            .map_err(root_cause)?;
        refs.push(id);
        Some(id)
    };
    let pstats = pipeline.finish().map_err(root_cause)?;
    let parent = repo
        .list_snapshots()?
        .into_iter()
        .rev()
        .find(|s| s.head.source == opts.source);
    // The commit session takes over the uploader: reference lists, the prune check, the
    // index, and then the head, in that order.
    let mut session = CommitSession::new(&repo, &index, uploader);
    let written = session
        .write_refs(parent.as_ref().map(|p| &p.head), refs)
        .map_err(|e| session.uploader().take_failure().unwrap_or(e))?;
    let (ref_blobs, refs_added, refs_bytes) = (written.ids, written.added, written.bytes);
    let uploaded = session.finish()?;

    let root = entries.swap_remove(0).node;
    stats.blobs_added = pstats.blobs_added.load(Ordering::Relaxed) + refs_added;
    stats.bytes_added = pstats.bytes_added.load(Ordering::Relaxed) + refs_bytes;
    stats.packs_added = uploaded.packs;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let parent = parent.map(|p| p.id);
    let head = SnapshotHead {
        version: SNAPSHOT_VERSION,
        time: humantime::format_rfc3339_nanos(opts.time).to_string(),
        source: opts.source.clone(),
        domain: domain.name.clone(),
        host: opts.host.clone(),
        root_path: opts
            .display_path
            .as_ref()
            .unwrap_or(&opts.path)
            .display()
            .to_string(),
        tags: opts.tags.clone(),
        root,
        refs: ref_blobs,
        parent,
        stats,
        skipped: skipped.len() as u64,
        skipped_list,
        changes: Some(change_summary),
        rewritten: None,
    };
    // Last write of the backup: everything it references is durable and indexed by now.
    let id = commit::write_head(&repo, &head)?;
    if head.changes.as_ref().is_some_and(|c| c.suspicious) {
        hold_last_good(&repo, &opts.source, &id);
    }
    crate::failpoint::pause("before-cache", 0);
    // The snapshot is committed: a cache that cannot be saved (state dir full, read-only or
    // gone) costs the next backup a full read of every file, not this backup its success.
    if let Err(e) = cache.save() {
        tracing::warn!("snapshot saved, but the file cache could not be: {e}; the next backup reads every file again");
    }
    Ok(BackupOutcome {
        id,
        head,
        skipped,
        erase_exclusions: erased.len(),
    })
}

/// Hold the newest unflagged snapshot of `source` before `suspicious`, so no retention rule can
/// forget the copy an incident responder will want. Best effort: the backup has committed.
fn hold_last_good(repo: &Repository, source: &str, suspicious: &SnapshotId) {
    let result = repo.list_snapshots().and_then(|all| {
        let good = all
            .iter()
            .rev()
            .filter(|s| s.head.source == source && s.id != *suspicious)
            .find(|s| !s.head.changes.as_ref().is_some_and(|c| c.suspicious));
        match good {
            Some(s) => repo
                .hold(
                    &s.id,
                    &format!(
                        "automatic: the next snapshot {} looks like ransomware",
                        suspicious.short()
                    ),
                )
                .map(|_| Some(s.id)),
            None => Ok(None),
        }
    });
    match result {
        Ok(Some(id)) => {
            tracing::warn!(source, held = %id.short(), "held the last good snapshot before the suspicious one")
        }
        Ok(None) => {}
        Err(e) => tracing::error!(source, error = %e, "could not hold the last good snapshot"),
    }
}

/// Fill every directory's subtree bottom-up (reverse pre-order visits children first).
fn build_trees(
    entries: &mut [WalkEntry],
    gone: &[bool],
    pipeline: &Pipeline,
    domain: &crate::crypto::DomainKeys,
    refs: &mut Vec<BlobId>,
    stats: &mut SnapshotStats,
) -> Result<()> {
    for slot in (0..entries.len()).rev() {
        if gone[slot] {
            continue;
        }
        match entries[slot].node.kind {
            NodeKind::File => {
                stats.files += 1;
                stats.bytes += entries[slot].node.size;
                refs.extend(entries[slot].node.content.iter().map(|c| c.0));
            }
            NodeKind::Dir => {
                stats.dirs += 1;
                let nodes: Vec<Node> = entries[slot]
                    .children
                    .iter()
                    .filter(|&&c| !gone[c])
                    .map(|&c| entries[c].node.clone())
                    .collect();
                let json = serde_json::to_vec(&Tree {
                    version: TREE_VERSION,
                    nodes,
                })
                .unwrap_or_default();
                let id = domain.blob_id(&json);
                pipeline.submit(id, BlobKind::Tree, json)?;
                refs.push(id);
                entries[slot].node.subtree = Some(id);
            }
            NodeKind::Symlink | NodeKind::Fifo => {}
        }
    }
    Ok(())
}
