//! The end of a handed-over store's retention (`handover complete --retain-until`): on the day,
//! the daemon's retention run crypto-shreds it with its writer credential. The operator who
//! kept the store listed its session keys (only the domain's identity finds them); everything
//! else is found again on the day from the domain's name, so a plan can reach nothing but
//! session keys, and only a full operator's plan counts.

use super::{DestroyedSnapshot, DestructionRecord, Repository};
use crate::error::{Error, Result};
use crate::format::handover::{plannable, HandedOver, PlannedObject, RetainPlan};
use crate::format::ObjectKind;
use std::path::Path;
use std::time::SystemTime;

/// What one retention run did with the stores due.
#[derive(Default)]
pub struct Expired {
    pub destroyed: Vec<DestructionRecord>,
    /// Stores due that could not be destroyed (a hold, a forged plan), each named.
    pub problems: Vec<String>,
}

impl Repository {
    /// The session keys of handed-over domain `name`, for a retention that ends on a date
    /// (operators only: finding them needs the domain's identity).
    pub fn retention_plan(&self, name: &str) -> Result<RetainPlan> {
        let keys = self.domain_for_read(name)?;
        let (_, doomed) = self.domain_doom(name, &keys)?;
        Ok(RetainPlan {
            sessions: doomed
                .into_iter()
                .filter(|(n, _)| plannable(n))
                .map(|(name, size)| PlannedObject { name, size })
                .collect(),
        })
    }

    /// Destroy every handed-over store whose retention ended by `now`. Each is on its own: one
    /// that cannot be destroyed (a snapshot under hold) is reported and the others go on.
    pub fn expire_handovers(&self, now: SystemTime, local_dir: &Path) -> Result<Expired> {
        let mut out = Expired::default();
        for (name, stored, mark) in self.handover_marks_stored()? {
            let Some(until) = mark.until.as_deref().filter(|_| mark.state == "retained") else {
                continue;
            };
            match humantime::parse_rfc3339_weak(until) {
                Ok(due) if due > now => continue,
                Ok(_) => {}
                Err(_) => {
                    out.problems.push(format!(
                        "handover {}: keeps its store until '{until}', which is not a time",
                        mark.handover
                    ));
                    continue;
                }
            }
            match self.expire_one(&name, &stored, &mark, until, local_dir) {
                Ok(Some(record)) => out.destroyed.push(record),
                Ok(None) => {}
                Err(e) => out
                    .problems
                    .push(format!("handover {}: {e}", mark.handover)),
            }
        }
        Ok(out)
    }

    /// Destroy one due store: the destruction record first, then the deletes (a rerun after a
    /// kill finds its record and finishes the deletes).
    fn expire_one(
        &self,
        name: &str,
        stored: &[u8],
        mark: &HandedOver,
        until: &str,
        local_dir: &Path,
    ) -> Result<Option<DestructionRecord>> {
        let full = self
            .auth()
            .and_then(|a| a.operator_signer(ObjectKind::Handover, name, stored))
            .is_some_and(|op| op.sources.is_none());
        if !full {
            return Err(Error::Damaged(format!(
                "{name} was not written by an operator in office for every source, so its \
                 retention plan is not carried out; nothing was deleted. Run 'custodian check'."
            )));
        }
        let plan = mark.plan.as_ref().map_or(&[][..], |p| &p.sessions[..]);
        if let Some(stray) = plan.iter().find(|o| !plannable(&o.name)) {
            return Err(Error::Damaged(format!(
                "the retention plan names '{}', which is not a session key; nothing was deleted",
                stray.name
            )));
        }
        let snapshots: Vec<_> = self
            .list_snapshots_strict()?
            .into_iter()
            .filter(|s| s.head.domain == mark.domain)
            .collect();
        let ids: Vec<_> = snapshots.iter().map(|s| s.id).collect();
        self.refuse_held(&ids, "handover retention expiry")?;
        let mut objects = self.snapshot_objects(&ids)?;
        objects.extend(plan.iter().map(|o| (o.name.clone(), o.size)));
        objects.extend(self.domain_records(&mark.domain)?);
        let tag = format!("handover {}", mark.handover);
        let earlier = self
            .destruction_records()?
            .into_iter()
            .any(|r| r.domain.as_deref() == Some(&mark.domain) && r.note.contains(&tag));
        if earlier {
            for (object, _) in &objects {
                self.backend.delete(object)?;
            }
            return Ok(None);
        }
        let destroyed = snapshots
            .iter()
            .map(|s| DestroyedSnapshot {
                id: s.id.to_hex(),
                source: s.head.source.clone(),
                time: s.head.time.clone(),
                reason: format!("retention after {tag} ended {until}"),
            })
            .collect();
        let note = format!(
            "{} Retained after {tag} until {until}.",
            super::keyring::shred_note(&mark.domain)
        );
        self.destroy(
            "destroy-domain",
            destroyed,
            objects,
            note,
            Some(&mark.domain),
            local_dir,
        )
        .map(Some)
    }

    /// The names of every key-domain record in storage.
    pub(super) fn domain_record_names(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .backend
            .list("keys/domains/")?
            .into_iter()
            .map(|o| o.name)
            .collect())
    }

    /// Every generation's key records of domain `name` that exist, the operators' last.
    pub(super) fn domain_records(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let present = self.domain_record_names()?;
        let mut out = Vec::new();
        for suffix in [".writer", ".history", ".operator"] {
            for g in 0..=self.key_generation() {
                let object = format!("{}{suffix}", self.domain_object_at(name, g));
                if present.contains(&object) {
                    out.push((object, 0));
                }
            }
        }
        Ok(out)
    }
}
