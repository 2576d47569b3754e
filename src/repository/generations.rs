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

impl Held {
    /// Add another record's identities (each once) and its object name.
    fn absorb(&mut self, other: Held) {
        self.objects.extend(other.objects);
        for id in other.identities {
            let public = id.to_public().to_string();
            if !self
                .identities
                .iter()
                .any(|k| k.to_public().to_string() == public)
            {
                self.identities.push(id);
            }
        }
    }
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
            .list("keys/")?
            .iter()
            .filter_map(|o| crate::format::trust::parse_trust_name(&o.name))
            .max();
        Ok(newest.is_none_or(|n| n <= auth.list.seq))
    }

    /// Refuse to write key domains under a trust list that is no longer the newest.
    pub(crate) fn require_current_trust(&self) -> Result<()> {
        if self.trust_is_current()? {
            return Ok(());
        }
        Err(Error::Conflict(
            "the access registry changed since this process opened the repository (an \
             operator was added or removed, or a writer revoked): nothing was written. Run the \
             command again; the daemon reopens the repository by itself before its next run."
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
            for object in [format!("{base}.operator"), format!("{base}.history")] {
                match self.read_record(&object, identities) {
                    Ok(Some((found, h))) => {
                        check_name(&found, name, &object)?;
                        match &mut held {
                            None => held = Some(h),
                            Some(all) => all.absorb(h),
                        }
                    }
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

    /// Fetch, verify and open an operators' domain record (`.operator` or `.history`): its
    /// domain's name and what it holds; `None` when it is absent. Hostile input: size-limited
    /// before it is opened, signed, and holding at least one identity.
    fn read_record(
        &self,
        object: &str,
        identities: &[x25519::Identity],
    ) -> Result<Option<(String, Held)>> {
        let Some(stored) = self.backend.get_if_present(object)? else {
            return Ok(None);
        };
        if stored.len() as u64 > ObjectKind::KeyRecord.max_stored() {
            return Err(Error::Damaged(format!(
                "{object} is {} bytes, more than any key record may be",
                stored.len()
            )));
        }
        let (sealed, _) = self.verify(ObjectKind::KeyRecord, object, &stored)?;
        let refs: Vec<&x25519::Identity> = identities.iter().collect();
        let plain = crypto::open_with(
            &refs,
            sealed,
            &format!("key record {object}"),
            "Your identity is not an operator of this repository.",
        )?;
        let (name, texts, dedup_key, chunker_seed) = if object.ends_with(".history") {
            let r: DomainHistoryRecord = decode_record(&plain)?;
            (r.name, r.identities, r.dedup_key, r.chunker_seed)
        } else {
            let r: DomainOperatorRecord = decode_record(&plain)?;
            (r.name, vec![r.identity], r.dedup_key, r.chunker_seed)
        };
        let identities = texts
            .iter()
            .map(|i| parse_identity(i, Path::new("repository domain record")))
            .collect::<Result<Vec<_>>>()?;
        if identities.is_empty() {
            return Err(Error::Damaged(format!("{object} lists no identity")));
        }
        let held = Held {
            identities,
            dedup_key,
            chunker_seed,
            objects: vec![object.to_string()],
        };
        Ok(Some((name, held)))
    }

    /// Every domain record this operator can open, by domain name: what an operator change
    /// re-seals. Records it cannot open (sealed before it was added, and already re-sealed to
    /// it in a history), damaged ones, ones stored under a name that is not their domain's,
    /// and ones with another dedup key are skipped (and never deleted).
    fn domains_held(&self, identities: &[x25519::Identity]) -> Result<BTreeMap<String, Held>> {
        let mut out: BTreeMap<String, Held> = BTreeMap::new();
        let generation = self.key_generation();
        for o in self.backend.list("keys/domains/")? {
            let Some(base) = o
                .name
                .strip_suffix(".operator")
                .or_else(|| o.name.strip_suffix(".history"))
            else {
                continue;
            };
            let (name, held) = match self.read_record(&o.name, identities) {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) if not_ours(&e) => continue,
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %o.name, error = %e, "a damaged or forged domain record: skipped");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !(0..=generation).any(|g| self.domain_object_at(&name, g) == base) {
                tracing::warn!(object = %o.name, "a domain record under another domain's name: skipped");
                continue;
            }
            match out.get_mut(&name) {
                None => {
                    out.insert(name, held);
                }
                Some(all)
                    if all.dedup_key == held.dedup_key && all.chunker_seed == held.chunker_seed =>
                {
                    all.absorb(held)
                }
                Some(_) => {
                    tracing::warn!(object = %o.name, "a domain record whose dedup key differs from its domain's: skipped")
                }
            }
        }
        Ok(out)
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
            let sealed =
                crate::crypto::seal_to(&self.recipients_for(name)?, &plain, "domain history")?;
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
            // Kept only if this operator opened it and an operator granted it signed it: a
            // pair sealed past the re-sealing operator (planted to lock the others out) goes.
            if keys.objects.contains(&operator_name)
                && self.signed_by_granted(&operator_name, &op, name)
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

fn decode_record<T: DeserializeOwned>(plain: &[u8]) -> Result<T> {
    Ok(crate::format::decode_packed(
        plain,
        "domain key record",
        KEYS_VERSION,
        RECORD_MAX,
    )?)
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
