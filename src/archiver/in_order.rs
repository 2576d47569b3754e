//! This run's cache records, put back in walk order: files finish reading in any order, but
//! the cache file must list them in the order the next run's walk meets them. A directory's
//! records wait here only until its files and those of every directory listed before it are
//! read.

use super::cache::{CacheEntry, FileCache};
use crate::source::FileStat;
use std::collections::VecDeque;

/// What a file being read will need to be recorded.
pub struct Waiting {
    pub rel: Vec<u8>,
    pub stat: FileStat,
    /// Whether the last run found it incompressible; `None` if it did not know the file.
    pub before: Option<bool>,
}

/// One child's place in the record stream.
pub enum Slot {
    /// Not a file, or a file left out.
    Skip,
    Waiting(Waiting),
    Ready(Vec<u8>, CacheEntry),
}

struct Dir {
    waiting: usize,
    slots: Vec<Slot>,
}

/// Records of listed directories not yet written, oldest listing first.
#[derive(Default)]
pub struct InOrder {
    /// The listing number of `dirs[0]`.
    base: u64,
    dirs: VecDeque<Dir>,
    /// Slots held in `dirs`.
    held: usize,
}

impl InOrder {
    /// Add the next listing's slots (listings come numbered 0, 1, 2, …).
    pub fn push(&mut self, slots: Vec<Slot>) {
        let waiting = slots
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count();
        self.held += slots.len();
        self.dirs.push_back(Dir { waiting, slots });
    }

    /// Slots waiting to be written: one large file read early holds back every later
    /// listing's records, so the walk waits for reads when this grows too large.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Take what a file being read will need, and settle its slot: with `entry` as its
    /// record, or left out.
    pub fn settle(
        &mut self,
        dir: u64,
        child: usize,
        entry: impl FnOnce(&Waiting) -> Option<CacheEntry>,
    ) -> Option<Waiting> {
        let at = usize::try_from(dir.checked_sub(self.base)?).ok()?;
        let listed = self.dirs.get_mut(at)?;
        let slot = listed.slots.get_mut(child)?;
        let Slot::Waiting(waiting) = std::mem::replace(slot, Slot::Skip) else {
            return None;
        };
        if let Some(e) = entry(&waiting) {
            *slot = Slot::Ready(waiting.rel.clone(), e);
        }
        listed.waiting = listed.waiting.saturating_sub(1);
        Some(waiting)
    }

    /// Write every record whose turn has come.
    pub fn flush(&mut self, cache: &mut FileCache) {
        while self.dirs.front().is_some_and(|d| d.waiting == 0) {
            if let Some(dir) = self.dirs.pop_front() {
                self.held -= dir.slots.len();
                for slot in dir.slots {
                    if let Slot::Ready(rel, entry) = slot {
                        cache.record(&rel, &entry);
                    }
                }
            }
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64) -> FileStat {
        FileStat {
            size,
            mtime: 1,
            mtime_ns: 2,
            ctime: 3,
            ctime_ns: 4,
            ino: 5,
        }
    }

    fn waiting(rel: &str) -> Slot {
        Slot::Waiting(Waiting {
            rel: rel.as_bytes().to_vec(),
            stat: stat(rel.len() as u64),
            before: None,
        })
    }

    fn read(w: &Waiting) -> Option<CacheEntry> {
        Some(CacheEntry {
            stat: w.stat,
            content: Vec::new(),
            incompressible: false,
        })
    }

    #[test]
    fn records_reach_the_cache_in_walk_order_whatever_order_reads_finish() {
        let dir = tempfile::tempdir().unwrap();
        let open = |key| FileCache::open(dir.path(), "repo", "source", key).unwrap();
        let mut cache = open([5; 32]);
        let mut order = InOrder::default();
        order.push(vec![Slot::Skip, waiting("a"), waiting("b")]);
        order.push(vec![waiting("d/c")]);
        // The later directory's file is read first: nothing may be written yet.
        assert!(order.settle(1, 0, read).is_some());
        order.flush(&mut cache);
        assert_eq!(order.dirs.len(), 2);
        assert!(order.settle(0, 2, read).is_some());
        order.flush(&mut cache);
        // "a" could not be read: left out of the cache.
        assert!(order.settle(0, 1, |_| None).is_some());
        assert!(order.settle(0, 1, read).is_none(), "settled once only");
        order.flush(&mut cache);
        assert!(order.dirs.is_empty());
        cache.save().unwrap();

        let mut next = open([5; 32]);
        assert!(next.previous(b"a").is_none());
        assert_eq!(next.previous(b"b").unwrap().stat, stat(1));
        assert_eq!(next.previous(b"d/c").unwrap().stat, stat(3));
        assert_eq!(next.known_and_not_seen(), (2, 0));
        // Under another key the cache is no cache.
        let mut foreign = open([6; 32]);
        assert!(foreign.previous(b"b").is_none());
        assert_eq!(foreign.known_and_not_seen(), (0, 0));
    }
}
