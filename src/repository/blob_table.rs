//! The index's blob table: every blob's location as one 44-byte entry (id, pack slot with the
//! blob kind in its top bits, offset, length) in a vector sorted by id and searched by binary
//! search. A hash map of the same cost 100 to 130 bytes per blob (entry padding, empty
//! buckets); ten million blobs now take 440 MB instead of more than a gigabyte.
//!
//! Offsets and lengths are 32-bit: no pack custodian writes today reaches 4 GiB (the pack target
//! is at most 512 MiB, plus one blob). A location beyond that (a repository made with a larger
//! target before the limit existed) goes to a small side table of whole locations instead.

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
    /// Locations that do not fit an entry, sorted by id too.
    wide: Vec<(BlobId, Location)>,
}

impl BlobTable {
    /// Add a location (unsorted until `settle`).
    pub fn push(&mut self, id: BlobId, loc: Location) {
        let offset = u32::try_from(loc.offset)
            .ok()
            .filter(|o| o.checked_add(loc.length).is_some() && loc.pack < MAX_SLOTS);
        match offset {
            Some(offset) => self.entries.push(Entry {
                id,
                pack: loc.pack | (kind_code(loc.kind) << SLOT_BITS),
                offset,
                length: loc.length,
            }),
            None => self.wide.push((id, loc)),
        }
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
        self.wide
            .sort_unstable_by_key(|(id, l)| (*id, rank(l.pack), l.offset));
        self.wide.dedup_by_key(|(id, _)| *id);
        // A blob with a compact location too keeps that one: each blob is listed once.
        let entries = &self.entries;
        self.wide
            .retain(|(id, _)| entries.binary_search_by(|e| e.id.cmp(id)).is_err());
    }

    pub fn get(&self, id: &BlobId) -> Option<Location> {
        match self.entries.binary_search_by(|e| e.id.cmp(id)) {
            Ok(at) => Some(self.entries[at].location()),
            Err(_) => self
                .wide
                .binary_search_by(|(w, _)| w.cmp(id))
                .ok()
                .map(|at| self.wide[at].1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.wide.len()
    }

    /// Every blob and its location (the compact ones in id order, then the wide ones).
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, Location)> {
        let compact = self.entries.iter().map(|e| (&e.id, e.location()));
        compact.chain(self.wide.iter().map(|(id, l)| (id, *l)))
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
        t.push(a, loc(0, 5, BlobKind::Data));
        t.push(b, loc(1, 7, BlobKind::Tree));
        t.push(a, loc(2, 9, BlobKind::Data));
        t.push(c, loc(0, 1, BlobKind::Refs));
        t.push(c, loc(3, 2, BlobKind::Refs));
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
    fn locations_beyond_32_bits_are_kept_whole() {
        let mut t = BlobTable::default();
        let far = loc(0, 5 << 32, BlobKind::Tree);
        let late = loc(MAX_SLOTS + 3, 7, BlobKind::Data);
        let edge = loc(1, u64::from(u32::MAX) - 5, BlobKind::Data);
        t.push(BlobId([1; 32]), far);
        t.push(BlobId([2; 32]), late);
        t.push(BlobId([3; 32]), edge);
        // Blob 4 is both near and far: listed once, near.
        t.push(BlobId([4; 32]), far);
        t.push(BlobId([4; 32]), loc(2, 9, BlobKind::Data));
        t.settle(|slot| (false, slot));
        assert_eq!(t.len(), 4);
        let got = t.get(&BlobId([1; 32])).unwrap();
        assert_eq!(
            (got.pack, got.offset, got.kind),
            (0, 5 << 32, BlobKind::Tree)
        );
        assert_eq!(t.get(&BlobId([2; 32])).unwrap().pack, MAX_SLOTS + 3);
        assert_eq!(t.get(&BlobId([3; 32])).unwrap().offset, edge.offset);
        assert_eq!(t.get(&BlobId([4; 32])).unwrap().offset, 9);
        assert_eq!(t.iter().count(), 4);
    }
}
