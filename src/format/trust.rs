//! The trust list (`keys/trust-<seq>`, format version 2): the config the operators signed, the
//! operators (recipients and signing keys) and the writer credentials whose signatures count.
//! Only an operator can extend it: each version is signed by an operator key of the version
//! before, the first by the operator who ran `init`.

use super::config::RepoConfig;
use crate::id::RepoId;
use serde::{Deserialize, Serialize};

/// Version of the trust list.
pub const TRUST_VERSION: u32 = 1;

/// Contents of `keys/trust-<seq>` (plain JSON inside a signed envelope: nothing in it is
/// secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustList {
    pub version: u32,
    pub repo_id: RepoId,
    /// 1 for the list `init` writes; each change adds one.
    pub seq: u64,
    /// `hex(BLAKE3(stored bytes))` of the previous version, so versions form a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    pub time: String,
    /// Who signed it, for people ("operator 1a2b…").
    pub by: String,
    /// The repository config as the operators signed it; `config` must equal it.
    pub config: RepoConfig,
    pub operators: Vec<TrustedOperator>,
    pub writers: Vec<TrustedWriter>,
    /// Auditors (access registry): they verify and read the audit log, never a record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auditors: Vec<TrustedAuditor>,
    /// Set by `migrate`: `hex(BLAKE3(stored bytes))` of [`MIGRATION_NAME`], which vouches for
    /// the unsigned objects format 1 wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated: Option<String>,
    /// Generation of the key domains: every change of the operators starts a new one, so
    /// what is backed up afterwards is sealed to domain keys only the operators of this list
    /// ever held (`keys/domains/`, docs/FORMAT.md "Operator changes").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key_generation: u32,
    /// Recipients of the metadata key's later generations, oldest first (each revocation of a
    /// writer adds one); new bookkeeping is sealed to the last, else to the config's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata_keys: Vec<String>,
    /// Set once a store of this repository was handed over: from then on every backup reads
    /// `handovers/` first (docs/DESIGN.md, "Handover"); until then it need not, so backups
    /// cost no request more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handovers: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TrustList {
    /// Operators in office (not removed): the recipients key records are sealed to.
    pub fn current_operators(&self) -> impl Iterator<Item = &TrustedOperator> {
        self.operators.iter().filter(|o| o.removed.is_none())
    }
}

/// Where `migrate` lists the format-1 objects it vouches for.
pub const MIGRATION_NAME: &str = "keys/migrated-v1";

/// Contents of [`MIGRATION_NAME`]: every format-1 object by name with the hash of its stored
/// bytes, and every pack (whose unsigned header its content-hash name covers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Migration {
    pub version: u32,
    pub objects: std::collections::BTreeMap<String, String>,
    pub packs: Vec<String>,
}

/// An operator: its age recipient and, once known, its signing key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedOperator {
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Who they are and who let them in (access registry; absent in lists written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Registered>,
    /// Set by `access remove-operator`: from then on only what `keys/revoked-operator-<key>`
    /// lists (what it had signed by then) verifies with its key, and nothing is sealed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Revocation>,
    /// The key domains it is granted, as keyed ids (`Repository::source_id`); `None`: every
    /// source, past and future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
}

impl TrustedOperator {
    /// Whether it may read the domain with keyed id `id`.
    pub fn grants(&self, id: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|g| g == id))
    }

    /// Granted every source, so it can re-seal every domain.
    pub fn is_full(&self) -> bool {
        self.sources.is_none()
    }
}

/// What the access registry says of a principal: its name, who added it, when, and until when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Registered {
    pub name: String,
    pub added: String,
    pub added_by: String,
    /// After this time (RFC 3339) the principal's key no longer counts for new work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// An auditor: an age recipient the audit log is sealed to, and the signing key it proves its
/// own entries (verifications, review sign-offs) with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedAuditor {
    pub recipient: String,
    pub signing_key: String,
    pub registry: Registered,
}

/// A writer credential whose signatures count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedWriter {
    /// The credential id (also in the credential file and `keys/writer-<id>`).
    pub id: String,
    pub name: String,
    /// Ed25519 public key, hex.
    pub key: String,
    pub added: String,
    /// Set by `access revoke-writer`: from then on only the objects listed in
    /// `keys/revoked-<id>` (what it had signed by then) verify with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// How many later metadata generations there were when it was issued: the newest it
    /// holds. Revoking a credential that already lacks the newest rotates nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub metadata_generation: u32,
}

/// When a writer credential was revoked, by whom, and `hex(H(stored bytes))` of the list of
/// what it had signed until then.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Revocation {
    pub time: String,
    pub by: String,
    pub vouched: String,
}

/// Where the objects a revoked credential signed before its revocation are listed (a
/// [`Migration`]-shaped list, signed by the revoking operator).
pub fn revoked_name(credential_id: &str) -> String {
    format!("keys/revoked-{credential_id}")
}

/// Object name of version `seq`.
pub fn trust_name(seq: u64) -> String {
    format!("keys/trust-{seq:010}")
}

/// The sequence number in a trust-list object name.
pub fn parse_trust_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("keys/trust-")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}
