//! The incremental cache: for each file seen last time, its stat identity and content ids, so an
//! unchanged file is not read again. Paths are stored only as keyed hashes; the cache lives in
//! the state dir (mode 0700). Losing it costs re-reading, never re-uploading (dedup catches it).

use crate::error::{IoContext, Result};
use crate::format::tree::ChunkRef;
use crate::id::BlobId;
use crate::source::FileStat;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const CACHE_VERSION: u32 = 1;

/// What the cache remembers about one file.
#[derive(Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub stat: FileStat,
    pub content: Vec<ChunkRef>,
    /// Most of the content looked incompressible when last read (for the ransomware flag).
    #[serde(default)]
    pub incompressible: bool,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: HashMap<String, CacheEntry>,
}

/// One source's cache.
pub struct FileCache {
    path: PathBuf,
    key: [u8; 32],
    old: HashMap<String, CacheEntry>,
    new: HashMap<String, CacheEntry>,
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
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!(
        "{}-{}.tmp",
        std::process::id(),
        crate::id::SessionId::random().to_hex()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(crate::error::Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).at(path)
}

impl FileCache {
    /// Open the cache for `source_key` (already a keyed hash) under `state_dir`. A missing or
    /// unreadable cache is simply empty.
    pub fn open(state_dir: &Path, repo_id: &str, source_key: &str, key: [u8; 32]) -> Result<Self> {
        let dir = state_dir.join("cache").join(repo_id);
        private_dir(state_dir)?;
        private_dir(&dir)?;
        let path = dir.join(format!("{source_key}.cache"));
        let old = fs::read(&path)
            .ok()
            .and_then(|b| zstd::stream::decode_all(&b[..]).ok())
            .and_then(|j| serde_json::from_slice::<CacheFile>(&j).ok())
            .filter(|c| c.version == CACHE_VERSION)
            .map(|c| c.files)
            .unwrap_or_default();
        Ok(FileCache {
            path,
            key,
            old,
            new: HashMap::new(),
        })
    }

    /// Keyed hash of a path relative to the source root.
    pub fn path_key(&self, rel: &Path) -> String {
        blake3::keyed_hash(&self.key, rel.as_os_str().as_encoded_bytes())
            .to_hex()
            .to_string()
    }

    /// Content ids of an unchanged file, if the cache has it and every id is still usable.
    pub fn lookup(
        &self,
        key: &str,
        stat: &FileStat,
        usable: impl Fn(&BlobId) -> bool,
    ) -> Option<Vec<ChunkRef>> {
        let entry = self.old.get(key)?;
        (entry.stat == *stat && entry.content.iter().all(|c| usable(&c.0)))
            .then(|| entry.content.clone())
    }

    /// What the previous backup knew about a file, if anything.
    pub fn previous(&self, key: &str) -> Option<&CacheEntry> {
        self.old.get(key)
    }

    /// Files the previous backup knew.
    pub fn known(&self) -> u64 {
        self.old.len() as u64
    }

    /// Known files this run has not recorded (deleted, or unreadable now).
    pub fn not_seen(&self) -> u64 {
        self.old
            .keys()
            .filter(|k| !self.new.contains_key(*k))
            .count() as u64
    }

    /// Remember a file for next time.
    pub fn record(
        &mut self,
        key: String,
        stat: FileStat,
        content: Vec<ChunkRef>,
        incompressible: bool,
    ) {
        self.new.insert(
            key,
            CacheEntry {
                stat,
                content,
                incompressible,
            },
        );
    }

    /// Replace the stored cache with what this run recorded (only after the snapshot committed).
    pub fn save(self) -> Result<()> {
        let json = crate::compress::json_bytes(&CacheFile {
            version: CACHE_VERSION,
            files: self.new,
        })?;
        let packed = zstd::bulk::compress(&json, 1).at(&self.path)?;
        // The state dir may have been removed while the backup ran.
        if let Some(dir) = self.path.parent() {
            private_dir(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let written = fs::write(&tmp, packed).at(&tmp);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        fs::rename(&tmp, &self.path).at(&self.path)
    }
}
