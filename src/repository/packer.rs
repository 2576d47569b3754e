//! Packing sealed blobs into pack files and uploading them. Commit order lives here: a pack is
//! written durably before any index names it, and an index is written before any snapshot
//! (written by the caller, after `finish`) can need it.

use super::{pack_name, Repository};
use crate::constants::{BLOBS_PER_INDEX, PACKS_PER_INDEX, UPLOAD_QUEUE};
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{trailer, PackHeader, PACK_HEADER_VERSION};
use crate::format::{BlobKind, PackEntry};
use crate::id::{BlobId, IndexId, PackId};
use crossbeam_channel::{bounded, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Accumulates one domain's frames until the pack reaches its target size.
pub struct PackWriter {
    domain: String,
    target: u64,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A complete pack, ready to upload.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub index: IndexPack,
}

impl PackWriter {
    /// A writer for `domain` ("" is the metadata domain).
    pub fn new(domain: &str, target: u64) -> Self {
        PackWriter {
            domain: domain.to_string(),
            target,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Append a sealed frame; returns true once the pack should be finished.
    pub fn add(&mut self, id: BlobId, kind: BlobKind, frame: &[u8]) -> bool {
        if self.buf.capacity() == 0 {
            // Room for a full pack plus one large frame and the header, so the buffer never
            // doubles (a doubled 16 MiB buffer would be the pipeline's largest allocation).
            self.buf
                .reserve_exact(self.target as usize + frame.len().max(1 << 20) + (64 << 10));
        }
        self.entries.push(PackEntry {
            id,
            kind,
            offset: self.buf.len() as u64,
            length: frame.len() as u32,
        });
        self.buf.extend_from_slice(frame);
        self.buf.len() as u64 >= self.target
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seal the header, add the trailer, and name the pack by its hash.
    pub fn finish(&mut self, repo: &Repository) -> Result<FinishedPack> {
        let entries = std::mem::take(&mut self.entries);
        let mut bytes = std::mem::take(&mut self.buf);
        // One pass over the frames serves both hashes: the header's data-hash, then (carrying
        // on with header and trailer) the pack's name.
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        let header = PackHeader {
            version: PACK_HEADER_VERSION,
            domain: self.domain.clone(),
            blobs: entries.clone(),
            data_hash: Some(hasher.clone().finalize().to_hex().to_string()),
        };
        let sealed = repo.seal_meta_at(crate::format::ObjectKind::PackHeader, "", &header)?;
        let tail = trailer(sealed.len());
        hasher.update(&sealed);
        hasher.update(&tail);
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&tail);
        let id = PackId(*hasher.finalize().as_bytes());
        let index = IndexPack {
            id,
            domain: self.domain.clone(),
            size: bytes.len() as u64,
            blobs: entries,
        };
        Ok(FinishedPack { id, bytes, index })
    }
}

/// What an upload session wrote.
#[derive(Debug, Default, Clone)]
pub struct UploadSummary {
    pub packs: u64,
    pub bytes: u64,
    pub indexes: Vec<IndexId>,
    /// Every pack made durable, so a writer can check at commit that none has been pruned.
    pub written: Vec<PackId>,
}

#[derive(Default)]
struct UploadState {
    pending: Vec<IndexPack>,
    summary: UploadSummary,
    /// The first upload error: the root cause that every later "stopped" error points to.
    failure: Option<Error>,
}

/// A bounded pool of upload threads plus the index bookkeeping for what they made durable.
pub struct PackUploader {
    repo: Arc<Repository>,
    tx: Option<Sender<FinishedPack>>,
    threads: Vec<JoinHandle<Result<()>>>,
    state: Arc<Mutex<UploadState>>,
}

impl PackUploader {
    /// Start `connections` upload threads (on local disk one writer outpaces both sealers; each
    /// extra one holds a pack in memory). `recovered` are durable packs from an interrupted run
    /// that the first index written here will name.
    pub fn start(repo: Arc<Repository>, recovered: Vec<IndexPack>, connections: usize) -> Self {
        let (tx, rx) = bounded::<FinishedPack>(UPLOAD_QUEUE);
        let state = Arc::new(Mutex::new(UploadState {
            pending: recovered,
            ..Default::default()
        }));
        let threads = (0..connections.max(1))
            .map(|_| {
                let (rx, repo, state) = (rx.clone(), repo.clone(), state.clone());
                std::thread::spawn(move || -> Result<()> {
                    let result = upload_loop(&repo, &rx, &state);
                    if let Err(e) = result {
                        let mut s = state.lock().map_err(|_| poisoned())?;
                        s.failure.get_or_insert(e);
                        return Err(Error::Internal("pack upload failed".into()));
                    }
                    Ok(())
                })
            })
            .collect();
        PackUploader {
            repo,
            tx: Some(tx),
            threads,
            state,
        }
    }

    /// Finish `writer`'s pack and queue it; blocks while the queue is full (the pipeline's
    /// back-pressure).
    pub fn submit_pack(&self, writer: &mut PackWriter, repo: &Repository) -> Result<()> {
        let pack = writer.finish(repo)?;
        let tx = self.tx.as_ref().ok_or_else(poisoned)?;
        let stopped = || Error::Internal("pack upload stopped after an earlier error".into());
        if self.state.lock().map_err(|_| poisoned())?.failure.is_some() {
            return Err(stopped());
        }
        tx.send(pack).map_err(|_| stopped())
    }

    /// The error that stopped the uploads, if any, so callers report it instead of the
    /// "stopped" errors it caused downstream.
    pub fn take_failure(&self) -> Option<Error> {
        self.state.lock().ok()?.failure.take()
    }

    /// Packs made durable so far. A poisoned lock (an upload thread panicked) is an error:
    /// an empty list would let the prune check overlook this run's own packs.
    pub fn written(&self) -> Result<Vec<PackId>> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .summary
            .written
            .clone())
    }

    /// Wait for every upload, then index whatever is not indexed yet.
    pub fn finish(mut self) -> Result<UploadSummary> {
        drop(self.tx.take());
        let mut first_error = None;
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(_) => first_error = first_error.or(Some(poisoned())),
            }
        }
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(e) = state.failure.take().or(first_error) {
            return Err(e);
        }
        let pending = std::mem::take(&mut state.pending);
        if !pending.is_empty() {
            crate::failpoint::pause("before-index", 0);
            let id = self.repo.write_index(pending)?;
            state.summary.indexes.push(id);
        }
        Ok(state.summary.clone())
    }
}

/// One upload thread: store each pack durably, then let the index mention it.
fn upload_loop(
    repo: &Repository,
    rx: &crossbeam_channel::Receiver<FinishedPack>,
    state: &Mutex<UploadState>,
) -> Result<()> {
    for pack in rx {
        // Durable first; only then may an index mention the pack.
        repo.backend
            .put_immutable(&pack_name(&pack.id), &pack.bytes)?;
        let full = {
            let mut s = state.lock().map_err(|_| poisoned())?;
            s.summary.packs += 1;
            s.summary.bytes += pack.bytes.len() as u64;
            s.summary.written.push(pack.id);
            s.pending.push(pack.index);
            crate::failpoint::pause("pack", s.summary.packs);
            let blobs: usize = s.pending.iter().map(|p| p.blobs.len()).sum();
            (s.pending.len() >= PACKS_PER_INDEX || blobs >= BLOBS_PER_INDEX)
                .then(|| std::mem::take(&mut s.pending))
        };
        if let Some(packs) = full {
            let id = repo.write_index(packs)?;
            state
                .lock()
                .map_err(|_| poisoned())?
                .summary
                .indexes
                .push(id);
        }
    }
    Ok(())
}

fn poisoned() -> Error {
    Error::Internal("internal error: an upload thread stopped unexpectedly".into())
}
