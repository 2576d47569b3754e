//! Erasure (the right to erasure; the end of a client relationship): every snapshot of a source
//! is rewritten without the paths matching a pattern. New trees and reference lists are written,
//! each new head keeps its backup's time and says it was rewritten, and the old heads are deleted
//! with a destruction record. The erased data itself stays in packs until `prune` (run it with
//! `--max-unused 0`) copies the rest out and deletes them.
//!
//! Needs an operator identity: trees are encrypted to the key domain. A held snapshot is never
//! rewritten: a legal hold outranks erasure, so erase refuses until the hold is released.

use crate::archiver::commit::{write_head, CommitSession};
use crate::compress;
use crate::crypto::{seal_blob, DomainKeys};
use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::snapshot::{Rewritten, SnapshotHead};
use crate::format::tree::{NodeKind, SkippedList, Tree, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::{BlobId, SnapshotId};
use crate::pattern::Pattern;
use crate::repository::{
    BlobReader, DestroyedSnapshot, MasterIndex, PackUploader, PackWriter, Repository, SnapshotInfo,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to erase.
pub struct EraseOptions {
    pub source: String,
    /// A glob as `find` takes it: without `/` a name anywhere, with `/` a path from the root.
    pub pattern: String,
    pub dry_run: bool,
    /// Where the local copy of the destruction record goes.
    pub local_dir: PathBuf,
}

/// One snapshot's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ErasedSnapshot {
    pub old: String,
    /// The rewritten snapshot (absent in a dry run, or when an earlier interrupted erase had
    /// already written it).
    pub new: Option<String>,
    pub time: String,
    /// Regular files erased from it (a directory counts as the files below it).
    pub files_removed: u64,
}

/// What an erase did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EraseReport {
    pub dry_run: bool,
    pub snapshots: Vec<ErasedSnapshot>,
    /// Snapshots of the source with nothing to erase.
    pub unchanged: usize,
    pub files_removed: u64,
    /// Held snapshots (short id and reason) that block the real run; a dry run lists them.
    pub held: Vec<String>,
    /// The exclusion that keeps the pattern out of later backups (absent in a dry run).
    pub exclusion: Option<String>,
}

/// Rewrite every snapshot of `opts.source` without the matching paths.
pub fn erase(repo: &Arc<Repository>, opts: &EraseOptions) -> Result<EraseReport> {
    repo.require_operator("erasing files from snapshots")?;
    let pattern = Pattern::new(&opts.pattern)?;
    let index = repo.load_index()?;
    let all = repo.list_snapshots_strict()?;
    let snaps: Vec<&SnapshotInfo> = all
        .iter()
        .filter(|s| s.head.source == opts.source)
        .collect();
    if snaps.is_empty() {
        return Err(Error::Usage(format!(
            "source '{}' has no snapshots in this repository, so there is nothing to erase. \
             'custodian snapshots' lists the sources.",
            opts.source
        )));
    }
    // An interrupted erase may have written a successor already: then only the old head goes.
    // Only an operator erases, so in format 2 a successor must be signed by one: a head a
    // writer signed claiming to replace another must not get that one deleted.
    let successors: HashMap<SnapshotId, SnapshotId> = all
        .iter()
        .filter(|s| {
            s.writer
                .as_deref()
                .is_none_or(|w| w.starts_with("operator "))
        })
        .filter_map(|s| s.head.rewritten.as_ref().map(|r| (r.from, s.id)))
        .collect();
    let reader = BlobReader::new(repo, &index);
    let mut rewriter = Rewriter {
        reader: &reader,
        pattern,
        repo,
        new_trees: HashMap::new(),
        memo: HashMap::new(),
        file_counts: HashMap::new(),
    };
    let mut report = EraseReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut rewrites: Vec<(&SnapshotInfo, SnapshotHead, u64)> = Vec::new();
    let mut superseded: Vec<&SnapshotInfo> = Vec::new();
    for snap in &snaps {
        if successors.contains_key(&snap.id) {
            superseded.push(snap);
            continue;
        }
        match rewriter.snapshot(&snap.head)? {
            Some((head, removed)) => rewrites.push((snap, head, removed)),
            None => report.unchanged += 1,
        }
    }
    let doomed: Vec<SnapshotId> = rewrites
        .iter()
        .map(|(s, _, _)| s.id)
        .chain(superseded.iter().map(|s| s.id))
        .collect();
    report.held = crate::repository::held_among(&repo.holds()?, &doomed);
    if !opts.dry_run {
        repo.refuse_held(&doomed, "erase")?;
    }
    report.files_removed = rewrites
        .iter()
        .fold(0u64, |sum, (_, _, n)| sum.saturating_add(*n));
    for (snap, _, removed) in &rewrites {
        report.snapshots.push(ErasedSnapshot {
            old: snap.id.to_hex(),
            new: None,
            time: snap.head.time.clone(),
            files_removed: *removed,
        });
    }
    for snap in &superseded {
        report.snapshots.push(ErasedSnapshot {
            old: snap.id.to_hex(),
            new: successors.get(&snap.id).map(|id| id.to_hex()),
            time: snap.head.time.clone(),
            files_removed: 0,
        });
    }
    if opts.dry_run || report.snapshots.is_empty() {
        return Ok(report);
    }
    // First, so a backup that starts while the rewrite runs already leaves the paths out.
    report.exclusion = Some(repo.add_exclusion(&opts.source, &opts.pattern)?);

    let new_ids = rewriter.commit(&index, &mut rewrites)?;
    for (entry, id) in report.snapshots.iter_mut().zip(&new_ids) {
        entry.new = Some(id.to_hex());
    }
    let doomed: Vec<(SnapshotId, DestroyedSnapshot)> = rewrites
        .iter()
        .map(|(s, _, _)| *s)
        .chain(superseded.iter().copied())
        .map(|s| {
            let destroyed = DestroyedSnapshot {
                id: s.id.to_hex(),
                source: s.head.source.clone(),
                time: s.head.time.clone(),
                reason: "erase: rewritten without the erased paths".into(),
            };
            (s.id, destroyed)
        })
        .collect();
    let ids: Vec<SnapshotId> = doomed.iter().map(|(id, _)| *id).collect();
    repo.destroy(
        "erase",
        doomed.into_iter().map(|(_, d)| d).collect(),
        repo.snapshot_objects(&ids)?,
        "Snapshot heads replaced by rewritten ones without the erased paths (which this record \
         does not name: they may identify a customer). The erased data stays in packs until \
         'custodian prune --max-unused 0' copies everything else out and deletes those packs; \
         that prune writes its own record. Copies the storage provider keeps (versioning, \
         backups, replicas) are outside what custodian can destroy or attest."
            .into(),
        None,
        &opts.local_dir,
    )?;
    Ok(report)
}

/// Builds rewritten trees, remembering what it made so shared subtrees are rewritten once.
struct Rewriter<'a> {
    reader: &'a BlobReader<'a>,
    repo: &'a Arc<Repository>,
    pattern: Pattern,
    /// New tree plaintexts by id, with their key domain, sealed at commit.
    new_trees: HashMap<BlobId, (String, Vec<u8>)>,
    /// (old tree, its path) -> (new tree if changed, entries removed).
    memo: HashMap<(BlobId, PathBuf), (Option<BlobId>, u64)>,
    /// Files below each tree counted so far: a listing that repeats one subtree many times
    /// costs one walk of it.
    file_counts: HashMap<BlobId, u64>,
}

impl Rewriter<'_> {
    /// The head rewritten (refs still to be written), or None when nothing matches.
    fn snapshot(&mut self, head: &SnapshotHead) -> Result<Option<(SnapshotHead, u64)>> {
        let Some(root) = head.root.subtree else {
            return Ok(None);
        };
        let _ = self.reader.prefetch_trees(&root);
        let domain = self.reader.domain(&head.domain)?;
        let (new_root, mut removed) = self.dir(&domain, root, Path::new(""))?;
        // Whether anything changed, not the file count, decides: a match of only a symlink,
        // a named pipe or an empty directory removes no file but still rewrites the snapshot.
        let mut changed = new_root.is_some();
        let mut new = head.clone();
        if let Some(id) = new_root {
            new.root.subtree = Some(id);
        }
        if let Some(list_id) = head.skipped_list {
            let list: SkippedList = crate::format::decode_json(
                &self.reader.read(&list_id)?,
                "skipped-file list",
                TREE_VERSION,
            )?;
            let before = list.entries.len();
            let entries: Vec<_> = list
                .entries
                .into_iter()
                .filter(|e| !self.pattern.matches(Path::new(e.path.as_os())))
                .collect();
            if entries.len() != before {
                changed = true;
                removed = removed.saturating_add((before - entries.len()) as u64);
                new.skipped = entries.len() as u64;
                new.skipped_list = if entries.is_empty() {
                    None
                } else {
                    let json = compress::json_bytes(&SkippedList {
                        version: TREE_VERSION,
                        entries,
                    })?;
                    let id = domain.blob_id(&json);
                    self.new_trees.insert(id, (domain.name.clone(), json));
                    Some(id)
                };
            }
        }
        Ok(changed.then_some((new, removed)))
    }

    /// Rewrite one directory: (new tree id if anything below changed, entries removed).
    fn dir(
        &mut self,
        domain: &DomainKeys,
        tree_id: BlobId,
        rel: &Path,
    ) -> Result<(Option<BlobId>, u64)> {
        let key = (tree_id, rel.to_path_buf());
        if let Some(done) = self.memo.get(&key) {
            return Ok(*done);
        }
        crate::format::tree::check_depth(rel).map_err(|e| Error::Damaged(e.to_string()))?;
        let mut tree = self.reader.tree(&tree_id)?;
        let (mut removed, mut changed) = (0u64, false);
        let mut kept = Vec::with_capacity(tree.nodes.len());
        for mut node in std::mem::take(&mut tree.nodes) {
            let path = rel.join(node.name.as_os());
            if self.pattern.matches(&path) {
                removed = removed.saturating_add(self.files_in(&node, &path)?);
                changed = true;
                continue;
            }
            if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                let (new, n) = self.dir(domain, sub, &path)?;
                removed = removed.saturating_add(n);
                if new.is_some() {
                    node.subtree = new;
                    changed = true;
                }
            }
            kept.push(node);
        }
        let new_id = if changed {
            tree.nodes = kept;
            let json = crate::compress::json_bytes(&tree)?;
            let id = domain.blob_id(&json);
            self.new_trees.insert(id, (domain.name.clone(), json));
            Some(id)
        } else {
            None
        };
        self.memo.insert(key, (new_id, removed));
        Ok((new_id, removed))
    }

    /// Regular files at or below `node` (what an erase report counts).
    fn files_in(&mut self, node: &crate::format::tree::Node, path: &Path) -> Result<u64> {
        match (node.kind, node.subtree) {
            (NodeKind::File, _) => Ok(1),
            (NodeKind::Dir, Some(sub)) => {
                if let Some(n) = self.file_counts.get(&sub) {
                    return Ok(*n);
                }
                crate::format::tree::check_depth(path)
                    .map_err(|e| Error::Damaged(e.to_string()))?;
                let mut n = 0;
                for child in self.reader.tree(&sub)?.nodes {
                    n = self
                        .files_in(&child, &path.join(child.name.as_os()))?
                        .saturating_add(n);
                }
                self.file_counts.insert(sub, n);
                Ok(n)
            }
            _ => Ok(0),
        }
    }

    /// A tree by id, new or stored.
    fn tree(&self, id: &BlobId) -> Result<Tree> {
        match self.new_trees.get(id) {
            Some((_, json)) => Ok(crate::format::decode_json(
                json,
                "rewritten tree",
                TREE_VERSION,
            )?),
            None => self.reader.tree(id),
        }
    }

    /// Every blob a rewritten head needs, and its file/dir/byte counts.
    fn references(&self, head: &mut SnapshotHead) -> Result<Vec<BlobId>> {
        let mut refs = Vec::new();
        let (mut files, mut dirs, mut bytes) = (0, 0, 0);
        let mut stack: Vec<BlobId> = head.root.subtree.into_iter().collect();
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            refs.push(id);
            for node in self.tree(&id)?.nodes {
                match node.kind {
                    NodeKind::Dir => {
                        dirs += 1;
                        stack.extend(node.subtree.filter(|s| seen.insert(*s)));
                    }
                    NodeKind::File => {
                        files += 1;
                        bytes += node.size;
                        refs.extend(node.content.iter().map(|c| c.0));
                    }
                    NodeKind::Symlink | NodeKind::Fifo => {}
                }
            }
        }
        refs.extend(head.skipped_list);
        head.stats.files = files;
        head.stats.dirs = dirs + 1;
        head.stats.bytes = bytes;
        Ok(refs)
    }

    /// Seal the new trees, write reference lists and the new heads (oldest first, parents
    /// pointing at rewritten parents). Returns the new ids in `rewrites` order.
    fn commit(
        &self,
        index: &MasterIndex,
        rewrites: &mut [(&SnapshotInfo, SnapshotHead, u64)],
    ) -> Result<Vec<SnapshotId>> {
        let repo = self.repo;
        let uploader = PackUploader::start(repo.clone(), Vec::new(), repo.connections());
        let mut commit = CommitSession::new(repo, index, Arc::new(uploader));
        // One session and pack writer per key domain; a pack holds blobs of one domain.
        let mut by_domain: HashMap<&str, Vec<(&BlobId, &Vec<u8>)>> = HashMap::new();
        for (id, (domain, json)) in &self.new_trees {
            if !index.dedupable(id) {
                by_domain.entry(domain).or_default().push((id, json));
            }
        }
        for (name, trees) in by_domain {
            // Sealed to the current generation (after an operator change, a removed operator
            // never held it), as a backup would.
            let domain = repo.domain_for_write(name)?;
            let session = repo.start_session(&domain.recipient)?;
            let mut writer = PackWriter::new(name, repo.config.pack_target);
            for (id, json) in trees {
                let (tag, payload) = compress::compress(json, repo.config.zstd_level);
                let frame = seal_blob(&session, id, BlobKind::Tree.code(), tag, &payload);
                if writer.add(*id, BlobKind::Tree, &frame) {
                    commit.uploader().submit_pack(&mut writer, repo)?;
                }
            }
            if !writer.is_empty() {
                commit.uploader().submit_pack(&mut writer, repo)?;
            }
        }
        for (_, head, _) in rewrites.iter_mut() {
            let refs = self.references(head)?;
            head.refs = commit
                .write_refs(None, refs.iter().map(RefKey::from).collect())?
                .ids;
        }
        commit.finish()?;

        let now = humantime::format_rfc3339_seconds(crate::clock::now()).to_string();
        let mut renamed: HashMap<SnapshotId, SnapshotId> = HashMap::new();
        let mut out = Vec::new();
        for (old, head, removed) in rewrites.iter_mut() {
            head.parent = head.parent.map(|p| renamed.get(&p).copied().unwrap_or(p));
            head.rewritten = Some(Rewritten {
                time: now.clone(),
                by: repo.opened_by.clone(),
                from: old.id,
                reason: "erase".into(),
                entries_removed: *removed,
            });
            let id = write_head(repo, head)?;
            renamed.insert(old.id, id);
            out.push(id);
        }
        Ok(out)
    }
}
