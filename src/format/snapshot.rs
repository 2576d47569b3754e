//! Snapshot heads: the last object a backup writes. Encrypted to the metadata identity so the
//! writer can list and prune snapshots; they name no customer file (only the source's root path).

use super::tree::Node;
use crate::id::{BlobId, SnapshotId};
use serde::{Deserialize, Serialize};

/// Version of snapshot heads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Counters a backup reports; also printed by `backup --json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    /// Sum of file sizes in the snapshot.
    pub bytes: u64,
    /// Files whose content was read this run (the rest came from the cache).
    pub files_read: u64,
    pub bytes_read: u64,
    /// New blobs and their stored (compressed, sealed) size.
    pub blobs_added: u64,
    pub bytes_added: u64,
    pub packs_added: u64,
    pub duration_ms: u64,
}

/// How much changed since the previous backup of the source, and whether it looks like
/// ransomware. Counts only, never names. Absent in snapshots from before this existed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChangeSummary {
    /// Files the previous backup knew (0: no baseline, e.g. a lost cache; no verdict then).
    pub files_before: u64,
    pub files_added: u64,
    pub files_modified: u64,
    pub files_deleted: u64,
    /// Bytes of modified files; of those, the bytes of files that were compressible before;
    /// and of those, the bytes that are incompressible (high entropy) now: what encryption in
    /// place looks like. Files that were incompressible already (scans, archives) say nothing.
    pub bytes_modified: u64,
    pub bytes_were_compressible: u64,
    pub bytes_became_incompressible: u64,
    pub suspicious: bool,
    /// Which thresholds were crossed.
    pub reasons: Vec<String>,
}

/// Contents of `snapshots/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHead {
    pub version: u32,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub source: String,
    pub domain: String,
    pub host: String,
    pub root_path: String,
    pub tags: Vec<String>,
    /// The backed-up directory itself; its `subtree` is the root tree.
    pub root: Node,
    /// Reference-list blobs (metadata domain), covering every blob this snapshot needs.
    pub refs: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    pub stats: SnapshotStats,
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_list: Option<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeSummary>,
    /// Set when `erase` rewrote this snapshot from another (which it deleted). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<Rewritten>,
}

/// How a snapshot came to be rewritten. Names no file: the erased paths stay with the operator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rewritten {
    /// When the rewrite happened (RFC 3339); the head's own `time` stays the backup's.
    pub time: String,
    pub by: String,
    /// The snapshot this one replaced.
    pub from: SnapshotId,
    /// Why: `erase`.
    pub reason: String,
    /// Entries removed (files, directories with everything below them count once).
    pub entries_removed: u64,
}
