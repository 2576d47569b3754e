//! Copying snapshots between two repositories of one key set (local ↔ S3), for migration and
//! off-site mirrors. Objects are copied byte for byte, so ids, encryption and deduplication carry
//! over and neither side needs to read content: the writer credential is enough.
//!
//! Order, as in a backup: key records, sessions and packs first, then an index naming the packs,
//! then snapshot heads; an interrupted copy leaves no snapshot whose data is missing, and the next
//! run skips what arrived. Every copied object is read back from the destination and compared
//! (packs, indexes and heads by their BLAKE3 names, the rest byte for byte).

use crate::backend::{probe, Backend, ErrorKind, ObjectInfo};
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::PackEntry;
use crate::format::refs::{self, RefKey};
use crate::id::{content_hash, PackId, SnapshotId};
use crate::repository::{pack_name, BlobReader, Credential, MasterIndex, Repository, SnapshotInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::{Arc, Mutex};

/// What to copy: every snapshot, or those selected by source and/or id.
#[derive(Default)]
pub struct CopyOptions {
    pub source: Option<String>,
    /// `latest` or id prefixes; empty means every snapshot (of `source`, if given).
    pub snapshots: Vec<String>,
    /// Where an operator's machine pins trust lists (`repository::trust`).
    pub pin_dir: Option<std::path::PathBuf>,
    /// The destination's audit entry, written once it is open, and where this machine keeps
    /// its anchors (the source's entry is the caller's).
    pub audit: Option<(crate::audit::Intent, Option<crate::audit::Local>)>,
}

/// Object count and bytes in one repository.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub objects: u64,
    pub bytes: u64,
}

/// One snapshot's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CopiedSnapshot {
    pub id: String,
    pub source: String,
    pub time: String,
    /// `copied` or `already-present`.
    pub status: &'static str,
    /// Packs the snapshot needs, all checked present and of the right size at the destination.
    pub packs: usize,
}

/// The completeness summary.
#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    pub snapshots: Vec<CopiedSnapshot>,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    /// Needed objects the destination already had.
    pub objects_skipped: u64,
    /// Copied objects read back from the destination and found identical.
    pub objects_verified: u64,
    /// Whole repositories after the copy.
    pub from: Totals,
    pub to: Totals,
}

/// Copy the selected snapshots of `from` into the repository at `to`, creating it there (same key
/// set) if the location is empty.
pub fn copy(
    from: &Repository,
    to: Arc<dyn Backend>,
    credential: &Credential,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let source = from.store_for_mirror();
    let source_config = source.get("config")?;
    let dest_config = match to.get("config") {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if dest_config.as_ref().is_some_and(|c| *c != source_config) {
        return Err(Error::Refused(format!(
            "{} holds another repository (a different key set); copy only mirrors a repository: \
             choose an empty location or the mirror made by an earlier copy.",
            to.location()
        )));
    }
    if dest_config.is_none() {
        probe::at_init(to.as_ref())?;
    }
    // Key records first, so whatever arrives is readable by the same operators.
    let copier = Copier::new(source.clone(), to.clone());
    copier.mirror_folder("keys/")?;
    if dest_config.is_none() {
        copier.copy_objects(&[ObjectInfo {
            name: "config".into(),
            size: source_config.len() as u64,
            modified: None,
        }])?;
    }
    let dest = Repository::open_pinned(to.clone(), credential, opts.pin_dir.clone())?;
    let audited = match &opts.audit {
        Some((intent, local)) => Some(crate::audit::begin(&dest, intent, local.as_ref(), None)?),
        None => None,
    };

    let index = from.load_index()?;
    let selected = select(from, opts)?;
    let present: BTreeSet<SnapshotId> = dest
        .list_ids::<SnapshotId>("snapshots/")?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let reader = BlobReader::new(from, &index);
    let by_key: HashMap<RefKey, PackId> = index
        .entries()
        .map(|(id, loc)| (RefKey::from(&id), index.pack(&loc).id))
        .collect();
    let mut needed: BTreeMap<SnapshotId, BTreeSet<PackId>> = BTreeMap::new();
    for snap in &selected {
        needed.insert(snap.id, packs_of(snap, &reader, &by_key)?);
    }
    let all_packs: BTreeSet<PackId> = needed.values().flatten().copied().collect();

    copier.mirror_folder("sessions/")?;
    let pack_objects: Vec<ObjectInfo> = all_packs
        .iter()
        .map(|id| ObjectInfo {
            name: pack_name(id),
            size: pack_size(&index, id),
            modified: None,
        })
        .collect();
    copier.copy_objects(&pack_objects)?;
    write_dest_index(&dest, &index, &all_packs)?;
    let heads: Vec<ObjectInfo> = selected
        .iter()
        .filter(|s| !present.contains(&s.id))
        .map(|s| ObjectInfo {
            name: format!("snapshots/{}", s.id),
            size: 0,
            modified: None,
        })
        .collect();
    copier.copy_objects(&heads)?;

    // Completeness: every pack of every selected snapshot is at the destination, whole.
    let dest_packs: HashMap<String, u64> = to
        .list("packs/")?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    for snap in &selected {
        let packs = &needed[&snap.id];
        for pack in packs {
            let want = pack_size(&index, pack);
            if dest_packs.get(&pack_name(pack)) != Some(&want) {
                return Err(Error::Damaged(format!(
                    "after copying, pack {pack} of snapshot {} is missing or wrong at {}; run \
                     the copy again",
                    snap.id.short(),
                    to.location()
                )));
            }
        }
        report.snapshots.push(CopiedSnapshot {
            id: snap.id.to_hex(),
            source: snap.head.source.clone(),
            time: snap.head.time.clone(),
            status: if present.contains(&snap.id) {
                "already-present"
            } else {
                "copied"
            },
            packs: packs.len(),
        });
    }
    let done = copier.done.into_inner().map_err(|_| poisoned())?;
    report.objects_copied = done.copied;
    report.bytes_copied = done.bytes;
    report.objects_skipped = done.skipped;
    report.objects_verified = done.verified;
    report.from = totals(from.store_for_mirror().as_ref())?;
    report.to = totals(to.as_ref())?;
    if let Some(begun) = &audited {
        let touched = crate::audit::Touched {
            files: report.objects_copied,
            bytes: report.bytes_copied,
        };
        crate::audit::close(&dest, begun, "ok", Some(touched));
    }
    Ok(report)
}

/// The snapshots the options name, oldest first.
fn select(from: &Repository, opts: &CopyOptions) -> Result<Vec<SnapshotInfo>> {
    let source = opts.source.as_deref();
    if opts.snapshots.is_empty() {
        return Ok(from
            .list_snapshots()?
            .into_iter()
            .filter(|s| source.is_none_or(|want| s.head.source == want))
            .collect());
    }
    let mut chosen = BTreeMap::new();
    for text in &opts.snapshots {
        let snap = from.resolve_snapshot(text, source)?;
        chosen.insert((snap.time, snap.id), snap);
    }
    Ok(chosen.into_values().collect())
}

/// Every pack a snapshot needs: those holding its reference lists and every blob they name.
fn packs_of(
    snap: &SnapshotInfo,
    reader: &BlobReader,
    by_key: &HashMap<RefKey, PackId>,
) -> Result<BTreeSet<PackId>> {
    let mut packs = BTreeSet::new();
    for id in &snap.head.refs {
        packs.insert(reader.index.pack(&reader.locate(id)?).id);
    }
    let lists = reader.read_many(&snap.head.refs)?;
    let what = format!("reference list of snapshot {}", snap.id.short());
    for plain in lists.values() {
        for key in refs::decode(plain, &what)? {
            let pack = by_key.get(&key).ok_or_else(|| {
                Error::Damaged(format!(
                    "snapshot {} references a blob that no index names; run 'custodian check' on \
                     the source repository",
                    snap.id.short()
                ))
            })?;
            packs.insert(*pack);
        }
    }
    Ok(packs)
}

/// Size of an indexed pack (every pack here came from the index).
fn pack_size(index: &MasterIndex, id: &PackId) -> u64 {
    index.pack_info(id).map_or(0, |p| p.size)
}

/// Index at the destination every needed pack it does not index yet, with the source's entries.
fn write_dest_index(
    dest: &Repository,
    index: &MasterIndex,
    packs: &BTreeSet<PackId>,
) -> Result<()> {
    let dest_index = dest.load_index()?;
    let mut entries: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (pack, blobs) in index.blobs_by_pack() {
        if packs.contains(&pack) && !dest_index.has_pack(&pack) {
            entries.insert(
                pack,
                blobs
                    .into_iter()
                    .map(|(id, loc)| PackEntry {
                        id,
                        kind: loc.kind,
                        offset: loc.offset,
                        length: loc.length,
                    })
                    .collect(),
            );
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let new: Vec<IndexPack> = index
        .packs
        .iter()
        .filter_map(|p| {
            entries.remove(&p.id).map(|blobs| IndexPack {
                id: p.id,
                domain: p.domain.to_string(),
                size: p.size,
                blobs,
            })
        })
        .collect();
    dest.write_index(new)?;
    Ok(())
}

fn totals(backend: &dyn Backend) -> Result<Totals> {
    let config = backend.get("config")?;
    let mut t = Totals {
        objects: 1,
        bytes: config.len() as u64,
    };
    for folder in [
        "keys/",
        "sessions/",
        "packs/",
        "index/",
        "snapshots/",
        "probe/",
    ] {
        for o in backend.list(folder)? {
            t.objects += 1;
            t.bytes += o.size;
        }
    }
    Ok(t)
}

#[derive(Default)]
struct Done {
    copied: u64,
    bytes: u64,
    skipped: u64,
    verified: u64,
}

/// Copies objects that the destination lacks, on as many threads as it has connections.
struct Copier {
    from: Arc<dyn Backend>,
    to: Arc<dyn Backend>,
    done: Mutex<Done>,
}

impl Copier {
    fn new(from: Arc<dyn Backend>, to: Arc<dyn Backend>) -> Self {
        Copier {
            from,
            to,
            done: Mutex::default(),
        }
    }

    /// Copy whatever `folder` holds at the source and not at the destination.
    fn mirror_folder(&self, folder: &str) -> Result<()> {
        let objects = self.from.list(folder)?;
        self.copy_objects(&objects)
    }

    fn copy_objects(&self, objects: &[ObjectInfo]) -> Result<()> {
        // One listing per top-level folder tells what the destination has.
        let mut present: BTreeSet<String> = BTreeSet::new();
        for folder in objects
            .iter()
            .filter_map(|o| o.name.split_once('/').map(|(f, _)| format!("{f}/")))
            .collect::<BTreeSet<_>>()
        {
            present.extend(self.to.list(&folder)?.into_iter().map(|o| o.name));
        }
        let todo: Vec<&ObjectInfo> = objects
            .iter()
            .filter(|o| !present.contains(&o.name))
            .collect();
        self.done.lock().map_err(|_| poisoned())?.skipped += (objects.len() - todo.len()) as u64;
        let workers = self.to.connections().max(self.from.connections());
        crate::parallel::for_each(&todo, workers, |o| self.copy_one(&o.name))
    }

    /// Copy one object, check it against its name where the name is its hash, read it back.
    fn copy_one(&self, name: &str) -> Result<()> {
        let bytes = self.from.get(name)?;
        let hashed = name.starts_with("packs/")
            || name.starts_with("index/")
            || name.starts_with("snapshots/");
        if hashed {
            let expected = name.rsplit('/').next().unwrap_or_default();
            // Packs are named by all their bytes; signed objects by their body.
            let body = if name.starts_with("packs/") {
                &bytes[..]
            } else {
                crate::crypto::sign::unverified_body(&bytes)
            };
            if hex::encode(content_hash(body)) != expected {
                return Err(Error::Damaged(format!(
                    "'{name}' in {} does not match its hash; run 'custodian check --read-data' \
                     on the source before copying",
                    self.from.location()
                )));
            }
        }
        if name.starts_with("packs/") {
            self.to.put_immutable(name, &bytes)?;
        } else {
            self.to.put_new(name, &bytes)?;
        }
        let back = self.to.get(name)?;
        if back != bytes {
            return Err(Error::Damaged(format!(
                "'{name}' read back from {} differs from what was written; check the store",
                self.to.location()
            )));
        }
        let mut done = self.done.lock().map_err(|_| poisoned())?;
        done.copied += 1;
        done.bytes += bytes.len() as u64;
        done.verified += 1;
        Ok(())
    }
}

fn poisoned() -> Error {
    Error::Internal("internal error: a copy thread stopped unexpectedly".into())
}
