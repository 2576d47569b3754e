//! The `config` object: the only plaintext object, readable without keys so any tool can tell
//! what a repository is and which operators it trusts.

use crate::chunker::ChunkerParams;
use crate::id::RepoId;
use serde::{Deserialize, Serialize};

/// Format version of the repository as a whole.
pub const REPO_VERSION: u32 = 1;

/// Contents of `config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepoConfig {
    pub version: u32,
    pub repo_id: RepoId,
    pub created: String,
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    pub pack_target: u64,
    /// age recipients of the operators: keys/ objects are encrypted to all of them.
    pub operator_recipients: Vec<String>,
    /// Public half of the metadata identity: bookkeeping objects are encrypted to it.
    pub metadata_recipient: String,
}
