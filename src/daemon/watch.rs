//! Watching record stores for changes through inotify, subscribed only to events that mean a
//! change: created, deleted, moved, written and closed, modified, attributes changed. A
//! backup's own reads (open, access, close-nowrite) raise nothing, so watching a source costs
//! nothing while it is backed up; with notify's fixed mask every read of a 200,000-file store
//! queued an event, overflowed the queue and forced a rescan (issue #15). Events only say
//! "this source changed", once per batch read from the kernel; the daemon debounces them into
//! one snapshot. New subdirectories are watched as they appear; an overflow or a watcher error
//! is reported so the daemon falls back to a full scan.

use crate::config::{SourceConfig, SourceKind};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a watcher tells the daemon.
pub enum WatchEvent {
    Changed,
    /// Events were lost or the watcher failed: the source needs a full scan.
    Lost(String),
}

/// Events that mean the store changed. Not OPEN, ACCESS or CLOSE_NOWRITE: reading is no change.
const CHANGES: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// How often the watcher thread looks at its stop flag while no event comes.
const POLL_MS: i32 = 250;

/// A running watch; it stops when dropped.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watched directories by descriptor, to name the new subdirectories events report.
struct Tree {
    watches: Watches,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    recursive: bool,
}

impl Tree {
    /// Watch `dir` and, when recursive, every directory below it. A subdirectory that vanished
    /// or cannot be read meanwhile is skipped (its change is reported anyway); the root must
    /// be watchable.
    fn add(&mut self, dir: &Path, root: bool) -> Result<(), String> {
        let wd = match self.watches.add(dir, CHANGES) {
            Ok(wd) => wd,
            Err(e) if root => return Err(format!("{}: {e}", dir.display())),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(format!(
                    "out of inotify watches at {} (raise fs.inotify.max_user_watches)",
                    dir.display()
                ))
            }
            Err(_) => return Ok(()),
        };
        self.dirs.insert(wd, dir.to_path_buf());
        if !self.recursive {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add(&entry.path(), false)?;
            }
        }
        Ok(())
    }
}

/// Watch `source`, calling `tell` from the watcher's thread. Returns the watch, which stops
/// when dropped.
pub fn start(
    source: &SourceConfig,
    tell: impl Fn(WatchEvent) + Send + 'static,
) -> Result<Watch, String> {
    // A SQLite source is one file, but SQLite rewrites it through -wal and -journal files
    // beside it: watch its directory and keep events about that database.
    let (dir, recursive, prefix) = match source.kind {
        SourceKind::Directory => (source.path.clone(), true, None),
        SourceKind::Sqlite => (
            source
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            false,
            source.path.file_name().map(|n| n.to_os_string()),
        ),
    };
    let inotify = Inotify::init().map_err(|e| format!("inotify: {e}"))?;
    let mut tree = Tree {
        watches: inotify.watches(),
        dirs: HashMap::new(),
        recursive,
    };
    tree.add(&dir, true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("custodian-watch".into())
        .spawn(move || run(inotify, tree, prefix, &flag, &tell))
        .map_err(|e| format!("starting the watcher thread: {e}"))?;
    Ok(Watch {
        stop,
        thread: Some(thread),
    })
}

/// Read batches of events until stopped; one `Changed` per batch that holds a change.
fn run(
    mut inotify: Inotify,
    mut tree: Tree,
    prefix: Option<OsString>,
    stop: &AtomicBool,
    tell: &dyn Fn(WatchEvent),
) {
    let mut buffer = vec![0u8; 64 << 10];
    while !stop.load(Ordering::SeqCst) {
        if !readable(&inotify) {
            continue;
        }
        let events = match inotify.read_events(&mut buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return tell(WatchEvent::Lost(format!("reading inotify events: {e}"))),
        };
        let mut changed = false;
        let mut lost = None;
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                lost = Some("event queue overflowed".to_string());
                continue;
            }
            if event.mask.contains(EventMask::IGNORED) {
                tree.dirs.remove(&event.wd);
                continue;
            }
            let new_dir = event.mask.contains(EventMask::ISDIR)
                && event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO);
            if let (true, true, Some(name)) = (tree.recursive, new_dir, event.name) {
                if let Some(parent) = tree.dirs.get(&event.wd).cloned() {
                    if let Err(e) = tree.add(&parent.join(name), false) {
                        lost = Some(e);
                    }
                }
            }
            changed |= prefix.as_ref().is_none_or(|p| {
                event
                    .name
                    .is_some_and(|n| n.as_encoded_bytes().starts_with(p.as_encoded_bytes()))
            });
        }
        if let Some(why) = lost {
            tell(WatchEvent::Lost(why));
        } else if changed {
            tell(WatchEvent::Changed);
        }
    }
}

/// Wait up to [`POLL_MS`] for events.
fn readable(inotify: &Inotify) -> bool {
    let mut fd = libc::pollfd {
        fd: inotify.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, POLL_MS) > 0 }
}
