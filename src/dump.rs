//! `custodian dump`: one file's bytes, or a directory as a tar stream (as restic does), to
//! standard output, every blob verified on the way. Memory stays at one batch of chunks however
//! large the file or tree. Names come from validated listings (no `/`, `.` or `..` in a name),
//! so the archive holds only relative paths below the dumped directory.

use crate::error::{Error, Result};
use crate::format::tree::{check_depth, Node, NodeKind};
use crate::id::BlobId;
use crate::repository::{BlobReader, SnapshotInfo};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Chunks fetched at once (about 32 MiB at the default chunk size).
const DUMP_BATCH: usize = 32;

/// Write the file at `path` in `snap` to `out`, or the directory there as a tar archive.
pub fn dump(
    reader: &BlobReader,
    snap: &SnapshotInfo,
    path: &Path,
    out: &mut impl Write,
) -> Result<()> {
    reader.limit_walk(snap.walk_allowance());
    let node = crate::restorer::plan::descend(reader, &snap.head.root, path)?;
    match node.kind {
        NodeKind::File => {
            let mut content = Chunks::of(reader, &node);
            let copied = std::io::copy(&mut content, out);
            content.result(copied)?;
            out.flush().map_err(stdout_error)
        }
        NodeKind::Dir => {
            let mut tar = tar::Builder::new(out);
            tar.mode(tar::HeaderMode::Complete);
            add_dir(reader, &node, Path::new(""), &mut tar)?;
            tar.into_inner()
                .map_err(stdout_error)?
                .flush()
                .map_err(stdout_error)
        }
        other => Err(Error::Usage(format!(
            "'{}' is a {}, which has no content to dump; 'custodian ls SNAPSHOT {}' shows it",
            path.display(),
            other.noun(),
            path.display()
        ))),
    }
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("standard output", e)
}

fn header(node: &Node, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.mode);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(node.mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Every entry below `dir`, depth first, in listing order.
fn add_dir<W: Write>(
    reader: &BlobReader,
    dir: &Node,
    rel: &Path,
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let Some(tree) = dir.subtree else {
        return Ok(());
    };
    check_depth(rel).map_err(|e| Error::Damaged(e.to_string()))?;
    for node in reader.tree(&tree)?.nodes {
        let path = rel.join(std::ffi::OsStr::from_bytes(&node.name.0));
        match node.kind {
            NodeKind::Dir => {
                let mut h = header(&node, tar::EntryType::Directory, 0);
                tar.append_data(&mut h, &path, std::io::empty())
                    .map_err(stdout_error)?;
                add_dir(reader, &node, &path, tar)?;
            }
            NodeKind::File => {
                let mut h = header(&node, tar::EntryType::Regular, node.size);
                let mut content = Chunks::of(reader, &node);
                let added = tar.append_data(&mut h, &path, &mut content);
                content.result(added)?;
            }
            NodeKind::Symlink => {
                let mut h = header(&node, tar::EntryType::Symlink, 0);
                let target = node
                    .target
                    .as_ref()
                    .map(|t| t.0.clone())
                    .unwrap_or_default();
                tar.append_link(&mut h, &path, std::ffi::OsStr::from_bytes(&target))
                    .map_err(stdout_error)?;
            }
            NodeKind::Fifo => {
                let mut h = header(&node, tar::EntryType::Fifo, 0);
                tar.append_data(&mut h, &path, std::io::empty())
                    .map_err(stdout_error)?;
            }
        }
    }
    Ok(())
}

/// A file's content as a reader, a batch of chunks at a time; a repository error is kept aside
/// (a `Read` can only return io errors) and reported as itself.
struct Chunks<'a> {
    reader: &'a BlobReader<'a>,
    ids: Vec<BlobId>,
    next: usize,
    batch: std::collections::VecDeque<Vec<u8>>,
    pos: usize,
    /// Bytes the tar header promised and not yet produced: a tar entry must hold exactly its
    /// size, so chunks that disagree with the listing fail the dump instead of corrupting it.
    left: u64,
    error: Option<Error>,
}

impl<'a> Chunks<'a> {
    /// The content of file `node`.
    fn of(reader: &'a BlobReader<'a>, node: &Node) -> Self {
        Chunks {
            reader,
            ids: node.content.iter().map(|c| c.0).collect(),
            next: 0,
            batch: Default::default(),
            pos: 0,
            left: node.size,
            error: None,
        }
    }

    /// The outcome of copying this content: a repository error kept aside comes first, as
    /// itself; otherwise the write's own error.
    fn result<T>(&mut self, copied: std::io::Result<T>) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        copied.map(|_| ()).map_err(stdout_error)
    }

    fn fill(&mut self) -> Result<()> {
        let end = (self.next + DUMP_BATCH).min(self.ids.len());
        let ids = &self.ids[self.next..end];
        let mut blobs = self.reader.read_many(ids)?;
        for id in ids {
            let bytes = blobs
                .remove(id)
                .ok_or_else(|| Error::Damaged(format!("blob {id} is missing from its pack")))?;
            self.batch.push_back(bytes);
        }
        self.next = end;
        Ok(())
    }

    fn mismatch(&mut self) -> std::io::Error {
        self.error = Some(Error::Damaged(
            "a file's chunks do not add up to the size its listing gives; the snapshot is \
             damaged or forged. Run 'custodian check --read-data' and use an earlier snapshot."
                .into(),
        ));
        std::io::Error::other("size mismatch")
    }
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.batch.front().is_none_or(|b| self.pos == b.len()) {
            if self.batch.pop_front().is_some() {
                self.pos = 0;
                continue;
            }
            if self.next == self.ids.len() {
                return if self.left == 0 {
                    Ok(0)
                } else {
                    Err(self.mismatch())
                };
            }
            if let Err(e) = self.fill() {
                self.error = Some(e);
                return Err(std::io::Error::other("a chunk could not be read"));
            }
        }
        let front = self.batch.front().map(Vec::as_slice).unwrap_or_default();
        let n = out.len().min(front.len() - self.pos);
        if n as u64 > self.left {
            return Err(self.mismatch());
        }
        out[..n].copy_from_slice(&front[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}
