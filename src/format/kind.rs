//! The repository's object namespace in one place: for each kind of sealed bookkeeping object,
//! its folder, the format version readers accept, how large its plaintext may be, and whether its
//! name is the hash of its bytes. Every read of such an object goes through these rules, so a
//! hostile store cannot exhaust memory with a decompression bomb or pass one object off as another.

use super::index::INDEX_VERSION;
use super::keys::KEYS_VERSION;
use super::pack::PACK_HEADER_VERSION;
use super::snapshot::SNAPSHOT_VERSION;

/// Version of holds and destruction records.
pub const RECORD_VERSION: u32 = 1;
/// Version of prune markers.
pub const MARKER_VERSION: u32 = 1;
/// Version of the prune lease.
pub const LEASE_VERSION: u32 = 1;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A kind of sealed object (zstd JSON inside age) stored in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Snapshot,
    Index,
    PackHeader,
    DomainWriter,
    Hold,
    Destruction,
    Marker,
    Lease,
    /// Key records sealed to operators or domains (metadata, domain, session).
    KeyRecord,
    /// `sessions/<id>`: one run's blob key, sealed to its domain.
    Session,
    /// `drills/<hash>`: a drill report sealed to the operators.
    DrillReport,
    /// `keys/trust-<seq>`: the trust list (format 2).
    Trust,
    /// `keys/migrated-v1`: what `migrate` vouched for.
    Migration,
    /// `exclusions/<hash>`: a path an erase removed, left out of the source's later backups.
    Exclusion,
    /// `audit/log/<seq>`: one entry of the audit log.
    AuditEntry,
    /// `audit/checkpoints/<count>-<closes>`: a signed statement of the log's length and head.
    AuditCheckpoint,
    /// `handovers/<id>.list|receipt|mark`: a handover's signed list, receipt, and state.
    Handover,
}

impl ObjectKind {
    /// What people call it in messages.
    pub fn what(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Index => "index",
            ObjectKind::PackHeader => "pack header",
            ObjectKind::DomainWriter => "domain writer record",
            ObjectKind::Hold => "hold",
            ObjectKind::Destruction => "destruction record",
            ObjectKind::Marker => "prune marker",
            ObjectKind::Lease => "prune lease",
            ObjectKind::KeyRecord => "key record",
            ObjectKind::Session => "session key",
            ObjectKind::DrillReport => "drill report",
            ObjectKind::Trust => "trust list",
            ObjectKind::Migration => "migration list",
            ObjectKind::Exclusion => "erase exclusion",
            ObjectKind::AuditEntry => "audit entry",
            ObjectKind::AuditCheckpoint => "audit checkpoint",
            ObjectKind::Handover => "handover record",
        }
    }

    /// The folder its objects live in (empty for pack headers, which live inside packs).
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Index => "index/",
            ObjectKind::PackHeader => "",
            ObjectKind::DomainWriter
            | ObjectKind::KeyRecord
            | ObjectKind::Trust
            | ObjectKind::Migration => "keys/",
            ObjectKind::Session => "sessions/",
            ObjectKind::DrillReport => "drills/",
            ObjectKind::Hold => "holds/",
            ObjectKind::Destruction => "destruction/",
            ObjectKind::Marker => "prune/",
            ObjectKind::Lease => "locks/",
            ObjectKind::Exclusion => "exclusions/",
            ObjectKind::AuditEntry => super::audit::LOG_PREFIX,
            ObjectKind::AuditCheckpoint => super::audit::CHECKPOINT_PREFIX,
            ObjectKind::Handover => "handovers/",
        }
    }

    /// Newest format version of its JSON that this build reads.
    pub fn version(self) -> u32 {
        match self {
            ObjectKind::Snapshot => SNAPSHOT_VERSION,
            ObjectKind::Index => INDEX_VERSION,
            ObjectKind::PackHeader => PACK_HEADER_VERSION,
            ObjectKind::DomainWriter | ObjectKind::KeyRecord | ObjectKind::Session => KEYS_VERSION,
            ObjectKind::DrillReport => 1,
            ObjectKind::Trust | ObjectKind::Migration => super::trust::TRUST_VERSION,
            ObjectKind::Hold | ObjectKind::Destruction | ObjectKind::Exclusion => RECORD_VERSION,
            ObjectKind::Marker => MARKER_VERSION,
            ObjectKind::Lease => LEASE_VERSION,
            ObjectKind::AuditEntry | ObjectKind::AuditCheckpoint => super::audit::AUDIT_VERSION,
            ObjectKind::Handover => super::handover::HANDOVER_VERSION,
        }
    }

    /// Largest plaintext (decompressed JSON) accepted. Generous against what custodian writes
    /// (an index object of 64 packs of tiny files is a few MiB; a head is a few KiB), small
    /// enough that a forged object cannot exhaust memory.
    pub fn max_plain(self) -> usize {
        match self {
            ObjectKind::Index | ObjectKind::PackHeader => 256 * MIB,
            ObjectKind::Destruction | ObjectKind::Marker => 64 * MIB,
            // A list's JSON string inside the sealed document, with room for escaping.
            ObjectKind::Handover => 2 * super::handover::MAX_LIST,
            ObjectKind::DrillReport => REPORT_MAX_PLAIN,
            ObjectKind::Trust => 4 * MIB,
            ObjectKind::Migration => 256 * MIB,
            ObjectKind::Snapshot => 4 * MIB,
            _ => 64 * KIB,
        }
    }

    /// Largest stored object of this kind a reader fetches: its plaintext limit plus room for
    /// the envelope and age's framing (zstd JSON never grows much).
    pub fn max_stored(self) -> u64 {
        self.max_plain() as u64 + 64 * KIB as u64
    }

    /// Kinds of the audit log, the only ones an auditor's key may sign.
    pub fn is_audit(self) -> bool {
        matches!(self, ObjectKind::AuditEntry | ObjectKind::AuditCheckpoint)
    }

    /// Whether the object's name is `prefix || hex(BLAKE3(object bytes))`, so a reader can
    /// check it: a head copied over another name, or altered in place, is then detected.
    pub fn hash_named(self) -> bool {
        matches!(
            self,
            ObjectKind::Snapshot
                | ObjectKind::Index
                | ObjectKind::Destruction
                | ObjectKind::Marker
                | ObjectKind::DrillReport
                | ObjectKind::Exclusion
        )
    }
}

/// Largest tree blob plaintext (a directory of about 200,000 entries).
pub const TREE_MAX_PLAIN: usize = 64 * MIB;
/// Largest reference-list blob plaintext (4,096 keys of 16 bytes, with room).
pub const REFS_MAX_PLAIN: usize = MIB;
/// Largest drill report plaintext.
pub const REPORT_MAX_PLAIN: usize = 16 * MIB;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_named_kinds_live_in_their_own_folders() {
        for kind in [
            ObjectKind::Snapshot,
            ObjectKind::Index,
            ObjectKind::Destruction,
            ObjectKind::Marker,
        ] {
            assert!(kind.hash_named());
            assert!(kind.prefix().ends_with('/'), "{kind:?}");
        }
        assert!(!ObjectKind::Hold.hash_named());
        assert!(ObjectKind::Lease.max_plain() < ObjectKind::Index.max_plain());
    }
}
