//! Metadata key generations: revoking a writer rotates the metadata key, the one secret a
//! writer credential holds that future data depends on. Everything that names a blob, a file
//! count or a source (snapshot heads, indexes, pack headers, reference lists, domain writer
//! records with their dedup keys, audit details) is sealed to the metadata key; after the
//! rotation it is sealed to a new one the revoked credential never held.
//!
//! The founding metadata identity (the config's) stays: every object written before still
//! opens with it, and its derived keys (object names, the reference lists' blob ids) do not
//! change, so nothing is rewritten or uploaded again. The trust list names each later
//! generation's recipient (`metadata-keys`); its secret is in `keys/metadata-<hash>`, sealed to
//! the operators like the founding one. Writers that stay get credentials issued afterwards
//! (they carry the later identities); an older credential is refused with the reason.
//! docs/FORMAT.md ("Metadata key generations") gives the argument.

use super::keyring::{metadata_object, open_metadata_record};
use super::Repository;
use crate::crypto::keys::identity_secret;
use crate::error::{Error, Result};
use crate::format::keys::{MetadataKeyRecord, KEYS_VERSION};
use crate::format::trust::TrustList;
use crate::format::ObjectKind;
use age::x25519;
use std::path::Path;

/// The metadata recipient new objects are sealed to: the newest generation's.
pub(super) fn current_recipient<'a>(list: Option<&'a TrustList>, founding: &'a str) -> &'a str {
    list.and_then(|l| l.metadata_keys.last())
        .map_or(founding, String::as_str)
}

/// Refuse a writer credential issued before the newest metadata generation: it cannot read
/// what was written since, and the writer it belonged to may be the one revoked.
pub(super) fn check_writer_holds(
    list: Option<&TrustList>,
    later: &[x25519::Identity],
    path: &Path,
) -> Result<()> {
    let Some(newest) = list.and_then(|l| l.metadata_keys.last()) else {
        return Ok(());
    };
    if later.iter().any(|i| i.to_public().to_string() == *newest) {
        return Ok(());
    }
    Err(Error::KeyFile {
        path: path.to_path_buf(),
        reason: "was issued before the repository's metadata key was rotated (a writer \
                 credential was revoked or an operator removed), so it holds no key for what is \
                 written now. Nothing was backed up. An operator issues this server a new credential ('custodian \
                 access issue-writer --name NAME --out FILE'), then revokes this one."
            .into(),
    })
}

/// The later metadata identities an operator opens from their records, oldest first.
pub(super) fn load_later_as_operator(
    backend: &dyn crate::backend::Backend,
    identities: &[x25519::Identity],
    auth: Option<&super::trust::Auth>,
    path: &Path,
) -> Result<Vec<x25519::Identity>> {
    let Some(auth) = auth else {
        return Ok(Vec::new());
    };
    let list = &auth.list;
    if list.metadata_keys.is_empty() {
        return Ok(Vec::new());
    }
    // Sizes from one listing (a local store lists by folder), checked before any download.
    let listed = backend.list("keys/")?;
    let mut out = Vec::new();
    for recipient in &list.metadata_keys {
        let name = metadata_object(recipient);
        match listed.iter().find(|o| o.name == name) {
            Some(o) if o.size <= ObjectKind::KeyRecord.max_stored() => {}
            Some(_) => {
                return Err(Error::Damaged(format!(
                    "{name} is larger than any key record"
                )))
            }
            None => {
                return Err(Error::Damaged(format!(
                    "{name}, the metadata key the trust list names, is missing: the key records \
                     were damaged or deleted. Restore keys/ from a copy."
                )))
            }
        }
        let stored = backend.get(&name)?;
        let hint = "Your identity is not an operator of this repository.";
        let identity =
            open_metadata_record(&name, &stored, identities, Some(auth), hint, path)?.identity;
        if identity.to_public().to_string() != *recipient {
            return Err(Error::Damaged(format!(
                "{name} holds another metadata key than the trust list names: the key records \
                 were swapped or forged. Run 'custodian check'."
            )));
        }
        out.push(identity);
    }
    Ok(out)
}

impl Repository {
    /// Every metadata identity held, newest first: what opens bookkeeping objects of any
    /// generation.
    pub(super) fn meta_identities(&self) -> Vec<&x25519::Identity> {
        self.meta_later
            .iter()
            .rev()
            .chain(std::iter::once(&self.meta.identity))
            .collect()
    }

    /// The recipient new bookkeeping objects are sealed to.
    pub fn meta_recipient(&self) -> &x25519::Recipient {
        &self.meta_recipient
    }

    /// The writers in office (names) other than `except`: after a rotation each needs a new
    /// credential.
    pub(super) fn writers_to_reissue(list: &TrustList, except: Option<&str>) -> Vec<String> {
        list.writers
            .iter()
            .filter(|w| w.revoked.is_none() && Some(w.id.as_str()) != except)
            .map(|w| w.name.clone())
            .collect()
    }

    /// The later identities' secrets, for a credential issued now.
    pub(super) fn later_metadata_secrets(&self) -> Vec<String> {
        self.meta_later
            .iter()
            .map(|i| identity_secret(i).to_string())
            .collect()
    }

    /// Start a new metadata generation: a fresh identity stored, sealed to the operators in
    /// office but `without` (one being removed) and signed, under its own name. Returns its
    /// recipient, for the trust list that makes it current. A kill before that list leaves an
    /// unused record, never a used one.
    pub(super) fn new_metadata_generation(&self, without: Option<&str>) -> Result<String> {
        let identity = x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let record = MetadataKeyRecord {
            version: KEYS_VERSION,
            identity: identity_secret(&identity).to_string(),
            dedup_key: hex::encode(*self.meta.dedup_key),
        };
        let plain = zeroize::Zeroizing::new(crate::compress::pack_json(&record)?);
        // Compared parsed, so a stored recipient's spelling cannot keep the removed one in.
        let without = without
            .and_then(|w| crate::crypto::keys::parse_recipient(w, "operator recipient").ok())
            .map(|r| r.to_string());
        let to: Vec<x25519::Recipient> = self
            .operator_recipients
            .iter()
            .filter(|r| without.as_deref() != Some(r.to_string().as_str()))
            .cloned()
            .collect();
        let sealed = crate::crypto::seal_to(&to, &plain, "metadata key")?;
        let name = metadata_object(&recipient);
        self.backend
            .put_new(&name, &self.sign(ObjectKind::KeyRecord, &name, sealed)?)?;
        Ok(recipient)
    }
}
