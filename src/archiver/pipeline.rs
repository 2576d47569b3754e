//! The backup pipeline: reader threads (read, chunk, hash, dedup) feed sealer threads (zstd,
//! AEAD) through a bounded queue; one packer thread fills packs and hands them to the uploader.
//! Every queue is bounded, so memory stays bounded whatever the file sizes; both cores compress.

use crate::chunker::{Chunker, ChunkerParams};
use crate::compress;
use crate::constants::{PACK_QUEUE, SEAL_QUEUE};
use crate::crypto::{seal_blob, DomainKeys, SessionKey};
use crate::error::{Error, Result};
use crate::format::refs::RefKey;
use crate::format::tree::ChunkRef;
use crate::format::BlobKind;
use crate::id::BlobId;
use crate::repository::{MasterIndex, PackUploader, PackWriter, Repository};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Live counters for progress display and the final summary.
#[derive(Default)]
pub struct Progress {
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// Counters the pipeline itself keeps.
#[derive(Default)]
pub struct PipelineStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
}

struct SealJob {
    id: BlobId,
    kind: BlobKind,
    data: Vec<u8>,
    /// A database's page group, compressed with [`compress::Setting::page_group`].
    page_group: bool,
}

struct PackJob {
    id: BlobId,
    kind: BlobKind,
    frame: Vec<u8>,
}

/// Files queued for the readers at most: enough to keep both cores busy across directories.
const READ_QUEUE: usize = 256;

/// A file for the readers: child `child` of the walk's directory `dir`.
pub struct FileJob {
    pub dir: u64,
    pub child: usize,
    pub path: PathBuf,
}

/// What reading one file gave, or why it was skipped.
pub struct FileDone {
    pub dir: u64,
    pub child: usize,
    pub result: std::result::Result<FileRead, String>,
}

/// A file's content ids, length, and how many of its bytes look incompressible.
pub struct FileRead {
    pub content: Vec<ChunkRef>,
    pub len: u64,
    pub high_entropy_bytes: u64,
}

/// The running pipeline of one backup.
pub struct Pipeline {
    domain: Arc<DomainKeys>,
    /// What is stored already (asked, never copied: a million blob ids are ~40 MB a copy).
    index: Arc<MasterIndex>,
    /// What this run has queued, by 16-byte reference key: half the memory of whole ids, and
    /// two distinct keyed ids share a key with probability 2^-128 (docs/FORMAT.md).
    queued: Arc<Mutex<HashSet<RefKey>>>,
    seal_tx: Option<Sender<SealJob>>,
    sealers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<()>>>,
    failed: Arc<AtomicBool>,
    /// A shutdown: readers stop taking files.
    cancel: Arc<AtomicBool>,
    pub stats: Arc<PipelineStats>,
}

impl Pipeline {
    /// Start sealers and the packer. A blob `index` can dedup is not stored again.
    pub fn start(
        repo: Arc<Repository>,
        domain: Arc<DomainKeys>,
        session: Arc<SessionKey>,
        index: Arc<MasterIndex>,
        uploader: Arc<PackUploader>,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let (seal_tx, seal_rx) = bounded::<SealJob>(SEAL_QUEUE);
        let (pack_tx, pack_rx) = bounded::<PackJob>(PACK_QUEUE);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let level = repo.config.zstd_level;
        let sealers = (0..threads)
            .map(|_| {
                let (rx, tx, key) = (seal_rx.clone(), pack_tx.clone(), session.clone());
                std::thread::spawn(move || seal_loop(rx, tx, &key, level))
            })
            .collect();
        drop(pack_tx);
        let stats = Arc::new(PipelineStats::default());
        let failed = Arc::new(AtomicBool::new(false));
        let packer = {
            let (stats, failed, domain_name) = (stats.clone(), failed.clone(), domain.name.clone());
            std::thread::spawn(move || {
                let result = pack_loop(&repo, &domain_name, pack_rx, &uploader, &stats);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                result
            })
        };
        Pipeline {
            domain,
            index,
            queued: Arc::default(),
            seal_tx: Some(seal_tx),
            sealers,
            packer: Some(packer),
            failed,
            cancel,
            stats,
        }
    }

    /// Queue a blob unless an identical one is stored or queued (atomic insert-if-absent).
    pub fn submit(&self, id: BlobId, kind: BlobKind, data: Vec<u8>) -> Result<()> {
        self.submit_at(id, kind, Cow::Owned(data), false)
    }

    /// Queue a blob; borrowed bytes are copied only once they are known to be new.
    fn submit_at(
        &self,
        id: BlobId,
        kind: BlobKind,
        data: Cow<[u8]>,
        page_group: bool,
    ) -> Result<()> {
        if self.index.dedupable(&id) || !self.first_time(&id)? {
            return Ok(());
        }
        let stopped = || {
            Error::Internal("the pack writer stopped after an error (see the error above)".into())
        };
        if self.failed.load(Ordering::SeqCst) {
            return Err(stopped());
        }
        let data = match data {
            Cow::Owned(data) => data,
            Cow::Borrowed(bytes) => bytes.to_vec(),
        };
        let job = SealJob {
            id,
            kind,
            data,
            page_group,
        };
        let tx = self.seal_tx.as_ref().ok_or_else(stopped)?;
        tx.send(job).map_err(|_| stopped())
    }

    /// Whether this run meets `id` for the first time (atomic insert-if-absent).
    fn first_time(&self, id: &BlobId) -> Result<bool> {
        Ok(self
            .queued
            .lock()
            .map_err(|_| Error::Internal("internal error: poisoned dedup set".into()))?
            .insert(RefKey::from(id)))
    }

    /// Start one reader per core in `scope`: each reads, chunks and queues the files sent on the
    /// returned queue (bounded: the walk waits for the readers) and reports each on the returned
    /// receiver, in any order. Readers stop at a shutdown or a pipeline failure; the queue's
    /// sender then fails.
    pub fn readers<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        params: ChunkerParams,
        progress: &'env Progress,
    ) -> (Sender<FileJob>, Receiver<FileDone>) {
        let (job_tx, job_rx) = bounded::<FileJob>(READ_QUEUE);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<FileDone>();
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..readers {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                let mut chunker = Chunker::new(params, self.domain.chunker_seed);
                for job in jobs {
                    if self.failed.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst) {
                        break;
                    }
                    let result = self.read_one(&mut chunker, &job, progress);
                    progress.files_done.fetch_add(1, Ordering::Relaxed);
                    let report = FileDone {
                        dir: job.dir,
                        child: job.child,
                        result,
                    };
                    if done.send(report).is_err() {
                        break;
                    }
                }
            });
        }
        (job_tx, done_rx)
    }

    fn read_one(
        &self,
        chunker: &mut Chunker,
        job: &FileJob,
        progress: &Progress,
    ) -> std::result::Result<FileRead, String> {
        let file = open_regular(&job.path)?;
        let mut ids = Vec::new();
        let mut high = 0u64;
        let read = chunker.chunk::<_, ChunkError>(file, |chunk, paged| {
            // A stop reaches into a large file: at the next chunk, not at the file's end.
            if self.cancel.load(Ordering::Relaxed) {
                return Err(ChunkError::Pipeline(Error::Cancelled));
            }
            let id = self.domain.blob_id(chunk);
            ids.push(ChunkRef(id, chunk.len() as u32));
            if super::changes::high_entropy(chunk) {
                high += chunk.len() as u64;
            }
            progress
                .bytes_done
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.submit_at(id, BlobKind::Data, Cow::Borrowed(chunk), paged)
                .map_err(ChunkError::Pipeline)
        });
        match read {
            Ok(n) => Ok(FileRead {
                content: ids,
                len: n,
                high_entropy_bytes: high,
            }),
            Err(ChunkError::Read(e)) => Err(format!("read failed part-way: {e}")),
            Err(ChunkError::Pipeline(e)) => Err(format!("backup stopped: {e}")),
        }
    }

    /// Close the queues and wait for the last pack to reach the uploader.
    pub fn finish(mut self) -> Result<Arc<PipelineStats>> {
        drop(self.seal_tx.take());
        // A sealer that panicked lost the blob it held: the snapshot must not be committed.
        let panicked = self
            .sealers
            .drain(..)
            .map(|s| s.join().is_err())
            .filter(|p| *p)
            .count();
        if panicked > 0 {
            return Err(Error::Internal(format!(
                "internal error: {panicked} compression thread(s) stopped unexpectedly; nothing \
                 was committed (the packs already stored are reused by the next backup)"
            )));
        }
        match self.packer.take().map(|p| p.join()) {
            Some(Ok(result)) => result?,
            _ => {
                return Err(Error::Internal(
                    "internal error: the packer thread stopped unexpectedly".into(),
                ))
            }
        }
        Ok(self.stats.clone())
    }
}

/// Open a file the walk listed as a regular file, refusing what it may have become since: a
/// symlink (not followed: its target may lie outside the source), a FIFO (opened without
/// blocking, then refused, instead of waiting for a writer forever) or a device.
fn open_regular(path: &std::path::Path) -> std::result::Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "became a symlink after it was listed; not followed".to_string(),
            _ => e.to_string(),
        })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err("is no longer a regular file (a FIFO or device now); skipped".into()),
        Err(e) => Err(e.to_string()),
    }
}

enum ChunkError {
    Read(std::io::Error),
    Pipeline(Error),
}

impl From<std::io::Error> for ChunkError {
    fn from(e: std::io::Error) -> Self {
        ChunkError::Read(e)
    }
}

fn seal_loop(rx: Receiver<SealJob>, tx: Sender<PackJob>, key: &SessionKey, level: i32) {
    for job in rx {
        crate::failpoint::panic_at("seal");
        let setting = if job.page_group {
            compress::Setting::page_group(level)
        } else {
            compress::Setting::level(level)
        };
        let (tag, payload) = compress::compress_as(&job.data, setting);
        let frame = seal_blob(key, &job.id, job.kind.code(), tag, &payload);
        if tx
            .send(PackJob {
                id: job.id,
                kind: job.kind,
                frame,
            })
            .is_err()
        {
            return;
        }
    }
}

fn pack_loop(
    repo: &Repository,
    domain: &str,
    rx: Receiver<PackJob>,
    uploader: &PackUploader,
    stats: &PipelineStats,
) -> Result<()> {
    // Trees go to packs of their own: they are sealed as directories close, in among the
    // file data, and they change with every snapshot while data mostly stays. Mixed, every
    // forgotten snapshot would leave data packs partly unused (prune must then repack them);
    // apart, old tree packs empty out whole.
    let mut data = PackWriter::new(domain, repo.config.pack_target);
    let mut trees = PackWriter::new(domain, repo.config.pack_target);
    for job in rx {
        stats.blobs_added.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_added
            .fetch_add(job.frame.len() as u64, Ordering::Relaxed);
        let writer = if job.kind == BlobKind::Tree {
            &mut trees
        } else {
            &mut data
        };
        if writer.add(job.id, job.kind, &job.frame) {
            uploader.submit_pack(writer, repo)?;
        }
    }
    for mut writer in [data, trees] {
        if !writer.is_empty() {
            uploader.submit_pack(&mut writer, repo)?;
        }
    }
    Ok(())
}
