//! Verification. Structure (writer credential is enough): every index entry points into an
//! existing pack of the right size whose header agrees, every snapshot's reference list is
//! readable and fully indexed. `--read-data` (operator): download packs, check each pack's hash,
//! and open and verify every blob in it.

use crate::error::{Error, Result};
use crate::format::refs;
use crate::format::snapshot::SnapshotHead;
use crate::format::ObjectKind;
use crate::id::{content_hash, PackId, SnapshotId};
use crate::repository::{BlobReader, MasterIndex, Repository};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which packs `--read-data` downloads.
#[derive(Clone, Copy, Debug)]
pub enum Subset {
    All,
    /// A random share, e.g. 10%.
    Percent(f64),
    /// Part n of m (1-based), for spreading a full read over several runs.
    Part(u32, u32),
}

impl Subset {
    /// Parse `10%` or `2/5`.
    pub fn parse(text: &str) -> Result<Subset> {
        let bad = || {
            Error::Usage(format!(
                "--read-data-subset '{text}' is not a percentage (10%) or a part (2/5)"
            ))
        };
        if let Some(p) = text.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            return if v > 0.0 && v <= 100.0 {
                Ok(Subset::Percent(v))
            } else {
                Err(bad())
            };
        }
        let (n, m) = text.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Part(n, m))
    }

    fn select(&self, packs: &[PackId]) -> Vec<PackId> {
        match *self {
            Subset::All => packs.to_vec(),
            Subset::Part(n, m) => packs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % m == n - 1)
                .map(|(_, p)| *p)
                .collect(),
            Subset::Percent(p) => {
                use rand::seq::SliceRandom;
                let count = ((packs.len() as f64 * p / 100.0).ceil() as usize).min(packs.len());
                packs
                    .choose_multiple(&mut rand::thread_rng(), count)
                    .copied()
                    .collect()
            }
        }
    }
}

/// What check found. `errors` empty means the repository is sound.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub packs: u64,
    pub blobs: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Packs that were not there when read: pruned meanwhile, or lost (decided at the end).
    #[serde(skip)]
    gone: Vec<PackId>,
}

/// Live counters for progress.
#[derive(Default)]
pub struct CheckProgress {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

/// Run the checks; `read_data` needs an operator identity.
pub fn check(
    repo: &Repository,
    read_data: Option<Subset>,
    progress: &CheckProgress,
) -> Result<CheckReport> {
    if read_data.is_some() {
        repo.require_operator("check --read-data")?;
    }
    let first = check_once(repo, read_data, progress, true)?;
    // Packs that vanished: if a prune finished meanwhile (they left the index too), everything
    // read through the old index is stale, so the check runs once more on the new one.
    let pruned_meanwhile = !first.gone.is_empty() && {
        let now = repo.load_index()?;
        first.gone.iter().any(|p| !now.has_pack(p))
    };
    if pruned_meanwhile {
        tracing::info!("a prune finished while check ran; checking again with the new index");
        let mut again = check_once(repo, read_data, progress, false)?;
        again.warnings.push(format!(
            "{} pack(s) were pruned while check ran (their live blobs were copied first); \
             checked again with the new index",
            first.gone.len()
        ));
        judge_gone(repo, &mut again)?;
        return Ok(again);
    }
    let mut report = first;
    judge_gone(repo, &mut report)?;
    Ok(report)
}

/// One pass of the checks over the index as loaded now.
fn check_once(
    repo: &Repository,
    read_data: Option<Subset>,
    progress: &CheckProgress,
    first: bool,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    report.warnings.extend(repo.half_made_domains()?);
    // Forged, altered, renamed or unsigned objects, wherever they are.
    for (name, why) in repo.verify_objects()? {
        report.errors.push(format!("{name}: {why}"));
    }
    let index = repo.load_index()?;
    if first {
        crate::failpoint::pause("check-indexed", 0);
    }
    let stored: BTreeMap<PackId, u64> = repo
        .list_ids::<PackId>("packs/")?
        .into_iter()
        .map(|(id, o)| (id, o.size))
        .collect();
    report.packs = index.packs.len() as u64;
    report.blobs = index.blob_count() as u64;
    check_packs(repo, &index, &stored, &mut report, progress);
    let reader = BlobReader::new(repo, &index);
    check_snapshots(repo, &reader, &mut report)?;
    if let Some(subset) = read_data {
        // A pack is read whole: one larger than any writer makes is reported, not fetched.
        let cap = 2 * repo.config.pack_target + 2 * u64::from(repo.config.chunker.max) + (64 << 20);
        for (id, size) in stored.iter().filter(|(_, s)| **s > cap) {
            report.errors.push(format!(
                "pack {id} is {size} bytes, larger than any pack custodian writes"
            ));
        }
        let ids: Vec<PackId> = index
            .packs
            .iter()
            .map(|p| p.id)
            .filter(|id| stored.get(id).is_some_and(|s| *s <= cap))
            .collect();
        let chosen = subset.select(&ids);
        progress.total.store(chosen.len() as u64, Ordering::Relaxed);
        progress.done.store(0, Ordering::Relaxed);
        read_packs(&reader, &chosen, &mut report, progress);
    }
    Ok(report)
}

fn check_packs(
    repo: &Repository,
    index: &MasterIndex,
    stored: &BTreeMap<PackId, u64>,
    report: &mut CheckReport,
    progress: &CheckProgress,
) {
    let mut in_index = index.blobs_by_pack();
    progress
        .total
        .store(index.packs.len() as u64, Ordering::Relaxed);
    for pack in &index.packs {
        progress.done.fetch_add(1, Ordering::Relaxed);
        let Some(&size) = stored.get(&pack.id) else {
            // Missing, or pruned since the index was read: decided at the end (judge_gone).
            report.gone.push(pack.id);
            continue;
        };
        if size != pack.size {
            report.errors.push(format!(
                "pack {} is {size} bytes in storage but {} in the index (truncated or replaced)",
                pack.id, pack.size
            ));
            continue;
        }
        match repo.read_pack_header(&pack.id, size) {
            Ok(header) => {
                let listed: Vec<_> = header
                    .blobs
                    .iter()
                    .map(|b| (b.id, b.offset, b.length, b.kind))
                    .collect();
                let indexed = in_index.remove(&pack.id).unwrap_or_default();
                if indexed
                    .iter()
                    .any(|(id, l)| !listed.contains(&(*id, l.offset, l.length, l.kind)))
                {
                    report.errors.push(format!(
                        "pack {}: its header disagrees with the index",
                        pack.id
                    ));
                }
            }
            Err(e) => report
                .errors
                .push(format!("pack {}: header unreadable: {e}", pack.id)),
        }
    }
    let orphans = stored.keys().filter(|id| !index.has_pack(id)).count();
    if orphans > 0 {
        report.warnings.push(format!("{orphans} pack(s) are in no index (left by an interrupted backup); the next backup reuses them"));
    }
}

fn check_snapshots(repo: &Repository, reader: &BlobReader, report: &mut CheckReport) -> Result<()> {
    // Reference lists name blobs by 16-byte keys.
    let indexed: std::collections::HashSet<refs::RefKey> = reader
        .index
        .blob_ids()
        .map(|id| refs::RefKey::from(&id))
        .collect();
    for (id, object) in repo.list_ids::<SnapshotId>("snapshots/")? {
        report.snapshots += 1;
        let head: SnapshotHead = match repo.get_meta(ObjectKind::Snapshot, &object.name) {
            Ok(h) => h,
            Err(e) => {
                report.errors.push(format!("snapshot {id}: {e}"));
                continue;
            }
        };
        if let Err(reason) = head.root.validate_fields().and_then(|()| {
            match (head.root.kind, head.root.name.0.is_empty()) {
                (crate::format::tree::NodeKind::Dir, true) => Ok(()),
                _ => head.root.name.check_component().map_err(String::from),
            }
        }) {
            report.errors.push(format!(
                "snapshot {id}: its root entry {reason}; restore refuses it"
            ));
        }
        let mut missing = 0usize;
        let mut has_root = head.root.subtree.is_none();
        let root_key = head.root.subtree.as_ref().map(refs::RefKey::from);
        // One batched read per snapshot; if anything in it is damaged, read one by one so each
        // error names its blob.
        let batch = reader.read_many(&head.refs).ok();
        for refs_id in &head.refs {
            let plain = match batch.as_ref().and_then(|b| b.get(refs_id)) {
                Some(plain) => Ok(plain.clone()),
                None => reader.read(refs_id),
            };
            let ids = plain.and_then(|plain| {
                Ok(refs::decode(
                    &plain,
                    &format!("reference list of snapshot {}", id.short()),
                )?)
            });
            match ids {
                Ok(ids) => {
                    missing += ids.iter().filter(|k| !indexed.contains(k)).count();
                    has_root |= root_key.is_some_and(|t| ids.contains(&t));
                }
                Err(e) => report.errors.push(format!("snapshot {id}: {e}")),
            }
        }
        if missing > 0 {
            report.errors.push(format!("snapshot {id}: {missing} referenced blob(s) are in no index; it cannot be fully restored"));
        }
        if !has_root {
            report.errors.push(format!(
                "snapshot {id}: its root tree is not in its reference list"
            ));
        }
    }
    Ok(())
}

/// Download and verify `packs`, one worker per core; findings are merged into `report`.
fn read_packs(
    reader: &BlobReader,
    packs: &[PackId],
    report: &mut CheckReport,
    progress: &CheckProgress,
) {
    let blobs_by_pack = reader.index.blobs_by_pack();
    let merged = std::sync::Mutex::new(CheckReport::default());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(reader.repo.connections());
    // A damaged pack is a finding, not a failure: every pack is read.
    let read = crate::parallel::for_each(packs, workers, |pack| {
        let blobs = blobs_by_pack
            .get(pack)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut local = CheckReport::default();
        verify_pack(reader, pack, blobs, &mut local);
        progress.done.fetch_add(1, Ordering::Relaxed);
        let mut m = merged.lock().map_err(|_| {
            crate::error::Error::Internal("internal error: a check worker panicked".into())
        })?;
        m.packs_read += local.packs_read;
        m.bytes_read += local.bytes_read;
        m.errors.append(&mut local.errors);
        m.gone.append(&mut local.gone);
        Ok(())
    });
    if let Err(e) = read {
        report.errors.push(e.to_string());
    }
    if let Ok(m) = merged.into_inner() {
        report.packs_read += m.packs_read;
        report.bytes_read += m.bytes_read;
        report.errors.extend(m.errors);
        report.gone.extend(m.gone);
    }
}

/// Packs that vanished while they were read: a prune that finished meanwhile deletes packs only
/// after copying what snapshots need, and drops them from the index; one the index still names
/// is lost.
fn judge_gone(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    if report.gone.is_empty() {
        return Ok(());
    }
    let now = repo.load_index()?;
    let mut gone = std::mem::take(&mut report.gone);
    gone.sort_unstable();
    gone.dedup();
    for pack in gone {
        if now.has_pack(&pack) {
            report.errors.push(format!(
                "pack {pack} is named by the index but missing from storage"
            ));
        } else {
            report.warnings.push(format!(
                "pack {pack} was pruned while check ran (its live blobs were copied first)"
            ));
        }
    }
    Ok(())
}

/// Check one pack's hash and open every blob in it.
fn verify_pack(
    reader: &BlobReader,
    pack: &PackId,
    blobs: &[(crate::id::BlobId, crate::repository::Location)],
    report: &mut CheckReport,
) {
    let bytes = match reader.repo.get_pack(pack) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            report.gone.push(*pack);
            return;
        }
        Err(e) => {
            report.errors.push(format!("pack {pack}: {e}"));
            return;
        }
    };
    report.packs_read += 1;
    report.bytes_read += bytes.len() as u64;
    if content_hash(&bytes) != pack.0 {
        report.errors.push(format!(
            "pack {pack}: its bytes do not match its name (damaged in storage)"
        ));
    }
    for (id, loc) in blobs {
        let end = loc.offset as usize + loc.length as usize;
        let result = bytes
            .get(loc.offset as usize..end)
            .ok_or_else(|| Error::Damaged("blob lies outside the pack".into()))
            .and_then(|f| reader.open(id, loc, f))
            .and_then(|plain| match loc.kind {
                // A listing restore would refuse is damage, even if its bytes authenticate.
                crate::format::BlobKind::Tree => crate::repository::validate_tree_blob(id, &plain),
                _ => Ok(()),
            });
        if let Err(e) = result {
            report.errors.push(format!("pack {pack}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_select() {
        assert!(matches!(Subset::parse("10%").unwrap(), Subset::Percent(p) if p == 10.0));
        assert!(matches!(Subset::parse("2/5").unwrap(), Subset::Part(2, 5)));
        for bad in ["0%", "101%", "x", "0/3", "4/3"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
        let packs: Vec<PackId> = (0..10).map(|_| PackId::random()).collect();
        assert_eq!(Subset::Percent(10.0).select(&packs).len(), 1);
        assert_eq!(Subset::Part(1, 3).select(&packs).len(), 4);
        assert_eq!(Subset::All.select(&packs).len(), 10);
    }
}
