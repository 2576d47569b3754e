//! The `config` object: the only plaintext object, readable without keys so any tool can tell
//! what a repository is and which operators it trusts.

use crate::chunker::ChunkerParams;
use crate::id::RepoId;
use serde::{Deserialize, Serialize};

/// Format version of the repository as a whole: 2 signs every object (docs/FORMAT.md).
pub const REPO_VERSION: u32 = 2;

/// Contents of `config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl RepoConfig {
    /// `hex(BLAKE3(JSON))` of the parsed config (fields in declaration order): what writer
    /// credentials and the trust list pin, so an edited `config` is refused.
    pub fn digest(&self) -> crate::Result<String> {
        Ok(hex::encode(crate::id::content_hash(
            &crate::compress::json_bytes(self)?,
        )))
    }

    /// Whether objects must carry signatures (format version 2 and later).
    pub fn signed(&self) -> bool {
        self.version >= 2
    }

    /// What differs from the `signed` config, one phrase per field, for the refusal message.
    pub fn changes_from(&self, signed: &RepoConfig) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.operator_recipients {
            if !signed.operator_recipients.contains(r) {
                out.push(format!("operator recipient {r} was added"));
            }
        }
        for r in &signed.operator_recipients {
            if !self.operator_recipients.contains(r) {
                out.push(format!("operator recipient {r} was removed"));
            }
        }
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name} changed from {b} to {a}"));
            }
        };
        field(
            "version",
            self.version.to_string(),
            signed.version.to_string(),
        );
        field("repo-id", self.repo_id.to_hex(), signed.repo_id.to_hex());
        field("created", self.created.clone(), signed.created.clone());
        field(
            "metadata-recipient",
            self.metadata_recipient.clone(),
            signed.metadata_recipient.clone(),
        );
        field(
            "chunker",
            format!("{:?}", self.chunker),
            format!("{:?}", signed.chunker),
        );
        field(
            "zstd-level",
            self.zstd_level.to_string(),
            signed.zstd_level.to_string(),
        );
        field(
            "pack-target",
            self.pack_target.to_string(),
            signed.pack_target.to_string(),
        );
        out
    }
}
