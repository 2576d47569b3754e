//! Backup: walk one directory at a time, reuse unchanged files from the cache, read and chunk
//! the rest through the pipeline, seal each directory's tree as soon as its files are in, write
//! the reference list, then commit in order: packs -> index -> snapshot head -> local cache.

mod assemble;
mod cache;
mod cache_format;
mod cache_seal;
pub mod changes;
pub mod commit;
mod in_order;
mod pipeline;
mod scan;

pub use pipeline::Progress;

use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::snapshot::{SnapshotHead, SNAPSHOT_VERSION};
use crate::format::tree::{SkippedEntry, SkippedList, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::SnapshotId;
use crate::repository::{PackUploader, Repository};
use crate::source::{Excludes, Walk};
use assemble::Assembler;
use cache::FileCache;
use commit::CommitSession;
use in_order::InOrder;
use pipeline::Pipeline;
use scan::Scan;
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
        .map_err(|why| Error::Usage(format!("source name '{}' {why}", opts.source)))?;
    let domain = Arc::new(repo.domain_for_write(opts.domain.as_deref().unwrap_or(&opts.source))?);
    let mut index = repo.load_index()?;
    let recovered = repo.unindexed_packs(&index)?;
    index.add_packs(&recovered);
    // Paths an operator erased stay out of every later snapshot (repository::exclusions).
    let erased: Vec<String> = repo
        .exclusions(Some(&opts.source))?
        .into_iter()
        .map(|(_, e)| e.pattern)
        .collect();
    let excludes = Excludes::new(&[opts.excludes.as_slice(), &erased].concat())?;
    let (walk, root) = Walk::start(&opts.path, &excludes, opts.one_file_system)?;

    let cache_key = repo.meta.derive("custodian 2026 cache path names");
    let source_key = blake3::keyed_hash(
        &cache_key,
        format!("{}\0{}", opts.source, opts.path.display()).as_bytes(),
    )
    .to_hex();
    // Its own key for sealing: the naming key's outputs are in file names for anyone to see.
    let seal_key = repo.meta.derive("custodian 2026 cache seal");
    let cache = FileCache::open(
        &opts.state_dir,
        &repo.config.repo_id.to_hex(),
        &source_key,
        seal_key,
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

    let mut scan = Scan {
        root: &opts.path,
        index: &index,
        progress,
        cache,
        order: InOrder::default(),
        trees: Assembler::new(&pipeline, &domain, root),
        changes: changes::ChangeTracker::default(),
        skipped: Vec::new(),
        files_read: 0,
        bytes_read: 0,
    };
    let mut walk = walk;
    let scanned = std::thread::scope(|scope| {
        let (jobs, done) = pipeline.readers(scope, repo.config.chunker, progress);
        scan.run(walk.by_ref(), jobs, &done)
    });
    scanned.map_err(root_cause)?;
    let Scan {
        mut cache,
        trees,
        changes,
        mut skipped,
        files_read,
        bytes_read,
        ..
    } = scan;
    skipped.append(&mut walk.skipped);
    tracing::debug!(
        files_read,
        unreadable = skipped.len(),
        erase_exclusions = erased.len(),
        "walked the source"
    );

    if cancel.load(Ordering::SeqCst) {
        // Finish the packs in flight so they are durable and reusable, then stop uncommitted.
        drop(trees);
        pipeline.finish().map_err(root_cause)?;
        return Err(Error::Cancelled);
    }
    let Some((root, mut refs, mut stats)) = trees.finish() else {
        return Err(root_cause(Error::Internal(
            "the backup stopped before every directory was read (see the error above)".into(),
        )));
    };
    stats.files_read = files_read;
    stats.bytes_read = bytes_read;
    let (known, not_seen) = cache.known_and_not_seen();
    let change_summary = changes.finish(known, not_seen, &opts.anomaly);
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
        .map_err(|e| {
            Error::Internal(format!(
                "internal error: the skipped list did not encode: {e}"
            ))
        })?;
        let id = domain.blob_id(&json);
        pipeline
            .submit(id, BlobKind::Tree, json)
            .map_err(root_cause)?;
        refs.push(RefKey::from(&id));
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
