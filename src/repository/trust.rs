//! Format 2's authentication, settled once when a repository is opened: which keys may sign,
//! anchored in what the caller already holds (a writer credential's operator keys, or the
//! operator's own identity), and whether `config` is the one the operators signed. Every read of
//! a signed object then asks [`Auth::verify`]; every write is signed with [`Auth::sign`].

use crate::backend::Backend;
use crate::crypto::sign::{key_id, open_envelope, EnvelopeError, ObjectSigner};
use crate::error::{Error, FormatError, Result};
use crate::format::config::RepoConfig;
use crate::format::trust::{
    parse_trust_name, trust_name, Migration, TrustList, MIGRATION_NAME, TRUST_VERSION,
};
use crate::format::{decode_json, ObjectKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::pins::{check_pin, pin_verified};
pub use super::pins::{confirm, fingerprint, location_key, refuse_downgrade};
use super::registry::{check_member, check_writer, not_operator, read_revocations, trusted_keys};
pub use super::registry::{expired, key_who, key_who_hex, writer_who, Role, Signer};

/// What the caller trusts before reading anything from the store.
pub enum Anchor {
    /// A writer credential: the operator keys it was issued with, its config digest and its
    /// own key.
    Writer {
        operator_keys: Vec<[u8; 32]>,
        config_digest: Option<String>,
        credential_id: String,
    },
    /// An operator (its age recipient): its own key signs what it trusts. A first list signed
    /// by another operator is trusted only once pinned in `pin_dir` (by `custodian key trust`
    /// after comparing its fingerprint), and the pin must not change afterwards.
    Operator {
        pin_dir: Option<PathBuf>,
        recipient: String,
    },
    /// An auditor (its age recipient): like an operator who did not create the repository, it
    /// trusts the first list only once pinned, and must be on the newest list's auditors.
    Auditor {
        pin_dir: Option<PathBuf>,
        recipient: String,
    },
}

/// Who may sign, and the key this process signs with.
pub struct Auth {
    signer: ObjectSigner,
    /// Public key -> who it is, for listings and messages.
    trusted: HashMap<[u8; 32], Signer>,
    /// Revoked writer keys -> who, and what they had signed when revoked (only that verifies).
    revoked: HashMap<[u8; 32], (String, Migration)>,
    /// The newest trust list and its object name.
    pub list: TrustList,
    pub list_name: String,
    /// [`fingerprint`] of the first trust list.
    pub fingerprint: String,
    /// The operator key that signed the first trust list: new writer credentials anchor on it.
    pub genesis_key: [u8; 32],
    /// Format-1 objects `migrate` vouched for: name -> hash of the stored bytes, and packs.
    legacy: Migration,
}

impl Auth {
    /// Load and verify the trust list chain, then check `config` against it.
    pub fn load(
        backend: &dyn Backend,
        config: &RepoConfig,
        signer: ObjectSigner,
        anchor: &Anchor,
    ) -> Result<Auth> {
        let chain = read_chain(backend)?;
        let own = signer.public();
        let mut previous: Option<(TrustList, [u8; 32])> = None;
        let mut name = String::new();
        let mut genesis_key = [0u8; 32];
        for (seq, (object, bytes)) in chain.iter().enumerate() {
            let (by, body) = open_envelope(ObjectKind::Trust.what(), object, bytes)
                .map_err(|e| forged(object, &e.to_string()))?;
            let list: TrustList = decode_json(body, object, TRUST_VERSION)?;
            let allowed: Vec<[u8; 32]> = match &previous {
                None => genesis_signers(&list, anchor, own, bytes, &backend.location())?,
                Some((prev, _)) => registry_keys(prev),
            };
            if !allowed.contains(&by) {
                return Err(forged(
                    object,
                    &format!(
                        "is signed by key {}, which no trusted operator holds",
                        key_id(&by)
                    ),
                ));
            }
            if previous.is_none() {
                genesis_key = by;
            }
            let prev_hash = previous.as_ref().map(|(_, h)| hex::encode(h));
            if list.seq != seq as u64 + 1
                || list.prev != prev_hash
                || list.repo_id != config.repo_id
            {
                return Err(forged(object, "does not continue the chain before it"));
            }
            previous = Some((list, crate::id::content_hash(bytes)));
            name = object.clone();
        }
        let Some((list, _)) = previous else {
            return Err(Error::Damaged(format!(
                "repository {} has format version {} but no trust list (keys/trust-*): it was \
                 damaged, or its objects were deleted. Restore the keys/ folder from a copy.",
                config.repo_id.short(),
                config.version
            )));
        };
        check_config(config, &list)?;
        check_member(&list, anchor)?;
        if let (Some(dir), Some((first, bytes))) =
            (anchor.pin_dir(), chain.first().map(|(n, b)| (n, b)))
        {
            // Only now that the whole chain verified: pin it, so a replaced list or a downgrade
            // to format 1 is caught on this machine later.
            pin_verified(dir, &backend.location(), first, bytes)?;
        }
        if let Anchor::Writer {
            config_digest,
            credential_id,
            ..
        } = anchor
        {
            check_writer(&list, config, config_digest.as_deref(), credential_id, own)?;
        }
        let legacy = match &list.migrated {
            Some(hash) => read_migration(backend, &list, hash)?,
            None => Migration::default(),
        };
        let revoked = read_revocations(backend, &list)?;
        Ok(Auth {
            trusted: trusted_keys(&list),
            revoked,
            signer,
            list,
            list_name: name,
            legacy,
            genesis_key,
            fingerprint: chain
                .first()
                .map(|(_, b)| fingerprint(b))
                .unwrap_or_default(),
        })
    }

    /// Sign `body` stored as `name`.
    /// Sign `body` stored as `name`, if this key is on the trust list: an object signed by any
    /// other key could not be verified by anyone, so it is refused before it is written.
    pub fn sign(&self, kind: ObjectKind, name: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let public = self.signer.public();
        if self
            .trusted
            .get(&public)
            .is_some_and(|s| s.role == Role::Auditor && !kind.is_audit())
        {
            return Err(Error::Refused(format!(
                "an auditor writes only to the audit log, not a {}",
                kind.what()
            )));
        }
        if !self.trusted.contains_key(&public) {
            return Err(Error::Refused(format!(
                "your operator signing key {} is not on this repository's trust list, so nothing \
                 you write could be verified; nothing was written. An operator on the list adds \
                 it with 'custodian key add-operator --recipient YOUR-AGE-RECIPIENT --key {}' \
                 after checking it with you.",
                key_id(&public),
                hex::encode(public)
            )));
        }
        Ok(self.signer.envelope(kind.what(), bind(kind, name), &body))
    }

    /// Write the next version of the trust list: `change` edits a copy of the newest one; the
    /// new version is signed by this process's key, which must be an operator's.
    pub fn extend(
        &self,
        backend: &dyn Backend,
        now: &str,
        change: impl FnOnce(&mut TrustList) -> Result<()>,
    ) -> Result<TrustList> {
        let public = self.signer.public();
        if !registry_keys(&self.list).contains(&public) {
            return Err(Error::Refused(
                "only an operator granted every source, whose signing key is on the trust list, \
                 can change it"
                    .into(),
            ));
        }
        let previous = backend.get(&self.list_name)?;
        let mut list = self.list.clone();
        change(&mut list)?;
        list.seq = self.list.seq + 1;
        list.prev = Some(hex::encode(crate::id::content_hash(&previous)));
        list.time = now.to_string();
        list.by = format!("operator {}", key_id(&public));
        let name = trust_name(list.seq);
        let body = serde_json::to_vec_pretty(&list)
            .map_err(|e| Error::Internal(format!("internal error: {e}")))?;
        let stored = self.signer.envelope(ObjectKind::Trust.what(), &name, &body);
        if !backend.put_new(&name, &stored)? {
            return Err(Error::Conflict(format!(
                "{name} was written by someone else meanwhile; run the command again"
            )));
        }
        Ok(list)
    }

    /// Check the signature of `stored` (or, for an unsigned format-1 object, that `migrate`
    /// vouched for exactly these bytes) and that its signer is trusted; returns the body and
    /// who signed it.
    pub fn verify<'a>(
        &self,
        kind: ObjectKind,
        name: &str,
        stored: &'a [u8],
    ) -> Result<(&'a [u8], String)> {
        let (by, body) = match open_envelope(kind.what(), bind(kind, name), stored) {
            Ok(found) => found,
            Err(EnvelopeError::Unsigned) if self.vouched(kind, name, stored) => {
                return Ok((stored, "format 1 (vouched for by migrate)".into()))
            }
            Err(e) => return Err(forged(name, &e.to_string())),
        };
        match self.trusted.get(&by) {
            Some(s) if operator_only(kind, name) && s.role != Role::Operator => Err(forged(
                name,
                &format!("is signed by {}, but only an operator may write it", s.who),
            )),
            Some(s) if s.role == Role::Auditor && !kind.is_audit() => Err(forged(
                name,
                &format!(
                    "is signed by {}, but an auditor writes only audit entries",
                    s.who
                ),
            )),
            Some(s) => Ok((body, s.who.clone())),
            None => match self.revoked.get(&by) {
                Some((who, vouched)) if vouched_by(vouched, kind, name, stored) => {
                    Ok((body, format!("{who} (before its revocation)")))
                }
                Some((who, _)) => Err(forged(
                    name,
                    &format!(
                        "is signed by {who}, which was revoked, and it is not among what that \
                         credential had written by then (a stolen credential forging after \
                         revocation)"
                    ),
                )),
                None => Err(forged(
                    name,
                    &format!(
                    "is signed by credential key {}, which is not on this repository's list of \
                     writers and operators",
                    key_id(&by)
                ),
                )),
            },
        }
    }

    /// The operator in office whose key signed `stored` (the signature is checked by
    /// [`Self::verify`]; this only says who): its grants decide whose key records count.
    pub fn operator_signer(
        &self,
        kind: ObjectKind,
        name: &str,
        stored: &[u8],
    ) -> Option<&crate::format::trust::TrustedOperator> {
        let (by, _) = open_envelope(kind.what(), bind(kind, name), stored).ok()?;
        self.list
            .current_operators()
            .find(|o| o.signing_key.as_deref().and_then(parse_key) == Some(by))
    }

    /// The role of the key that signed `stored`, if it is a key in force.
    pub fn signer_role(&self, kind: ObjectKind, name: &str, stored: &[u8]) -> Option<Role> {
        let (by, _) = open_envelope(kind.what(), bind(kind, name), stored).ok()?;
        self.trusted.get(&by).map(|s| s.role)
    }

    /// This process's key, and who the registry says it is.
    pub fn own(&self) -> ([u8; 32], Option<&Signer>) {
        let key = self.signer.public();
        (key, self.trusted.get(&key))
    }

    /// The auditors' age recipients: the audit log is sealed to them too.
    pub fn auditor_recipients(&self) -> Vec<String> {
        self.list
            .auditors
            .iter()
            .map(|a| a.recipient.clone())
            .collect()
    }

    /// Whether `migrate` vouched for pack `id` (a format-1 pack, whose header has no data-hash).
    pub fn vouched_pack(&self, id: &str) -> bool {
        self.legacy
            .packs
            .binary_search_by(|p| p.as_str().cmp(id))
            .is_ok()
    }

    /// Whether `migrate` listed this unsigned object with exactly these bytes.
    fn vouched(&self, kind: ObjectKind, name: &str, stored: &[u8]) -> bool {
        vouched_by(&self.legacy, kind, name, stored)
    }
}

impl Anchor {
    fn pin_dir(&self) -> Option<&Path> {
        match self {
            Anchor::Operator { pin_dir, .. } | Anchor::Auditor { pin_dir, .. } => {
                pin_dir.as_deref()
            }
            Anchor::Writer { .. } => None,
        }
    }
}

/// Whether `list` names this object with exactly these bytes (a pack header is vouched for by
/// its pack, whose name is the hash of all its bytes).
fn vouched_by(list: &Migration, kind: ObjectKind, name: &str, stored: &[u8]) -> bool {
    if kind == ObjectKind::PackHeader {
        let id = name.rsplit('/').next().unwrap_or_default();
        return list.packs.binary_search_by(|p| p.as_str().cmp(id)).is_ok();
    }
    list.objects
        .get(name)
        .is_some_and(|h| *h == hex::encode(crate::id::content_hash(stored)))
}

/// Objects only an operator writes: the operators' key records (the metadata key and the
/// copies of writer credentials) and the lists that say whom to trust.
fn operator_only(kind: ObjectKind, name: &str) -> bool {
    matches!(kind, ObjectKind::Trust | ObjectKind::Migration)
        || name.starts_with("keys/metadata-")
        || name.starts_with("keys/writer-")
        // Earlier generations' identities, re-sealed by the operator who changed the set.
        || (name.starts_with("keys/domains/") && name.ends_with(".history"))
        // Drill reports are evidence for auditors: a writer must not be able to forge a pass.
        || kind == ObjectKind::DrillReport
        // Only an operator erases: a writer's "exclusion" could silently empty a source's
        // backups, or stop them.
        || kind == ObjectKind::Exclusion
        // A handover's list, receipt and mark: only an owner hands records over.
        || kind == ObjectKind::Handover
}

/// The name a signature binds: a pack header lives inside a pack whose name is the hash of its
/// bytes (header included), so it binds only its kind.
fn bind(kind: ObjectKind, name: &str) -> &str {
    if kind == ObjectKind::PackHeader {
        ""
    } else {
        name
    }
}

fn read_migration(backend: &dyn Backend, list: &TrustList, hash: &str) -> Result<Migration> {
    read_vouched_list(backend, list, MIGRATION_NAME, hash)
}

/// A list of objects an operator vouches for (`migrate`'s, or a revocation's), which the trust
/// list names by the hash of its stored bytes.
pub(super) fn read_vouched_list(
    backend: &dyn Backend,
    list: &TrustList,
    name: &str,
    hash: &str,
) -> Result<Migration> {
    let stored = match backend.get_if_present(name)? {
        Some(b) if b.len() as u64 <= ObjectKind::Migration.max_stored() => b,
        Some(_) => return Err(forged(name, "is larger than any such list may be")),
        None => return Err(forged(name, "is missing, though the trust list names it")),
    };
    if hex::encode(crate::id::content_hash(&stored)) != hash {
        return Err(forged(name, "is not the one the trust list names"));
    }
    let (by, body) = open_envelope(ObjectKind::Migration.what(), name, &stored)
        .map_err(|e| forged(name, &e.to_string()))?;
    if !operator_keys(list).contains(&by) {
        return Err(forged(name, "is not signed by an operator"));
    }
    let mut vouched: Migration = decode_json(body, name, TRUST_VERSION)?;
    vouched.packs.sort();
    Ok(vouched)
}

pub(super) fn forged(object: &str, why: &str) -> Error {
    Error::Damaged(format!(
        "{object} {why}. The storage was tampered with, or the object is damaged; custodian \
         does not act on it. Run 'custodian check' and compare with a copy."
    ))
}

pub(super) fn read_chain(backend: &dyn Backend) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names: Vec<(u64, crate::backend::ObjectInfo)> = backend
        .list("keys/")?
        .into_iter()
        .filter_map(|o| parse_trust_name(&o.name).map(|seq| (seq, o)))
        .collect();
    names.sort_by_key(|(seq, _)| *seq);
    let mut out = Vec::with_capacity(names.len());
    for (i, (seq, object)) in names.into_iter().enumerate() {
        if seq != i as u64 + 1 {
            return Err(forged(
                &object.name,
                "leaves a gap in the trust list's sequence",
            ));
        }
        if object.size > ObjectKind::Trust.max_stored() {
            return Err(forged(&object.name, "is larger than any trust list may be"));
        }
        let bytes = backend.get(&object.name)?;
        out.push((object.name, bytes));
    }
    Ok(out)
}

/// Keys that may sign the next trust list: operators in office granted every source. One
/// granted some sources may not (it could otherwise grant itself the rest).
fn registry_keys(list: &TrustList) -> Vec<[u8; 32]> {
    signing_keys(list.current_operators().filter(|o| o.is_full()))
}

pub(super) fn operator_keys(list: &TrustList) -> Vec<[u8; 32]> {
    signing_keys(list.current_operators())
}

fn signing_keys<'a>(
    operators: impl Iterator<Item = &'a crate::format::trust::TrustedOperator>,
) -> Vec<[u8; 32]> {
    operators
        .filter_map(|o| o.signing_key.as_deref().and_then(parse_key))
        .collect()
}

pub(crate) fn parse_key(hex_key: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut out).ok().map(|()| out)
}

/// Keys that may have signed the first list: for a writer, the operator keys its credential
/// was issued with; for an operator, its own key, else (trust on first use) the listed
/// operator who signed it, pinned so that a replaced list is caught later. An auditor always
/// trusts on first use (it signs no trust list).
fn genesis_signers(
    list: &TrustList,
    anchor: &Anchor,
    own: [u8; 32],
    bytes: &[u8],
    location: &str,
) -> Result<Vec<[u8; 32]>> {
    let (pin_dir, recipient, operator) = match anchor {
        Anchor::Writer { operator_keys, .. } => return Ok(operator_keys.clone()),
        Anchor::Operator { pin_dir, recipient } => (pin_dir.as_deref(), recipient, true),
        Anchor::Auditor { pin_dir, recipient } => (pin_dir.as_deref(), recipient, false),
    };
    let pinned = match pin_dir {
        Some(dir) => check_pin(dir, location, list, bytes)?,
        None => false,
    };
    let listed = operator_keys(list);
    if operator && listed.contains(&own) {
        // Signed by this operator (the caller checks, then pins it: `pin_verified`).
        return Ok(vec![own]);
    }
    if pinned {
        return Ok(listed);
    }
    if operator && !list.operators.iter().any(|o| o.recipient == *recipient) {
        return Err(not_operator(list, recipient));
    }
    Err(Error::Untrusted(format!(
        "this machine has not seen repository {} before, and its trust list was signed by {}, \
         not by you. Compare its fingerprint {} with that operator (out of band), then run \
         'custodian key trust --fingerprint {}' with your identity; custodian trusts nothing it \
         cannot check.",
        list.repo_id.short(),
        list.by,
        fingerprint(bytes),
        fingerprint(bytes)
    )))
}

fn check_config(config: &RepoConfig, list: &TrustList) -> Result<()> {
    if *config == list.config {
        return Ok(());
    }
    Err(Error::Untrusted(format!(
        "the repository's config is not the one its operators signed: {}. Nothing was read or \
         written. Put back the signed config (it is in {}), or have an operator make the change \
         with an operator command.",
        config.changes_from(&list.config).join("; "),
        trust_name(list.seq)
    )))
}

/// Parse a writer credential's hex operator keys.
pub fn parse_keys(keys: &[String]) -> Result<Vec<[u8; 32]>> {
    keys.iter()
        .map(|k| {
            parse_key(k).ok_or_else(|| {
                FormatError::Malformed {
                    what: "writer credential".into(),
                    reason: "an operator key is not 64 hex characters".into(),
                }
                .into()
            })
        })
        .collect()
}
