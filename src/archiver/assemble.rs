//! Assembling a snapshot's trees while the walk goes: a directory stays open until its files
//! are read and its subdirectories are closed; then its tree is sealed and its id goes into its
//! parent. Memory holds the open directories only (the path the walk is on, and directories
//! with files still being read), never the whole store.

use super::pipeline::Pipeline;
use crate::crypto::DomainKeys;
use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::snapshot::SnapshotStats;
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::BlobId;
use std::collections::HashMap;

/// A listed directory waiting for its files or subdirectories.
struct OpenDir {
    parent: Option<(u64, usize)>,
    /// Its children in name order; `None` for a file that could not be read (left out).
    children: Vec<Option<Node>>,
    /// Files still being read, and subdirectories not yet closed.
    waiting: usize,
}

/// The trees of one backup, built as the walk and the readers go.
pub struct Assembler<'a> {
    pipeline: &'a Pipeline,
    domain: &'a DomainKeys,
    open: HashMap<u64, OpenDir>,
    root: Node,
    closed: bool,
    /// Every blob the snapshot needs, by reference key (16 bytes each), in the order met.
    pub refs: Vec<RefKey>,
    pub stats: SnapshotStats,
}

fn lost(what: &str) -> Error {
    Error::Internal(format!("internal error: the tree assembler lost {what}"))
}

impl<'a> Assembler<'a> {
    /// Assemble under `root`, the source directory's own node.
    pub fn new(pipeline: &'a Pipeline, domain: &'a DomainKeys, root: Node) -> Self {
        Assembler {
            pipeline,
            domain,
            open: HashMap::new(),
            root,
            closed: false,
            refs: Vec::new(),
            stats: SnapshotStats::default(),
        }
    }

    /// Open listed directory `id` with its `children`, of which `reading` files are still
    /// being read. A directory with nothing to wait for closes at once.
    pub fn open(
        &mut self,
        id: u64,
        parent: Option<(u64, usize)>,
        children: Vec<Node>,
        reading: usize,
    ) -> Result<()> {
        let subdirs = children.iter().filter(|n| n.kind == NodeKind::Dir).count();
        let dir = OpenDir {
            parent,
            children: children.into_iter().map(Some).collect(),
            waiting: reading + subdirs,
        };
        let done = dir.waiting == 0;
        self.open.insert(id, dir);
        if done {
            self.close(id)?;
        }
        Ok(())
    }

    /// A file of directory `dir` was read (its content and length), or could not be (`None`:
    /// it is left out of the snapshot).
    pub fn file_read(
        &mut self,
        dir: u64,
        child: usize,
        read: Option<(Vec<ChunkRef>, u64)>,
    ) -> Result<()> {
        let open = self.open.get_mut(&dir).ok_or_else(|| lost("a directory"))?;
        let slot = open.children.get_mut(child).ok_or_else(|| lost("a file"))?;
        match (read, slot.as_mut()) {
            (Some((content, len)), Some(node)) => {
                node.content = content;
                node.size = len;
            }
            _ => *slot = None,
        }
        open.waiting = open.waiting.saturating_sub(1);
        if open.waiting == 0 {
            self.close(dir)?;
        }
        Ok(())
    }

    /// Seal directory `id`'s tree, hand its id to its parent, and close the parent too if
    /// that was the last thing it waited for.
    fn close(&mut self, mut id: u64) -> Result<()> {
        loop {
            let dir = self.open.remove(&id).ok_or_else(|| lost("a directory"))?;
            let tree = self.seal(dir.children.into_iter().flatten().collect())?;
            let Some((parent, child)) = dir.parent else {
                self.root.subtree = Some(tree);
                self.closed = true;
                return Ok(());
            };
            let up = self.open.get_mut(&parent).ok_or_else(|| lost("a parent"))?;
            match up.children.get_mut(child) {
                Some(Some(node)) => node.subtree = Some(tree),
                _ => return Err(lost("a subdirectory")),
            }
            up.waiting = up.waiting.saturating_sub(1);
            if up.waiting > 0 {
                return Ok(());
            }
            id = parent;
        }
    }

    /// Count a directory's nodes, store its tree, and return the tree's id.
    fn seal(&mut self, nodes: Vec<Node>) -> Result<BlobId> {
        for node in nodes.iter().filter(|n| n.kind == NodeKind::File) {
            self.stats.files += 1;
            self.stats.bytes += node.size;
            self.refs
                .extend(node.content.iter().map(|c| RefKey::from(&c.0)));
        }
        self.stats.dirs += 1;
        let json = serde_json::to_vec(&Tree {
            version: TREE_VERSION,
            nodes,
        })
        .map_err(|e| Error::Internal(format!("internal error: a tree did not encode: {e}")))?;
        let id = self.domain.blob_id(&json);
        self.pipeline.submit(id, BlobKind::Tree, json)?;
        self.refs.push(RefKey::from(&id));
        Ok(id)
    }

    /// The root's node with its tree, once every directory has closed.
    pub fn finish(self) -> Option<(Node, Vec<RefKey>, SnapshotStats)> {
        self.closed.then_some((self.root, self.refs, self.stats))
    }
}
