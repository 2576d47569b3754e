//! Key records stored under `keys/`, the session records under `sessions/`, and the writer
//! credential file the daemon holds. Secrets appear here only inside age ciphertext or 0600 files.

use crate::id::RepoId;
use serde::{Deserialize, Serialize};

/// Version of every key record type.
pub const KEYS_VERSION: u32 = 1;

/// `keys/metadata`, encrypted to the operators: lets them read bookkeeping.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetadataKeyRecord {
    pub version: u32,
    pub identity: String,
    pub dedup_key: String,
}

/// `keys/domains/<id>.operator`, encrypted to the operators: the domain's secret identity.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DomainOperatorRecord {
    pub version: u32,
    pub name: String,
    pub identity: String,
    pub dedup_key: String,
    pub chunker_seed: u64,
}

/// `keys/domains/<id>.history`, encrypted to the operators and written by one: the identities
/// of a domain's earlier generations, re-sealed when the operators changed, so the operators
/// in office read old backups while the old records (sealed to whoever was removed) go.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DomainHistoryRecord {
    pub version: u32,
    pub name: String,
    pub generation: u32,
    pub identities: Vec<String>,
    pub dedup_key: String,
    pub chunker_seed: u64,
}

/// `keys/domains/<id>.writer`, encrypted to the metadata identity: what a writer needs to back up
/// into the domain (public recipient, dedup key, chunker seed) and nothing that reads it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DomainWriterRecord {
    pub version: u32,
    pub name: String,
    pub recipient: String,
    pub dedup_key: String,
    pub chunker_seed: u64,
    /// `hex(H(stored .operator object))`: a writer uses this record only while the operators'
    /// record it was made with is there, so a half-created or mismatched pair is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_hash: Option<String>,
}

/// `sessions/<id>`: one run's blob key, encrypted to its domain (or metadata) recipient.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SessionRecord {
    pub version: u32,
    pub key: String,
}

/// Marker in the credential file so a wrong file is recognised as such.
pub const WRITER_KIND: &str = "custodian-writer-credential";

/// The writer credential file (mode 0600) and its copy `keys/writer-<id>` for operators.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WriterCredential {
    pub version: u32,
    pub kind: String,
    pub repo_id: RepoId,
    pub credential_id: String,
    pub metadata_identity: String,
    pub metadata_dedup_key: String,
    /// Format 2: the credential's Ed25519 seed (hex); it signs everything this writer stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Format 2: digest of the `config` this credential was issued for (`RepoConfig::digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    /// Format 2: operator signing keys (hex) trusted to sign the repository's trust list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_keys: Vec<String>,
    /// The metadata identities of later generations (after a writer's revocation), oldest
    /// first; `metadata_identity` stays the founding one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_metadata_identities: Vec<String>,
}
