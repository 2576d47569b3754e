//! What a handover stores in a repository (docs/DESIGN.md, "Handover"): the signed list and
//! receipt under `handovers/<id>.list` and `.receipt`, the mark that stops any writer from
//! backing a handed-over store up again, and, in the receiving repository, the domain's keys
//! and session keys, re-wrapped without touching a byte of data.

use super::Repository;
use crate::crypto::SessionKey;
use crate::error::{Error, Result};
use crate::format::handover::{HandedOver, MAX_LIST};
use crate::format::ObjectKind;
use serde::{Deserialize, Serialize};

/// A signed list or receipt as the repositories keep it: the exact JSON bytes, and the
/// signature envelope's header (hex) that covers them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignedDocument {
    pub version: u32,
    pub json: String,
    pub signature: String,
}

fn list_name(id: &str, what: &str) -> String {
    format!("handovers/{id}.{what}")
}

fn valid_id(id: &str) -> Result<()> {
    Ok(crate::format::handover::valid_id(id)?)
}

impl Repository {
    /// Keep a signed handover document (`what`: "list" or "receipt"); an identical one stored
    /// by an earlier, interrupted run is fine.
    pub fn put_handover_document(&self, id: &str, what: &str, doc: &SignedDocument) -> Result<()> {
        valid_id(id)?;
        self.require_operator("recording a handover")?;
        if doc.json.len() > MAX_LIST {
            return Err(Error::Damaged(
                "the handover list is larger than 64 MiB".into(),
            ));
        }
        let name = list_name(id, what);
        let sealed = self.seal_meta_at(ObjectKind::Handover, &name, doc)?;
        if !self.backend.put_new(&name, &sealed)? {
            let stored = self.handover_document(id, what)?;
            if stored.as_ref().map(|d| &d.json) != Some(&doc.json) {
                return Err(Error::Refused(format!(
                    "{name} already holds another handover document: this handover id was \
                     used before. Start the handover again with a new output directory."
                )));
            }
        }
        Ok(())
    }

    /// The stored document `what` of handover `id`, if any.
    pub fn handover_document(&self, id: &str, what: &str) -> Result<Option<SignedDocument>> {
        valid_id(id)?;
        let name = list_name(id, what);
        // Listed first, so an object larger than any handover document is never fetched.
        let listed = self.backend.list("handovers/")?;
        let Some(object) = listed.into_iter().find(|o| o.name == name) else {
            return Ok(None);
        };
        match self.get_listed(ObjectKind::Handover, &object)? {
            Some(bytes) => Ok(Some(self.open_meta(ObjectKind::Handover, &name, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Record (or move on) the state of a handed-over store. Operators only.
    pub fn mark_handed_over(&self, mark: &HandedOver) -> Result<()> {
        valid_id(&mark.handover)?;
        self.require_operator("recording a handover")?;
        let rank = |state: &str| {
            ["prepared", "retained", "destroyed"]
                .iter()
                .position(|s| *s == state)
        };
        if let Some(was) = self
            .handover_marks()?
            .into_iter()
            .find(|m| m.handover == mark.handover)
        {
            if was.domain != mark.domain || rank(&mark.state) < rank(&was.state) {
                return Err(Error::Refused(format!(
                    "handover {} is already {} for store '{}'; it cannot become {} for '{}'",
                    was.handover, was.state, was.domain, mark.state, mark.domain
                )));
            }
        }
        let name = list_name(&mark.handover, "mark");
        let sealed = self.seal_meta_at(ObjectKind::Handover, &name, mark)?;
        Ok(self.backend.replace(&name, &sealed)?)
    }

    /// Every handover mark in this repository that verifies. One that does not is skipped with
    /// a warning: it proves nothing (the storage could as well delete a real one), and failing
    /// every backup on it would hand anyone who can upload an object a way to stop them all.
    pub fn handover_marks(&self) -> Result<Vec<HandedOver>> {
        Ok(self
            .handover_marks_stored()?
            .into_iter()
            .map(|(_, _, m)| m)
            .collect())
    }

    /// [`Self::handover_marks`] with each mark's object name and stored bytes.
    pub(super) fn handover_marks_stored(&self) -> Result<Vec<(String, Vec<u8>, HandedOver)>> {
        let mut out = Vec::new();
        for object in self.backend.list("handovers/")? {
            if !object.name.ends_with(".mark") {
                continue;
            }
            let read = self
                .get_listed(ObjectKind::Handover, &object)
                .and_then(|b| {
                    b.map(|b| {
                        self.open_meta::<HandedOver>(ObjectKind::Handover, &object.name, &b)
                            .map(|m| (b, m))
                    })
                    .transpose()
                });
            match read {
                Ok(Some((bytes, mark))) => out.push((object.name, bytes, mark)),
                Ok(None) => {}
                Err(Error::Format(e @ crate::error::FormatError::UnknownVersion { .. })) => {
                    return Err(Error::Format(e))
                }
                Err(e) => {
                    tracing::warn!(object = %object.name, error = %e, "a handover mark that does not verify is ignored; run 'custodian check'")
                }
            }
        }
        Ok(out)
    }

    /// Say on the trust list that this repository has handed a store over, so that writers
    /// read the handover marks from now on (full operators only; once is enough).
    pub fn note_handover(&self) -> Result<()> {
        let auth = self.registry_auth()?;
        if auth.list.handovers {
            return Ok(());
        }
        auth.extend(self.backend.as_ref(), &Self::now_text(), |list| {
            list.handovers = true;
            Ok(())
        })?;
        Ok(())
    }

    /// Refuse to write into key domain `name` once it was handed over. A repository whose trust
    /// list never noted a handover has no marks to read.
    pub fn refuse_handed_over(&self, name: &str) -> Result<()> {
        if self.auth().is_some_and(|a| !a.list.handovers) {
            return Ok(());
        }
        match self
            .handover_marks()?
            .into_iter()
            .find(|m| m.domain == name)
        {
            Some(m) => Err(Error::HandedOver {
                domain: m.domain,
                handover: m.handover,
                to: m.to,
                time: m.time,
            }),
            None => Ok(()),
        }
    }

    /// Create key domain `name` here with the dedup key and chunker seed it had in another
    /// repository (a fresh identity, sealed to this repository's operators), so handed-over
    /// blobs keep their ids and later backups deduplicate against them. Operators only.
    pub fn import_domain(
        &self,
        name: &str,
        dedup: &[u8; 32],
        seed: u64,
    ) -> Result<crate::crypto::DomainKeys> {
        self.require_operator("receiving a key domain")?;
        let base = self.domain_object_at(name, self.key_generation());
        match self.domain_state(&base, name)? {
            super::domains::DomainState::Usable(_) => {}
            super::domains::DomainState::Absent => {
                self.create_domain_with(name, dedup, seed)?;
            }
            // A prepare killed between the domain's two records. The receiving repository is
            // the handover's own (nobody else writes there yet): undo at once and make the pair
            // again with these keys, rather than wait for a backup to make one with others.
            half => {
                self.roll_back_domain(&base, name, &half)?;
                self.create_domain_with(name, dedup, seed)?;
            }
        }
        let keys = self.domain_for_write(name)?;
        if *keys.dedup_key != *dedup || keys.chunker_seed != seed {
            return Err(Error::Refused(format!(
                "key domain '{name}' already exists in {} with other keys: a store of the same \
                 name lives there. Hand over into another repository.",
                self.location()
            )));
        }
        Ok(keys)
    }

    /// Store a handed-over session key here, sealed to this repository's copy of its domain.
    pub fn import_session(
        &self,
        key: &SessionKey,
        domain: &crate::crypto::DomainKeys,
    ) -> Result<bool> {
        self.store_session(key, &domain.recipient)
    }
}
