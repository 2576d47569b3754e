//! Changing the operators: `access add-operator`, `remove-operator` and `key add-operator`
//! (a listed operator's signing key). An addition or removal is a new trust-list version that
//! also starts a new generation of key domains (`generations.rs`); the caller then reopens the
//! repository and runs [`Repository::reseal_for_operators`], which seals every key record the
//! operators hold to the operators in office. A removed operator keeps its entry, marked, with
//! an inventory of what it had signed, so its earlier entries and records still verify and
//! anything it signs afterwards does not.

use super::access::{parse_hex32, Principal};
use super::registry::operator_revocation_id;
use super::Repository;
use crate::error::{Error, Result};
use crate::format::trust::{Registered, Revocation, TrustList, TrustedOperator};
use crate::format::ObjectKind;

/// What `remove-operator` did, and what the removed operator could read until now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RemovedOperator {
    pub name: String,
    pub recipient: String,
    /// Objects it had signed (they still verify).
    pub signed: usize,
    /// Removed before (a rerun): when and by whom.
    pub already: Option<String>,
    /// The writers whose credentials predate the metadata key rotated with the removal.
    pub reissue: Vec<String>,
}

/// What re-sealing to the operators in office touched.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Resealed {
    pub domains: usize,
    pub records: usize,
}

impl Repository {
    /// Add operator `recipient` with signing key `key` (from `custodian key show` on its
    /// machine), granted `sources` (key domain names; `None`: every source). Returns the new
    /// trust list version, or `None` when exactly this operator is listed already (a rerun:
    /// re-sealing may still be due).
    pub fn add_operator(
        &self,
        recipient: &str,
        key: &str,
        who: &Principal,
        sources: Option<&[String]>,
    ) -> Result<Option<u64>> {
        let auth = self.registry_auth()?;
        // Stored canonical, so comparisons with parsed recipients hold.
        let canonical =
            crate::crypto::keys::parse_recipient(recipient, "the operator's recipient")?
                .to_string();
        let recipient = canonical.as_str();
        parse_hex32(key)?;
        let sources = sources.map(|names| self.grant_ids(names)).transpose()?;
        if let Some(o) = auth
            .list
            .operators
            .iter()
            .find(|o| o.recipient == recipient)
        {
            return match &o.removed {
                None if o.registry.as_ref().is_some_and(|r| r.name == who.name)
                    && o.sources == sources =>
                {
                    Ok(None)
                }
                None => Err(Error::Refused(format!(
                    "{recipient} is already an operator of this repository"
                ))),
                Some(r) => Err(Error::Refused(format!(
                    "{recipient} was removed at {} by {}; a removed identity does not come back \
                     (its old key may have been copied). Give the person a new identity \
                     ('custodian key generate') and add that.",
                    r.time, r.by
                ))),
            };
        }
        if auth.list.auditors.iter().any(|a| a.recipient == recipient) {
            return Err(Error::Refused(format!(
                "{recipient} is an auditor of this repository; an operator needs an identity of \
                 its own"
            )));
        }
        if name_taken(&auth.list, who.name) {
            return Err(Error::Refused(format!(
                "an operator named '{}' is already on the registry; choose another --name",
                who.name
            )));
        }
        let now = Self::now_text();
        let by = self.opened_by_key();
        let list = auth.extend(self.backend.as_ref(), &now, |list| {
            list.operators.push(TrustedOperator {
                recipient: recipient.to_string(),
                signing_key: Some(key.to_ascii_lowercase()),
                registry: Some(Registered {
                    name: who.name.to_string(),
                    added: now.clone(),
                    added_by: by.clone(),
                    expires: who.expires.clone(),
                }),
                removed: None,
                sources: sources.clone(),
            });
            list.key_generation += 1;
            Ok(())
        })?;
        Ok(Some(list.seq))
    }

    /// Remove operator `which` (its registry name or recipient): list what it signed, then mark
    /// it removed in a new trust list that starts a new key generation.
    pub fn remove_operator(&self, which: &str) -> Result<RemovedOperator> {
        let auth = self.registry_auth()?;
        let named = |o: &&TrustedOperator| o.recipient == which || operator_name(o) == Some(which);
        // One in office first: a name may be reused after its first holder was removed.
        let found = auth
            .list
            .current_operators()
            .find(named)
            .or_else(|| auth.list.operators.iter().find(named))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no operator is named '{which}' or has that recipient ('custodian access \
                     list' shows them)"
                ))
            })?;
        let mut removed = RemovedOperator {
            name: operator_name(found).unwrap_or_default().to_string(),
            recipient: found.recipient.clone(),
            signed: 0,
            already: None,
            reissue: Vec::new(),
        };
        if let Some(r) = &found.removed {
            removed.already = Some(format!("{} by {}", r.time, r.by));
            return Ok(removed);
        }
        let own = self.operator_recipient();
        if own.as_deref() == Some(found.recipient.as_str()) {
            return Err(Error::Refused(
                "you cannot remove yourself: another operator removes you, so that the key \
                 signing the change stays on the list"
                    .into(),
            ));
        }
        if auth.list.current_operators().count() < 2 {
            return Err(Error::Refused(
                "this is the repository's last operator; add another first".into(),
            ));
        }
        let key = found.signing_key.as_deref().map(parse_hex32).transpose()?;
        let vouched = match &key {
            Some(key) => {
                let (hash, list) = self.store_inventory(key, &operator_revocation_id(key))?;
                removed.signed = list.objects.len();
                hash
            }
            None => String::new(),
        };
        let now = Self::now_text();
        let by = self.opened_by_key();
        let recipient = found.recipient.clone();
        // It held the metadata key: what is written from now on is sealed to a new one.
        let rotated = self.new_metadata_generation(Some(&recipient))?;
        removed.reissue = Self::writers_to_reissue(&auth.list, None);
        auth.extend(self.backend.as_ref(), &now, |list| {
            list.metadata_keys.push(rotated.clone());
            if let Some(o) = list.operators.iter_mut().find(|o| o.recipient == recipient) {
                o.removed = Some(Revocation {
                    time: now.clone(),
                    by: by.clone(),
                    vouched: vouched.clone(),
                });
            }
            list.key_generation += 1;
            Ok(())
        })?;
        Ok(removed)
    }

    /// Give operator `recipient` (already one of the repository's operators) the signing key
    /// `key` (hex), in a new trust list version signed by this operator. Returns the version.
    pub fn add_operator_key(&self, recipient: &str, key: &str) -> Result<u64> {
        let auth = self.registry_auth()?;
        parse_hex32(key)?;
        let list = auth.extend(self.backend.as_ref(), &Self::now_text(), |list| {
            let entry = list
                .operators
                .iter_mut()
                .find(|o| o.recipient == recipient && o.removed.is_none())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{recipient} is not one of this repository's operators; a new operator \
                         is added with 'custodian access add-operator'"
                    ))
                })?;
            entry.signing_key = Some(key.to_ascii_lowercase());
            Ok(())
        })?;
        Ok(list.seq)
    }

    /// Seal every key record the operators hold to the operators in office, after an operator
    /// change (on a repository opened after it): the domains' identities (`reseal_domains`),
    /// the metadata key, the copies of writer credentials and the drill reports.
    pub fn reseal_for_operators(&self) -> Result<Resealed> {
        let mut done = Resealed {
            domains: self.reseal_domains()?,
            records: 0,
        };
        // Listings are by folder (a local store walks directories), so `keys/` is filtered.
        let fixed: Vec<_> = self
            .backend
            .list("keys/")?
            .into_iter()
            .filter(|o| o.name.starts_with("keys/metadata-") || o.name.starts_with("keys/writer-"))
            .collect();
        for o in fixed {
            let Some(stored) = self.get_listed(ObjectKind::KeyRecord, &o)? else {
                continue;
            };
            let name = o.name;
            let plain = self.opened(ObjectKind::KeyRecord, &name, &stored)?;
            let body = if name.starts_with("keys/metadata-") {
                self.seal_for_operators(&plain, "key record")?
            } else {
                self.seal_for_full_operators(&plain)?
            };
            let signed = self.sign(ObjectKind::KeyRecord, &name, body)?;
            self.backend.replace(&name, &signed)?;
            done.records += 1;
        }
        // A rerun after a kill meets a report twice (its old copy and its re-sealed one): the
        // second is deleted, not re-sealed again.
        let mut seen = std::collections::HashSet::new();
        for o in self.list(ObjectKind::DrillReport)? {
            let Some(stored) = self.get_listed(ObjectKind::DrillReport, &o)? else {
                continue;
            };
            let plain = self.opened(ObjectKind::DrillReport, &o.name, &stored)?;
            if !seen.insert(crate::id::content_hash(&plain)) {
                self.delete_object(&o.name)?;
                continue;
            }
            let body = self.seal_drill_report(&plain)?;
            let (name, _) = self.put_hash_named(ObjectKind::DrillReport, body)?;
            if name != o.name {
                self.delete_object(&o.name)?;
            }
            done.records += 1;
        }
        Ok(done)
    }

    /// The plaintext of an operators' object, after checking its signature.
    fn opened(
        &self,
        kind: ObjectKind,
        name: &str,
        stored: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let (sealed, _) = self.verify(kind, name, stored)?;
        Ok(zeroize::Zeroizing::new(
            self.open_for_operators(sealed, kind.what())?,
        ))
    }

    /// The age recipient of the identity this repository was opened with, if an operator's.
    pub(super) fn operator_recipient(&self) -> Option<String> {
        self.operator
            .as_ref()
            .and_then(|ids| ids.first())
            .map(|i| i.to_public().to_string())
    }
}

fn operator_name(o: &TrustedOperator) -> Option<&str> {
    o.registry.as_ref().map(|r| r.name.as_str())
}

fn name_taken(list: &TrustList, name: &str) -> bool {
    list.current_operators()
        .any(|o| operator_name(o) == Some(name))
}
