//! The access registry's changes, each a new trust-list version signed by an operator: issue
//! and revoke writer credentials, add and remove auditors. A revocation lists what the
//! credential had signed until then (`keys/revoked-<id>`), so its earlier snapshots still
//! verify and anything it signs afterwards does not.

use super::Repository;
use crate::crypto::keys::{identity_secret, parse_identity, read_private, write_private};
use crate::crypto::sign::{key_id, open_envelope, ObjectSigner};
use crate::error::{Error, Result};
use crate::format::index::IndexFile;
use crate::format::keys::{WriterCredential, KEYS_VERSION, WRITER_KIND};
use crate::format::trust::{
    revoked_name, Migration, Registered, Revocation, TrustList, TrustedAuditor, TrustedWriter,
    TRUST_VERSION,
};
use crate::format::ObjectKind;
use std::path::Path;
use zeroize::Zeroizing;

/// What a revocation vouched for: the objects and packs the credential had written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Revoked {
    pub id: String,
    pub name: String,
    pub objects: usize,
    pub packs: usize,
    /// It was revoked before (a rerun): nothing changed.
    pub already: Option<String>,
    /// Whether the metadata key was rotated (the credential held the newest).
    pub rotated: bool,
    /// The writers in office whose credentials predate the rotated metadata key: each needs a
    /// new one.
    pub reissue: Vec<String>,
}

/// A writer credential issued (or found issued by an earlier run: `already`).
#[derive(Clone, Debug)]
pub struct Issued {
    pub id: String,
    pub already: bool,
}

/// A new auditor or writer: its name, expiry and the operator's reason-free metadata.
pub struct Principal<'a> {
    pub name: &'a str,
    pub expires: Option<String>,
}

impl Repository {
    pub(super) fn registry_auth(&self) -> Result<&super::trust::Auth> {
        self.require_operator("changing the access registry")?;
        self.require_full_operator()?;
        self.auth().ok_or_else(|| {
            Error::Usage(
                "a format-1 repository has no access registry; run 'custodian migrate' first"
                    .into(),
            )
        })
    }

    pub(super) fn now_text() -> String {
        crate::when::rfc3339(crate::clock::now())
    }

    /// Issue a writer credential named `who.name` into `out` (mode 0600). Order: the operators'
    /// copy, the file, then the trust list naming it, so a kill leaves at worst an unlisted
    /// credential, which a rerun with the same `--out` finishes listing.
    pub fn issue_writer(&self, who: &Principal, out: &Path) -> Result<Issued> {
        let auth = self.registry_auth()?;
        let credential = match self.earlier_issue(out)? {
            Some(c) if auth.list.writers.iter().any(|w| w.id == c.credential_id) => {
                return Ok(Issued {
                    id: c.credential_id,
                    already: true,
                })
            }
            Some(c) => c,
            None => self.new_writer(auth, who, out)?,
        };
        let seed = super::keyring::decode_hex_key(
            credential.signing_key.as_deref().unwrap_or_default(),
            "writer credential",
        )?;
        let key = hex::encode(ObjectSigner::from_seed(&seed).public());
        let now = Self::now_text();
        let by = self.opened_by_key();
        auth.extend(self.backend.as_ref(), &now, |list| {
            list.writers.push(TrustedWriter {
                id: credential.credential_id.clone(),
                name: who.name.to_string(),
                key,
                added: now.clone(),
                revoked: None,
                added_by: Some(by),
                expires: who.expires.clone(),
                metadata_generation: list.metadata_keys.len() as u32,
            });
            Ok(())
        })?;
        Ok(Issued {
            id: credential.credential_id,
            already: false,
        })
    }

    /// A fresh credential: its operators' copy stored, then the file written.
    fn new_writer(
        &self,
        auth: &super::trust::Auth,
        who: &Principal,
        out: &Path,
    ) -> Result<WriterCredential> {
        let live = |w: &&TrustedWriter| w.name == who.name && w.revoked.is_none();
        if auth.list.writers.iter().any(|w| live(&w)) {
            return Err(Error::Refused(format!(
                "a writer named '{}' is already on the registry; revoke it first or choose \
                 another --name",
                who.name
            )));
        }
        let (_, seed) = ObjectSigner::generate();
        let credential = WriterCredential {
            version: KEYS_VERSION,
            kind: WRITER_KIND.into(),
            repo_id: self.config.repo_id,
            credential_id: crate::id::SessionId::random().to_hex(),
            metadata_identity: identity_secret(&self.meta.identity).to_string(),
            metadata_dedup_key: hex::encode(*self.meta.dedup_key),
            signing_key: Some(hex::encode(*seed)),
            config_digest: Some(self.config.digest()?),
            operator_keys: vec![hex::encode(auth.genesis_key)],
            later_metadata_identities: self.later_metadata_secrets(),
        };
        let text = serde_json::to_string_pretty(&credential)
            .map_err(|e| Error::Internal(format!("internal error: a credential: {e}")))?;
        let text = Zeroizing::new(text + "\n");
        let name = format!("keys/writer-{}", credential.credential_id);
        let sealed = self.seal_for_full_operators(text.as_bytes())?;
        self.backend
            .put_new(&name, &self.sign(ObjectKind::KeyRecord, &name, sealed)?)?;
        write_private(out, &text)?;
        Ok(credential)
    }

    /// What an `issue-writer` killed before its trust list left at `out`: a credential of this
    /// repository whose operators' copy is stored. Anything else there is never overwritten.
    fn earlier_issue(&self, out: &Path) -> Result<Option<WriterCredential>> {
        if !out.exists() {
            return Ok(None);
        }
        let refuse = || {
            Error::Usage(format!(
                "{} already exists; custodian never overwrites a key. Choose another --out.",
                out.display()
            ))
        };
        let text = read_private(out)?;
        let credential: WriterCredential = serde_json::from_str(&text).map_err(|_| refuse())?;
        // One issued before the newest metadata key could not back up: not this issue's.
        let newest = self.meta_recipient().to_string();
        let current = newest == self.config.metadata_recipient
            || credential
                .later_metadata_identities
                .iter()
                .any(|i| parse_identity(i, out).is_ok_and(|i| i.to_public().to_string() == newest));
        let ours = credential.repo_id == self.config.repo_id
            && current
            && credential.signing_key.is_some()
            && credential
                .credential_id
                .parse::<crate::id::SessionId>()
                .is_ok();
        let copy = format!("keys/writer-{}", credential.credential_id);
        if !ours || self.backend.get_if_present(&copy)?.is_none() {
            return Err(refuse());
        }
        Ok(Some(credential))
    }

    /// Revoke the writer credential named (or id-prefixed) `which`: list what it signed so
    /// far, then mark it revoked in the next trust list.
    pub fn revoke_writer(&self, which: &str) -> Result<Revoked> {
        let auth = self.registry_auth()?;
        if let Some((mut done, generation)) = already_revoked(&auth.list, which) {
            // Revoked while it still held the newest metadata key (by a custodian that did
            // not rotate): rotate now.
            if generation as usize >= auth.list.metadata_keys.len() {
                let rotated = self.new_metadata_generation(None)?;
                auth.extend(self.backend.as_ref(), &Self::now_text(), |list| {
                    list.metadata_keys.push(rotated.clone());
                    Ok(())
                })?;
                done.rotated = true;
                done.reissue = Self::writers_to_reissue(&auth.list, Some(&done.id));
            }
            return Ok(done);
        }
        let writer = find_writer(&auth.list, which)?;
        let key = parse_hex32(&writer.key)?;
        let (hash, vouched) = self.store_inventory(&key, &writer.id)?;
        let now = Self::now_text();
        let by = self.opened_by_key();
        let id = writer.id.clone();
        // What the credential knew that future data depends on: the metadata key, unless it
        // was issued before the newest generation (a credential replaced after a rotation).
        let rotated = match writer.metadata_generation as usize >= auth.list.metadata_keys.len() {
            true => Some(self.new_metadata_generation(None)?),
            false => None,
        };
        auth.extend(self.backend.as_ref(), &now, |list| {
            list.metadata_keys.extend(rotated.clone());
            let w = list.writers.iter_mut().find(|w| w.id == id);
            if let Some(w) = w {
                w.revoked = Some(Revocation {
                    time: now.clone(),
                    by: by.clone(),
                    vouched: hash.clone(),
                });
            }
            Ok(())
        })?;
        Ok(Revoked {
            id: writer.id.clone(),
            name: writer.name.clone(),
            objects: vouched.objects.len(),
            packs: vouched.packs.len(),
            already: None,
            reissue: match rotated {
                Some(_) => Self::writers_to_reissue(&auth.list, Some(&writer.id)),
                None => Vec::new(),
            },
            rotated: rotated.is_some(),
        })
    }

    /// List what `key` signed so far in `keys/revoked-<id>`; returns the hash the trust list
    /// will name, and the list.
    pub(super) fn store_inventory(&self, key: &[u8; 32], id: &str) -> Result<(String, Migration)> {
        let vouched = self.signed_by(key)?;
        let body = crate::compress::json_bytes(&vouched)?;
        let name = revoked_name(id);
        let stored = self.sign(ObjectKind::Migration, &name, body)?;
        let hash = hex::encode(crate::id::content_hash(&stored));
        if !self.backend.put_new(&name, &stored)? {
            // Left by a revocation killed before its trust list: no list names it, so it is
            // replaced by this (complete) inventory.
            self.delete_object(&name)?;
            self.backend.put_new(&name, &stored)?;
        }
        Ok((hash, vouched))
    }

    /// Everything signed with `key`: objects by name and stored hash, and the packs its index
    /// objects name (a pack's header is signed by the same key).
    fn signed_by(&self, key: &[u8; 32]) -> Result<Migration> {
        let mut out = Migration {
            version: TRUST_VERSION,
            ..Migration::default()
        };
        for (object, kind) in super::verify::all_objects(self)? {
            let Some(stored) = self.get_listed(kind, &object)? else {
                continue;
            };
            let signer = open_envelope(kind.what(), &object.name, &stored).map(|(by, _)| by);
            if signer.ok().as_ref() != Some(key) {
                continue;
            }
            if kind == ObjectKind::Index {
                let index: IndexFile = self.open_meta(kind, &object.name, &stored)?;
                out.packs.extend(index.packs.iter().map(|p| p.id.to_hex()));
            }
            let hash = hex::encode(crate::id::content_hash(&stored));
            out.objects.insert(object.name, hash);
        }
        out.packs.sort();
        out.packs.dedup();
        Ok(out)
    }

    /// Add auditor `recipient` with signing key `key` (from `custodian key show` on the
    /// auditor's machine); returns the new trust list version, or `None` when exactly this
    /// auditor is listed already (a rerun).
    pub fn add_auditor(&self, recipient: &str, key: &str, who: &Principal) -> Result<Option<u64>> {
        let auth = self.registry_auth()?;
        crate::crypto::keys::parse_recipient(recipient, "the auditor's recipient")?;
        parse_hex32(key)?;
        let same = |a: &TrustedAuditor| {
            a.recipient == recipient
                && a.signing_key.eq_ignore_ascii_case(key)
                && a.registry.name == who.name
        };
        if auth.list.auditors.iter().any(same) {
            return Ok(None);
        }
        if auth.list.operators.iter().any(|o| o.recipient == recipient) {
            return Err(Error::Refused(format!(
                "{recipient} is an operator of this repository; an auditor needs an identity of \
                 its own (custodian key generate), so that what it can do stays what its role \
                 allows"
            )));
        }
        let now = Self::now_text();
        let by = self.opened_by_key();
        let list = auth.extend(self.backend.as_ref(), &now, |list| {
            if list
                .auditors
                .iter()
                .any(|a| a.recipient == recipient || a.registry.name == who.name)
            {
                return Err(Error::Refused(format!(
                    "auditor '{}' ({recipient}) is already on the registry",
                    who.name
                )));
            }
            list.auditors.push(TrustedAuditor {
                recipient: recipient.to_string(),
                signing_key: key.to_ascii_lowercase(),
                registry: Registered {
                    name: who.name.to_string(),
                    added: now.clone(),
                    added_by: by.clone(),
                    expires: who.expires.clone(),
                },
            });
            Ok(())
        })?;
        Ok(Some(list.seq))
    }

    /// Remove auditor `name`: entries written from now on are no longer sealed to it.
    pub fn remove_auditor(&self, name: &str) -> Result<u64> {
        let auth = self.registry_auth()?;
        let list = auth.extend(self.backend.as_ref(), &Self::now_text(), |list| {
            let before = list.auditors.len();
            list.auditors.retain(|a| a.registry.name != name);
            if list.auditors.len() == before {
                return Err(Error::Usage(format!(
                    "there is no auditor named '{name}' ('custodian access list' shows them)"
                )));
            }
            Ok(())
        })?;
        Ok(list.seq)
    }

    /// "operator <key id>" of the operator who opened this repository.
    pub(super) fn opened_by_key(&self) -> String {
        self.auth()
            .map(|a| format!("operator {}", key_id(&a.own().0)))
            .unwrap_or_else(|| self.opened_by.clone())
    }
}

/// A writer `which` names that is revoked, while none in force answers to it: a rerun. Also
/// the metadata generation its credential held.
fn already_revoked(list: &TrustList, which: &str) -> Option<(Revoked, u32)> {
    if list
        .writers
        .iter()
        .any(|w| w.revoked.is_none() && w.name == which)
    {
        return None;
    }
    let w = list
        .writers
        .iter()
        .find(|w| w.name == which || (!which.is_empty() && w.id.starts_with(which)))?;
    let r = w.revoked.as_ref()?;
    let done = Revoked {
        id: w.id.clone(),
        name: w.name.clone(),
        objects: 0,
        packs: 0,
        already: Some(format!("{} by {}", r.time, r.by)),
        reissue: Vec::new(),
        rotated: false,
    };
    Some((done, w.metadata_generation))
}

fn find_writer<'a>(list: &'a TrustList, which: &str) -> Result<&'a TrustedWriter> {
    let live = || list.writers.iter().filter(|w| w.revoked.is_none());
    let by_name: Vec<_> = live().filter(|w| w.name == which).collect();
    let found: Vec<_> = if by_name.is_empty() {
        live()
            .filter(|w| !which.is_empty() && w.id.starts_with(which))
            .collect()
    } else {
        by_name
    };
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::Usage(format!(
            "no writer credential named '{which}' is in force ('custodian access list' shows \
             them; revoked ones are marked)"
        ))),
        _ => Err(Error::Usage(format!(
            "'{which}' names {} writer credentials; give the credential id",
            found.len()
        ))),
    }
}

pub(super) fn parse_hex32(text: &str) -> Result<[u8; 32]> {
    super::trust::parse_key(text).ok_or_else(|| {
        Error::Usage(format!(
            "'{text}' is not a signing key (64 hex characters, from 'custodian key show')"
        ))
    })
}
