//! Copying blob frames from one pack into new ones, ciphertext as it is. Frames carry their
//! session id and are sealed under a key no writer holds, so this needs no key at all: it is how
//! prune keeps the live blobs of a pack it deletes, and how a backup rescues blobs it reuses from
//! a pack a concurrent prune has just marked.

use super::{pack_name, PackUploader, PackWriter, Repository};
use crate::error::{Error, Result};
use crate::format::PackEntry;
use crate::id::PackId;
use std::collections::HashMap;

/// Copies frames into new packs (one writer per key domain) through an uploader, which indexes
/// them when it finishes.
pub struct FrameCopier<'a> {
    /// Where the frames are read (the same repository, except for a handover).
    from: &'a Repository,
    repo: &'a Repository,
    uploader: &'a PackUploader,
    writers: HashMap<String, PackWriter>,
    /// Frames and bytes copied so far.
    pub blobs: u64,
    pub bytes: u64,
    /// The sessions the copied frames were sealed under.
    pub sessions: std::collections::BTreeSet<crate::id::SessionId>,
}

impl<'a> FrameCopier<'a> {
    pub fn new(repo: &'a Repository, uploader: &'a PackUploader) -> Self {
        Self::between(repo, repo, uploader)
    }

    /// Copy frames of `from`'s packs into packs of `repo` (a handover: frames are sealed per
    /// key domain, so they read the same in any repository holding the domain's sessions).
    pub fn between(from: &'a Repository, repo: &'a Repository, uploader: &'a PackUploader) -> Self {
        FrameCopier {
            from,
            repo,
            uploader,
            writers: HashMap::new(),
            blobs: 0,
            bytes: 0,
            sessions: Default::default(),
        }
    }

    /// Copy `wanted` (entries of pack `id`, of key domain `domain`). The whole pack is read and
    /// checked against its content-hash name first, so a damaged pack is reported, never
    /// copied into a new pack with a fresh, valid name.
    pub fn copy(&mut self, id: &PackId, domain: &str, wanted: &[PackEntry]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let bytes = self.from.backend.get(&pack_name(id))?;
        // The pack must be whole and its own signed header must list each frame copied, so a
        // damaged or spliced pack is reported, never copied into a new pack with a valid name.
        let header = self.from.whole_pack_header(id, &bytes).map_err(|e| {
            Error::Damaged(format!(
                "{e}, so its blobs cannot be copied; run 'custodian check --read-data' and \
                 restore the pack from a copy of the repository"
            ))
        })?;
        let listed: std::collections::HashSet<(crate::id::BlobId, u64, u32)> = header
            .blobs
            .iter()
            .map(|b| (b.id, b.offset, b.length))
            .collect();
        if let Some(stray) = wanted
            .iter()
            .find(|e| !listed.contains(&(e.id, e.offset, e.length)))
        {
            return Err(Error::Damaged(format!(
                "pack {} does not hold blob {} where the index says; run 'custodian check'",
                id.short(),
                stray.id.short()
            )));
        }
        let target = self.repo.config.pack_target;
        for entry in wanted {
            let start = entry.offset as usize;
            let frame = bytes
                .get(start..start + entry.length as usize)
                .ok_or_else(|| {
                    Error::Damaged(format!(
                        "pack {} is shorter than its index says; run 'custodian check'",
                        id.short()
                    ))
                })?;
            let writer = self
                .writers
                .entry(domain.to_string())
                .or_insert_with(|| PackWriter::new(domain, target));
            self.blobs += 1;
            self.sessions
                .extend(crate::crypto::blob_seal::frame_session(frame));
            self.bytes += frame.len() as u64;
            if writer.add(entry.id, entry.kind, frame) {
                self.uploader.submit_pack(writer, self.repo)?;
            }
        }
        Ok(())
    }

    /// Submit the packs still being filled. The caller finishes the uploader, which indexes
    /// everything copied.
    pub fn flush(mut self) -> Result<()> {
        for writer in self.writers.values_mut() {
            if !writer.is_empty() {
                self.uploader.submit_pack(writer, self.repo)?;
            }
        }
        Ok(())
    }
}
