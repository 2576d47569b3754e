//! The incremental cache: for each file seen last time, its stat identity and content ids, so an
//! unchanged file is not read again. Paths are stored only as keyed hashes; the cache lives in
//! the state dir (mode 0700). Losing it costs re-reading, never re-uploading (dedup catches it).

use crate::error::{IoContext, Result};
use crate::format::tree::ChunkRef;
use crate::id::BlobId;
use crate::source::FileStat;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file's keyed path hash: the cache never holds a path.
pub type PathKey = [u8; 32];

/// What the cache remembers about one file.
#[derive(Clone)]
pub struct CacheEntry {
    pub stat: FileStat,
    pub content: Vec<ChunkRef>,
    /// Most of the content looked incompressible when last read (for the ransomware flag).
    pub incompressible: bool,
}

/// One source's cache: what the last backup recorded (read once, in full: one lookup per
/// file), and this run's records, streamed to a temporary file as they come.
pub struct FileCache {
    path: PathBuf,
    key: [u8; 32],
    old: HashMap<PathKey, CacheEntry>,
    /// This run's records so far, and how many of them the old cache knew.
    new: Option<NewCache>,
    recorded_known: u64,
    /// The first error writing this run's cache: reported by `save`, never fatal before.
    failed: Option<crate::error::Error>,
}

/// The temporary file this run's records go to.
struct NewCache {
    tmp: PathBuf,
    out: zstd::stream::write::Encoder<'static, std::io::BufWriter<fs::File>>,
}

/// Create `dir` and parents with mode 0700, and tighten it if it already exists.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).at(dir)
}

/// Replace `path` with `bytes` so that a reader sees the old file or the new one, never half:
/// a private (0600) temporary file unique to this writer, synced, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = private_tmp_name(path);
    let written =
        private_tmp(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(crate::error::Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).at(path)
}

impl FileCache {
    /// Open the cache for `source_key` (already a keyed hash) under `state_dir`. A missing,
    /// unreadable or malformed cache is simply empty.
    pub fn open(state_dir: &Path, repo_id: &str, source_key: &str, key: [u8; 32]) -> Result<Self> {
        let dir = state_dir.join("cache").join(repo_id);
        private_dir(state_dir)?;
        private_dir(&dir)?;
        let path = dir.join(format!("{source_key}.cache"));
        Ok(FileCache {
            old: read_old(&path),
            path,
            key,
            new: None,
            recorded_known: 0,
            failed: None,
        })
    }

    /// Keyed hash of a path relative to the source root.
    pub fn path_key(&self, rel: &Path) -> PathKey {
        *blake3::keyed_hash(&self.key, rel.as_os_str().as_encoded_bytes()).as_bytes()
    }

    /// Content ids of an unchanged file, if the cache has it and every id is still usable.
    pub fn lookup(
        &self,
        key: &PathKey,
        stat: &FileStat,
        usable: impl Fn(&BlobId) -> bool,
    ) -> Option<Vec<ChunkRef>> {
        let entry = self.old.get(key)?;
        (entry.stat == *stat && entry.content.iter().all(|c| usable(&c.0)))
            .then(|| entry.content.clone())
    }

    /// What the previous backup knew about a file, if anything.
    pub fn previous(&self, key: &PathKey) -> Option<&CacheEntry> {
        self.old.get(key)
    }

    /// Files the previous backup knew.
    pub fn known(&self) -> u64 {
        self.old.len() as u64
    }

    /// Known files this run has not recorded (deleted, or unreadable now). Each file is
    /// recorded once.
    pub fn not_seen(&self) -> u64 {
        self.known().saturating_sub(self.recorded_known)
    }

    /// Remember a file for next time (written out at once; nothing kept in memory).
    pub fn record(&mut self, key: PathKey, entry: CacheEntry) {
        if self.old.contains_key(&key) {
            self.recorded_known += 1;
        }
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.append(&key, &entry) {
            self.failed = Some(e);
        }
    }

    fn append(&mut self, key: &PathKey, entry: &CacheEntry) -> Result<()> {
        if self.new.is_none() {
            self.new = Some(self.start()?);
        }
        if let Some(new) = &mut self.new {
            super::cache_format::write_record(&mut new.out, key, entry).at(&new.tmp)?;
        }
        Ok(())
    }

    /// A private temporary file beside the cache, unique to this run.
    fn start(&self) -> Result<NewCache> {
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        let tmp = private_tmp_name(&self.path);
        let file = private_tmp(&tmp).at(&tmp)?;
        let mut out =
            zstd::stream::write::Encoder::new(std::io::BufWriter::new(file), 1).at(&tmp)?;
        super::cache_format::write_header(&mut out).at(&tmp)?;
        Ok(NewCache { tmp, out })
    }

    /// Replace the stored cache with what this run recorded (only after the snapshot committed).
    pub fn save(mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let new = match self.new.take() {
            Some(new) => new,
            None => self.start()?,
        };
        let NewCache { tmp, out } = new;
        let finished = out
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all());
        if let Err(e) = finished {
            let _ = fs::remove_file(&tmp);
            return Err(crate::error::Error::io(&tmp, e));
        }
        fs::rename(&tmp, &self.path).at(&self.path)
    }
}

impl Drop for FileCache {
    /// A run that did not save (failed, cancelled) leaves no temporary file behind.
    fn drop(&mut self) {
        if let Some(new) = self.new.take() {
            let _ = fs::remove_file(&new.tmp);
        }
    }
}

/// A temporary name beside `path`, unique to this process and call.
fn private_tmp_name(path: &Path) -> PathBuf {
    path.with_extension(format!(
        "{}-{}.tmp",
        std::process::id(),
        crate::id::SessionId::random().to_hex()
    ))
}

/// Create `tmp` new, readable by its owner only (mode 0600).
fn private_tmp(tmp: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
}

/// The last run's cache, one record at a time; empty if missing or malformed.
fn read_old(path: &Path) -> HashMap<PathKey, CacheEntry> {
    let mut old = HashMap::new();
    let read = fs::File::open(path)
        .ok()
        .and_then(|f| zstd::stream::read::Decoder::new(f).ok())
        .and_then(|d| {
            super::cache_format::read_all(std::io::BufReader::new(d), |k, e| {
                old.insert(k, e);
            })
        });
    if read.is_none() {
        old.clear();
    }
    old
}
