//! The restore plan: which directories, files, links and blobs to write where. Built from trees
//! alone, before anything touches the target, so it can be printed or checked first.

use crate::error::{Error, Result};
use crate::format::tree::{Name, Node, NodeKind};
use crate::id::BlobId;
use crate::repository::BlobReader;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One entry to create, with its path relative to the target.
#[derive(Clone, Debug)]
pub struct PlannedEntry {
    pub rel: PathBuf,
    pub node: Node,
    /// For a second (or later) hard link: the entry it links to.
    pub link_to: Option<PathBuf>,
}

/// Everything a restore will create, parents before children.
#[derive(Default, Debug)]
pub struct RestorePlan {
    pub entries: Vec<PlannedEntry>,
    /// For each blob to write: the (entry index, file offset) places it goes.
    pub blobs: HashMap<BlobId, Vec<(usize, u64)>>,
    pub bytes: u64,
}

/// Which entries to restore.
pub struct Selection {
    include: Option<GlobSet>,
    /// `--exclude`, read as backup's excludes are (gitignore style): what matches is left out
    /// with everything below it, whatever the includes say.
    exclude: crate::source::Excludes,
}

impl Selection {
    /// `--include` globs, matched against paths relative to the restore root, and `--exclude`
    /// patterns.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let exclude = crate::source::Excludes::new(exclude)?;
        if include.is_empty() {
            return Ok(Selection {
                include: None,
                exclude,
            });
        }
        let mut b = GlobSetBuilder::new();
        for p in include {
            b.add(
                Glob::new(p.trim_start_matches('/')).map_err(|e| {
                    Error::Usage(format!("--include '{p}' is not a valid glob: {e}"))
                })?,
            );
        }
        Ok(Selection {
            include: Some(
                b.build()
                    .map_err(|e| Error::Usage(format!("--include: {e}")))?,
            ),
            exclude,
        })
    }

    fn excluded(&self, rel: &Path, node: &Node) -> bool {
        self.exclude
            .excluded(rel, node.name.as_os(), node.kind == NodeKind::Dir)
    }

    fn matches(&self, rel: &Path) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(rel))
    }
}

/// Find the node at `sub` (components separated by `/`) under `root`.
pub fn descend(reader: &BlobReader, root: &Node, sub: &Path) -> Result<Node> {
    let mut node = root.clone();
    for part in sub.components() {
        let std::path::Component::Normal(name) = part else {
            continue;
        };
        let tree_id = node
            .subtree
            .filter(|_| node.kind == NodeKind::Dir)
            .ok_or_else(|| not_found(sub))?;
        let tree = reader.tree(&tree_id)?;
        let wanted = Name::from_os(name);
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name == wanted)
            .ok_or_else(|| not_found(sub))?;
    }
    Ok(node)
}

fn not_found(sub: &Path) -> Error {
    Error::Usage(format!(
        "path '{}' is not in the snapshot. List what is there with 'custodian ls SNAPSHOT'.",
        sub.display()
    ))
}

/// Build the plan for `root`: a directory's contents go into the target, a file goes in by name.
pub fn plan(reader: &BlobReader, root: &Node, selection: &Selection) -> Result<RestorePlan> {
    let mut planner = Planner {
        reader,
        selection,
        plan: RestorePlan::default(),
        links: HashMap::new(),
    };
    // The root node comes from the snapshot head (or a parent listing): hostile input too.
    let refuse = |reason: String| Error::RefusedListing {
        snapshot: None,
        dir: String::new(),
        tree: "root".into(),
        source: crate::format::tree::TreeError {
            entry: root.name.display(),
            reason,
        },
    };
    root.validate_fields().map_err(refuse)?;
    if root.kind == NodeKind::Dir {
        planner.dir(root, Path::new(""), false)?;
    } else {
        // Restored by its name: it must be one plain component.
        root.name.check_component().map_err(|r| refuse(r.into()))?;
        let rel = PathBuf::from(root.name.as_os());
        planner.add(rel, root.clone());
    }
    Ok(planner.plan)
}

struct Planner<'a, 'b> {
    reader: &'a BlobReader<'b>,
    selection: &'a Selection,
    plan: RestorePlan,
    links: HashMap<u64, PathBuf>,
}

impl Planner<'_, '_> {
    /// Add the children of directory `node` at `rel`; returns whether anything was kept.
    fn dir(&mut self, node: &Node, rel: &Path, matched: bool) -> Result<bool> {
        let Some(tree_id) = node.subtree else {
            return Ok(false);
        };
        crate::format::tree::check_depth(rel).map_err(|source| Error::RefusedListing {
            snapshot: None,
            dir: rel.display().to_string(),
            tree: tree_id.short(),
            source,
        })?;
        let tree = self.reader.tree(&tree_id).map_err(|e| match e {
            Error::RefusedListing { .. } => e.in_dir(rel),
            // A pack a prune removed meanwhile: the caller may read the index again.
            e if e.is_not_found() => e,
            e => Error::Damaged(format!(
                "reading the listing of directory '/{}': {e}",
                rel.display()
            )),
        })?;
        let mut kept = false;
        for child in tree.nodes {
            let child_rel = rel.join(child.name.as_os());
            if self.selection.excluded(&child_rel, &child) {
                continue;
            }
            let child_matched = matched || self.selection.matches(&child_rel);
            if child.kind == NodeKind::Dir {
                let slot = self.plan.entries.len();
                self.plan.entries.push(PlannedEntry {
                    rel: child_rel.clone(),
                    node: child.clone(),
                    link_to: None,
                });
                if self.dir(&child, &child_rel, child_matched)? || child_matched {
                    kept = true;
                } else {
                    self.plan.entries.truncate(slot);
                }
            } else if child_matched {
                self.add(child_rel, child);
                kept = true;
            }
        }
        Ok(kept)
    }

    fn add(&mut self, rel: PathBuf, node: Node) {
        let slot = self.plan.entries.len();
        let link_to = node.link_group.and_then(|g| match self.links.get(&g) {
            Some(first) => Some(first.clone()),
            None => {
                self.links.insert(g, rel.clone());
                None
            }
        });
        if node.kind == NodeKind::File && link_to.is_none() {
            let mut offset = 0;
            for chunk in &node.content {
                self.plan
                    .blobs
                    .entry(chunk.0)
                    .or_default()
                    .push((slot, offset));
                offset += u64::from(chunk.1);
            }
            self.plan.bytes += node.size;
        }
        self.plan.entries.push(PlannedEntry { rel, node, link_to });
    }
}
