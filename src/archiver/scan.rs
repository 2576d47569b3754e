//! One pass over a record store: the walk lists a directory, unchanged files take their ids
//! from the cache, the rest go to the readers, and the assembler seals each directory's tree
//! as soon as its files are in. Cache lookups and this run's cache records both follow the
//! walk's order, so memory holds what is in flight, not the store.

use super::assemble::Assembler;
use super::cache::{CacheEntry, FileCache};
use super::changes::ChangeTracker;
use super::in_order::{InOrder, Slot, Waiting};
use super::pipeline::{FileDone, FileJob, Progress};
use crate::error::Result;
use crate::format::tree::{Name, NodeKind, SkippedEntry};
use crate::repository::MasterIndex;
use crate::source::{Child, Listing};
use crossbeam_channel::{Receiver, Sender};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::Ordering;

/// Cache records held for walk order at most before the walk waits for the readers (about
/// 150 bytes each).
const MAX_HELD: usize = 65_536;

/// The state of one pass.
pub struct Scan<'a> {
    pub root: &'a Path,
    pub index: &'a MasterIndex,
    pub progress: &'a Progress,
    pub cache: FileCache,
    pub order: InOrder,
    pub trees: Assembler<'a>,
    pub changes: ChangeTracker,
    /// Files that could not be read, with reasons (names: never log at info).
    pub skipped: Vec<SkippedEntry>,
    pub files_read: u64,
    pub bytes_read: u64,
}

impl Scan<'_> {
    /// Walk every listing, feeding `jobs`, and take every result from `done`. Stops early
    /// (returning normally) when the readers stop; the caller finds the trees unfinished.
    pub fn run(
        &mut self,
        listings: impl Iterator<Item = Listing>,
        jobs: Sender<FileJob>,
        done: &Receiver<FileDone>,
    ) -> Result<()> {
        for listing in listings {
            if !self.listing(listing, &jobs)? {
                break;
            }
            while let Ok(d) = done.try_recv() {
                self.arrived(d)?;
            }
            self.order.flush(&mut self.cache);
            // Records held back by a file still being read: wait for reads before walking on
            // (the oldest listing's files are all queued, so this always ends).
            while self.order.held() > MAX_HELD {
                let Ok(d) = done.recv() else { break };
                self.arrived(d)?;
                self.order.flush(&mut self.cache);
            }
        }
        drop(jobs);
        for d in done {
            self.arrived(d)?;
        }
        self.order.flush(&mut self.cache);
        Ok(())
    }

    /// Open one directory; `false` if the readers have stopped.
    fn listing(&mut self, listing: Listing, jobs: &Sender<FileJob>) -> Result<bool> {
        let mut slots = Vec::with_capacity(listing.children.len());
        let mut nodes = Vec::with_capacity(listing.children.len());
        let mut reads = Vec::new();
        for (child, Child { mut node, stat }) in listing.children.into_iter().enumerate() {
            if node.kind != NodeKind::File {
                slots.push(Slot::Skip);
                nodes.push(node);
                continue;
            }
            let rel = listing
                .rel
                .join(node.name.as_os())
                .into_os_string()
                .into_vec();
            let before = self.cache.previous(&rel);
            let index = self.index;
            match before
                .as_ref()
                .and_then(|b| b.reuse(&stat, |id| index.dedupable(id)))
            {
                Some(content) => {
                    node.content = content.clone();
                    let incompressible = before.is_some_and(|b| b.incompressible);
                    slots.push(Slot::Ready(
                        rel,
                        CacheEntry {
                            stat,
                            content,
                            incompressible,
                        },
                    ));
                }
                None => {
                    self.progress
                        .bytes_total
                        .fetch_add(stat.size, Ordering::Relaxed);
                    reads.push(FileJob {
                        dir: listing.id,
                        child,
                        path: self.root.join(Path::new(std::ffi::OsStr::from_bytes(&rel))),
                    });
                    slots.push(Slot::Waiting(Waiting {
                        rel,
                        stat,
                        before: before.map(|b| b.incompressible),
                    }));
                }
            }
            nodes.push(node);
        }
        self.order.push(slots);
        self.trees
            .open(listing.id, listing.parent, nodes, reads.len())?;
        if listing.id == 0 {
            // Crash tests stop here: the root is listed, nothing of it read yet.
            crate::failpoint::pause("after-first-listing", 0);
        }
        for job in reads {
            self.files_read += 1;
            self.progress.files_total.fetch_add(1, Ordering::Relaxed);
            if jobs.send(job).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A file's result from the readers.
    fn arrived(&mut self, done: FileDone) -> Result<()> {
        let read = done.result;
        let changes = &mut self.changes;
        let waiting = self.order.settle(done.dir, done.child, |w| {
            let read = read.as_ref().ok()?;
            match w.before {
                Some(was) => changes.modified(read.len, read.high_entropy_bytes, was),
                None => changes.added(),
            }
            Some(CacheEntry {
                stat: w.stat,
                content: read.content.clone(),
                incompressible: read.high_entropy_bytes * 2 > read.len,
            })
        });
        match read {
            Ok(read) => {
                self.bytes_read += read.len;
                let content = Some((read.content, read.len));
                self.trees.file_read(done.dir, done.child, content)
            }
            Err(reason) => {
                if let Some(w) = waiting {
                    if w.before.is_some() {
                        self.cache.unreadable_now();
                    }
                    self.skipped.push(SkippedEntry {
                        path: Name(w.rel),
                        error: reason,
                    });
                }
                self.trees.file_read(done.dir, done.child, None)
            }
        }
    }
}
