//! One commit session: everything a new snapshot head relies on is made durable and indexed
//! before the head exists, in the order the crash-safety argument needs (docs/FORMAT.md, "Commit
//! order"): blobs and reference lists in packs, a check against concurrent prunes, the index,
//! then the heads, last. Backup and erase both commit through it; every object it writes is
//! signed by the session's repository (format 2).

use crate::crypto::seal_blob;
use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::snapshot::SnapshotHead;
use crate::format::BlobKind;
use crate::id::{BlobId, SnapshotId};
use crate::repository::{MasterIndex, PackUploader, PackWriter, Repository, UploadSummary};
use std::collections::HashSet;
use std::sync::Arc;

/// Packs in flight and what the heads to come will need.
pub struct CommitSession<'a> {
    repo: &'a Arc<Repository>,
    index: &'a MasterIndex,
    uploader: Arc<PackUploader>,
    needed: HashSet<BlobId>,
}

/// What a reference list cost.
pub struct RefsWritten {
    pub ids: Vec<BlobId>,
    pub added: u64,
    pub bytes: u64,
}

impl<'a> CommitSession<'a> {
    /// A session writing through `uploader` (shared with a pipeline that may still fill it).
    pub fn new(
        repo: &'a Arc<Repository>,
        index: &'a MasterIndex,
        uploader: Arc<PackUploader>,
    ) -> Self {
        CommitSession {
            repo,
            index,
            uploader,
            needed: HashSet::new(),
        }
    }

    /// The uploader, for blobs written outside the session's own methods.
    pub fn uploader(&self) -> &PackUploader {
        &self.uploader
    }

    /// Store the reference list of a head that needs `blobs` (ordered after `parent`'s list,
    /// so consecutive snapshots share reference blobs); remembers every blob for the check.
    pub fn write_refs(
        &mut self,
        parent: Option<&SnapshotHead>,
        blobs: Vec<BlobId>,
    ) -> Result<RefsWritten> {
        self.needed.extend(blobs.iter().copied());
        let keys = order_refs(self.repo, self.index, parent, blobs);
        let (ids, added, bytes) = write_refs(self.repo, self.index, &self.uploader, &keys)?;
        self.needed.extend(ids.iter().copied());
        Ok(RefsWritten { ids, added, bytes })
    }

    /// Secure the commit against prunes that ran meanwhile (rescue or refuse), wait for every
    /// pack, and write the index naming them. Heads may be written after this, never before.
    pub fn finish(self) -> Result<UploadSummary> {
        crate::prune::guard::secure_commit(self.repo, self.index, &self.uploader, &self.needed)?;
        drop(self.needed);
        let uploader = Arc::try_unwrap(self.uploader)
            .map_err(|_| Error::Invalid("internal error: uploader still in use".into()))?;
        uploader.finish()
    }
}

/// The last write of a commit: everything `head` references is durable and indexed.
pub fn write_head(repo: &Repository, head: &SnapshotHead) -> Result<SnapshotId> {
    crate::failpoint::pause("before-snapshot", 0);
    repo.write_snapshot(head)
}

/// Order the reference set by first appearance: the parent's ids that are still needed, in the
/// parent's order, then the new ones ascending. Ids are random, so a sorted list would move
/// every split boundary's contents when a few hundred new ids arrive; in this order unchanged
/// runs produce identical reference blobs, which deduplicate. A parent list that cannot be read
/// only costs that sharing.
fn order_refs(
    repo: &Repository,
    index: &MasterIndex,
    parent: Option<&SnapshotHead>,
    refs: Vec<BlobId>,
) -> Vec<RefKey> {
    let mut refs: Vec<RefKey> = refs.iter().map(RefKey::from).collect();
    refs.sort_unstable();
    refs.dedup();
    let Some(parent) = parent else { return refs };
    let reader = crate::repository::BlobReader::new(repo, index);
    let mut previous = Vec::new();
    let decoded = reader.read_many(&parent.refs).and_then(|plains| {
        for id in &parent.refs {
            let plain = plains.get(id).map(Vec::as_slice).unwrap_or_default();
            previous.extend(crate::format::refs::decode(plain, "parent reference list")?);
        }
        Ok(())
    });
    if let Err(e) = decoded {
        tracing::warn!(error = %e, "parent reference list unreadable; writing a fresh one");
        return refs;
    }
    let mut placed: HashSet<RefKey> = HashSet::with_capacity(refs.len());
    let mut ordered = Vec::with_capacity(refs.len());
    for id in previous {
        if refs.binary_search(&id).is_ok() && placed.insert(id) {
            ordered.push(id);
        }
    }
    ordered.extend(refs.into_iter().filter(|id| !placed.contains(id)));
    ordered
}

/// Store the reference list as metadata blobs; only blobs not already stored are written.
/// Returns the list's blob ids and the count and stored bytes of the new ones.
fn write_refs(
    repo: &Arc<Repository>,
    index: &MasterIndex,
    uploader: &PackUploader,
    refs: &[RefKey],
) -> Result<(Vec<BlobId>, u64, u64)> {
    let (mut added, mut bytes) = (0, 0);
    let mut ids = Vec::new();
    let mut writer = PackWriter::new("", repo.config.pack_target);
    let mut session = None;
    let mut seen = HashSet::new();
    for plain in crate::format::refs::encode(refs) {
        let id = repo.meta.blob_id(&plain);
        ids.push(id);
        if index.dedupable(&id) || !seen.insert(id) {
            continue;
        }
        if session.is_none() {
            session = Some(repo.start_session(repo.meta_recipient())?);
        }
        if let Some(key) = &session {
            let frame = seal_blob(
                key,
                &id,
                BlobKind::Refs.code(),
                crate::compress::RAW,
                &plain,
            );
            added += 1;
            bytes += frame.len() as u64;
            writer.add(id, BlobKind::Refs, &frame);
        }
    }
    if !writer.is_empty() {
        uploader.submit(writer.finish(repo)?)?;
    }
    Ok((ids, added, bytes))
}
