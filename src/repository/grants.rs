//! Per-source operator grants (`access add-operator --sources`), enforced by keys: a key
//! domain's identity is sealed only to the operators in office granted it, and a drill report
//! only to those granted every source it names. An operator granted every source ("full")
//! makes registry changes, since only it can re-seal every domain; there is always one.
//!
//! The trust list is plaintext, so it names a grant by a keyed hash of the domain's name
//! ([`Repository::source_id`]), as object names do: the storage provider learns how many
//! sources an operator holds, never their names.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::keys::DomainWriterRecord;
use crate::format::trust::TrustedOperator;
use crate::format::ObjectKind;
use age::x25519;
use std::collections::BTreeMap;

impl Repository {
    /// The keyed id of key domain `name` on the trust list: the same for every generation, and
    /// computable by anyone holding the metadata key (operators and writers).
    pub fn source_id(&self, name: &str) -> String {
        let key = self.meta.derive("custodian 2026 source grant");
        blake3::keyed_hash(&key, name.as_bytes()).to_hex()[..32].to_string()
    }

    /// Whom domain `name`'s identity is sealed to: the operators in office granted it.
    pub(super) fn recipients_for(&self, name: &str) -> Result<Vec<x25519::Recipient>> {
        let id = self.source_id(name);
        self.recipients_where(|o| o.grants(&id), name)
    }

    /// Whom a record naming several domains is sealed to: those granted all of them.
    pub(super) fn recipients_for_all(&self, names: &[&str]) -> Result<Vec<x25519::Recipient>> {
        let ids: Vec<String> = names.iter().map(|n| self.source_id(n)).collect();
        self.recipients_where(|o| ids.iter().all(|id| o.grants(id)), "a drill report")
    }

    /// The operators granted every source: they alone hold writer-credential copies (and
    /// reports that name no domain).
    pub(super) fn full_recipients(&self) -> Result<Vec<x25519::Recipient>> {
        self.recipients_where(TrustedOperator::is_full, "a writer credential")
    }

    fn recipients_where(
        &self,
        keep: impl Fn(&TrustedOperator) -> bool,
        what: &str,
    ) -> Result<Vec<x25519::Recipient>> {
        let Some(auth) = self.auth() else {
            return Ok(self.operator_recipients.clone());
        };
        let out = auth
            .list
            .current_operators()
            .filter(|o| keep(o))
            .map(|o| crate::crypto::keys::parse_recipient(&o.recipient, "operator recipient"))
            .collect::<Result<Vec<_>>>()?;
        if out.is_empty() {
            return Err(Error::Refused(format!(
                "no operator in office may read {what}: the trust list has no operator granted \
                 every source. An operator adds one with 'custodian access add-operator' \
                 (without --sources)."
            )));
        }
        Ok(out)
    }

    /// This process's own entry on the trust list, if it was opened as a listed operator.
    fn own_operator(&self) -> Option<&TrustedOperator> {
        let own = self.operator_recipient()?;
        self.auth()?
            .list
            .current_operators()
            .find(|o| o.recipient == own)
    }

    /// Registry changes re-seal every domain, so they need an operator granted every source.
    pub fn require_full_operator(&self) -> Result<()> {
        match self.own_operator() {
            Some(o) if !o.is_full() => Err(Error::Refused(format!(
                "operator '{}' is granted only some sources, and changes to the access registry \
                 need an operator granted every source (they re-seal every source's keys). Ask \
                 one to make the change.",
                o.registry.as_ref().map_or("", |r| r.name.as_str())
            ))),
            _ => Ok(()),
        }
    }

    /// Refuse, before trying any key, to read a domain this operator is not granted.
    pub fn require_granted(&self, name: &str) -> Result<()> {
        let Some(o) = self.own_operator() else {
            return Ok(());
        };
        if o.grants(&self.source_id(name)) {
            return Ok(());
        }
        Err(Error::NotGranted {
            operator: o
                .registry
                .as_ref()
                .map_or_else(String::new, |r| r.name.clone()),
            domain: name.to_string(),
        })
    }

    /// Whether `stored` (key record `object` of domain `name`) was signed by an operator in
    /// office granted that domain: only such a record may give a domain its keys after an
    /// operator change (a writer's, or a restricted operator's for a domain it is not granted,
    /// was planted).
    pub(super) fn signed_by_granted(&self, object: &str, stored: &[u8], name: &str) -> bool {
        let id = self.source_id(name);
        self.auth()
            .and_then(|a| a.operator_signer(ObjectKind::KeyRecord, object, stored))
            .is_some_and(|o| o.grants(&id))
    }

    /// Every key domain's name by its keyed id, from the writers' domain records (the metadata
    /// key opens them): how `access list` names the sources an operator is granted.
    pub fn source_names(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for o in self.backend.list("keys/domains/")? {
            if !o.name.ends_with(".writer") || o.size > ObjectKind::DomainWriter.max_stored() {
                continue;
            }
            let Some(bytes) = self.backend.get_if_present(&o.name)? else {
                continue;
            };
            match self.open_meta::<DomainWriterRecord>(ObjectKind::DomainWriter, &o.name, &bytes) {
                Ok(rec) => {
                    out.insert(self.source_id(&rec.name), rec.name);
                }
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %o.name, "a damaged domain record: skipped: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The keyed ids of `names`, sorted and without repeats, each a valid source name.
    pub fn grant_ids(&self, names: &[String]) -> Result<Vec<String>> {
        if names.is_empty() {
            return Err(Error::Usage(
                "--sources names no source; leave it out to grant every source".into(),
            ));
        }
        let mut ids = Vec::new();
        for name in names {
            crate::archiver::source_name_ok(name)
                .map_err(|why| Error::Usage(format!("source name '{name}' in --sources {why}")))?;
            ids.push(self.source_id(name));
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// The sources a drill report names, read from its plaintext (the rest is the drill module's).
#[derive(serde::Deserialize)]
struct ReportSources {
    sources: Vec<ReportSource>,
}

#[derive(serde::Deserialize)]
struct ReportSource {
    domain: Option<String>,
}

impl Repository {
    /// Seal a drill report (packed JSON; it names customer files) to the operators granted
    /// every key domain it drilled.
    pub(crate) fn seal_drill_report(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let json = crate::compress::unpack_json(plain, crate::format::kind::REPORT_MAX_PLAIN)
            .map_err(|e| Error::Internal(format!("internal error: a drill report: {e}")))?;
        let report: ReportSources = serde_json::from_slice(&json)
            .map_err(|e| Error::Internal(format!("internal error: a drill report: {e}")))?;
        // By key domain; a report that names none (or an older one without domains) goes to
        // operators granted every source.
        let domains: Option<Vec<&str>> =
            report.sources.iter().map(|s| s.domain.as_deref()).collect();
        let recipients = match domains {
            Some(names) if !names.is_empty() => self.recipients_for_all(&names)?,
            _ => self.full_recipients()?,
        };
        Ok(crate::crypto::seal_to(&recipients, plain, "drill report")?)
    }
}
