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
    /// Every blob the heads to come need, as reference keys (sorted and deduplicated before
    /// the check).
    needed: Vec<RefKey>,
    /// Reference blobs stored by this session: heads committed together (a handover's, an
    /// erase's) often share one, and the index does not know it until the session ends.
    refs_stored: HashSet<BlobId>,
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
            needed: Vec::new(),
            refs_stored: HashSet::new(),
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
        mut blobs: Vec<RefKey>,
    ) -> Result<RefsWritten> {
        blobs.sort_unstable();
        blobs.dedup();
        let keys = order_refs(self.repo, self.index, parent, &blobs);
        let stored = &mut self.refs_stored;
        let (ids, added, bytes) = write_refs(self.repo, self.index, &self.uploader, &keys, stored)?;
        drop(keys);
        if self.needed.is_empty() {
            self.needed = blobs;
        } else {
            self.needed.append(&mut blobs);
        }
        self.needed.extend(ids.iter().map(RefKey::from));
        Ok(RefsWritten { ids, added, bytes })
    }

    /// Secure the commit against prunes that ran meanwhile (rescue or refuse), wait for every
    /// pack, and write the index naming them. Heads may be written after this, never before.
    pub fn finish(mut self) -> Result<UploadSummary> {
        self.needed.sort_unstable();
        self.needed.dedup();
        crate::prune::guard::secure_commit(self.repo, self.index, &self.uploader, &self.needed)?;
        drop(self.needed);
        let uploader = Arc::try_unwrap(self.uploader)
            .map_err(|_| Error::Internal("internal error: uploader still in use".into()))?;
        uploader.finish()
    }
}

/// The last write of a commit: everything `head` references is durable and indexed.
pub fn write_head(repo: &Repository, head: &SnapshotHead) -> Result<SnapshotId> {
    crate::failpoint::pause("before-snapshot", 0);
    repo.write_snapshot(head)
}

/// Parent reference blobs read at once (about 8 KiB each): bounded memory, few requests.
const PARENT_BATCH: usize = 1024;

/// Order the reference set by first appearance: the parent's ids that are still needed, in the
/// parent's order, then the new ones ascending. Ids are random, so a sorted list would move
/// every split boundary's contents when a few hundred new ids arrive; in this order unchanged
/// runs produce identical reference blobs, which deduplicate. A parent list that cannot be read
/// only costs that sharing. `keys` is sorted and deduplicated; the parent's list is read in
/// batches, so memory holds the keys twice plus a flag per key.
fn order_refs(
    repo: &Repository,
    index: &MasterIndex,
    parent: Option<&SnapshotHead>,
    keys: &[RefKey],
) -> Vec<RefKey> {
    let Some(parent) = parent else {
        return keys.to_vec();
    };
    let reader = crate::repository::BlobReader::new(repo, index);
    let mut placed = vec![false; keys.len()];
    let mut ordered = Vec::with_capacity(keys.len());
    for batch in parent.refs.chunks(PARENT_BATCH) {
        let decoded = reader.read_many(batch).and_then(|plains| {
            for id in batch {
                let plain = plains.get(id).map(Vec::as_slice).unwrap_or_default();
                for key in crate::format::refs::decode(plain, "parent reference list")? {
                    if let Ok(at) = keys.binary_search(&key) {
                        if !std::mem::replace(&mut placed[at], true) {
                            ordered.push(key);
                        }
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = decoded {
            tracing::warn!(error = %e, "parent reference list unreadable; writing a fresh one");
            return keys.to_vec();
        }
    }
    let fresh = keys.iter().zip(&placed).filter(|(_, placed)| !**placed);
    ordered.extend(fresh.map(|(key, _)| *key));
    ordered
}

/// Store the reference list as metadata blobs; only blobs not already stored are written.
/// Returns the list's blob ids and the count and stored bytes of the new ones.
fn write_refs(
    repo: &Arc<Repository>,
    index: &MasterIndex,
    uploader: &PackUploader,
    refs: &[RefKey],
    seen: &mut HashSet<BlobId>,
) -> Result<(Vec<BlobId>, u64, u64)> {
    let (mut added, mut bytes) = (0, 0);
    let mut ids = Vec::new();
    let mut writer = PackWriter::new("", repo.config.pack_target);
    let mut session = None;
    // Counted as stored only once their pack is handed to the uploader.
    let mut fresh = HashSet::new();
    for plain in crate::format::refs::encode(refs) {
        let id = repo.meta.blob_id(&plain);
        ids.push(id);
        if index.dedupable(&id) || seen.contains(&id) || !fresh.insert(id) {
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
        uploader.submit_pack(&mut writer, repo)?;
    }
    seen.extend(fresh);
    Ok((ids, added, bytes))
}
