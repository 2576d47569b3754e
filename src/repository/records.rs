//! Holds and destruction records: small objects sealed to the metadata identity, so writers and
//! operators can list them and neither names a customer file.
//!
//! - `holds/<snapshot id>`: a held snapshot is never forgotten or pruned. Anyone with a key can
//!   place a hold (the daemon holds the last good snapshot before a suspicious one); only an
//!   operator can release one.
//! - `destruction/<hash>`: what a forget (or, later, prune or erase) destroyed, when, why and by
//!   which credential. Written before anything is deleted, so a crash can leave a record of a
//!   destruction that then completes on the next run, never a destruction without a record.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::kind::RECORD_VERSION;
use crate::format::ObjectKind;
use crate::id::SnapshotId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Contents of `holds/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hold {
    pub version: u32,
    pub snapshot: String,
    pub reason: String,
    pub time: String,
    pub by: String,
}

/// One destroyed snapshot in a record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DestroyedSnapshot {
    pub id: String,
    pub source: String,
    /// When the snapshot was taken: the data it covered.
    pub time: String,
    /// The rule or reason that destroyed it.
    pub reason: String,
}

/// Contents of `destruction/<hash>`: the certificate compliance asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DestructionRecord {
    pub version: u32,
    /// `forget` (snapshot heads), `prune` (data), `erase`, `destroy-domain`.
    pub action: String,
    pub time: String,
    pub by: String,
    pub snapshots: Vec<DestroyedSnapshot>,
    /// Oldest and newest time of data covered by the destroyed snapshots.
    pub data_from: Option<String>,
    pub data_to: Option<String>,
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
    /// What the record does not cover (e.g. data still in packs until a prune).
    pub note: String,
    /// The key domain a `destroy-domain` shredded (absent in records of other actions, and in
    /// those written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(crate::clock::now()).to_string()
}

impl Repository {
    /// Hold a snapshot; holding a held one keeps the first hold.
    pub fn hold(&self, id: &SnapshotId, reason: &str) -> Result<bool> {
        let hold = Hold {
            version: RECORD_VERSION,
            snapshot: id.to_hex(),
            reason: reason.to_string(),
            time: now_text(),
            by: self.opened_by.clone(),
        };
        let name = format!("holds/{id}");
        let sealed = self.seal_meta_at(ObjectKind::Hold, &name, &hold)?;
        if self.backend.put_new(&name, &sealed)? {
            return Ok(true);
        }
        // A handover's own hold gives way to any other (a legal hold asked for during the
        // handover), which `handover complete` then does not release.
        let was = self.holds()?.remove(id);
        let handover = |h: &Hold| h.reason.starts_with("handover ");
        if was.as_ref().is_some_and(handover) && !handover(&hold) {
            let mut hold = hold;
            hold.reason = format!(
                "{} (placed during {})",
                hold.reason,
                was.map(|w| w.reason).unwrap_or_default()
            );
            let sealed = self.seal_meta_at(ObjectKind::Hold, &name, &hold)?;
            self.backend.replace(&name, &sealed)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Release a hold: operators only, so a compromised server cannot lift a legal hold.
    /// Returns whether there was a hold: releasing an unheld snapshot changes nothing and is no
    /// error, so a release killed after its delete can simply be run again.
    pub fn release(&self, id: &SnapshotId) -> Result<bool> {
        self.require_operator("releasing a hold")?;
        let name = format!("holds/{id}");
        if !self.backend.list("holds/")?.iter().any(|o| o.name == name) {
            return Ok(false);
        }
        self.backend.delete(&name)?;
        Ok(true)
    }

    /// Every hold, by snapshot. A hold object that cannot be read (damaged, or forged by the
    /// storage) still holds its snapshot, with a reason saying so: erring towards keeping data
    /// costs space, erring the other way could destroy a snapshot under a legal hold.
    pub fn holds(&self) -> Result<HashMap<SnapshotId, Hold>> {
        let mut out = HashMap::new();
        for (id, object) in self.list_ids::<SnapshotId>("holds/")? {
            // None: released between the listing and this read.
            let read = self
                .get_listed(ObjectKind::Hold, &object)
                .and_then(|bytes| {
                    bytes
                        .map(|b| self.open_meta::<Hold>(ObjectKind::Hold, &object.name, &b))
                        .transpose()
                });
            let hold = match read {
                Ok(None) => continue,
                Ok(Some(hold)) => hold,
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %object.name, "a hold cannot be read; its snapshot is kept until an operator checks it: {e}");
                    Hold {
                        version: RECORD_VERSION,
                        snapshot: id.to_hex(),
                        reason: format!(
                            "unreadable hold object {} (damaged or forged): run 'custodian check'",
                            object.name
                        ),
                        time: String::new(),
                        by: String::new(),
                    }
                }
                Err(e) => return Err(e),
            };
            out.insert(id, hold);
        }
        Ok(out)
    }

    /// The one hold rule: `action` (forget, erase, destroy-domain, handover) may destroy none of
    /// `ids` that is held. Every destruction asks here, so a hold outranks all of them alike.
    pub fn refuse_held<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a SnapshotId>,
        action: &str,
    ) -> Result<()> {
        let held = held_among(&self.holds()?, ids);
        if held.is_empty() {
            return Ok(());
        }
        Err(Error::Held {
            action: action.to_string(),
            held: held.join(", "),
        })
    }

    /// Store a destruction record in the repository and a copy under `local_dir` (mode 0700).
    pub fn record_destruction(
        &self,
        record: &DestructionRecord,
        local_dir: &Path,
    ) -> Result<String> {
        let (name, _) = self.put_meta(ObjectKind::Destruction, record)?;
        crate::fsutil::private_dir(local_dir)?;
        // The hash keeps two records of one second apart.
        let file = local_dir.join(format!(
            "{}-{}-{}.json",
            record.time.replace(':', ""),
            record.action,
            &name["destruction/".len()..][..12]
        ));
        let json = serde_json::to_vec_pretty(record).map_err(|e| {
            Error::Internal(format!(
                "internal error: a destruction record could not be serialised: {e}"
            ))
        })?;
        std::fs::write(&file, json).map_err(|e| Error::io(&file, e))?;
        Ok(name)
    }

    /// Every destruction record, oldest first.
    pub fn destruction_records(&self) -> Result<Vec<DestructionRecord>> {
        let mut out = Vec::new();
        for o in self.backend.list("destruction/")? {
            let read = self
                .get_listed(ObjectKind::Destruction, &o)
                .and_then(|bytes| {
                    bytes
                        .map(|b| {
                            self.open_meta::<DestructionRecord>(
                                ObjectKind::Destruction,
                                &o.name,
                                &b,
                            )
                        })
                        .transpose()
                });
            match read {
                Ok(None) => {}
                Ok(Some(record)) => out.push(record),
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %o.name, "skipped a damaged or forged destruction record: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(out)
    }

    /// Forget snapshots: record first, then delete their heads (data stays until a prune).
    pub fn forget(
        &self,
        doomed: &[(SnapshotId, DestroyedSnapshot)],
        local_dir: &Path,
    ) -> Result<DestructionRecord> {
        self.require_current_trust()?;
        self.refuse_held(doomed.iter().map(|(id, _)| id), "forget")?;
        let ids: Vec<SnapshotId> = doomed.iter().map(|(id, _)| *id).collect();
        let objects = self.snapshot_objects(&ids)?;
        self.destroy(
            "forget",
            doomed.iter().map(|(_, d)| d.clone()).collect(),
            objects,
            "Snapshot heads deleted. Their data stays in packs, unreadable through these \
             snapshots, until a prune removes what no snapshot references. Copies the storage \
             provider keeps (versioning, backups, replicas) are outside what custodian can \
             destroy or attest."
                .into(),
            None,
            local_dir,
        )
    }

    /// The `snapshots/` objects of `ids`, with their sizes (for destruction records).
    pub(crate) fn snapshot_objects(&self, ids: &[SnapshotId]) -> Result<Vec<(String, u64)>> {
        let sizes: HashMap<String, u64> = self
            .backend
            .list("snapshots/")?
            .into_iter()
            .map(|o| (o.name, o.size))
            .collect();
        Ok(ids
            .iter()
            .map(|id| {
                let name = format!("snapshots/{id}");
                let size = sizes.get(&name).copied().unwrap_or(0);
                (name, size)
            })
            .collect())
    }

    /// Every destruction: write its record (what, data span, objects and bytes, when, by whom),
    /// then delete `objects`.
    pub(crate) fn destroy(
        &self,
        action: &str,
        snapshots: Vec<DestroyedSnapshot>,
        objects: Vec<(String, u64)>,
        note: String,
        domain: Option<&str>,
        local_dir: &Path,
    ) -> Result<DestructionRecord> {
        let data_from = snapshots.iter().map(|s| &s.time).min().cloned();
        let data_to = snapshots.iter().map(|s| &s.time).max().cloned();
        let record = DestructionRecord {
            version: RECORD_VERSION,
            action: action.into(),
            time: now_text(),
            by: self.opened_by.clone(),
            snapshots,
            data_from,
            data_to,
            objects_deleted: objects.len() as u64,
            bytes_deleted: objects.iter().map(|(_, size)| size).sum(),
            note,
            domain: domain.map(String::from),
        };
        self.record_destruction(&record, local_dir)?;
        for (name, _) in &objects {
            self.backend.delete(name)?;
        }
        Ok(record)
    }
}

/// `ids` that are held, as "short-id (reason)", for messages and dry runs.
pub fn held_among<'a>(
    holds: &HashMap<SnapshotId, Hold>,
    ids: impl IntoIterator<Item = &'a SnapshotId>,
) -> Vec<String> {
    ids.into_iter()
        .filter_map(|id| {
            holds
                .get(id)
                .map(|h| format!("{} ({})", id.short(), h.reason))
        })
        .collect()
}
