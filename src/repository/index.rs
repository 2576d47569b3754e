//! The in-memory master index (blob id -> pack, offset, length), loaded from `index/` objects.
//! Also recovers packs that a crashed run made durable but never indexed, so the next run reuses
//! them instead of uploading again.
//!
//! Packs a prune has marked for deletion stay readable, but a blob is located in an unmarked pack
//! whenever it has one, and only blobs with an unmarked location count for deduplication.

use super::blob_table::BlobTable;
use super::marks::Marks;
use super::{pack_name, Repository};
use crate::error::{FormatError, Result};
use crate::format::index::{IndexFile, IndexPack, INDEX_VERSION};
use crate::format::pack::{parse_trailer, PackHeader, TRAILER_LEN};
use crate::format::BlobKind;
use crate::format::ObjectKind;
use crate::id::{BlobId, IndexId, PackId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;

/// A pack the index knows.
#[derive(Clone, Debug)]
pub struct PackInfo {
    pub id: PackId,
    /// Shared by every pack of the domain: one allocation per pack would be scattered among
    /// the decoded index objects and keep their freed pages from going back to the system.
    pub domain: std::sync::Arc<str>,
    pub size: u64,
}

/// Where a blob is.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    /// Slot in [`MasterIndex::packs`].
    pub pack: u32,
    pub offset: u64,
    pub length: u32,
    pub kind: BlobKind,
}

/// Index objects read at once at most: each may decode to a few hundred megabytes when forged
/// or old (ours hold at most 65,536 blobs, about 11 MB).
const MAX_INDEX_READERS: usize = 4;

/// One index object as a worker read it.
enum Read {
    File(IndexId, IndexFile),
    Damaged(String, String),
    /// Listed, then replaced by a prune before it was read.
    Gone,
}

/// Every indexed blob.
#[derive(Default)]
pub struct MasterIndex {
    pub packs: Vec<PackInfo>,
    slots: HashMap<PackId, u32>,
    blobs: BlobTable,
    /// Names of the index objects this was loaded from.
    pub objects: Vec<IndexId>,
    /// The prune markers seen when this was loaded, and the packs they name.
    pub marks: Marks,
    marked: HashSet<PackId>,
    domains: Vec<std::sync::Arc<str>>,
}

impl MasterIndex {
    /// The index of `files`, preferring packs no marker in `marks` names.
    pub fn build(marks: Marks, files: &[(IndexId, IndexFile)], span_cap: u64) -> Self {
        let mut index = Self::empty(marks, span_cap);
        for (id, file) in files {
            index.push_file(*id, file);
        }
        index.settle();
        index
    }

    /// An index with nothing yet, under `marks`; fill with `push_file`, then `settle`. A pack
    /// takes at most `span_cap` bytes in the blob table's layout (`Repository::pack_span_cap`).
    fn empty(marks: Marks, span_cap: u64) -> Self {
        MasterIndex {
            marked: marks.packs(),
            marks,
            blobs: BlobTable::with_span_cap(span_cap),
            ..Default::default()
        }
    }

    fn push_file(&mut self, id: IndexId, file: &IndexFile) {
        for pack in &file.packs {
            self.push_pack(pack);
        }
        self.objects.push(id);
    }

    /// Sort the blob table; until then lookups miss what was pushed. Of several locations of
    /// a blob the one kept does not depend on the order objects were read in: unmarked packs
    /// first, then the lowest pack id.
    fn settle(&mut self) {
        let mut by_id: Vec<u32> = (0..self.packs.len() as u32).collect();
        by_id.sort_unstable_by_key(|&slot| self.packs[slot as usize].id);
        let mut rank = vec![0u32; by_id.len()];
        for (r, slot) in by_id.into_iter().enumerate() {
            rank[slot as usize] = r as u32;
        }
        let marked: Vec<bool> = self
            .packs
            .iter()
            .map(|p| self.marked.contains(&p.id))
            .collect();
        self.blobs.settle(|slot| {
            let slot = slot as usize;
            (
                marked.get(slot).copied().unwrap_or(true),
                rank.get(slot).copied().unwrap_or(u32::MAX),
            )
        });
        self.objects.sort_unstable();
    }

    /// Add packs' entries (one sort for all of them); a blob already indexed elsewhere keeps
    /// its first location, unless that one is in a marked pack and the new one is not.
    pub fn add_packs(&mut self, packs: &[IndexPack]) {
        if packs.is_empty() {
            return;
        }
        for pack in packs {
            self.push_pack(pack);
        }
        self.settle();
    }

    /// The shared name of a key domain (few per repository).
    fn domain_name(&mut self, name: &str) -> std::sync::Arc<str> {
        if let Some(known) = self.domains.iter().find(|d| ***d == *name) {
            return known.clone();
        }
        let new: std::sync::Arc<str> = name.into();
        self.domains.push(new.clone());
        new
    }

    fn push_pack(&mut self, pack: &IndexPack) {
        if self.slots.contains_key(&pack.id) || self.packs.len() >= u32::MAX as usize {
            return;
        }
        let slot = self.packs.len() as u32;
        let domain = self.domain_name(&pack.domain);
        self.packs.push(PackInfo {
            id: pack.id,
            domain,
            size: pack.size,
        });
        self.slots.insert(pack.id, slot);
        self.blobs.add_pack(pack.size);
        for b in &pack.blobs {
            let here = Location {
                pack: slot,
                offset: b.offset,
                length: b.length,
                kind: b.kind,
            };
            self.blobs.push(b.id, here);
        }
    }

    /// Whether a writer may reuse this blob instead of storing it: it has a location in a pack
    /// no prune has marked.
    pub fn dedupable(&self, id: &BlobId) -> bool {
        self.blobs
            .get(id)
            .is_some_and(|l| !self.marked.contains(&self.packs[l.pack as usize].id))
    }

    /// Whether a prune has marked this pack for deletion.
    pub fn is_marked(&self, id: &PackId) -> bool {
        self.marked.contains(id)
    }

    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.get(id).is_some()
    }

    pub fn pack_info(&self, id: &PackId) -> Option<&PackInfo> {
        self.slots.get(id).map(|&slot| &self.packs[slot as usize])
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.slots.contains_key(id)
    }

    /// The pack a location points into.
    pub fn pack(&self, loc: &Location) -> &PackInfo {
        &self.packs[loc.pack as usize]
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every indexed blob id.
    pub fn blob_ids(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.blobs.iter().map(|(id, _)| id)
    }

    /// Every indexed blob grouped by pack, each group sorted by offset (for whole-repository
    /// passes such as `check`).
    pub fn blobs_by_pack(&self) -> HashMap<PackId, Vec<(BlobId, Location)>> {
        let mut groups: HashMap<PackId, Vec<(BlobId, Location)>> = HashMap::new();
        for (id, loc) in self.blobs.iter() {
            groups
                .entry(self.pack(&loc).id)
                .or_default()
                .push((id, loc));
        }
        for blobs in groups.values_mut() {
            blobs.sort_by_key(|(_, l)| l.offset);
        }
        groups
    }

    /// Every (blob, location) pair, in blob id order.
    pub fn entries(&self) -> impl Iterator<Item = (BlobId, Location)> + '_ {
        self.blobs.iter()
    }
}

impl Repository {
    /// The largest pack this repository's settings let a writer make: its pack target plus one
    /// largest frame and the header (a tree blob may be larger; its location is kept whole).
    pub fn pack_span_cap(&self) -> u64 {
        self.config
            .pack_target
            .saturating_add(u64::from(self.config.chunker.max))
            .saturating_add(1 << 20)
    }

    /// Load every index object.
    pub fn load_index(&self) -> Result<MasterIndex> {
        let marks = self.prune_marks()?;
        // A damaged or forged index object is skipped: what it names is then unknown (a backup
        // stores it again, a restore that needs it says which blob is missing).
        // One object at a time: only the compact table stays, never every decoded object.
        let mut index = MasterIndex::empty(marks, self.pack_span_cap());
        let damaged = self.visit_index_files(|id, file| index.push_file(id, &file))?;
        super::snapshots::warn_damaged(&damaged, "index object");
        index.settle();
        // The decoded objects were freed on the workers' arenas: what stays is the table.
        crate::memory::give_back();
        Ok(index)
    }

    /// Every index object as stored (prune rewrites them one by one); fails on one that
    /// cannot be read, since prune would take the packs it names for unindexed leftovers.
    pub fn load_index_files(&self) -> Result<Vec<(IndexId, IndexFile)>> {
        self.scan_index_files()?.strict()
    }

    /// Every readable index object, and the names of those that are damaged or forged.
    pub fn scan_index_files(&self) -> Result<super::Scanned<(IndexId, IndexFile)>> {
        let mut good = Vec::new();
        let damaged = self.visit_index_files(|id, file| good.push((id, file)))?;
        Ok(super::Scanned { good, damaged })
    }

    /// Hand every readable index object to `each`, one at a time, in any order; returns the
    /// damaged or forged ones (name, reason). Objects are fetched and decoded on one worker
    /// per core (or per connection, if more), a few at a time: decoding is the cost of
    /// opening a large index.
    fn visit_index_files(
        &self,
        mut each: impl FnMut(IndexId, IndexFile),
    ) -> Result<Vec<(String, String)>> {
        let listed = self.list_ids::<IndexId>("index/")?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(self.connections().min(MAX_INDEX_READERS))
            .min(listed.len());
        let (tx, rx) = crossbeam_channel::bounded(workers.max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, listed) = (&next, &listed);
                scope.spawn(move || {
                    while let Some((id, object)) = listed.get(next.fetch_add(1, Relaxed)) {
                        if tx.send(self.read_index_file(*id, object)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut damaged = Vec::new();
            let mut failed = None;
            for read in rx {
                match read {
                    Ok(Read::File(id, file)) => each(id, file),
                    Ok(Read::Damaged(name, why)) => damaged.push((name, why)),
                    Ok(Read::Gone) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            failed.map_or(Ok(damaged), Err)
        })
    }

    fn read_index_file(&self, id: IndexId, object: &crate::backend::ObjectInfo) -> Result<Read> {
        let mut scan = super::Scanned::<()>::default();
        // None: a prune replaced it between our listing and this read; what it named is in the
        // replacement or deleted. Missing it only costs deduplication.
        let Some(bytes) = self.fetch_for_scan(ObjectKind::Index, object, &mut scan)? else {
            return Ok(match scan.damaged.pop() {
                Some((name, why)) => Read::Damaged(name, why),
                None => Read::Gone,
            });
        };
        match self.open_meta::<IndexFile>(ObjectKind::Index, &object.name, &bytes) {
            Ok(file) => Ok(Read::File(id, file)),
            Err(e) if e.is_damage() => Ok(Read::Damaged(object.name.clone(), e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Write one index object naming `packs`, which must already be durable.
    pub fn write_index(&self, packs: Vec<IndexPack>) -> Result<IndexId> {
        // It names blob ids: sealed to the newest metadata key only.
        self.require_current_trust()?;
        let (name, _) = self.put_meta(
            ObjectKind::Index,
            &IndexFile {
                version: INDEX_VERSION,
                packs,
            },
        )?;
        name["index/".len()..].parse().map_err(|_| {
            crate::error::Error::Internal(format!("internal error: bad index name {name}"))
        })
    }

    /// Read and decrypt a pack's header (two range reads: trailer, then header).
    pub fn read_pack_header(&self, id: &PackId, size: u64) -> Result<PackHeader> {
        let name = pack_name(id);
        let what = format!("pack {}", id.short());
        if size < TRAILER_LEN as u64 {
            return Err(FormatError::Malformed {
                what,
                reason: "shorter than a pack trailer".into(),
            }
            .into());
        }
        let tail = self
            .backend
            .get_range(&name, size - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
        let header_len = u64::from(parse_trailer(&tail, &what)?);
        if header_len + TRAILER_LEN as u64 > size
            || header_len > ObjectKind::PackHeader.max_stored()
        {
            return Err(FormatError::Malformed {
                what,
                reason: "header length exceeds the pack".into(),
            }
            .into());
        }
        let sealed =
            self.backend
                .get_range(&name, size - TRAILER_LEN as u64 - header_len, header_len)?;
        let header: PackHeader = self.open_meta(ObjectKind::PackHeader, &name, &sealed)?;
        let data_end = size - TRAILER_LEN as u64 - header_len;
        if header
            .blobs
            .iter()
            .any(|b| b.offset + u64::from(b.length) > data_end)
        {
            return Err(FormatError::Malformed {
                what,
                reason: "a blob extends past the data section".into(),
            }
            .into());
        }
        Ok(header)
    }

    /// The header of a leftover pack this writer may index and deduplicate against: the whole
    /// pack is read and must hash to its name, and (format 2) its signed header must name the
    /// hash of the frames before it. Leftovers are rare (a crashed backup), so reading them whole
    /// costs little, and a pack planted from parts of others is never trusted.
    pub fn adoptable_header(&self, id: &PackId, size: u64) -> Result<PackHeader> {
        // Leftovers are read whole: one larger than any writer makes is not fetched at all.
        let cap = 2 * self.config.pack_target + 2 * u64::from(self.config.chunker.max) + (64 << 20);
        if size > cap {
            return Err(FormatError::Malformed {
                what: format!("pack {}", id.short()),
                reason: format!("{size} bytes, larger than any pack custodian writes"),
            }
            .into());
        }
        let bytes = self.backend.get(&pack_name(id))?;
        self.whole_pack_header(id, &bytes)
    }

    /// The header of a pack read whole, trusted only as far as it is bound to these bytes: the
    /// pack must hash to its name, and (format 2) its signed header must name the hash of the
    /// frames before it, so a real header spliced onto other bytes is refused.
    pub fn whole_pack_header(&self, id: &PackId, bytes: &[u8]) -> Result<PackHeader> {
        let bad = |reason: &str| -> crate::error::Error {
            FormatError::Malformed {
                what: format!("pack {}", id.short()),
                reason: reason.into(),
            }
            .into()
        };
        if crate::id::content_hash(bytes) != id.0 {
            return Err(bad("its bytes do not hash to its name"));
        }
        let what = format!("pack {}", id.short());
        let tail = bytes
            .len()
            .checked_sub(TRAILER_LEN)
            .ok_or_else(|| bad("shorter than a pack trailer"))?;
        let header_len = parse_trailer(&bytes[tail..], &what)? as usize;
        let data_end = tail
            .checked_sub(header_len)
            .ok_or_else(|| bad("header length exceeds the pack"))?;
        let header: PackHeader = self.open_meta(
            ObjectKind::PackHeader,
            &pack_name(id),
            &bytes[data_end..tail],
        )?;
        let bound = match &header.data_hash {
            Some(h) => *h == hex::encode(crate::id::content_hash(&bytes[..data_end])),
            None => {
                !self.config.signed() || self.auth().is_some_and(|a| a.vouched_pack(&id.to_hex()))
            }
        };
        let inside = header.blobs.iter().all(|b| {
            b.offset
                .checked_add(u64::from(b.length))
                .is_some_and(|e| e <= data_end as u64)
        });
        match (bound, inside) {
            (true, true) => Ok(header),
            (false, _) => Err(bad("its header belongs to other bytes")),
            (_, false) => Err(bad("a blob extends past the data section")),
        }
    }

    /// Packs present in storage but in no index (left by an interrupted run), with their headers.
    /// Unreadable leftovers are ignored: they are garbage for prune, never data we rely on.
    pub fn unindexed_packs(&self, index: &MasterIndex) -> Result<Vec<IndexPack>> {
        let mut found = Vec::new();
        for (id, object) in self.list_ids::<PackId>("packs/")? {
            if index.has_pack(&id) || index.is_marked(&id) {
                continue;
            }
            match self.adoptable_header(&id, object.size) {
                Ok(header) => found.push(IndexPack {
                    id,
                    domain: header.domain,
                    size: object.size,
                    blobs: header.blobs,
                }),
                Err(e) => tracing::warn!(pack = %id.short(), "not reusing a leftover pack: {e}"),
            }
        }
        Ok(found)
    }
}
