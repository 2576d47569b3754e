//! The index's blob table: every blob's location as one 44-byte entry (id, pack slot with the
//! blob kind in its top bits, offset, length) in a vector sorted by id and searched by binary
//! search. A hash map of the same cost 100 to 130 bytes per blob (entry padding, empty
//! buckets); ten million blobs now take 440 MB instead of more than a gigabyte.
//!
//! Offsets and lengths are 32-bit: no pack custodian writes reaches 4 GiB (the pack target is
//! at most 512 MiB, plus one blob). An index entry beyond that is damage and is left out, which
//! costs what a missing entry costs (the blob is stored again, or a restore names it missing).

use super::index::Location;
use crate::format::BlobKind;
use crate::id::BlobId;

/// One blob's location, packed.
#[derive(Clone, Copy)]
struct Entry {
    id: BlobId,
    /// Pack slot in the low 30 bits, blob kind in the top 2.
    pack: u32,
    offset: u32,
    length: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 44);

const SLOT_BITS: u32 = 30;
/// Pack slots the table can name (a billion packs: 16 PB at the default pack size).
pub const MAX_SLOTS: u32 = 1 << SLOT_BITS;

fn kind_code(kind: BlobKind) -> u32 {
    u32::from(kind.code())
}

fn kind_of(code: u32) -> BlobKind {
    match code {
        0 => BlobKind::Data,
        1 => BlobKind::Tree,
        _ => BlobKind::Refs,
    }
}

impl Entry {
    fn slot(&self) -> u32 {
        self.pack & (MAX_SLOTS - 1)
    }

    fn location(&self) -> Location {
        Location {
            pack: self.slot(),
            offset: u64::from(self.offset),
            length: self.length,
            kind: kind_of(self.pack >> SLOT_BITS),
        }
    }
}

/// Blob locations sorted by id; `settle` after adding.
#[derive(Default)]
pub struct BlobTable {
    entries: Vec<Entry>,
}

impl BlobTable {
    /// Add a location (unsorted until `settle`). `false`: it cannot be represented (damage).
    pub fn push(&mut self, id: BlobId, loc: Location) -> bool {
        let (Ok(offset), true) = (u32::try_from(loc.offset), loc.pack < MAX_SLOTS) else {
            return false;
        };
        if offset.checked_add(loc.length).is_none() {
            return false;
        }
        self.entries.push(Entry {
            id,
            pack: loc.pack | (kind_code(loc.kind) << SLOT_BITS),
            offset,
            length: loc.length,
        });
        true
    }

    /// Sort, and keep one location per blob: the one whose pack ranks first by `rank` (a
    /// pack slot's (marked for deletion, order) key).
    pub fn settle(&mut self, rank: impl Fn(u32) -> (bool, u32)) {
        // By id alone (a plain byte compare), then each run of one id (rare) ordered by rank.
        self.entries.sort_unstable_by_key(|e| e.id);
        let mut start = 0;
        while start < self.entries.len() {
            let id = self.entries[start].id;
            let run = self.entries[start..].partition_point(|e| e.id == id);
            if run > 1 {
                self.entries[start..start + run]
                    .sort_unstable_by_key(|e| (rank(e.slot()), e.offset));
            }
            start += run;
        }
        self.entries.dedup_by_key(|e| e.id);
        self.entries.shrink_to_fit();
    }

    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.entries
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|at| self.entries[at].location())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every blob and its location, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, Location)> {
        self.entries.iter().map(|e| (&e.id, e.location()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(pack: u32, offset: u64, kind: BlobKind) -> Location {
        Location {
            pack,
            offset,
            length: 10,
            kind,
        }
    }

    #[test]
    fn the_table_finds_each_blob_once_preferring_unmarked_packs() {
        let mut t = BlobTable::default();
        let (a, b, c) = (BlobId([3; 32]), BlobId([1; 32]), BlobId([2; 32]));
        assert!(t.push(a, loc(0, 5, BlobKind::Data)));
        assert!(t.push(b, loc(1, 7, BlobKind::Tree)));
        assert!(t.push(a, loc(2, 9, BlobKind::Data)));
        assert!(t.push(c, loc(0, 1, BlobKind::Refs)));
        assert!(t.push(c, loc(3, 2, BlobKind::Refs)));
        // Pack 0 is marked: `a` moves to pack 2; `c` to pack 3.
        t.settle(|slot| (slot == 0, slot));
        assert_eq!(t.len(), 3);
        let got = t.get(&a).unwrap();
        assert_eq!((got.pack, got.offset), (2, 9));
        assert_eq!(t.get(&c).unwrap().pack, 3);
        let tree = t.get(&b).unwrap();
        assert_eq!((tree.pack, tree.offset, tree.kind), (1, 7, BlobKind::Tree));
        assert!(t.get(&BlobId([9; 32])).is_none());
        let ids: Vec<_> = t.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![b, c, a]);
        // Nothing marked: the first location wins.
        let mut t = BlobTable::default();
        t.push(a, loc(0, 5, BlobKind::Data));
        t.push(a, loc(2, 9, BlobKind::Data));
        t.settle(|slot| (false, slot));
        assert_eq!(t.get(&a).unwrap().pack, 0);
    }

    #[test]
    fn locations_no_pack_can_have_are_refused() {
        let mut t = BlobTable::default();
        assert!(!t.push(BlobId([1; 32]), loc(0, 1 << 32, BlobKind::Data)));
        assert!(!t.push(BlobId([1; 32]), loc(MAX_SLOTS, 0, BlobKind::Data)));
        let mut end = loc(0, u64::from(u32::MAX) - 5, BlobKind::Data);
        assert!(!t.push(BlobId([1; 32]), end));
        end.offset = 0;
        assert!(t.push(BlobId([1; 32]), end));
    }
}
