//! Tools for the incident responder, who needs the right file back fast: what changed between
//! two snapshots, which snapshots hold a path, and one file's bytes. All read trees, so they need
//! an operator identity; identical subtrees (same id) are skipped, so a diff of two nearby
//! snapshots reads only the directories that changed.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::pattern::Pattern;
use crate::repository::{BlobReader, SnapshotInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One difference between two snapshots.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Change {
    /// `added`, `removed`, `modified` (content or type) or `metadata` (mode, owner, mtime).
    pub change: &'static str,
    pub path: String,
    pub kind: NodeKind,
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
}

/// Differences from snapshot `a` to snapshot `b`, in path order.
pub fn diff(reader: &BlobReader, a: &SnapshotInfo, b: &SnapshotInfo) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    reader.limit_walk(a.walk_allowance() + b.walk_allowance());
    diff_dirs(
        reader,
        Some(&a.head.root),
        Some(&b.head.root),
        Path::new(""),
        &mut out,
    )?;
    Ok(out)
}

fn children(reader: &BlobReader, node: Option<&Node>) -> Result<BTreeMap<Vec<u8>, Node>> {
    match node.and_then(|n| n.subtree.filter(|_| n.kind == NodeKind::Dir)) {
        Some(id) => Ok(reader
            .tree(&id)?
            .nodes
            .into_iter()
            .map(|n| (n.name.0.clone(), n))
            .collect()),
        None => Ok(BTreeMap::new()),
    }
}

fn diff_dirs(
    reader: &BlobReader,
    a: Option<&Node>,
    b: Option<&Node>,
    rel: &Path,
    out: &mut Vec<Change>,
) -> Result<()> {
    if let (Some(a), Some(b)) = (a, b) {
        if a.subtree.is_some() && a.subtree == b.subtree {
            return Ok(());
        }
    }
    crate::format::tree::check_depth(rel).map_err(|e| Error::Damaged(e.to_string()))?;
    let (before, after) = (children(reader, a)?, children(reader, b)?);
    let names: std::collections::BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    for name in names {
        let path = rel.join(std::ffi::OsStr::from_bytes(name));
        let (x, y) = (before.get(name), after.get(name));
        let change = |change, node: &Node| Change {
            change,
            path: path.display().to_string(),
            kind: node.kind,
            size_before: x.map(|n| n.size),
            size_after: y.map(|n| n.size),
        };
        match (x, y) {
            (Some(x), None) => out.push(change("removed", x)),
            (None, Some(y)) => out.push(change("added", y)),
            (Some(x), Some(y)) => {
                let content_differs = x.kind != y.kind
                    || x.size != y.size
                    || x.content != y.content
                    || x.target != y.target;
                if content_differs && !(x.kind == NodeKind::Dir && y.kind == NodeKind::Dir) {
                    out.push(change("modified", y));
                } else if (x.mode, x.uid, x.gid, x.mtime, x.mtime_ns)
                    != (y.mode, y.uid, y.gid, y.mtime, y.mtime_ns)
                    && x.kind != NodeKind::Dir
                {
                    out.push(change("metadata", y));
                }
            }
            (None, None) => {}
        }
        let (xd, yd) = (
            x.filter(|n| n.kind == NodeKind::Dir),
            y.filter(|n| n.kind == NodeKind::Dir),
        );
        if xd.is_some() || yd.is_some() {
            diff_dirs(reader, xd, yd, &path, out)?;
        }
    }
    Ok(())
}

/// One version of a path in one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub snapshot: String,
    pub time: String,
    pub source: String,
    pub path: String,
    pub kind: NodeKind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
}

/// Every entry matching `pattern` in each of `snapshots`, oldest snapshot first.
pub fn find(
    reader: &BlobReader,
    snapshots: &[SnapshotInfo],
    pattern: &Pattern,
) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for snap in snapshots {
        reader.limit_walk(snap.walk_allowance());
        if let Some(root) = snap.head.root.subtree {
            let _ = reader.prefetch_trees(&root);
        }
        let mut stack: Vec<(Node, PathBuf)> = vec![(snap.head.root.clone(), PathBuf::new())];
        while let Some((node, rel)) = stack.pop() {
            for child in children(reader, Some(&node))?.into_values() {
                let path = rel.join(child.name.as_os());
                if pattern.matches(&path) {
                    out.push(Found {
                        snapshot: snap.id.to_hex(),
                        time: snap.head.time.clone(),
                        source: snap.head.source.clone(),
                        path: path.display().to_string(),
                        kind: child.kind,
                        size: child.size,
                        mtime: child.mtime,
                    });
                }
                if child.kind == NodeKind::Dir {
                    stack.push((child, path));
                }
            }
        }
    }
    Ok(out)
}
