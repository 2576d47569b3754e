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
}

impl InOrder {
    /// Add the next listing's slots (listings come numbered 0, 1, 2, …).
    pub fn push(&mut self, slots: Vec<Slot>) {
        let waiting = slots
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count();
        self.dirs.push_back(Dir { waiting, slots });
    }

    fn slot(&mut self, dir: u64, child: usize) -> Option<&mut Slot> {
        let at = usize::try_from(dir.checked_sub(self.base)?).ok()?;
        self.dirs.get_mut(at)?.slots.get_mut(child)
    }

    /// Take what a file being read will need, and settle its slot: with `entry` as its
    /// record, or left out.
    pub fn settle(
        &mut self,
        dir: u64,
        child: usize,
        entry: impl FnOnce(&Waiting) -> Option<CacheEntry>,
    ) -> Option<Waiting> {
        let slot = self.slot(dir, child)?;
        let Slot::Waiting(waiting) = std::mem::replace(slot, Slot::Skip) else {
            return None;
        };
        if let Some(e) = entry(&waiting) {
            *slot = Slot::Ready(waiting.rel.clone(), e);
        }
        let at = (dir - self.base) as usize;
        if let Some(d) = self.dirs.get_mut(at) {
            d.waiting = d.waiting.saturating_sub(1);
        }
        Some(waiting)
    }

    /// Write every record whose turn has come.
    pub fn flush(&mut self, cache: &mut FileCache) {
        while self.dirs.front().is_some_and(|d| d.waiting == 0) {
            if let Some(dir) = self.dirs.pop_front() {
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
