//! Key domain generations. Every change of the operators (`access add-operator`,
//! `remove-operator`) starts a new generation on the trust list: writers then create each
//! domain's records afresh under a new name, with a new identity sealed only to the operators
//! in office, so whoever was removed cannot open anything backed up afterwards. The dedup key
//! and chunker seed carry over (read from the newest earlier `.writer` record), so nothing is
//! uploaded twice. Earlier identities are re-sealed to the operators in office in one
//! `.history` record per domain, and the earlier `.operator` records (sealed to whoever was
//! removed) are deleted. docs/FORMAT.md "Operator changes" has the argument.

use super::keyring::decode_hex_key;
use super::Repository;
use crate::crypto;
use crate::crypto::keys::{identity_secret, parse_identity, DomainKeys};
use crate::error::{CryptoError, Error, Result};
use crate::format::keys::{
    DomainHistoryRecord, DomainOperatorRecord, DomainWriterRecord, KEYS_VERSION,
};
use crate::format::ObjectKind;
use age::x25519;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest plaintext of a domain record (a history holds one identity per generation).
const RECORD_MAX: usize = 256 * 1024;

/// The keys of one domain as the operators' records hold them.
struct Held {
    identities: Vec<x25519::Identity>,
    dedup_key: String,
    chunker_seed: u64,
    /// The records these came from (only these are ever deleted after re-sealing).
    objects: Vec<String>,
}

impl Repository {
    /// The current generation of key domains (0 before any operator change, and in format 1).
    pub(super) fn key_generation(&self) -> u32 {
        self.auth.as_ref().map_or(0, |a| a.list.key_generation)
    }

    /// Whether the trust list this process loaded is still the newest (one listing). A
    /// process that outlives an operator change must reopen before it writes: it would seal
    /// to keys the operators have moved away from.
    pub fn trust_is_current(&self) -> Result<bool> {
        let Some(auth) = &self.auth else {
            return Ok(true);
        };
        let newest = self
            .backend
            .list("keys/trust-")?
            .iter()
            .filter_map(|o| crate::format::trust::parse_trust_name(&o.name))
            .max();
        Ok(newest.is_none_or(|n| n <= auth.list.seq))
    }

    /// Refuse to write key domains under a trust list that is no longer the newest.
    pub(super) fn require_current_trust(&self) -> Result<()> {
        if self.trust_is_current()? {
            return Ok(());
        }
        Err(Error::Invalid(
            "the access registry changed since this process opened the repository (an \
             operator was added or removed): nothing was written. Run the command again; the \
             daemon reopens the repository by itself before its next run."
                .into(),
        ))
    }

    /// Object name (without suffix) of domain `name` in generation `generation`: a keyed hash,
    /// so source names never appear in the store.
    pub(super) fn domain_object_at(&self, name: &str, generation: u32) -> String {
        let key = self.meta.derive("custodian 2026 domain object name");
        let input = match generation {
            0 => name.to_string(),
            g => format!("{name}\0generation {g}"),
        };
        format!(
            "keys/domains/{}",
            &blake3::keyed_hash(&key, input.as_bytes()).to_hex()[..32]
        )
    }

    /// Dedup key and chunker seed of the newest earlier generation of `name`, so a new
    /// generation keeps deduplicating against what is stored.
    pub(super) fn earlier_domain_keys(
        &self,
        name: &str,
    ) -> Result<Option<(Zeroizing<[u8; 32]>, u64)>> {
        for g in (0..self.key_generation()).rev() {
            let object = format!("{}.writer", self.domain_object_at(name, g));
            let Some(bytes) = self.backend.get_if_present(&object)? else {
                continue;
            };
            let rec: DomainWriterRecord =
                self.open_meta(ObjectKind::DomainWriter, &object, &bytes)?;
            if rec.name == name {
                let key = decode_hex_key(&rec.dedup_key, "domain record")?;
                return Ok(Some((key, rec.chunker_seed)));
            }
        }
        Ok(None)
    }

    /// Full keys of domain `name` across its generations: the newest identity (which new
    /// content from an operator is sealed to) and the older ones (for reading).
    pub(super) fn domain_keys_held(
        &self,
        name: &str,
        identities: &[x25519::Identity],
    ) -> Result<DomainKeys> {
        let mut held: Option<Held> = None;
        let mut first_error = None;
        for g in (0..=self.key_generation()).rev() {
            let base = self.domain_object_at(name, g);
            for found in [
                self.open_operator_record(&format!("{base}.operator"), name, identities),
                self.open_history(&format!("{base}.history"), name, identities),
            ] {
                match found {
                    Ok(Some(h)) => match &mut held {
                        None => held = Some(h),
                        Some(all) => all.identities.extend(h.identities),
                    },
                    Ok(None) => {}
                    Err(e) if not_ours(&e) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(mut held) = held else {
            let object = format!(
                "{}.operator",
                self.domain_object_at(name, self.key_generation())
            );
            return Err(first_error.unwrap_or_else(|| not_found(name, object, self.location())));
        };
        let identity = held.identities.remove(0);
        Ok(DomainKeys {
            name: name.to_string(),
            dedup_key: decode_hex_key(&held.dedup_key, "domain record")?,
            chunker_seed: held.chunker_seed,
            recipient: identity.to_public(),
            identity: Some(identity),
            older: held.identities,
        })
    }

    fn open_operator_record(
        &self,
        object: &str,
        name: &str,
        identities: &[x25519::Identity],
    ) -> Result<Option<Held>> {
        let Some(rec) = self.open_domain::<DomainOperatorRecord>(object, name, identities)? else {
            return Ok(None);
        };
        let identity = parse_identity(&rec.identity, Path::new("repository domain record"))?;
        check_name(&rec.name, name, object)?;
        Ok(Some(Held {
            identities: vec![identity],
            dedup_key: rec.dedup_key,
            chunker_seed: rec.chunker_seed,
            objects: vec![object.to_string()],
        }))
    }

    fn open_history(
        &self,
        object: &str,
        name: &str,
        identities: &[x25519::Identity],
    ) -> Result<Option<Held>> {
        let Some(rec) = self.open_domain::<DomainHistoryRecord>(object, name, identities)? else {
            return Ok(None);
        };
        check_name(&rec.name, name, object)?;
        let parsed = rec
            .identities
            .iter()
            .map(|i| parse_identity(i, Path::new("repository domain history")))
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Err(Error::Damaged(format!("{object} lists no identity")));
        }
        Ok(Some(Held {
            identities: parsed,
            dedup_key: rec.dedup_key,
            chunker_seed: rec.chunker_seed,
            objects: vec![object.to_string()],
        }))
    }

    /// Fetch, verify and open an operators' domain record; `None` when it is absent.
    fn open_domain<T: DeserializeOwned>(
        &self,
        object: &str,
        name: &str,
        identities: &[x25519::Identity],
    ) -> Result<Option<T>> {
        let Some(stored) = self.backend.get_if_present(object)? else {
            return Ok(None);
        };
        let (sealed, _) = self.verify(ObjectKind::KeyRecord, object, &stored)?;
        let refs: Vec<&x25519::Identity> = identities.iter().collect();
        let plain = crypto::open_with(
            &refs,
            sealed,
            &format!("key domain '{name}'"),
            "Your identity is not an operator of this repository.",
        )?;
        Ok(Some(crate::format::decode_packed(
            &plain,
            "domain key record",
            KEYS_VERSION,
            RECORD_MAX,
        )?))
    }

    /// Every domain record this operator can open, by domain name: what an operator change
    /// re-seals. Records it cannot open (sealed before it was added, and already re-sealed to
    /// it in a history), damaged ones, and ones stored under a name that is not their domain's
    /// are skipped (and never deleted).
    fn domains_held(&self, identities: &[x25519::Identity]) -> Result<BTreeMap<String, Held>> {
        let mut out: BTreeMap<String, Held> = BTreeMap::new();
        let generation = self.key_generation();
        for o in self.backend.list("keys/domains/")? {
            let rec = if o.name.ends_with(".operator") {
                self.peek::<DomainOperatorRecord>(&o.name, identities)?
                    .map(|r| (r.name, vec![r.identity], r.dedup_key, r.chunker_seed))
            } else if o.name.ends_with(".history") {
                self.peek::<DomainHistoryRecord>(&o.name, identities)?
                    .map(|r| (r.name, r.identities, r.dedup_key, r.chunker_seed))
            } else {
                None
            };
            let Some((name, ids, dedup_key, chunker_seed)) = rec else {
                continue;
            };
            let base = o.name.rsplit_once('.').map_or("", |(b, _)| b);
            if !(0..=generation).any(|g| self.domain_object_at(&name, g) == base) {
                tracing::warn!(object = %o.name, "a domain record under another domain's name: skipped");
                continue;
            }
            let ids = ids
                .iter()
                .map(|i| parse_identity(i, Path::new("repository domain record")))
                .collect::<Result<Vec<_>>>()?;
            let entry = out.entry(name).or_insert_with(|| Held {
                identities: Vec::new(),
                dedup_key: dedup_key.clone(),
                chunker_seed,
                objects: Vec::new(),
            });
            if entry.dedup_key != dedup_key || entry.chunker_seed != chunker_seed {
                tracing::warn!(object = %o.name, "a domain record whose dedup key differs from its domain's: skipped");
                continue;
            }
            entry.objects.push(o.name.clone());
            for id in ids {
                let known = entry
                    .identities
                    .iter()
                    .any(|k| k.to_public().to_string() == id.to_public().to_string());
                if !known {
                    entry.identities.push(id);
                }
            }
        }
        Ok(out)
    }

    /// A record that opens with `identities`, else `None` (another set's, or not ours).
    fn peek<T: DeserializeOwned>(
        &self,
        object: &str,
        identities: &[x25519::Identity],
    ) -> Result<Option<T>> {
        match self.open_domain::<T>(object, "", identities) {
            Err(e) if not_ours(&e) => Ok(None),
            Err(e) if e.is_damage() => {
                tracing::warn!(object, error = %e, "a damaged or forged domain record: skipped");
                Ok(None)
            }
            found => found,
        }
    }

    /// After an operator change: seal every domain's identities, of all generations, to the
    /// operators in office (one `.history` per domain in the current generation), then delete
    /// the older records sealed to the previous set. Safe to repeat after a kill: a history
    /// already written is kept, and deletion comes only after it. Returns how many domains.
    pub fn reseal_domains(&self) -> Result<usize> {
        let identities = self.require_operator("re-sealing key domains")?;
        let generation = self.key_generation();
        let held = self.domains_held(identities)?;
        for (name, keys) in &held {
            let current = self.domain_object_at(name, generation);
            let history = format!("{current}.history");
            let record = DomainHistoryRecord {
                version: KEYS_VERSION,
                name: name.clone(),
                generation,
                identities: keys
                    .identities
                    .iter()
                    .map(|i| identity_secret(i).to_string())
                    .collect(),
                dedup_key: keys.dedup_key.clone(),
                chunker_seed: keys.chunker_seed,
            };
            let plain = Zeroizing::new(crate::compress::pack_json(&record)?);
            let sealed = self.seal_for_operators(&plain, "domain history")?;
            let stored = self.sign(ObjectKind::KeyRecord, &history, sealed)?;
            // Replaces a history of this generation a killed run left: this one holds at
            // least as much, since the old one was among what was read.
            self.backend.replace(&history, &stored)?;
            self.ensure_current_pair(name, keys)?;
            // Only records that were opened and went into the history, of earlier generations.
            let current = format!("{current}.");
            for object in keys.objects.iter().filter(|o| !o.starts_with(&current)) {
                if let Err(e) = self.delete_object(object) {
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(held.len())
    }
}

impl Repository {
    /// The current generation's pair of an existing domain, made by this operator: a pair a
    /// writer made (planted, or racing the change) is replaced once its identity is safe in the
    /// history just written; one this operator cannot open is left alone.
    fn ensure_current_pair(&self, name: &str, keys: &Held) -> Result<()> {
        let base = self.domain_object_at(name, self.key_generation());
        let (operator_name, writer_name) = (format!("{base}.operator"), format!("{base}.writer"));
        if let Some(op) = self.backend.get_if_present(&operator_name)? {
            let role = self
                .auth()
                .and_then(|a| a.signer_role(ObjectKind::KeyRecord, &operator_name, &op));
            if role == Some(super::trust::Role::Operator) || !keys.objects.contains(&operator_name)
            {
                return Ok(());
            }
            self.delete_if_unchanged(&operator_name, &op)?;
        }
        if let Some(w) = self.backend.get_if_present(&writer_name)? {
            self.delete_if_unchanged(&writer_name, &w)?;
        }
        let dedup = decode_hex_key(&keys.dedup_key, "domain record")?;
        self.create_domain_with(name, &dedup, keys.chunker_seed)?;
        Ok(())
    }
}

fn check_name(found: &str, name: &str, object: &str) -> Result<()> {
    if found == name {
        return Ok(());
    }
    Err(Error::Damaged(format!(
        "{object} holds the keys of another key domain, not of '{name}': the repository's key \
         records were swapped or forged. Run 'custodian check'."
    )))
}

/// A record sealed to other operators (not damage: it is someone else's).
fn not_ours(e: &Error) -> bool {
    matches!(e, Error::Crypto(CryptoError::NoMatchingKey { .. }))
}

fn not_found(name: &str, object: String, location: String) -> Error {
    Error::Backend(crate::backend::BackendError {
        kind: crate::backend::ErrorKind::NotFound,
        operation: "read",
        object,
        location,
        message: format!("key domain '{name}' has no key records (destroyed, or never made)"),
    })
}
