//! The incremental cache: for each file seen last time, its stat identity and content ids, so an
//! unchanged file is not read again. It lives in the state dir (mode 0700), sealed under a key
//! derived from the writer's metadata key (`cache_seal`), and is kept in walk order: the last
//! run's records are read as a stream merged with this run's walk, and this run's are written
//! as a stream, so memory never holds the cache. Losing it costs re-reading, never
//! re-uploading (dedup catches it).

use super::cache_seal::{OpenReader, SealWriter};
use crate::error::{IoContext, Result};
use crate::format::tree::ChunkRef;
use crate::fsutil::{private_dir, private_tmp, private_tmp_name};
use crate::id::BlobId;
use crate::source::{walk_order, FileStat};
use std::cmp::Ordering;
use std::fs;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

/// What the cache remembers about one file.
#[derive(Clone)]
pub struct CacheEntry {
    pub stat: FileStat,
    pub content: Vec<ChunkRef>,
    /// Most of the content looked incompressible when last read (for the ransomware flag).
    pub incompressible: bool,
}

impl CacheEntry {
    /// The content ids, if the file is unchanged and every id is still usable.
    pub fn reuse(
        &self,
        stat: &FileStat,
        usable: impl Fn(&BlobId) -> bool,
    ) -> Option<Vec<ChunkRef>> {
        let length: u64 = self.content.iter().map(|c| u64::from(c.1)).sum();
        (self.stat == *stat && length == stat.size && self.content.iter().all(|c| usable(&c.0)))
            .then(|| self.content.clone())
    }
}

/// One source's cache: the last backup's records, read as the walk goes, and this run's,
/// written as they come to a temporary file that replaces the old one after the commit.
pub struct FileCache {
    path: PathBuf,
    key: [u8; 32],
    /// What the sealing binds the file to: repository and source.
    context: Vec<u8>,
    old: Option<Box<dyn Read>>,
    /// The old record read but not yet reached by the walk.
    ahead: Option<(Vec<u8>, CacheEntry)>,
    /// Old records read, and how many of them this run's walk met.
    read: u64,
    met: u64,
    new: Option<NewCache>,
    /// The first error writing this run's cache: reported by `save`, never fatal before.
    failed: Option<crate::error::Error>,
}

type Sealed = SealWriter<BufWriter<fs::File>>;

/// The temporary file this run's records go to.
struct NewCache {
    tmp: PathBuf,
    out: zstd::stream::write::Encoder<'static, Sealed>,
}

impl FileCache {
    /// Open the cache for `source_key` (already a keyed hash) under `state_dir`, sealed under
    /// `key` and bound to `repo_id` and `source_key` (a cache moved to another source's name
    /// does not open). A missing, unreadable or malformed cache is simply empty.
    pub fn open(state_dir: &Path, repo_id: &str, source_key: &str, key: [u8; 32]) -> Result<Self> {
        let dir = state_dir.join("cache").join(repo_id);
        private_dir(state_dir)?;
        private_dir(&dir)?;
        let path = dir.join(format!("{source_key}.cache"));
        let context = format!("{repo_id}/{source_key}").into_bytes();
        Ok(FileCache {
            old: open_old(&path, &key, &context),
            context,
            path,
            key,
            ahead: None,
            read: 0,
            met: 0,
            new: None,
            failed: None,
        })
    }

    /// What the previous backup knew about the file at `rel` (relative to the source root).
    /// Calls must come in walk order ([`walk_order`]); records before `rel` are passed over.
    pub fn previous(&mut self, rel: &[u8]) -> Option<CacheEntry> {
        loop {
            if self.ahead.is_none() {
                self.ahead = self.next_old();
            }
            let (path, _) = self.ahead.as_ref()?;
            match walk_order(path, rel) {
                Ordering::Less => self.ahead = None,
                // Equal in order but other bytes ("a//b"): only a forged file has those.
                Ordering::Equal if path.as_slice() != rel => return None,
                Ordering::Equal => {
                    self.met += 1;
                    return self.ahead.take().map(|(_, entry)| entry);
                }
                Ordering::Greater => return None,
            }
        }
    }

    fn next_old(&mut self) -> Option<(Vec<u8>, CacheEntry)> {
        let record = super::cache_format::read_record(self.old.as_mut()?);
        match record {
            Some(_) => self.read += 1,
            None => self.old = None,
        }
        record
    }

    /// Files the previous backup knew, and how many of them this run did not meet (deleted,
    /// or unreadable now). Reads the rest of the old cache: call once, after the walk.
    pub fn known_and_not_seen(&mut self) -> (u64, u64) {
        if self.ahead.take().is_some() || self.old.is_some() {
            while self.next_old().is_some() {}
        }
        (self.read, self.read - self.met)
    }

    /// A file met in the walk could not be read after all: it counts as not seen.
    pub fn unreadable_now(&mut self) {
        self.met = self.met.saturating_sub(1);
    }

    /// Remember a file for next time (written out at once; nothing kept in memory). Calls must
    /// come in walk order.
    pub fn record(&mut self, rel: &[u8], entry: &CacheEntry) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.append(rel, entry) {
            self.failed = Some(e);
        }
    }

    fn append(&mut self, rel: &[u8], entry: &CacheEntry) -> Result<()> {
        if self.new.is_none() {
            self.new = Some(self.start()?);
        }
        if let Some(new) = &mut self.new {
            super::cache_format::write_record(&mut new.out, rel, entry).at(&new.tmp)?;
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
        let sealed = SealWriter::new(BufWriter::new(file), &self.key, &self.context).at(&tmp)?;
        let mut out = zstd::stream::write::Encoder::new(sealed, 1).at(&tmp)?;
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
            .and_then(SealWriter::finish)
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

/// The last run's record stream, past its header; `None` if missing, foreign or unopenable.
fn open_old(path: &Path, key: &[u8; 32], context: &[u8]) -> Option<Box<dyn Read>> {
    let file = fs::File::open(path).ok()?;
    let sealed = OpenReader::new(std::io::BufReader::new(file), key, context).ok()?;
    let mut records = zstd::stream::read::Decoder::new(sealed).ok()?;
    super::cache_format::read_header(&mut records)?;
    Some(Box::new(records))
}
