//! Reading blobs back: fetch, authenticate, decompress, and check the id against the plaintext,
//! so a damaged or substituted blob is an error and never wrong bytes.

use super::{pack_name, Location, MasterIndex, Repository};
use crate::compress;
use crate::crypto::blob_seal::{frame_session, open_blob};
use crate::crypto::DomainKeys;
use crate::error::{Error, FormatError, Result};
use crate::format::tree::{Tree, TREE_VERSION};
use crate::format::BlobKind;
use crate::id::BlobId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Reads and verifies blobs, caching domain keys.
pub struct BlobReader<'a> {
    pub repo: &'a Repository,
    pub index: &'a MasterIndex,
    domains: Mutex<HashMap<String, Arc<DomainKeys>>>,
}

impl<'a> BlobReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a MasterIndex) -> Self {
        BlobReader {
            repo,
            index,
            domains: Mutex::default(),
        }
    }

    /// Keys of a content domain (operators only).
    pub fn domain(&self, name: &str) -> Result<Arc<DomainKeys>> {
        let mut cache = self
            .domains
            .lock()
            .map_err(|_| Error::Invalid("internal error: poisoned lock".into()))?;
        if let Some(d) = cache.get(name) {
            return Ok(d.clone());
        }
        let keys = Arc::new(self.repo.domain_for_read(name)?);
        cache.insert(name.to_string(), keys.clone());
        Ok(keys)
    }

    /// Where a blob is, or a "missing" error naming it.
    pub fn locate(&self, id: &BlobId) -> Result<Location> {
        self.index.get(id).ok_or_else(|| {
            Error::Damaged(format!(
                "blob {} is not in the index: the repository is incomplete; run 'custodian check'.",
                id.short()
            ))
        })
    }

    /// Fetch and open one blob.
    pub fn read(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let pack = self.index.pack(&loc);
        let frame =
            self.repo
                .backend
                .get_range(&pack_name(&pack.id), loc.offset, u64::from(loc.length))?;
        self.open(id, &loc, &frame)
    }

    /// Open a frame already fetched; verifies AEAD and that the plaintext hashes to `id`.
    pub fn open(&self, id: &BlobId, loc: &Location, frame: &[u8]) -> Result<Vec<u8>> {
        let pack = self.index.pack(loc);
        let what = format!("blob {} in pack {}", id.short(), pack.id.short());
        let session = frame_session(frame)
            .ok_or_else(|| Error::Damaged(format!("{what} is damaged: no valid frame header")))?;
        let domain = if loc.kind == BlobKind::Refs {
            None
        } else {
            Some(self.domain(&pack.domain)?)
        };
        let key = self.repo.session_key(session, domain.as_deref())?;
        let (tag, payload) = open_blob(&key, id, loc.kind.code(), frame, &what)
            .map_err(|e| Error::Damaged(format!("{e}")))?;
        let plain = match loc.kind {
            BlobKind::Data => {
                compress::decompress(tag, payload, self.repo.config.chunker.max as usize)
            }
            _ if tag == compress::ZSTD => zstd::stream::decode_all(&payload[..]),
            _ => compress::decompress(tag, payload, 0),
        }
        .map_err(|e| Error::Damaged(format!("{what} does not decompress: {e}")))?;
        let actual = match &domain {
            Some(d) => d.blob_id(&plain),
            None => self.repo.meta.blob_id(&plain),
        };
        if actual != *id {
            return Err(Error::Damaged(format!(
                "{what} holds content that does not match its id"
            )));
        }
        Ok(plain)
    }

    /// Read and decode a tree blob.
    pub fn tree(&self, id: &BlobId) -> Result<Tree> {
        let plain = self.read(id)?;
        Ok(
            crate::format::decode_json(&plain, &format!("tree {}", id.short()), TREE_VERSION)
                .map_err(|e: FormatError| e)?,
        )
    }
}
