//! What a machine keeps of a repository's audit log outside the repository: the newest head it
//! saw (its anchor: a log shorter than this, or different up to it, was truncated or
//! rewritten), and entries kept while the storage could not be written (`--audit-offline`),
//! uploaded at the next contact.

use super::chain::Head;
use crate::error::{Error, IoContext, Result};
use crate::id::RepoId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A folder of anchors and offline entries (`$STATE/audit`, or the daemon's state dir).
#[derive(Clone, Debug)]
pub struct Local {
    pub dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Anchor {
    version: u32,
    repo_id: RepoId,
    count: u64,
    head: String,
}

/// An entry kept on this machine: its sealed details and why it was kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pending {
    pub version: u32,
    pub repo_id: RepoId,
    pub time: String,
    pub reason: String,
    pub sealed: String,
}

impl Local {
    /// The folder for the repository at `location`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Local { dir: dir.into() }
    }

    fn anchor_file(&self, location: &str) -> PathBuf {
        let key = crate::repository::trust::location_key(location);
        self.dir.join(format!("{key}.anchor"))
    }

    fn offline_dir(&self, location: &str) -> PathBuf {
        let key = crate::repository::trust::location_key(location);
        self.dir.join(format!("{key}.offline"))
    }

    /// The head this machine last saw in repository `repo` at `location`. An anchor that does
    /// not parse is an error (it is evidence; it is never silently replaced).
    pub fn anchor(&self, location: &str, repo: RepoId) -> Result<Option<Head>> {
        let file = self.anchor_file(location);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&file, e)),
        };
        let anchor: Anchor = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Damaged(format!(
                "the audit anchor {} is unreadable ({e}); it records how long this repository's \
                 audit log was. Move it aside only after 'custodian audit verify' was checked \
                 against a copy.",
                file.display()
            ))
        })?;
        Ok((anchor.repo_id == repo).then_some(Head {
            seq: anchor.count,
            hash: Some(anchor.head),
        }))
    }

    /// How long ago this machine recorded the head it holds for `location` (the anchor's age
    /// by its modification time); `None` without one, or if the clock went back since.
    pub fn anchor_age(&self, location: &str) -> Option<std::time::Duration> {
        let modified = std::fs::metadata(self.anchor_file(location))
            .and_then(|m| m.modified())
            .ok()?;
        std::time::SystemTime::now().duration_since(modified).ok()
    }

    /// Record `head` unless this machine already saw a longer log.
    pub fn remember(&self, location: &str, repo: RepoId, head: &Head) -> Result<()> {
        let Some(hash) = &head.hash else {
            return Ok(());
        };
        if self
            .anchor(location, repo)?
            .is_some_and(|known| known.seq >= head.seq)
        {
            return Ok(());
        }
        let anchor = Anchor {
            version: 1,
            repo_id: repo,
            count: head.seq,
            head: hash.clone(),
        };
        let json = crate::compress::json_bytes(&anchor)?;
        write_atomic(&self.anchor_file(location), &json)
    }

    /// Keep an entry here until the storage can be written.
    pub fn keep(&self, location: &str, pending: &Pending) -> Result<PathBuf> {
        let dir = self.offline_dir(location);
        crate::fsutil::private_dir(&dir)?;
        let file = dir.join(format!(
            "{}-{}.json",
            crate::clock::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
            crate::id::SessionId::random().to_hex()
        ));
        write_atomic(&file, &crate::compress::json_bytes(pending)?)?;
        Ok(file)
    }

    /// Entries kept for repository `repo`, oldest first.
    pub fn pending(&self, location: &str, repo: RepoId) -> Result<Vec<(PathBuf, Pending)>> {
        let dir = self.offline_dir(location);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        files.sort();
        let mut out = Vec::new();
        for file in files {
            let bytes = std::fs::read(&file).at(&file)?;
            let pending: Pending = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Damaged(format!(
                    "the offline audit entry {} is unreadable ({e}); it must reach the \
                     repository. Compare it with the machine's backups before moving it aside.",
                    file.display()
                ))
            })?;
            if pending.repo_id == repo {
                out.push((file, pending));
            }
        }
        Ok(out)
    }
}

fn write_atomic(file: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = file.parent() {
        crate::fsutil::private_dir(dir)?;
    }
    crate::fsutil::write_atomic(file, bytes)
}
