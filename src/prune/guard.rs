//! The writer's side of prune's two phases: at commit, a backup (or an erase) makes sure that no
//! prune that marked packs since the writer loaded its index can take away a blob the new
//! snapshot needs.

use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::PackEntry;
use crate::id::{BlobId, PackId};
use crate::repository::{FrameCopier, MasterIndex, PackUploader, Repository};
use std::collections::{HashMap, HashSet};

/// Run just before the writer finishes its uploader and writes its snapshot head. Blobs the
/// snapshot needs that sit in packs marked since `start` was loaded are copied into new packs
/// (which the uploader then indexes); a pack the snapshot relies on that is already gone fails
/// the commit, so nothing is written that could not be restored. `needed` holds the reference
/// keys (16-byte id prefixes) of every blob the heads need, sorted: a million cost 16 MB.
/// Returns the blobs copied.
pub fn secure_commit(
    repo: &Repository,
    start: &MasterIndex,
    uploader: &PackUploader,
    needed: &[RefKey],
) -> Result<u64> {
    // Packs finished before the listing below; those still uploading are too new to prune.
    let own = uploader.written()?;
    let marks = repo.prune_marks()?;
    let listed: HashMap<PackId, u64> = repo
        .list_ids::<PackId>("packs/")?
        .into_iter()
        .map(|(id, object)| (id, object.size))
        .collect();
    let mut copier = FrameCopier::new(repo, uploader);
    let mut vanished: HashSet<PackId> = HashSet::new();
    for marker in marks.since(&start.marks) {
        for pack in &marker.packs {
            // Already deleted: if the snapshot needed it, the check below says so.
            let Some(&size) = listed.get(pack) else {
                continue;
            };
            // Deleted since the listing: a finishing prune; the check below decides.
            let header = match repo.read_pack_header(pack, size) {
                Ok(header) => header,
                Err(Error::Backend(e)) if e.kind == crate::backend::ErrorKind::NotFound => {
                    vanished.insert(*pack);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let wanted: Vec<PackEntry> = header
                .blobs
                .into_iter()
                .filter(|b| needed.binary_search(&RefKey::from(&b.id)).is_ok())
                .collect();
            match copier.copy(pack, &header.domain, &wanted) {
                Err(Error::Backend(e)) if e.kind == crate::backend::ErrorKind::NotFound => {
                    vanished.insert(*pack);
                }
                other => other?,
            }
        }
    }
    let rescued = copier.blobs;
    copier.flush()?;
    // A marker written and finished entirely while this writer ran leaves no name to compare;
    // its deletions show here.
    let gone = |p: &PackId| !listed.contains_key(p) || vanished.contains(p);
    if let Some(own) = own.iter().find(|p| gone(p)) {
        return Err(refused(own));
    }
    // Blobs reused from packs deleted since: fine if a repack left them in a pack that stays
    // (the common case); the index is read again only then.
    // Needed blobs are known by their 16-byte keys: walk the start index and ask each of its
    // blobs (a key shared by chance only checks one blob more, the safe direction).
    let any_gone = start.packs.iter().any(|p| gone(&p.id));
    let lost: Vec<(BlobId, PackId)> = start
        .entries()
        .filter(|_| any_gone)
        .filter(|(id, _)| needed.binary_search(&RefKey::from(id)).is_ok())
        .filter(|(id, _)| start.dedupable(id))
        .map(|(id, loc)| (id, start.pack(&loc).id))
        .filter(|(_, pack)| gone(pack))
        .collect();
    if !lost.is_empty() {
        let now = repo.load_index()?;
        for (id, was) in lost {
            let moved = now
                .get(&id)
                .is_some_and(|loc| now.dedupable(&id) && !gone(&now.pack(&loc).id));
            if !moved {
                return Err(refused(&was));
            }
        }
    }
    if rescued > 0 {
        tracing::info!(
            blobs = rescued,
            "copied blobs out of packs a concurrent prune marked"
        );
    }
    Ok(rescued)
}

fn refused(pack: &PackId) -> Error {
    Error::Conflict(format!(
        "a prune that ran during this backup deleted pack {} which the backup relies on, so \
         nothing was committed. Run the backup again: it stores that data afresh.",
        pack.short()
    ))
}
