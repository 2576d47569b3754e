//! The handover list (交接清单) and its receipt: what one record store's owner hands to the next,
//! and what the next one checked. Both sides sign the exact JSON bytes (an Ed25519 envelope, as
//! every stored object), and each repository keeps a sealed copy under `handovers/`. Counts,
//! ids and hashes only: no file name or content ever appears here.

use serde::{Deserialize, Serialize};

/// Version of handover lists, receipts and marks.
pub const HANDOVER_VERSION: u32 = 1;
/// Envelope kind of the list's detached signature.
pub const MANIFEST_KIND: &str = "handover list";
/// Envelope kind of the receipt's detached signature.
pub const RECEIPT_KIND: &str = "handover receipt";
/// Largest list or receipt accepted (a store of millions of snapshots' packs stays far below).
pub const MAX_LIST: usize = 64 << 20;

/// A handover id: 32 lowercase hex digits. Checked before an id from a list names a file or an
/// object.
pub fn valid_id(id: &str) -> Result<(), crate::error::FormatError> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(crate::error::FormatError::Malformed {
            what: "handover list".into(),
            reason: format!(
                "'{}' is not a handover id (32 lowercase hex digits)",
                id.escape_default()
            ),
        })
    }
}

/// One side of a handover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Party {
    /// Where its repository is (a path or s3:// URL).
    pub repository: String,
    pub repository_id: String,
    /// The old owner: the operator signing key (hex) that signed the list. The new owner: its
    /// age recipient, to which everything handed over is sealed.
    pub key: String,
}

/// One snapshot handed over, under its id in the receiving repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HandedSnapshot {
    pub id: String,
    /// Its id in the old owner's repository.
    pub old_id: String,
    pub time: String,
    pub host: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// BLAKE3 of the head object exactly as stored in the receiving repository.
    pub head_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Reasons of the holds that go along with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
}

/// One pack in the receiving repository (its name is the BLAKE3 of its bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HandedPack {
    pub id: String,
    pub size: u64,
}

/// Sums over the list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Totals {
    pub snapshots: u64,
    pub files: u64,
    pub bytes: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub blobs: u64,
    pub sessions: u64,
}

/// A destruction record of the store before the handover, in short.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PastDestruction {
    pub action: String,
    pub time: String,
    pub by: String,
    pub snapshots: u64,
    pub note: String,
}

/// Where an audit log stood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditPoint {
    pub entries: u64,
    pub head: String,
}

/// The handover list, signed by the old owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    pub created: String,
    pub reason: String,
    pub classification: String,
    pub purpose: String,
    pub source: String,
    pub domain: String,
    pub from: Party,
    pub to: Party,
    /// Fingerprint of the receiving repository's first trust list (what the new owner pins).
    pub trust_fingerprint: String,
    /// The temporary operator that created the receiving repository (its age recipient);
    /// `accept` removes it.
    pub handover_operator: String,
    pub snapshots: Vec<HandedSnapshot>,
    pub packs: Vec<HandedPack>,
    pub sessions: Vec<String>,
    pub totals: Totals,
    /// What the old owner's repository says of retention for this store: its holds.
    pub retention: String,
    /// Erase exclusions that go along (paths an erase removed, kept out of later backups; the
    /// paths themselves travel sealed, never in this list).
    pub exclusions: u64,
    pub destruction: Vec<PastDestruction>,
    /// The old owner's audit log at the moment of handover.
    pub audit: AuditPoint,
}

/// What the drill of `accept` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrillResult {
    /// `full` or `sample`.
    pub mode: String,
    pub snapshot: String,
    pub files: u64,
    pub bytes: u64,
    pub passed: bool,
    pub seconds: f64,
}

/// The new owner's signed receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Receipt {
    pub version: u32,
    pub handover: String,
    /// BLAKE3 of the list's exact bytes.
    pub manifest_hash: String,
    pub time: String,
    /// The new owner's operator signing key (hex) that signed this receipt.
    pub signed_by: String,
    pub snapshots: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    /// What was checked: the signature, every count and every hash.
    pub checked: Vec<String>,
    pub drill: DrillResult,
}

/// Stored in the old owner's repository: the store's domain was handed over, so no writer may
/// back it up again. Sealed; its name is keyed by the domain, like the domain's key records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HandedOver {
    pub version: u32,
    pub handover: String,
    pub domain: String,
    pub to: String,
    pub time: String,
    /// `prepared`, then `retained` (until `until`) or `destroyed` once complete.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// For a retained store: what its destruction deletes, listed by the operator who kept it
    /// (finding its session keys needs the domain's identity), so the daemon's writer
    /// credential can carry it out on the day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RetainPlan>,
}

/// What only the operator can list of a retained store's destruction: the session keys sealed
/// to its domain (finding them needs the domain's identity). The snapshots and key records are
/// found again on the day, from the domain's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetainPlan {
    pub sessions: Vec<PlannedObject>,
}

/// An object a retained store's destruction deletes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlannedObject {
    pub name: String,
    pub size: u64,
}

/// Whether a plan's entry names a session key (`sessions/<hex>`): a forged or damaged plan can
/// never reach the audit log, the trust list, packs or any other folder.
pub fn plannable(name: &str) -> bool {
    name.strip_prefix("sessions/")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::plannable;

    #[test]
    fn a_plan_reaches_only_session_keys() {
        for ok in ["sessions/00ff", "sessions/0123456789abcdef"] {
            assert!(plannable(ok), "{ok}");
        }
        for bad in [
            "snapshots/ab12",
            "keys/domains/0123abcd.operator",
            "audit/log/0000000001",
            "keys/trust-0000000001",
            "keys/metadata-1",
            "keys/domains/0123abcd.operator/../x",
            "keys/domains/../trust-1.writer",
            "snapshots/../keys/trust-1",
            "sessions/",
            "packs/ab/abcd",
            "config",
        ] {
            assert!(!plannable(bad), "{bad}");
        }
    }
}
