//! Restore: plan from trees, create the skeleton, then fetch packs in parallel (whole or by
//! ranges), open and verify every blob before a byte of it is written, and finish with links and
//! metadata. A damaged blob fails the restore naming the file and the pack, and files left
//! incomplete are removed, so wrong bytes are never left behind silently.

mod beneath;
mod metadata;
pub mod plan;

use beneath::Beneath;
pub use metadata::running_as_root;
pub use plan::{RestorePlan, Selection};

use crate::constants::RESTORE_WHOLE_PACK_SHARE;
use crate::error::{Error, IoContext, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;
use crate::repository::{coalesce, BlobReader, PackBlobs, Repository, SnapshotInfo};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What and where to restore.
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Path inside the snapshot (`SNAPSHOT:sub/path`).
    pub subpath: Option<PathBuf>,
    pub include: Vec<String>,
    /// Left out, with everything below (gitignore style, as backup's excludes).
    pub exclude: Vec<String>,
    pub overwrite: bool,
    /// Plan only: say what would be written, touch nothing.
    pub dry_run: bool,
    /// Keep setuid, setgid and sticky bits (off by default: a snapshot could be forged).
    pub keep_special_bits: bool,
}

/// Live counters for a progress bar.
#[derive(Default)]
pub struct RestoreProgress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// What a restore did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    pub blobs: u64,
    pub packs: u64,
}

/// Restore `snapshot` according to `opts`.
pub fn restore(
    repo: &Repository,
    snapshot: &SnapshotInfo,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreSummary> {
    repo.require_operator("restore")?;
    // Planning reads listings from packs a finishing prune may delete under it (it copied
    // them first): then the index is read again, once.
    let (index, root, plan) = match planned(repo, snapshot, opts, true) {
        Err(e) if e.is_not_found() => {
            tracing::info!("a pack was pruned during the restore; reading the index again");
            planned(repo, snapshot, opts, false)?
        }
        other => other?,
    };
    if opts.dry_run {
        return dry_run(&opts.target, opts.overwrite, &plan);
    }
    let reader = BlobReader::new(repo, &index);
    let target_was_empty = prepare_target(&opts.target, opts.overwrite)?;
    // Every write from here on goes through this handle and cannot leave the target.
    let target = Target {
        dir: Beneath::open(&opts.target).at(&opts.target)?,
        path: &opts.target,
    };
    progress.bytes_total.store(plan.bytes, Ordering::Relaxed);
    let mut summary = RestoreSummary {
        bytes: plan.bytes,
        ..Default::default()
    };
    create_skeleton(&target, &plan, !target_was_empty, &mut summary)?;
    let packs = write_content(&reader, &target, &plan, progress)?;
    summary.packs = packs;
    summary.blobs = plan.blobs.len() as u64;
    finish_metadata(&target, &plan, &root, opts.keep_special_bits)?;
    Ok(summary)
}

/// What a restore would write, and whether the target would take it.
fn dry_run(target: &Path, overwrite: bool, plan: &RestorePlan) -> Result<RestoreSummary> {
    if let Ok(mut entries) = fs::read_dir(target) {
        if entries.next().is_some() && !overwrite {
            return Err(Error::TargetNotEmpty(target.to_path_buf()));
        }
    }
    let mut summary = RestoreSummary {
        bytes: plan.bytes,
        blobs: plan.blobs.len() as u64,
        ..Default::default()
    };
    for e in &plan.entries {
        match (e.node.kind, &e.link_to) {
            (NodeKind::Dir, _) => summary.dirs += 1,
            (NodeKind::File, None) => summary.files += 1,
            _ => summary.links += 1,
        }
    }
    Ok(summary)
}

/// Load the index and plan the restore of `snapshot` (nothing touches the target yet).
fn planned(
    repo: &Repository,
    snapshot: &SnapshotInfo,
    opts: &RestoreOptions,
    first: bool,
) -> Result<(crate::repository::MasterIndex, Node, RestorePlan)> {
    let index = repo.load_index()?;
    if first {
        crate::failpoint::pause("restore-indexed", 0);
    }
    let reader = BlobReader::new(repo, &index);
    // The snapshot's own counts bound the walk (with room): a listing that repeats subtrees to
    // describe more is refused before it fills memory.
    reader.limit_walk(snapshot.walk_allowance());
    let root = match &opts.subpath {
        Some(sub) => plan::descend(&reader, &snapshot.head.root, sub)?,
        None => snapshot.head.root.clone(),
    };
    if let Some(subtree) = root.subtree {
        // Best effort: on a damaged tree, planning reads trees one by one and names the directory.
        let _ = reader.prefetch_trees(&subtree);
    }
    let plan = plan::plan(
        &reader,
        &root,
        &Selection::new(&opts.include, &opts.exclude)?,
    )
    .map_err(|e| e.in_snapshot(&snapshot.id))?;
    drop(reader);
    Ok((index, root, plan))
}

/// The open restore target, and its path for messages.
struct Target<'a> {
    dir: Beneath,
    path: &'a Path,
}

impl Target<'_> {
    /// The path of `rel` for error messages (never used to reach the file).
    fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }
}

/// Check and create the target; returns whether it is empty (then nothing needs clearing).
fn prepare_target(target: &Path, overwrite: bool) -> Result<bool> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !overwrite {
                return Err(Error::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(empty)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).at(target).map(|()| true)
        }
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Directories, links and empty files. Files with content are created by their first write,
/// so each costs one open: file creation dominates restore time on many file systems.
fn create_skeleton(
    target: &Target,
    plan: &RestorePlan,
    overwrite: bool,
    summary: &mut RestoreSummary,
) -> Result<()> {
    for entry in &plan.entries {
        let (rel, node) = (entry.rel.as_path(), &entry.node);
        let at = |e| Error::io(target.shown(rel), e);
        if overwrite {
            // Removes a link as a link: nothing outside the target is touched.
            target
                .dir
                .remove(rel, node.kind == NodeKind::Dir)
                .map_err(at)?;
        }
        match (node.kind, &entry.link_to) {
            (NodeKind::Dir, _) => {
                target.dir.mkdir(rel).map_err(at)?;
                summary.dirs += 1;
            }
            (NodeKind::File, None) => {
                if node.content.is_empty() {
                    let file = target.dir.open_file(rel, true).map_err(at)?;
                    file.set_len(node.size).map_err(at)?;
                }
                summary.files += 1;
            }
            (NodeKind::File, Some(_)) => summary.files += 1,
            (NodeKind::Symlink, _) => {
                let link = node.target.as_ref().map(|t| t.as_os()).unwrap_or_default();
                target.dir.symlink(link, rel).map_err(at)?;
                summary.links += 1;
            }
            (NodeKind::Fifo, _) => target.dir.mkfifo(rel).map_err(at)?,
        }
    }
    Ok(())
}

/// Blobs of one pack that the plan needs.
struct PackWork {
    pack: u32,
    blobs: PackBlobs,
}

/// How far the content is written: blobs done, and how many each file still waits for (a file
/// reaching zero is complete).
struct Written {
    remaining: Vec<AtomicUsize>,
    done: Mutex<HashSet<BlobId>>,
}

fn write_content(
    reader: &BlobReader,
    target: &Target,
    plan: &RestorePlan,
    progress: &RestoreProgress,
) -> Result<u64> {
    let written = Written {
        remaining: plan.entries.iter().map(|_| AtomicUsize::new(0)).collect(),
        done: Mutex::default(),
    };
    for places in plan.blobs.values() {
        for (slot, _) in places {
            written.remaining[*slot].fetch_add(1, Ordering::Relaxed);
        }
    }
    let all: Vec<BlobId> = plan.blobs.keys().copied().collect();
    let mut result = write_blobs(reader, target, plan, &all, progress, &written);
    if result.as_ref().is_err_and(Error::is_not_found) {
        // A prune that finished meanwhile repacked what this restore's index named: the blobs
        // now live in new packs. Read the index again and fetch what is still missing, once.
        tracing::info!("a pack was pruned during the restore; reading the index again");
        let index = reader.repo.load_index()?;
        let fresh = BlobReader::new(reader.repo, &index);
        let done = written.done.lock().map_err(|_| poisoned())?.clone();
        let pending: Vec<BlobId> = all.into_iter().filter(|id| !done.contains(id)).collect();
        result = write_blobs(&fresh, target, plan, &pending, progress, &written);
    }
    // A file still waiting for a blob would be short: that is an error even if no read failed
    // (an index that disagrees with itself), and never left behind looking restored.
    let remaining = &written.remaining;
    let incomplete = remaining.iter().position(|r| r.load(Ordering::Relaxed) > 0);
    let result = result.and_then(|packs| match incomplete {
        Some(slot) => Err(Error::Damaged(format!(
            "'{}' was not completely restored: some of its blobs were never read. The index is \
             damaged or forged; run 'custodian check'.",
            plan.entries[slot].rel.display()
        ))),
        None => Ok(packs),
    });
    if result.is_err() {
        for (slot, left) in remaining.iter().enumerate() {
            if left.load(Ordering::Relaxed) > 0 {
                let _ = target.dir.remove(&plan.entries[slot].rel, true);
            }
        }
    }
    result
}

fn poisoned() -> Error {
    Error::Internal("internal error: a restore thread panicked".into())
}

/// Fetch and write `blobs`, one pack per worker at a time; returns the number of packs read or
/// the first error.
fn write_blobs(
    reader: &BlobReader,
    target: &Target,
    plan: &RestorePlan,
    blobs: &[BlobId],
    progress: &RestoreProgress,
    written: &Written,
) -> Result<u64> {
    let work: Vec<PackWork> = reader
        .group_by_pack(blobs)?
        .into_iter()
        .map(|(pack, blobs)| PackWork { pack, blobs })
        .collect();
    // One worker per core, or more on remote stores where each waits on the network.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(reader.repo.connections());
    crate::parallel::for_each(&work, threads, |w| {
        restore_pack(reader, target, plan, w, progress, written)
    })?;
    Ok(work.len() as u64)
}

fn restore_pack(
    reader: &BlobReader,
    target: &Target,
    plan: &RestorePlan,
    work: &PackWork,
    progress: &RestoreProgress,
    written: &Written,
) -> Result<()> {
    let pack = &reader.index.packs[work.pack as usize];
    let needed: u64 = work.blobs.iter().map(|(_, l)| u64::from(l.length)).sum();
    // Read the whole pack when most of it is needed, else coalesced ranges.
    let spans = if needed as f64 >= pack.size as f64 * RESTORE_WHOLE_PACK_SHARE {
        vec![(0, pack.size)]
    } else {
        coalesce(&work.blobs)
    };
    reader.read_spans(work.pack, &spans, &work.blobs, |id, _, plain| {
        let places = plan.blobs.get(id).map(Vec::as_slice).unwrap_or_default();
        let plain = plain.map_err(|e| {
            let file = places.first().map(|(s, _)| plan.entries[*s].rel.display().to_string()).unwrap_or_default();
            Error::Damaged(format!("restoring '{file}': {e}. Nothing of this blob was written; the file was removed. Run 'custodian check --read-data' and restore this file from an earlier snapshot."))
        })?;
        for (slot, offset) in places {
            let rel = &plan.entries[*slot].rel;
            let file = target.dir.open_file(rel, false).at(target.shown(rel))?;
            write_sparse(&file, &target.shown(rel), *offset, &plain, plan.entries[*slot].node.size)?;
            written.remaining[*slot].fetch_sub(1, Ordering::Relaxed);
        }
        if let Ok(mut done) = written.done.lock() {
            done.insert(*id);
        }
        progress.bytes_done.fetch_add(plain.len() as u64 * places.len() as u64, Ordering::Relaxed);
        Ok(())
    })
}

/// Write `data` at `offset`, skipping 4 KiB blocks of zeros so sparse files stay sparse. The
/// first write creates the file; the write that ends the file sets its length, so trailing
/// zeros become a hole too.
fn write_sparse(
    file: &fs::File,
    path: &Path,
    offset: u64,
    data: &[u8],
    file_size: u64,
) -> Result<()> {
    const BLOCK: usize = 4096;
    if offset + data.len() as u64 == file_size {
        file.set_len(file_size).at(path)?;
    }
    let mut pos = 0;
    while pos < data.len() {
        // Skip zero blocks, then write the next run of non-zero blocks in one call.
        while pos < data.len()
            && data[pos..(pos + BLOCK).min(data.len())]
                .iter()
                .all(|&b| b == 0)
        {
            pos += BLOCK;
        }
        let start = pos;
        while pos < data.len()
            && !data[pos..(pos + BLOCK).min(data.len())]
                .iter()
                .all(|&b| b == 0)
        {
            pos += BLOCK;
        }
        let end = pos.min(data.len());
        if end > start {
            file.write_all_at(&data[start..end], offset + start as u64)
                .at(path)?;
        }
    }
    Ok(())
}

fn finish_metadata(
    target: &Target,
    plan: &RestorePlan,
    root: &Node,
    keep_special: bool,
) -> Result<()> {
    let as_root = running_as_root();
    let apply = |rel: &Path, node: &Node| {
        let meta = metadata::meta(node, as_root, keep_special);
        target.dir.set_metadata(rel, &meta).at(target.shown(rel))
    };
    for entry in &plan.entries {
        if let Some(first) = &entry.link_to {
            target
                .dir
                .hard_link(first, &entry.rel)
                .at(target.shown(&entry.rel))?;
        }
    }
    for entry in plan
        .entries
        .iter()
        .filter(|e| e.node.kind != NodeKind::Dir && e.link_to.is_none())
    {
        apply(&entry.rel, &entry.node)?;
    }
    for entry in plan
        .entries
        .iter()
        .rev()
        .filter(|e| e.node.kind == NodeKind::Dir)
    {
        apply(&entry.rel, &entry.node)?;
    }
    if root.kind == NodeKind::Dir {
        apply(Path::new(""), root)?;
    }
    Ok(())
}
