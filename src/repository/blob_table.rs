//! The index's blob table: every blob's location in 39 bytes, so that ten million blobs take
//! under 400 MB. The entries sit in one vector sorted by id, split into 65,536 buckets by the
//! id's first two bytes, which each entry then leaves out (ids are keyed hashes, so buckets are
//! even). A lookup is a bucket and a binary search among its few hundred entries.
//!
//! A location is where its frame starts with the packs laid end to end in slot order (46 bits:
//! 64 TiB of packs), the frame's length (24 bits: 16 MiB, above any chunk) and the blob kind (2
//! bits), in 9 bytes; the slot is found again from the packs' starts by binary search. An entry
//! that does not fit (a larger frame or repository, or one no pack size can hold, as a forged
//! index may claim) keeps its whole location in a small side table instead: nothing is refused
//! here, and reading checks every location against its pack anyway.
//!
//! Before: one 44-byte entry (whole id, 32-bit slot, offset, length), 45.9 bytes a blob by RSS
//! at ten million; a hash map cost 100 to 130.

use super::index::Location;
use crate::format::BlobKind;
use crate::id::BlobId;

/// Id bytes the bucket stands for.
const PREFIX: usize = 2;
const BUCKETS: usize = 1 << (8 * PREFIX);
/// A packed location.
const LOC: usize = 9;
/// A settled entry: the id without its prefix, then the location.
const ENTRY: usize = 32 - PREFIX + LOC;
/// An entry not yet settled: the whole id, then the location.
const WHOLE: usize = 32 + LOC;
const POS_BITS: u32 = 46;
const LEN_BITS: u32 = 24;

const _: () = assert!(ENTRY == 39 && std::mem::size_of::<[u8; ENTRY]>() == 39);

fn kind_of(code: u128) -> BlobKind {
    match code {
        0 => BlobKind::Data,
        1 => BlobKind::Tree,
        _ => BlobKind::Refs,
    }
}

/// (position, length, kind) in 9 bytes.
fn pack_loc(pos: u64, length: u32, kind: BlobKind) -> [u8; LOC] {
    let v = u128::from(pos)
        | u128::from(length) << POS_BITS
        | u128::from(kind.code()) << (POS_BITS + LEN_BITS);
    let mut out = [0u8; LOC];
    out.copy_from_slice(&v.to_le_bytes()[..LOC]);
    out
}

fn unpack_loc(bytes: &[u8]) -> (u64, u32, BlobKind) {
    let mut wide = [0u8; 16];
    wide[..LOC].copy_from_slice(bytes);
    let v = u128::from_le_bytes(wide);
    let pos = (v & ((1 << POS_BITS) - 1)) as u64;
    let length = ((v >> POS_BITS) & ((1 << LEN_BITS) - 1)) as u32;
    (pos, length, kind_of(v >> (POS_BITS + LEN_BITS)))
}

/// The first half of an id as a number: comparing two of them orders ids like their bytes,
/// without a call to `memcmp` per comparison.
fn id_head(e: &[u8; WHOLE]) -> u128 {
    let mut head = [0u8; 16];
    head.copy_from_slice(&e[..16]);
    u128::from_be_bytes(head)
}

fn by_id(a: &[u8; WHOLE], b: &[u8; WHOLE]) -> std::cmp::Ordering {
    id_head(a)
        .cmp(&id_head(b))
        .then_with(|| a[16..32].cmp(&b[16..32]))
}

/// Sort whole entries by id on two threads: split by the ids' top bit (ids are keyed hashes,
/// so the halves are even), then sort each half. Loading ten million blobs spent a third of
/// its time in one thread's sort.
fn sort_by_id(all: &mut [[u8; WHOLE]]) {
    // A thread costs more than sorting a few packs' worth (a backup's recovered leftovers).
    if all.len() < 1 << 16 {
        all.sort_unstable_by(by_id);
        return;
    }
    let (mut lo, mut hi) = (0, all.len());
    while lo < hi {
        if all[lo][0] < 0x80 {
            lo += 1;
        } else {
            hi -= 1;
            all.swap(lo, hi);
        }
    }
    let (low, high) = all.split_at_mut(lo);
    std::thread::scope(|scope| {
        scope.spawn(|| low.sort_unstable_by(by_id));
        high.sort_unstable_by(by_id);
    });
}

/// Blob locations sorted by id; `add_pack` for each pack slot in order, `settle` after adding.
pub struct BlobTable {
    /// Settled entries, sorted by id.
    entries: Vec<[u8; ENTRY]>,
    /// `buckets[p]..buckets[p + 1]`: the entries whose ids begin with the bytes of `p`.
    buckets: Vec<u32>,
    /// Pushed since the last settle.
    pending: Vec<[u8; WHOLE]>,
    /// Where each pack slot starts, the packs laid end to end, and where the last one ends.
    starts: Vec<u64>,
    end: u64,
    /// The most room one pack takes in that layout, whatever size its index entry claims: a
    /// forged size cannot then push every pack after it out of the 46 bits.
    span_cap: u64,
    /// Locations that do not fit an entry, sorted by id too.
    wide: Vec<(BlobId, Location)>,
}

impl Default for BlobTable {
    fn default() -> Self {
        BlobTable::with_span_cap(u64::MAX)
    }
}

impl BlobTable {
    /// A table in which a pack takes at most `span_cap` bytes of the layout (the largest pack
    /// the repository's settings let a writer make); frames beyond it keep whole locations.
    pub fn with_span_cap(span_cap: u64) -> Self {
        BlobTable {
            entries: Vec::new(),
            buckets: Vec::new(),
            pending: Vec::new(),
            starts: Vec::new(),
            end: 0,
            span_cap,
            wide: Vec::new(),
        }
    }

    /// Make room for the next pack slot's `size` bytes (at most the span cap).
    pub fn add_pack(&mut self, size: u64) {
        self.starts.push(self.end);
        self.end = self.end.saturating_add(size.min(self.span_cap));
    }

    /// Add a location (unsorted until `settle`).
    pub fn push(&mut self, id: BlobId, loc: Location) {
        match self.position(&loc) {
            Some(pos) => {
                let mut whole = [0u8; WHOLE];
                whole[..32].copy_from_slice(&id.0);
                whole[32..].copy_from_slice(&pack_loc(pos, loc.length, loc.kind));
                self.pending.push(whole);
            }
            None => self.wide.push((id, loc)),
        }
    }

    /// The location as one position, if it fits an entry: inside its pack's size, not empty,
    /// within the bits.
    fn position(&self, loc: &Location) -> Option<u64> {
        let slot = loc.pack as usize;
        let start = *self.starts.get(slot)?;
        let size = self.starts.get(slot + 1).unwrap_or(&self.end) - start;
        let inside = loc.length > 0
            && loc.length < 1 << LEN_BITS
            && loc
                .offset
                .checked_add(u64::from(loc.length))
                .is_some_and(|end| end <= size);
        let pos = start.checked_add(loc.offset)?;
        (inside && pos.checked_add(u64::from(loc.length))? <= 1 << POS_BITS).then_some(pos)
    }

    fn location(&self, bytes: &[u8]) -> Location {
        let (pos, length, kind) = unpack_loc(bytes);
        // The last pack starting at or before `pos`: a non-empty one, since `position` put
        // the frame inside its pack.
        let slot = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        Location {
            pack: slot as u32,
            offset: pos - self.starts.get(slot).copied().unwrap_or(0),
            length,
            kind,
        }
    }

    /// Sort, and keep one location per blob: the one whose pack ranks first by `rank` (a
    /// pack slot's (marked for deletion, order) key). Entries settled before are taken back
    /// into the sort, which costs a copy of the table: only packs recovered after a crash are
    /// added after loading.
    pub fn settle(&mut self, rank: impl Fn(u32) -> (bool, u32)) {
        let mut all = std::mem::take(&mut self.pending);
        if !self.entries.is_empty() {
            all.reserve(self.entries.len());
            all.extend(self.settled().map(|(id, e)| {
                let mut whole = [0u8; WHOLE];
                whole[..32].copy_from_slice(&id.0);
                whole[32..].copy_from_slice(&e[ENTRY - LOC..]);
                whole
            }));
            self.entries = Vec::new();
        }
        // By id alone, then each run of one id (rare) ordered by rank.
        sort_by_id(&mut all);
        let mut start = 0;
        while start < all.len() {
            let run = all[start..].partition_point(|e| e[..32] == all[start][..32]);
            if run > 1 {
                all[start..start + run].sort_unstable_by_key(|e| {
                    let loc = self.location(&e[32..]);
                    (rank(loc.pack), loc.offset)
                });
            }
            start += run;
        }
        all.dedup_by(|a, b| a[..32] == b[..32]);
        let mut wide = std::mem::take(&mut self.wide);
        wide.sort_unstable_by_key(|(id, l)| (*id, rank(l.pack), l.offset));
        wide.dedup_by_key(|(id, _)| *id);
        // A blob with a compact and a whole location too keeps the better ranked one, so a
        // marked pack never wins because its frame fitted an entry: each blob is listed once.
        let mut beaten = Vec::new();
        wide.retain(
            |(id, l)| match all.binary_search_by(|e| e[..32].cmp(&id.0)) {
                Ok(at) => {
                    let c = self.location(&all[at][32..]);
                    let wins = (rank(l.pack), l.offset) < (rank(c.pack), c.offset);
                    if wins {
                        beaten.push(at);
                    }
                    wins
                }
                Err(_) => true,
            },
        );
        if !beaten.is_empty() {
            beaten.sort_unstable();
            let mut at = 0;
            all.retain(|_| {
                at += 1;
                beaten.binary_search(&(at - 1)).is_err()
            });
        }
        self.compact(all);
        self.wide = wide;
    }

    /// Settle sorted whole entries into `entries` and `buckets`, giving their memory back as
    /// it goes (from the end, a million at a time), so both never stand in full at once.
    fn compact(&mut self, mut all: Vec<[u8; WHOLE]>) {
        const STEP: usize = 1 << 20;
        let mut buckets = vec![0u32; BUCKETS + 1];
        let mut entries: Vec<[u8; ENTRY]> = Vec::with_capacity(all.len());
        while !all.is_empty() {
            let from = all.len().saturating_sub(STEP);
            for whole in all[from..].iter().rev() {
                buckets[usize::from(u16::from_be_bytes([whole[0], whole[1]])) + 1] += 1;
                let mut e = [0u8; ENTRY];
                e.copy_from_slice(&whole[PREFIX..]);
                entries.push(e);
            }
            all.truncate(from);
            all.shrink_to_fit();
        }
        entries.reverse();
        for p in 0..BUCKETS {
            buckets[p + 1] += buckets[p];
        }
        self.entries = entries;
        self.buckets = buckets;
    }

    /// Every settled entry with its whole id, in id order.
    fn settled(&self) -> impl Iterator<Item = (BlobId, &[u8; ENTRY])> {
        let bounds = self.buckets.windows(2).enumerate();
        bounds.flat_map(move |(p, w)| {
            let prefix = (p as u16).to_be_bytes();
            self.entries[w[0] as usize..w[1] as usize]
                .iter()
                .map(move |e| {
                    let mut id = [0u8; 32];
                    id[..PREFIX].copy_from_slice(&prefix);
                    id[PREFIX..].copy_from_slice(&e[..ENTRY - LOC]);
                    (BlobId(id), e)
                })
        })
    }

    fn compact_get(&self, id: &BlobId) -> Option<Location> {
        let p = usize::from(u16::from_be_bytes([id.0[0], id.0[1]]));
        let (lo, hi) = (*self.buckets.get(p)?, *self.buckets.get(p + 1)?);
        let bucket = self.entries.get(lo as usize..hi as usize)?;
        let at = bucket
            .binary_search_by(|e| e[..ENTRY - LOC].cmp(&id.0[PREFIX..]))
            .ok()?;
        Some(self.location(&bucket[at][ENTRY - LOC..]))
    }

    /// Where blob `id` is, if indexed (settled entries only).
    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.compact_get(id).or_else(|| {
            self.wide
                .binary_search_by(|(w, _)| w.cmp(id))
                .ok()
                .map(|at| self.wide[at].1)
        })
    }

    /// Blobs settled so far.
    pub fn len(&self) -> usize {
        self.entries.len() + self.wide.len()
    }

    /// Every blob and its location (the compact ones in id order, then the wide ones).
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, Location)> + '_ {
        let compact = self
            .settled()
            .map(|(id, e)| (id, self.location(&e[ENTRY - LOC..])));
        compact.chain(self.wide.iter().map(|(id, l)| (*id, *l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn loc(pack: u32, offset: u64, kind: BlobKind) -> Location {
        Location {
            pack,
            offset,
            length: 10,
            kind,
        }
    }

    fn table(packs: &[u64]) -> BlobTable {
        let mut t = BlobTable::default();
        for size in packs {
            t.add_pack(*size);
        }
        t
    }

    #[test]
    fn the_table_finds_each_blob_once_preferring_unmarked_packs() {
        let mut t = table(&[100, 100, 100, 100]);
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
        let ids: Vec<_> = t.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![b, c, a]);
        // Nothing marked: the first location wins.
        let mut t = table(&[100, 100, 100]);
        t.push(a, loc(0, 5, BlobKind::Data));
        t.push(a, loc(2, 9, BlobKind::Data));
        t.settle(|slot| (false, slot));
        assert_eq!(t.get(&a).unwrap().pack, 0);
    }

    #[test]
    fn locations_that_do_not_fit_an_entry_are_kept_whole() {
        // Pack 1 is empty, pack 2 ends beyond the 46 bits of a position.
        let mut t = table(&[1 << 33, 0, 1 << 47]);
        let far = loc(0, 5 << 32, BlobKind::Tree);
        let forged = loc(0, (1 << 33) - 5, BlobKind::Data);
        let beyond = loc(2, 1 << 46, BlobKind::Data);
        let big = Location {
            length: 1 << LEN_BITS,
            ..loc(0, 0, BlobKind::Data)
        };
        let cases = [
            (1, far),
            (2, loc(7, 7, BlobKind::Data)),
            (3, forged),
            (4, loc(1, 0, BlobKind::Data)),
            (5, beyond),
            (6, big),
            (
                7,
                Location {
                    length: 0,
                    ..loc(0, 3, BlobKind::Refs)
                },
            ),
        ];
        for (n, l) in cases {
            t.push(BlobId([n; 32]), l);
        }
        // Pack 0 is marked for deletion. Blob 8 is whole in it and compact in pack 2; blob 9
        // compact in it and whole in pack 2: each is listed once, where it is not marked.
        t.push(BlobId([8; 32]), far);
        t.push(BlobId([8; 32]), loc(2, 9, BlobKind::Data));
        t.push(BlobId([9; 32]), loc(0, 9, BlobKind::Data));
        t.push(BlobId([9; 32]), beyond);
        t.settle(|slot| (slot == 0, slot));
        assert_eq!(t.len(), 9);
        assert_eq!(
            t.wide.len(),
            8,
            "every case above, and blob 9, is kept whole"
        );
        for (n, l) in cases {
            let got = t.get(&BlobId([n; 32])).unwrap();
            assert_eq!(
                (got.pack, got.offset, got.length, got.kind),
                (l.pack, l.offset, l.length, l.kind),
                "case {n}"
            );
        }
        let near = t.get(&BlobId([8; 32])).unwrap();
        assert_eq!((near.pack, near.offset), (2, 9));
        let whole = t.get(&BlobId([9; 32])).unwrap();
        assert_eq!((whole.pack, whole.offset), (2, beyond.offset));
        assert_eq!(t.iter().count(), 9);
    }

    #[test]
    fn a_forged_pack_size_takes_no_more_room_than_the_cap() {
        // The first pack claims 2^46 bytes; capped, the packs after it still fit entries.
        let mut t = BlobTable::with_span_cap(1 << 20);
        t.add_pack(1 << 46);
        t.add_pack(1000);
        t.push(BlobId([1; 32]), loc(1, 5, BlobKind::Data));
        t.push(BlobId([2; 32]), loc(0, 2 << 20, BlobKind::Data));
        t.settle(|slot| (false, slot));
        assert_eq!(
            t.wide.len(),
            1,
            "only the frame beyond the cap is kept whole"
        );
        let got = t.get(&BlobId([1; 32])).unwrap();
        assert_eq!((got.pack, got.offset), (1, 5));
        assert_eq!(t.get(&BlobId([2; 32])).unwrap().offset, 2 << 20);
    }

    #[test]
    fn every_location_comes_back_exactly_across_buckets_and_a_second_settle() {
        let sizes: Vec<u64> = (0..300u64).map(|i| (i * 7919) % 5000 + 1).collect();
        let mut t = table(&sizes);
        let mut want = HashMap::new();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        let mut add = |t: &mut BlobTable, want: &mut HashMap<BlobId, Location>, n: usize| {
            for i in 0..n {
                let mut id = [0u8; 32];
                for chunk in id.chunks_mut(8) {
                    chunk.copy_from_slice(&next().to_le_bytes());
                }
                // The first and last buckets too.
                match i % 50 {
                    0 => id[..2].copy_from_slice(&[0, 0]),
                    1 => id[..2].copy_from_slice(&[0xff, 0xff]),
                    _ => {}
                }
                let pack = (next() % t.starts.len() as u64) as u32;
                let start = t.starts[pack as usize];
                let size = t.starts.get(pack as usize + 1).unwrap_or(&t.end) - start;
                let offset = next() % size;
                let length = (1 + next() % (size - offset)) as u32;
                let kind = [BlobKind::Data, BlobKind::Tree, BlobKind::Refs][i % 3];
                let l = Location {
                    pack,
                    offset,
                    length,
                    kind,
                };
                t.push(BlobId(id), l);
                want.insert(BlobId(id), l);
            }
        };
        add(&mut t, &mut want, 60_000);
        t.settle(|slot| (false, slot));
        for extra in [40u64, 900] {
            t.add_pack(extra);
        }
        // The second settle sorts more than 65,536 entries: on two threads.
        add(&mut t, &mut want, 10_000);
        t.settle(|slot| (false, slot));
        assert_eq!(t.len(), want.len());
        assert!(t.wide.is_empty());
        for (id, l) in &want {
            let got = t.get(id).unwrap();
            assert_eq!(
                (got.pack, got.offset, got.length, got.kind),
                (l.pack, l.offset, l.length, l.kind)
            );
        }
        let ids: Vec<BlobId> = t.iter().map(|(id, _)| id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    }
}
