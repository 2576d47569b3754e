//! What a handover stores in a repository (docs/DESIGN.md, "Handover"): the signed list and
//! receipt under `handovers/<id>.list` and `.receipt`, the mark that stops any writer from
//! backing a handed-over store up again, and, in the receiving repository, the domain's keys
//! and session keys, re-wrapped without touching a byte of data.

use super::Repository;
use crate::crypto::SessionKey;
use crate::error::{Error, Result};
use crate::format::handover::{
    plannable, HandedOver, PlannedObject, PlannedSnapshot, RetainPlan, HANDOVER_VERSION, MAX_LIST,
};
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
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "'{id}' is not a handover id (32 lowercase hex digits, as the handover list says)"
        )))
    }
}

impl Repository {
    /// Keep a signed handover document (`what`: "list" or "receipt"); an identical one stored
    /// by an earlier, interrupted run is fine.
    pub fn put_handover_document(&self, id: &str, what: &str, doc: &SignedDocument) -> Result<()> {
        valid_id(id)?;
        self.require_operator("recording a handover")?;
        if doc.json.len() > MAX_LIST {
            return Err(Error::Invalid(
                "the handover list is larger than 64 MiB".into(),
            ));
        }
        let name = list_name(id, what);
        let sealed = self.seal_meta_at(ObjectKind::Handover, &name, doc)?;
        if !self.backend.put_new(&name, &sealed)? {
            let stored = self.handover_document(id, what)?;
            if stored.as_ref().map(|d| &d.json) != Some(&doc.json) {
                return Err(Error::Invalid(format!(
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
        match self.backend.get_if_present(&name)? {
            Some(bytes) => Ok(Some(self.open_meta(ObjectKind::Handover, &name, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Record (or move on) the state of a handed-over store. Operators only.
    pub fn mark_handed_over(&self, mark: &HandedOver) -> Result<()> {
        valid_id(&mark.handover)?;
        self.require_operator("recording a handover")?;
        let name = list_name(&mark.handover, "mark");
        let sealed = self.seal_meta_at(ObjectKind::Handover, &name, mark)?;
        Ok(self.backend.replace(&name, &sealed)?)
    }

    /// Every handover mark in this repository. One that cannot be read stops the caller: a
    /// mark is what keeps writers out of a store that changed hands.
    pub fn handover_marks(&self) -> Result<Vec<HandedOver>> {
        let mut out = Vec::new();
        for object in self.backend.list("handovers/")? {
            if !object.name.ends_with(".mark") {
                continue;
            }
            if let Some(bytes) = self.get_listed(ObjectKind::Handover, &object)? {
                let mark: HandedOver =
                    self.open_meta(ObjectKind::Handover, &object.name, &bytes)?;
                if mark.version > HANDOVER_VERSION {
                    return Err(Error::Invalid(format!(
                        "{} is of a newer custodian; upgrade before backing up here",
                        object.name
                    )));
                }
                out.push(mark);
            }
        }
        Ok(out)
    }

    /// Refuse to write into key domain `name` once it was handed over.
    pub fn refuse_handed_over(&self, name: &str) -> Result<()> {
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
        if let super::domains::DomainState::Absent = self.domain_state(&base, name)? {
            self.create_domain_with(name, dedup, seed)?;
        }
        let keys = self.domain_for_write(name)?;
        if *keys.dedup_key != *dedup || keys.chunker_seed != seed {
            return Err(Error::Invalid(format!(
                "key domain '{name}' already exists in {} with other keys: a store of the same \
                 name lives there. Hand over into another repository.",
                self.location()
            )));
        }
        Ok(keys)
    }

    /// What destroying handed-over domain `name` will delete, for a retention that ends on a
    /// date (operators only: finding the domain's session keys needs its identity).
    pub fn retention_plan(&self, name: &str) -> Result<RetainPlan> {
        let keys = self.domain_for_read(name)?;
        let (snapshots, objects) = self.domain_doom(name, &keys)?;
        Ok(RetainPlan {
            snapshots: snapshots
                .iter()
                .map(|s| PlannedSnapshot {
                    id: s.id.to_hex(),
                    source: s.head.source.clone(),
                    time: s.head.time.clone(),
                })
                .collect(),
            objects: objects
                .into_iter()
                .map(|(name, size)| PlannedObject { name, size })
                .collect(),
        })
    }

    /// Destroy every handed-over store whose retention ended by `now`, as its plan says: the
    /// destruction record first, then the deletes (a rerun after a kill finishes the deletes
    /// without a second record). Any credential may run it: the daemon does, with its writer.
    pub fn expire_handovers(
        &self,
        now: std::time::SystemTime,
        local_dir: &std::path::Path,
    ) -> Result<Vec<super::DestructionRecord>> {
        let mut done = Vec::new();
        for mark in self.handover_marks()? {
            let (Some(until), Some(plan)) = (&mark.until, &mark.plan) else {
                continue;
            };
            let due = humantime::parse_rfc3339_weak(until).map_err(|_| {
                Error::Damaged(format!(
                    "handover {} keeps its store until '{until}', which is not a time",
                    mark.handover
                ))
            })?;
            if mark.state != "retained" || due > now {
                continue;
            }
            if let Some(stray) = plan.objects.iter().find(|o| !plannable(&o.name)) {
                return Err(Error::Damaged(format!(
                    "the retention plan of handover {} names '{}', which no destruction of a \
                     store deletes; nothing was deleted. Run 'custodian check'.",
                    mark.handover, stray.name
                )));
            }
            let ids: Vec<crate::id::SnapshotId> = plan
                .snapshots
                .iter()
                .filter_map(|s| s.id.parse().ok())
                .collect();
            self.refuse_held(&ids, "handover retention expiry")?;
            let tag = format!("handover {}", mark.handover);
            let earlier = self
                .destruction_records()?
                .into_iter()
                .find(|r| r.domain.as_deref() == Some(&mark.domain) && r.note.contains(&tag));
            if earlier.is_some() {
                for o in &plan.objects {
                    self.backend.delete(&o.name)?;
                }
                continue;
            }
            let snapshots = plan
                .snapshots
                .iter()
                .map(|s| super::DestroyedSnapshot {
                    id: s.id.clone(),
                    source: s.source.clone(),
                    time: s.time.clone(),
                    reason: format!("retention after {tag} ended {until}"),
                })
                .collect();
            let objects = plan
                .objects
                .iter()
                .map(|o| (o.name.clone(), o.size))
                .collect();
            let note = format!(
                "{} Retained after {tag} until {until}.",
                super::keyring::shred_note(&mark.domain)
            );
            done.push(self.destroy(
                "destroy-domain",
                snapshots,
                objects,
                note,
                Some(&mark.domain),
                local_dir,
            )?);
        }
        Ok(done)
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
