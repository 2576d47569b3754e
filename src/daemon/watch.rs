//! Watching record stores for changes (inotify through `notify`). Events only say "this source
//! changed"; the daemon debounces them into one snapshot. New subdirectories are watched by
//! notify's recursive mode; an overflow (`Rescan`) or a watcher error is reported so the daemon
//! falls back to a full scan.

use crate::config::{SourceConfig, SourceKind};
use notify::{EventKind, RecursiveMode, Watcher};

/// What a watcher tells the daemon.
pub enum WatchEvent {
    Changed,
    /// Events were lost or the watcher failed: the source needs a full scan.
    Lost(String),
}

/// Watch `source`, calling `tell` from notify's thread. Returns the watcher, which stops when
/// dropped.
pub fn start(
    source: &SourceConfig,
    tell: impl Fn(WatchEvent) + Send + 'static,
) -> Result<notify::RecommendedWatcher, String> {
    // A SQLite source is one file, but SQLite rewrites it through -wal and -journal files
    // beside it: watch its directory and keep events about that database.
    let (dir, mode, prefix) = match source.kind {
        SourceKind::Directory => (source.path.clone(), RecursiveMode::Recursive, None),
        SourceKind::Sqlite => (
            source
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            RecursiveMode::NonRecursive,
            source.path.file_name().map(|n| n.to_os_string()),
        ),
    };
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if event.need_rescan() => {
                tell(WatchEvent::Lost("event queue overflowed".into()))
            }
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                let relevant = prefix.as_ref().is_none_or(|p| {
                    event.paths.iter().any(|path| {
                        path.file_name()
                            .is_some_and(|n| n.as_encoded_bytes().starts_with(p.as_encoded_bytes()))
                    })
                });
                if relevant {
                    tell(WatchEvent::Changed);
                }
            }
            Err(e) => tell(WatchEvent::Lost(e.to_string())),
        })
        .map_err(|e| e.to_string())?;
    watcher.watch(&dir, mode).map_err(|e| e.to_string())?;
    Ok(watcher)
}
