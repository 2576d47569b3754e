//! Reading blobs back: fetch, authenticate, decompress, and check the id against the plaintext,
//! so a damaged or substituted blob is an error and never wrong bytes.

use super::{pack_name, Location, MasterIndex, Repository};
use crate::compress;
use crate::constants::RESTORE_RANGE_GAP;
use crate::crypto::blob_seal::{frame_session, open_blob};
use crate::crypto::DomainKeys;
use crate::error::{Error, FormatError, Result};
use crate::format::kind::{REFS_MAX_PLAIN, TREE_MAX_PLAIN};
use crate::format::tree::{Tree, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::BlobId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Blobs of one pack with their locations, sorted by offset.
pub type PackBlobs = Vec<(BlobId, Location)>;

/// Reads and verifies blobs, caching domain keys.
pub struct BlobReader<'a> {
    pub repo: &'a Repository,
    pub index: &'a MasterIndex,
    domains: Mutex<HashMap<String, Arc<DomainKeys>>>,
    /// Trees fetched ahead by [`Self::prefetch_trees`], so walking a snapshot costs a few
    /// requests per pack instead of one per directory.
    trees: Mutex<HashMap<BlobId, Tree>>,
    /// Entries handed out by [`Self::tree`] so far, and how many may be: listings that share
    /// subtrees can describe exponentially many entries in a few blobs, so walks are budgeted.
    nodes_read: std::sync::atomic::AtomicU64,
    node_budget: std::sync::atomic::AtomicU64,
}

/// Default walk budget: far above any store this build can restore in memory.
pub const NODE_BUDGET: u64 = 50_000_000;

impl<'a> BlobReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a MasterIndex) -> Self {
        BlobReader {
            repo,
            index,
            domains: Mutex::default(),
            trees: Mutex::default(),
            nodes_read: Default::default(),
            node_budget: NODE_BUDGET.into(),
        }
    }

    /// Allow at most `entries` more listing entries to be walked (restore sets it from the
    /// snapshot's own counts).
    pub fn limit_walk(&self, entries: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let read = self.nodes_read.load(Relaxed);
        self.node_budget
            .store(read.saturating_add(entries).min(NODE_BUDGET), Relaxed);
    }

    fn charge(&self, tree: &Tree, id: &BlobId) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let read =
            self.nodes_read.fetch_add(tree.nodes.len() as u64, Relaxed) + tree.nodes.len() as u64;
        let budget = self.node_budget.load(Relaxed);
        if read > budget {
            return Err(Error::RefusedListing {
                snapshot: None,
                dir: String::new(),
                tree: id.short(),
                source: crate::format::tree::TreeError {
                    entry: "(all)".into(),
                    reason: format!(
                        "would make the walk exceed {budget} entries, more than the snapshot \
                         holds: its listings repeat subtrees without end"
                    ),
                },
            });
        }
        Ok(())
    }

    /// Keys of a content domain (operators only).
    pub fn domain(&self, name: &str) -> Result<Arc<DomainKeys>> {
        let mut cache = self
            .domains
            .lock()
            .map_err(|_| Error::Internal("internal error: poisoned lock".into()))?;
        if let Some(d) = cache.get(name) {
            return Ok(d.clone());
        }
        let keys = Arc::new(self.repo.domain_for_read(name)?);
        cache.insert(name.to_string(), keys.clone());
        Ok(keys)
    }

    /// Where a blob is, or a "missing" error naming it.
    pub fn locate(&self, id: &BlobId) -> Result<Location> {
        let loc = self.index.get(id).ok_or_else(|| {
            Error::Damaged(format!(
                "blob {} is not in the index: the repository is incomplete; run 'custodian check'.",
                id.short()
            ))
        })?;
        // Index entries are signed by a writer, not checked by anyone: one that claims a frame
        // larger than any chunk, or beyond its pack, would make readers allocate or overflow.
        let end = loc.offset.checked_add(u64::from(loc.length));
        let max_frame = crate::format::tree::MAX_CHUNK + 4096;
        if loc.length as usize > max_frame || end.is_none_or(|e| e > self.index.pack(&loc).size) {
            return Err(Error::Damaged(format!(
                "the index entry of blob {} lies outside its pack or exceeds any frame: the index \
                 is damaged or forged; run 'custodian check'.",
                id.short()
            )));
        }
        Ok(loc)
    }

    /// Fetch and open one blob.
    pub fn read(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let pack = self.index.pack(&loc);
        let frame =
            self.repo
                .backend
                .get_range(&pack_name(&pack.id), loc.offset, u64::from(loc.length))?;
        self.open(id, &loc, &frame)
    }

    /// Open a frame already fetched; verifies AEAD and that the plaintext hashes to `id`.
    pub fn open(&self, id: &BlobId, loc: &Location, frame: &[u8]) -> Result<Vec<u8>> {
        let pack = self.index.pack(loc);
        let what = format!("blob {} in pack {}", id.short(), pack.id.short());
        let session = frame_session(frame)
            .ok_or_else(|| Error::Damaged(format!("{what} is damaged: no valid frame header")))?;
        let domain = if loc.kind == BlobKind::Refs {
            None
        } else {
            Some(self.domain(&pack.domain)?)
        };
        let key = self.repo.session_key(session, domain.as_deref())?;
        let (tag, payload) = open_blob(&key, id, loc.kind.code(), frame, &what)
            .map_err(|e| Error::Damaged(format!("{e}")))?;
        let plain = match loc.kind {
            BlobKind::Data => {
                compress::decompress(tag, payload, self.repo.config.chunker.max as usize)
            }
            BlobKind::Tree if tag == compress::ZSTD => {
                compress::decompress_bounded(&payload, TREE_MAX_PLAIN)
            }
            _ if tag == compress::ZSTD => compress::decompress_bounded(&payload, REFS_MAX_PLAIN),
            _ => compress::decompress(tag, payload, 0),
        }
        .map_err(|e| Error::Damaged(format!("{what} does not decompress: {e}")))?;
        let actual = match &domain {
            Some(d) => d.blob_id(&plain),
            None => self.repo.meta.blob_id(&plain),
        };
        if actual != *id {
            return Err(Error::Damaged(format!(
                "{what} holds content that does not match its id"
            )));
        }
        Ok(plain)
    }

    /// Locate `ids` and group them by pack slot, each group sorted by offset: the unit of
    /// work for every batched read (restore, prefetch, reference lists).
    pub fn group_by_pack<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i BlobId>,
    ) -> Result<BTreeMap<u32, PackBlobs>> {
        let mut groups: BTreeMap<u32, PackBlobs> = BTreeMap::new();
        for id in ids {
            let loc = self.locate(id)?;
            groups.entry(loc.pack).or_default().push((*id, loc));
        }
        for blobs in groups.values_mut() {
            blobs.sort_by_key(|(_, l)| l.offset);
        }
        Ok(groups)
    }

    /// Fetch `spans` of pack slot `pack` and open each of `blobs` (sorted by offset, all inside
    /// the spans), handing every verified plaintext to `each`.
    pub fn read_spans(
        &self,
        pack: u32,
        spans: &[(u64, u64)],
        blobs: &[(BlobId, Location)],
        mut each: impl FnMut(&BlobId, &Location, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let name = pack_name(&self.index.packs[pack as usize].id);
        let mut blobs = blobs.iter().peekable();
        for &(start, end) in spans {
            let bytes = self.repo.backend.get_range(&name, start, end - start)?;
            while let Some((id, loc)) =
                blobs.next_if(|(_, l)| l.offset + u64::from(l.length) <= end)
            {
                let lo = (loc.offset - start) as usize;
                let frame = bytes.get(lo..lo + loc.length as usize).ok_or_else(|| {
                    Error::Damaged(format!("{name} is shorter than its index says"))
                });
                each(id, loc, frame.and_then(|f| self.open(id, loc, f)))?;
            }
        }
        // Every blob asked for lies inside the spans read; one that does not means the index
        // disagrees with itself (a wrong pack size or offset), and skipping it would leave a
        // file short without a word.
        if let Some((id, _)) = blobs.next() {
            return Err(Error::Damaged(format!(
                "blob {} lies outside what the index says {name} holds: the index is damaged or \
                 forged. Run 'custodian check'.",
                id.short()
            )));
        }
        Ok(())
    }

    /// Read many blobs with few requests: grouped by pack, neighbouring frames fetched in one
    /// ranged read (see [`coalesce`]). Every blob is verified as in [`Self::read`].
    pub fn read_many(&self, ids: &[BlobId]) -> Result<HashMap<BlobId, Vec<u8>>> {
        let mut out = HashMap::with_capacity(ids.len());
        for (pack, blobs) in self.group_by_pack(ids)? {
            self.read_spans(pack, &coalesce(&blobs), &blobs, |id, _, plain| {
                out.insert(*id, plain?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Fetch every tree below `root` level by level (one batched read per level), so later
    /// [`Self::tree`] calls are served from memory.
    pub fn prefetch_trees(&self, root: &BlobId) -> Result<()> {
        let mut level = vec![*root];
        while !level.is_empty() {
            let fetched = self.read_many(&level)?;
            let mut next = Vec::new();
            let mut cache = self
                .trees
                .lock()
                .map_err(|_| Error::Internal("internal error: poisoned lock".into()))?;
            for (id, plain) in fetched {
                let tree = decode_tree(&id, &plain)?;
                next.extend(tree.nodes.iter().filter_map(|n| n.subtree));
                cache.insert(id, tree);
            }
            next.sort_unstable();
            next.dedup();
            next.retain(|id| !cache.contains_key(id));
            level = next;
        }
        Ok(())
    }

    /// Read and decode a tree blob (from the prefetched set when there).
    pub fn tree(&self, id: &BlobId) -> Result<Tree> {
        let cached = self.trees.lock().ok().and_then(|c| c.get(id).cloned());
        let tree = match cached {
            Some(tree) => tree,
            None => decode_tree(id, &self.read(id)?)?,
        };
        self.charge(&tree, id)?;
        Ok(tree)
    }
}

/// Byte ranges covering `blobs` (sorted by offset), merging neighbours whose gap is under
/// [`RESTORE_RANGE_GAP`]: reading a little extra beats another request.
pub fn coalesce(blobs: &[(BlobId, Location)]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (_, l) in blobs {
        let end = l.offset + u64::from(l.length);
        match spans.last_mut() {
            Some((_, e)) if l.offset <= *e + RESTORE_RANGE_GAP => *e = (*e).max(end),
            _ => spans.push((l.offset, end)),
        }
    }
    spans
}

/// Decode a tree and validate it: every listing read from a repository is hostile input, and
/// this is the one place all of them (restore, ls, diff, find, dump, drill, erase) come through.
pub fn decode_tree(id: &BlobId, plain: &[u8]) -> Result<Tree> {
    let tree: Tree =
        crate::format::decode_json(plain, &format!("tree {}", id.short()), TREE_VERSION)
            .map_err(|e: FormatError| e)?;
    tree.validate().map_err(|source| Error::RefusedListing {
        snapshot: None,
        dir: String::new(),
        tree: id.short(),
        source,
    })?;
    Ok(tree)
}

/// Check a tree-kind blob as `check --read-data` does: a directory listing must pass
/// [`decode_tree`]; the other tree-kind blob, a skipped-file list, must decode.
pub fn validate_tree_blob(id: &BlobId, plain: &[u8]) -> Result<()> {
    match decode_tree(id, plain) {
        Err(Error::Format(e)) => crate::format::decode_json::<crate::format::tree::SkippedList>(
            plain,
            &format!("tree {}", id.short()),
            TREE_VERSION,
        )
        .map(drop)
        .map_err(|_| Error::Format(e)),
        other => other.map(drop),
    }
}
