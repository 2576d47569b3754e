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
    pub snapshots: Vec<HandedSnapshot>,
    pub packs: Vec<HandedPack>,
    pub sessions: Vec<String>,
    pub totals: Totals,
    /// What the old owner's repository says of retention for this store: its holds.
    pub retention: String,
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

/// What a retained store's destruction deletes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetainPlan {
    pub snapshots: Vec<PlannedSnapshot>,
    pub objects: Vec<PlannedObject>,
}

/// A snapshot a retained store's destruction forgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlannedSnapshot {
    pub id: String,
    pub source: String,
    pub time: String,
}

/// An object a retained store's destruction deletes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlannedObject {
    pub name: String,
    pub size: u64,
}

/// Folders a retention plan may delete from: a forged or damaged plan can never reach the
/// audit log, the trust list, packs or another folder.
pub fn plannable(name: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(id) = name
        .strip_prefix("snapshots/")
        .or_else(|| name.strip_prefix("sessions/"))
    {
        return hex(id);
    }
    name.strip_prefix("keys/domains/")
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(id, suffix)| hex(id) && ["writer", "history", "operator"].contains(&suffix))
}

#[cfg(test)]
mod tests {
    use super::plannable;

    #[test]
    fn a_plan_reaches_only_a_domains_snapshots_sessions_and_key_records() {
        for ok in [
            "snapshots/ab12",
            "sessions/00ff",
            "keys/domains/0123abcd.operator",
            "keys/domains/0123abcd.writer",
        ] {
            assert!(plannable(ok), "{ok}");
        }
        for bad in [
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
