//! The audit log's stored types (`audit/`): chained, signed entries and signed checkpoints.
//! The chain fields (sequence, previous hash, time) are plain JSON so anyone holding the trust
//! list can check order, gaps and signatures without a key that opens anything; what an entry
//! says (who, what, why) is sealed to the metadata key and the auditors, since a reason may name
//! a client. File names and paths never go in an entry: only counts.

use serde::{Deserialize, Serialize};

/// Version of entries, their sealed details and checkpoints.
pub const AUDIT_VERSION: u32 = 1;

/// Folder of entries: `audit/log/<seq, 12 digits>`.
pub const LOG_PREFIX: &str = "audit/log/";
/// Folder of checkpoints: `audit/checkpoints/<count, 12 digits>-<closes, 12 digits>`.
pub const CHECKPOINT_PREFIX: &str = "audit/checkpoints/";

/// The stored body of `audit/log/<seq>` (inside a signed envelope).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EntryBody {
    pub version: u32,
    /// 1 for the first entry; each entry adds one, without gaps.
    pub seq: u64,
    /// `hex(H(stored bytes))` of entry `seq - 1`; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// When the entry was appended (RFC 3339, UTC).
    pub time: String,
    /// Kept on an operator's machine while the storage could not be written (`--audit-offline`),
    /// appended at the next contact: flagged in every report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// `hex(age({metadata recipient} ∪ auditors, zjson(Details)))`.
    pub sealed: String,
}

/// Whether an entry reads customer records or changes the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    Write,
}

/// What an entry says, sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Details {
    pub version: u32,
    /// "operator 1a2b3c4d", "writer credential 3f9a…", "auditor …": the key that signed.
    pub actor: String,
    /// The role the registry gives the actor ("operator", "writer", "auditor").
    pub role: String,
    /// The person's or server's name in the access registry, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The command ("restore", "backup", "access revoke-writer", …).
    pub op: String,
    pub access: Access,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Snapshot ids the command names or acts on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Why: `--reason`, or what the daemon or a drill says of itself.
    pub reason: String,
    pub host: String,
    /// Set when the entry is written after the act (the daemon's backups): "ok", "failed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// How much was touched, when known when the entry is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<Touched>,
    /// `--audit-offline REASON` and when the entry was kept locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<Offline>,
    /// An access review's sign-off: the trust list version the reviewer approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<u64>,
}

/// The op of an access review's sign-off (`access review --approve`).
pub const REVIEW_OP: &str = "access review";

/// Counts of what a command touched (never names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Touched {
    pub files: u64,
    pub bytes: u64,
}

/// Why and when an entry was kept on the operator's machine instead of the repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Offline {
    pub reason: String,
    pub kept: String,
}

/// The stored body of a checkpoint (plain JSON inside a signed envelope): the log had `count`
/// entries, the last hashing to `head`; and, at the end of a command, the result of its entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Checkpoint {
    pub version: u32,
    pub count: u64,
    pub head: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes: Option<Closing>,
}

/// The outcome of the command that wrote entry `seq` (no message: errors may name files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Closing {
    pub seq: u64,
    /// "ok", "failed", or "partial" (a backup that skipped files).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<Touched>,
    /// A drill's measured recovery against its promises, one per runbook (durations only: the
    /// same figures the daemon exports as metrics), so an auditor's report shows RTO and RPO.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<DrillFigures>,
}

/// What one drill measured, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrillFigures {
    pub passed: bool,
    pub rto_target: f64,
    pub rto_achieved: f64,
    pub rpo_target: u64,
    /// Age of the newest snapshot at drill time: what a loss then would have cost.
    pub rpo_achieved: u64,
}

/// Object name of entry `seq`.
pub fn entry_name(seq: u64) -> String {
    format!("{LOG_PREFIX}{seq:012}")
}

/// The sequence number in an entry's name (exactly 12 digits, at least 1).
pub fn parse_entry_name(name: &str) -> Option<u64> {
    twelve_digits(name.strip_prefix(LOG_PREFIX)?).filter(|s| *s > 0)
}

/// Object name of the checkpoint at `count` written by the command that appended `closes`
/// (0 for a periodic checkpoint), unique per command.
pub fn checkpoint_name(count: u64, closes: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{count:012}-{closes:012}")
}

/// `(count, closes)` of a checkpoint name.
pub fn parse_checkpoint_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(CHECKPOINT_PREFIX)?;
    let (count, closes) = rest.split_once('-')?;
    Some((twelve_digits(count)?, twelve_digits(closes)?))
}

fn twelve_digits(text: &str) -> Option<u64> {
    (text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_look_alikes() {
        assert_eq!(parse_entry_name(&entry_name(42)), Some(42));
        assert_eq!(parse_entry_name("audit/log/000000000000"), None);
        assert_eq!(parse_entry_name("audit/log/42"), None);
        assert_eq!(parse_entry_name("audit/log/00000000004x"), None);
        assert_eq!(parse_checkpoint_name(&checkpoint_name(7, 5)), Some((7, 5)));
        assert_eq!(parse_checkpoint_name("audit/checkpoints/7-5"), None);
    }
}
