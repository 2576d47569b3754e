//! Index objects: which pack holds each blob. Encrypted to the metadata identity, so the writer
//! can deduplicate and prune without reading any content.

use super::pack::PackEntry;
use crate::id::PackId;
use serde::{Deserialize, Serialize};

/// Version of index objects.
pub const INDEX_VERSION: u32 = 1;

/// One `index/<id>` object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexPack>,
}

/// One pack's entry in an index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPack {
    pub id: PackId,
    pub domain: String,
    /// Whole pack length in bytes, so structure checks can see truncation without keys.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}
