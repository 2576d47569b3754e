//! Walks a record store one directory at a time, depth first, each directory's children sorted
//! by name. Memory holds the directories still to visit (one path from the root, with the
//! siblings still waiting at each level), never the whole store. Anything that cannot be read is
//! reported and skipped; the walk itself never fails on one bad entry.
//!
//! The order is the one the incremental cache is kept in: directories in pre-order, which is
//! their paths compared component by component ([`walk_order`]), and within a directory its
//! children by name.

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

/// One child of a listed directory.
pub struct Child {
    pub node: Node,
    pub stat: FileStat,
}

/// One directory's children, as the walk reaches it.
pub struct Listing {
    /// Its number in walk order (the root's is 0).
    pub id: u64,
    /// The directory it sits in, and its position among that directory's children.
    pub parent: Option<(u64, usize)>,
    /// Path relative to the root (empty for the root).
    pub rel: PathBuf,
    pub children: Vec<Child>,
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

/// A directory still to list.
struct Todo {
    rel: PathBuf,
    parent: Option<(u64, usize)>,
    /// False for a mount point under one-file-system: listed empty, as restic and borg do.
    enter: bool,
}

/// The walk of one record store: an iterator of [`Listing`]s in pre-order.
pub struct Walk<'a> {
    root: PathBuf,
    excludes: &'a Excludes,
    /// With one-file-system: the root's device; directories on others are recorded empty.
    device: Option<u64>,
    links: HashMap<(u64, u64), u64>,
    todo: Vec<Todo>,
    next_id: u64,
    /// Entries that could not be read, with reasons (names: never log at info).
    pub skipped: Vec<SkippedEntry>,
}

impl<'a> Walk<'a> {
    /// Start walking `root`, staying on its file system if `one_file_system`. Fails only if
    /// the root itself is not a readable directory. Returns the root's own node too.
    pub fn start(
        root: &Path,
        excludes: &'a Excludes,
        one_file_system: bool,
    ) -> Result<(Self, Node)> {
        let meta = fs::metadata(root).map_err(|cause| Error::SourceUnreadable {
            path: root.to_path_buf(),
            cause,
        })?;
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "source path {} is not a directory; custodian backs up record-store directories.",
                root.display()
            )));
        }
        let walk = Walk {
            root: root.to_path_buf(),
            excludes,
            device: one_file_system.then(|| meta.dev()),
            links: HashMap::new(),
            todo: vec![Todo {
                rel: PathBuf::new(),
                parent: None,
                enter: true,
            }],
            next_id: 0,
            skipped: Vec::new(),
        };
        Ok((walk, node_from(Name(Vec::new()), NodeKind::Dir, &meta)))
    }

    fn skip(&mut self, rel: &Path, error: impl ToString) {
        self.skipped.push(SkippedEntry {
            path: Name::from_os(rel.as_os_str()),
            error: error.to_string(),
        });
    }

    /// The children of `rel` worth keeping, sorted by name, each with whether to enter it.
    fn list(&mut self, rel: &Path) -> Vec<(Child, bool)> {
        let path = self.root.join(rel);
        let listing = match fs::read_dir(&path) {
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
                    names.push((entry.file_name(), is_dir, entry));
                }
                Err(e) => self.skip(rel, format!("directory listing failed part-way: {e}")),
            }
        }
        names.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        let mut children = Vec::with_capacity(names.len());
        for (name, is_dir, entry) in names {
            let child_rel = rel.join(&name);
            if self.excludes.excluded(&child_rel, &name, is_dir) {
                continue;
            }
            let meta = entry.metadata();
            if let Some(child) =
                self.child(meta, &path.join(&name), &child_rel, Name::from_os(&name))
            {
                children.push(child);
            }
        }
        children
    }

    /// One child's node and stat (`meta`: its lstat, taken relative to the open directory, so
    /// the kernel does not resolve the whole path again per file), or `None` (reported) if it
    /// cannot or must not be kept.
    fn child(
        &mut self,
        meta: std::io::Result<fs::Metadata>,
        path: &Path,
        rel: &Path,
        name: Name,
    ) -> Option<(Child, bool)> {
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.skip(rel, e);
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
                rel,
                "unsupported file type (socket or device); not backed up",
            );
            return None;
        };
        let mut node = node_from(name, kind, &meta);
        if kind == NodeKind::Symlink {
            match fs::read_link(path) {
                Ok(target) => node.target = Some(Name::from_os(target.as_os_str())),
                Err(e) => {
                    self.skip(rel, e);
                    return None;
                }
            }
        }
        if kind == NodeKind::File && meta.nlink() > 1 {
            let next = self.links.len() as u64;
            node.link_group = Some(*self.links.entry((meta.dev(), meta.ino())).or_insert(next));
        }
        let enter = self.device.is_none_or(|d| d == meta.dev());
        let stat = stat_from(&meta);
        Some((Child { node, stat }, enter))
    }
}

impl Iterator for Walk<'_> {
    type Item = Listing;

    /// The next directory in pre-order; its subdirectories are listed after it, first name first.
    fn next(&mut self) -> Option<Listing> {
        let todo = self.todo.pop()?;
        let id = self.next_id;
        self.next_id += 1;
        let listed = if todo.enter {
            self.list(&todo.rel)
        } else {
            Vec::new()
        };
        let mut children = Vec::with_capacity(listed.len());
        let mut subdirs = Vec::new();
        for (i, (child, enter)) in listed.into_iter().enumerate() {
            if child.node.kind == NodeKind::Dir {
                subdirs.push(Todo {
                    rel: todo.rel.join(child.node.name.as_os()),
                    parent: Some((id, i)),
                    enter,
                });
            }
            children.push(child);
        }
        self.todo.extend(subdirs.into_iter().rev());
        Some(Listing {
            id,
            parent: todo.parent,
            rel: todo.rel,
            children,
        })
    }
}

/// The walk's order of two file paths relative to the root: their directories component by
/// component (pre-order), then their names. Records of the incremental cache are kept in it.
pub fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (dir_a, name_a) = split_last(a);
    let (dir_b, name_b) = split_last(b);
    components(dir_a)
        .cmp(components(dir_b))
        .then_with(|| name_a.cmp(name_b))
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (&[], path),
    }
}

fn components(dir: &[u8]) -> impl Iterator<Item = &[u8]> {
    dir.split(|&c| c == b'/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn walk_lists_directories_in_pre_order_and_applies_excludes() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["b", "b/inner", "a-c"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("b/keep.csv"), "x").unwrap();
        fs::write(dir.path().join("b/drop.tmp"), "x").unwrap();
        fs::write(dir.path().join("b/inner/deep.txt"), "x").unwrap();
        fs::write(dir.path().join("a.txt"), "x").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("link")).unwrap();
        let ex = Excludes::new(&["*.tmp".to_string()]).unwrap();
        let (walk, root) = Walk::start(dir.path(), &ex, false).unwrap();
        assert_eq!(root.kind, NodeKind::Dir);
        let mut files = Vec::new();
        let mut listings = Vec::new();
        for l in walk {
            let names: Vec<String> = l
                .children
                .iter()
                .map(|c| String::from_utf8_lossy(&c.node.name.0).into_owned())
                .collect();
            listings.push((l.id, l.parent, l.rel.display().to_string(), names.join(",")));
            for c in &l.children {
                if c.node.kind != NodeKind::Dir {
                    files.push(l.rel.join(c.node.name.as_os()).into_os_string().into_vec());
                }
            }
        }
        assert_eq!(
            listings,
            vec![
                (0, None, "".into(), "a-c,a.txt,b,link".into()),
                (1, Some((0, 0)), "a-c".into(), "".into()),
                (2, Some((0, 2)), "b".into(), "inner,keep.csv".into()),
                (3, Some((2, 0)), "b/inner".into(), "deep.txt".into()),
            ]
        );
        // The cache's order is the order files were met in.
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| walk_order(a, b));
        assert_eq!(sorted, files);
        assert!(Excludes::new(&["a[".to_string()]).is_err());
    }

    #[test]
    fn walk_order_compares_directories_by_component() {
        use std::cmp::Ordering::*;
        assert_eq!(walk_order(b"z", b"a/a"), Less);
        assert_eq!(walk_order(b"a/z", b"a-c/a"), Less);
        assert_eq!(walk_order(b"a/b/c", b"a/c"), Greater);
        assert_eq!(walk_order(b"a/b", b"a/b"), Equal);
    }
}
