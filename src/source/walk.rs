//! Walks a record store into a flat pre-order list (index 0 is the root), so trees can later be
//! built bottom-up by iterating in reverse. Anything that cannot be read is reported and
//! skipped; the walk itself never fails on one bad entry.

use super::exclude::Excludes;
use crate::error::{Error, Result};
use crate::format::tree::{Name, Node, NodeKind, SkippedEntry};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The identity of a file's content as far as the cache is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

/// One walked entry. Only its path relative to the root is kept (the root joins it when a
/// file is read): a million entries would otherwise hold every absolute path twice over.
pub struct WalkEntry {
    /// Path relative to the root (empty for the root).
    pub rel: PathBuf,
    pub node: Node,
    pub stat: FileStat,
    pub children: Vec<usize>,
}

/// The walk's output.
pub struct WalkResult {
    pub entries: Vec<WalkEntry>,
    pub skipped: Vec<SkippedEntry>,
}

fn node_from(name: Name, kind: NodeKind, m: &fs::Metadata) -> Node {
    Node {
        name,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec() as u32,
        size: if kind == NodeKind::File { m.size() } else { 0 },
        content: Vec::new(),
        subtree: None,
        target: None,
        link_group: None,
    }
}

fn stat_from(m: &fs::Metadata) -> FileStat {
    FileStat {
        size: m.size(),
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec(),
        ctime: m.ctime(),
        ctime_ns: m.ctime_nsec(),
        ino: m.ino(),
    }
}

struct Walker<'a> {
    excludes: &'a Excludes,
    /// With one-file-system: the root's device; directories on others are recorded empty.
    device: Option<u64>,
    out: WalkResult,
    links: HashMap<(u64, u64), u64>,
}

impl Walker<'_> {
    fn skip(&mut self, rel: &Path, error: impl ToString) {
        self.out.skipped.push(SkippedEntry {
            path: Name::from_os(rel.as_os_str()),
            error: error.to_string(),
        });
    }

    /// Add `path` and (for directories) everything below it; returns its slot.
    fn visit(&mut self, path: PathBuf, rel: PathBuf, name: Name) -> Option<usize> {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.skip(&rel, e);
                return None;
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            NodeKind::File
        } else if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            self.skip(
                &rel,
                "unsupported file type (socket or device); not backed up",
            );
            return None;
        };
        let mut node = node_from(name, kind, &meta);
        if kind == NodeKind::Symlink {
            match fs::read_link(&path) {
                Ok(target) => node.target = Some(Name::from_os(target.as_os_str())),
                Err(e) => {
                    self.skip(&rel, e);
                    return None;
                }
            }
        }
        if kind == NodeKind::File && meta.nlink() > 1 {
            let next = self.links.len() as u64;
            node.link_group = Some(*self.links.entry((meta.dev(), meta.ino())).or_insert(next));
        }
        let slot = self.out.entries.len();
        self.out.entries.push(WalkEntry {
            rel: rel.clone(),
            node,
            stat: stat_from(&meta),
            children: Vec::new(),
        });
        if kind == NodeKind::Dir && self.device.is_some_and(|d| d != meta.dev()) {
            // A mount point: kept as an empty directory, as restic and borg do.
            return Some(slot);
        }
        if kind == NodeKind::Dir {
            let children = self.read_children(&path, &rel);
            self.out.entries[slot].children = children;
        }
        Some(slot)
    }

    fn read_children(&mut self, path: &Path, rel: &Path) -> Vec<usize> {
        let listing = match fs::read_dir(path) {
            Ok(l) => l,
            Err(e) => {
                self.skip(rel, format!("directory not readable, backed up empty: {e}"));
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in listing {
            match entry {
                // The listing's own type (d_type) is enough for directory-only excludes.
                Ok(entry) => {
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    names.push((entry.file_name(), is_dir));
                }
                Err(e) => self.skip(rel, format!("directory listing failed part-way: {e}")),
            }
        }
        names.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        let mut children = Vec::with_capacity(names.len());
        for (name, is_dir) in names {
            let child_rel = rel.join(&name);
            if self.excludes.excluded(&child_rel, &name, is_dir) {
                continue;
            }
            if let Some(slot) = self.visit(path.join(&name), child_rel, Name::from_os(&name)) {
                children.push(slot);
            }
        }
        children
    }
}

/// Walk `root`, staying on its file system if `one_file_system`. Fails only if the root itself
/// is not a readable directory.
pub fn walk(root: &Path, excludes: &Excludes, one_file_system: bool) -> Result<WalkResult> {
    let meta = fs::metadata(root).map_err(|e| {
        Error::Invalid(format!(
            "source path {} cannot be read: {e}. Check the path given to 'backup'.",
            root.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::Invalid(format!(
            "source path {} is not a directory; custodian backs up record-store directories.",
            root.display()
        )));
    }
    let mut walker = Walker {
        excludes,
        device: one_file_system.then(|| meta.dev()),
        out: WalkResult {
            entries: Vec::new(),
            skipped: Vec::new(),
        },
        links: HashMap::new(),
    };
    walker.visit(root.to_path_buf(), PathBuf::new(), Name(Vec::new()));
    if walker.out.entries.is_empty() {
        return Err(Error::Invalid(format!(
            "source path {} vanished during the walk",
            root.display()
        )));
    }
    Ok(walker.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_orders_children_and_applies_excludes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("b/keep.csv"), "x").unwrap();
        fs::write(dir.path().join("b/drop.tmp"), "x").unwrap();
        fs::write(dir.path().join("a.txt"), "x").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("link")).unwrap();
        let ex = Excludes::new(&["*.tmp".to_string()]).unwrap();
        let result = walk(dir.path(), &ex, false).unwrap();
        let names: Vec<String> = result
            .entries
            .iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        assert_eq!(names, vec!["", "a.txt", "b", "b/keep.csv", "link"]);
        assert_eq!(
            result.entries[4].node.target,
            Some(Name(b"nowhere".to_vec()))
        );
        assert!(result.skipped.is_empty());
        assert!(Excludes::new(&["a[".to_string()]).is_err());
    }
}
