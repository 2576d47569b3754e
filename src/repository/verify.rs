//! `check`'s walk over the object namespace: every stored object except packs (which are checked
//! against their hash-names elsewhere) is read and verified as its kind requires, so a forged,
//! altered, renamed or unsigned object is named, whatever folder it hides in.

use super::Repository;
use crate::error::Result;
use crate::format::ObjectKind;

/// The kind of a stored object by its name, or `None` for objects `check` does not verify here
/// (packs, the plaintext `config`, probe objects, temporary files).
pub fn kind_of(name: &str) -> Option<ObjectKind> {
    let folder = name.split('/').next().unwrap_or_default();
    Some(match folder {
        "snapshots" => ObjectKind::Snapshot,
        "index" => ObjectKind::Index,
        "holds" => ObjectKind::Hold,
        "exclusions" => ObjectKind::Exclusion,
        "destruction" => ObjectKind::Destruction,
        "prune" => ObjectKind::Marker,
        "locks" => ObjectKind::Lease,
        "drills" => ObjectKind::DrillReport,
        "sessions" => ObjectKind::Session,
        "handovers" => ObjectKind::Handover,
        "audit" if name.starts_with(crate::format::audit::LOG_PREFIX) => ObjectKind::AuditEntry,
        "audit" if name.starts_with(crate::format::audit::CHECKPOINT_PREFIX) => {
            ObjectKind::AuditCheckpoint
        }
        "keys" if name.starts_with("keys/trust-") => ObjectKind::Trust,
        "keys" if name == crate::format::trust::MIGRATION_NAME => ObjectKind::Migration,
        "keys" if name.starts_with("keys/revoked-") => ObjectKind::Migration,
        "keys" if name.ends_with(".writer") => ObjectKind::DomainWriter,
        "keys" => ObjectKind::KeyRecord,
        _ => return None,
    })
}

/// Every stored object outside `packs/` with its kind.
pub fn all_objects(repo: &Repository) -> Result<Vec<(crate::backend::ObjectInfo, ObjectKind)>> {
    all_objects_in(repo.backend.as_ref())
}

/// The same, in a store opened without a repository key (an auditor's).
pub fn all_objects_in(
    backend: &dyn crate::backend::Backend,
) -> Result<Vec<(crate::backend::ObjectInfo, ObjectKind)>> {
    let mut out = Vec::new();
    for folder in [
        "snapshots/",
        "index/",
        "holds/",
        "exclusions/",
        "destruction/",
        "prune/",
        "locks/",
        "drills/",
        "sessions/",
        "handovers/",
        "keys/",
        "audit/",
    ] {
        for object in backend.list(folder)? {
            if let Some(kind) = kind_of(&object.name) {
                out.push((object, kind));
            }
        }
    }
    Ok(out)
}

impl Repository {
    /// Verify every object outside `packs/`: signature and signer (format 2), and the hash of
    /// hash-named kinds. Returns `(object, what is wrong)` for each that fails.
    pub fn verify_objects(&self) -> Result<Vec<(String, String)>> {
        let mut bad = Vec::new();
        for (object, kind) in all_objects(self)? {
            // None: deleted since the listing (a prune, a release).
            let checked = self
                .get_listed(kind, &object)
                .and_then(|bytes| match bytes {
                    Some(b) => self.verify(kind, &object.name, &b).map(drop),
                    None => Ok(()),
                });
            if let Err(e) = checked {
                bad.push((object.name, e.to_string()));
            }
        }
        Ok(bad)
    }
}

/// An auditor's structure check: every object outside `packs/` carries a valid signature by a
/// key of the trust list in a role allowed to write it, and hash-named ones hash to their
/// names; every pack name is a pack id. Nothing is decrypted. Returns the objects checked and
/// `(object, what is wrong)` for each that fails.
pub fn verify_signatures(
    backend: &dyn crate::backend::Backend,
    auth: &super::trust::Auth,
) -> Result<(usize, Vec<(String, String)>)> {
    let objects = all_objects_in(backend)?;
    let mut bad = Vec::new();
    for (object, kind) in &objects {
        if object.size > kind.max_stored() {
            bad.push((object.name.clone(), "is larger than its kind allows".into()));
            continue;
        }
        let Some(stored) = backend.get_if_present(&object.name)? else {
            continue;
        };
        match auth.verify(*kind, &object.name, &stored) {
            Err(e) => bad.push((object.name.clone(), e.to_string())),
            Ok((body, _)) if kind.hash_named() && !hashes_to_name(body, &object.name) => {
                bad.push((object.name.clone(), "does not hash to its name".into()))
            }
            Ok(_) => {}
        }
    }
    for pack in backend.list("packs/")? {
        let id = pack.name.rsplit('/').next().unwrap_or_default();
        if id.parse::<crate::id::PackId>().is_err() {
            bad.push((pack.name.clone(), "is not named by a pack id".into()));
        }
    }
    Ok((objects.len(), bad))
}

/// Whether a hash-named object's body hashes to the last component of its name.
pub(super) fn hashes_to_name(body: &[u8], name: &str) -> bool {
    let expected = name.rsplit('/').next().unwrap_or_default();
    hex::encode(crate::id::content_hash(body)) == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_folder_has_its_kind() {
        assert_eq!(kind_of("keys/trust-0000000001"), Some(ObjectKind::Trust));
        assert_eq!(
            kind_of("keys/domains/ab.writer"),
            Some(ObjectKind::DomainWriter)
        );
        assert_eq!(
            kind_of("keys/domains/ab.operator"),
            Some(ObjectKind::KeyRecord)
        );
        assert_eq!(kind_of("prune/ab"), Some(ObjectKind::Marker));
        assert_eq!(kind_of("packs/ab/abcd"), None);
        assert_eq!(kind_of("config"), None);
        assert_eq!(
            kind_of("audit/log/000000000001"),
            Some(ObjectKind::AuditEntry)
        );
        assert_eq!(
            kind_of("audit/checkpoints/000000000001-000000000001"),
            Some(ObjectKind::AuditCheckpoint)
        );
        assert_eq!(kind_of("keys/revoked-ab"), Some(ObjectKind::Migration));
    }
}
