//! What a prune run does, decided by a pure function of the packs, the blobs snapshots reference,
//! the markers and the clock, so the rules are table-tested apart from any storage.
//!
//! One run does two things. It *finishes* every marker whose grace period has passed: live blobs
//! in its packs that have no other safe home are copied out, then the packs are deleted. And it
//! *marks* packs older than the grace period that are unused (no referenced blob) or worth
//! repacking (live blobs are copied to new packs first, so later backups deduplicate against
//! the copies).

use crate::format::refs::RefKey;
use crate::format::PackEntry;
use crate::id::PackId;
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

/// One pack as prune sees it.
#[derive(Clone, Debug)]
pub struct PackFacts {
    pub id: PackId,
    pub domain: String,
    pub size: u64,
    /// Named by an index object. Unindexed packs are leftovers of interrupted runs (or uploads
    /// in flight, which are young).
    pub indexed: bool,
    pub modified: Option<SystemTime>,
    pub blobs: Vec<PackEntry>,
}

/// One marker as prune sees it.
#[derive(Clone, Debug)]
pub struct MarkerFacts {
    pub name: String,
    pub written: SystemTime,
    pub packs: Vec<PackId>,
}

/// The knobs.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// How long a pack must be old before it is marked, and a marker before it is finished.
    pub grace: Duration,
    /// Unused bytes tolerated in partly used packs, as a fraction of the bytes kept (restic's
    /// `--max-unused`): repacking copies data, so a little waste is cheaper than churn.
    pub max_unused: f64,
}

/// Live blobs to copy out of one pack.
#[derive(Clone, Debug)]
pub struct CopyJob {
    pub pack: PackId,
    pub domain: String,
    pub blobs: Vec<PackEntry>,
}

/// The decisions of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Markers whose grace period has passed: this run finishes them.
    pub finish_markers: Vec<String>,
    /// Every pack those markers name (present or already gone): dropped from the index.
    #[serde(skip)]
    pub finished_packs: BTreeSet<PackId>,
    /// Present packs deleted by this run, and their bytes.
    pub delete: Vec<PackId>,
    pub delete_bytes: u64,
    /// Packs marked now because no snapshot needs any blob in them.
    pub mark_unused: Vec<PackId>,
    pub mark_unused_bytes: u64,
    /// Partly used packs marked now after their live blobs are copied to new packs.
    pub mark_repack: Vec<PackId>,
    pub mark_repack_bytes: u64,
    /// Copies made before deleting or marking.
    #[serde(skip)]
    pub copies: Vec<CopyJob>,
    pub copy_blobs: u64,
    pub copy_bytes: u64,
    /// Markers still in their grace period, and packs too young to mark.
    pub waiting_markers: usize,
    pub young_packs: usize,
    /// Packs (and bytes) marked by earlier runs or by this one that wait for their grace
    /// period, and when the last of them may be deleted (RFC 3339): what the operator is told
    /// to come back for.
    pub waiting_packs: u64,
    pub waiting_bytes: u64,
    pub eligible_at: Option<String>,
    /// Unused bytes left in partly used packs after this run (within `max_unused`).
    pub unused_bytes_left: u64,
}

impl Plan {
    /// Every pack to name in a new marker.
    pub fn to_mark(&self) -> Vec<PackId> {
        self.mark_unused
            .iter()
            .chain(&self.mark_repack)
            .copied()
            .collect()
    }
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

/// Decide one run. `referenced` is every blob some snapshot needs.
pub fn plan(
    packs: &[PackFacts],
    referenced: &HashSet<RefKey>,
    markers: &[MarkerFacts],
    now: SystemTime,
    rules: Rules,
) -> Plan {
    let mut plan = Plan::default();
    let live = |e: &PackEntry| referenced.contains(&RefKey::from(&e.id));
    let mut marked: HashSet<PackId> = HashSet::new();
    let mut waiting: HashSet<PackId> = HashSet::new();
    let mut eligible: Option<SystemTime> = None;
    for m in markers {
        marked.extend(m.packs.iter().copied());
        if age(now, m.written) >= rules.grace {
            plan.finish_markers.push(m.name.clone());
            plan.finished_packs.extend(m.packs.iter().copied());
        } else {
            plan.waiting_markers += 1;
            waiting.extend(m.packs.iter().copied());
            eligible = eligible.max(m.written.checked_add(rules.grace));
        }
    }
    // A pack's age comes from the store; one without a time is never old enough to mark.
    let old = |p: &PackFacts| {
        rules.grace.is_zero() || p.modified.is_some_and(|m| age(now, m) >= rules.grace)
    };

    let mut partly_used = Vec::new();
    let mut kept_bytes = 0u64;
    for p in packs {
        if plan.finished_packs.contains(&p.id) {
            plan.delete.push(p.id);
            plan.delete_bytes += p.size;
            continue;
        }
        if marked.contains(&p.id) {
            continue;
        }
        if !old(p) {
            // Indexed and wholly unused: the data of forgotten snapshots, marked now so one
            // grace period suffices. Safe at any age: a running backup that reuses one of its
            // blobs, or wrote the pack, rescues the blob at its commit check (FORMAT.md,
            // "Prune"). Leftovers (perhaps uploads in flight) and repacks wait until old.
            if p.indexed && !p.blobs.iter().any(&live) {
                plan.mark_unused.push(p.id);
                plan.mark_unused_bytes += p.size;
            } else {
                plan.young_packs += 1;
                kept_bytes += p.size;
            }
            continue;
        }
        let unused_bytes: u64 = p
            .blobs
            .iter()
            .filter(|e| !live(e))
            .map(|e| u64::from(e.length))
            .sum();
        if !p.blobs.iter().any(&live) {
            plan.mark_unused.push(p.id);
            plan.mark_unused_bytes += p.size;
        } else if !p.indexed {
            // A leftover with live blobs: readers cannot find them here, so keep copies where
            // they can and retire the leftover.
            plan.mark_repack.push(p.id);
            plan.mark_repack_bytes += p.size;
        } else {
            kept_bytes += p.size;
            if unused_bytes > 0 {
                partly_used.push((p, unused_bytes));
            }
        }
    }

    // Repack the most wasteful packs first until what is left is within the tolerance.
    partly_used.sort_by(|(a, ua), (b, ub)| {
        let ra = *ua as f64 / a.size.max(1) as f64;
        let rb = *ub as f64 / b.size.max(1) as f64;
        rb.total_cmp(&ra).then(a.id.cmp(&b.id))
    });
    let mut unused_left: u64 = partly_used.iter().map(|(_, u)| u).sum();
    for (p, unused) in partly_used {
        if unused_left as f64 <= rules.max_unused * kept_bytes as f64 {
            break;
        }
        plan.mark_repack.push(p.id);
        plan.mark_repack_bytes += p.size;
        unused_left -= unused;
        kept_bytes -= p.size;
    }
    plan.unused_bytes_left = unused_left;

    for p in packs.iter().filter(|p| waiting.contains(&p.id)) {
        plan.waiting_packs += 1;
        plan.waiting_bytes += p.size;
    }
    let marking = plan.to_mark().len() as u64;
    if marking > 0 {
        plan.waiting_packs += marking;
        plan.waiting_bytes += plan.mark_unused_bytes + plan.mark_repack_bytes;
        eligible = eligible.max(now.checked_add(rules.grace));
    }
    plan.eligible_at = eligible.map(crate::when::rfc3339);

    // Live blobs that stay reachable without copying: in an indexed pack nobody deletes. Index
    // objects are signed, and a leftover is adopted only when its signed header is bound to its
    // own bytes, so the storage cannot fake such a copy. A writer credential could (it signs
    // index objects), but one that may prune may also delete packs outright: least-privilege
    // storage answers that, not this rule (FORMAT.md, "Threat model").
    let leaving: HashSet<PackId> = marked
        .iter()
        .chain(&plan.mark_unused)
        .chain(&plan.mark_repack)
        .copied()
        .collect();
    let mut safe: HashSet<RefKey> = packs
        .iter()
        .filter(|p| p.indexed && !leaving.contains(&p.id))
        .flat_map(|p| {
            p.blobs
                .iter()
                .filter(|e| live(e))
                .map(|e| RefKey::from(&e.id))
        })
        .collect();
    let copy_from: HashSet<PackId> = plan
        .delete
        .iter()
        .chain(&plan.mark_repack)
        .copied()
        .collect();
    for p in packs.iter().filter(|p| copy_from.contains(&p.id)) {
        let blobs: Vec<PackEntry> = p
            .blobs
            .iter()
            .filter(|e| live(e) && safe.insert(RefKey::from(&e.id)))
            .cloned()
            .collect();
        if !blobs.is_empty() {
            plan.copy_blobs += blobs.len() as u64;
            plan.copy_bytes += blobs.iter().map(|e| u64::from(e.length)).sum::<u64>();
            plan.copies.push(CopyJob {
                pack: p.id,
                domain: p.domain.clone(),
                blobs,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BlobKind;
    use crate::id::BlobId;

    const HOUR: Duration = Duration::from_secs(3600);

    fn blob(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    fn pack(n: u8, blobs: &[u8], age_hours: u64, now: SystemTime) -> PackFacts {
        PackFacts {
            id: PackId([n; 32]),
            domain: "d".into(),
            size: 100 * blobs.len() as u64 + 50,
            indexed: true,
            modified: Some(now - HOUR * age_hours as u32),
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, &b)| PackEntry {
                    id: blob(b),
                    kind: BlobKind::Data,
                    offset: 100 * i as u64,
                    length: 100,
                })
                .collect(),
        }
    }

    fn refs(ids: &[u8]) -> HashSet<RefKey> {
        ids.iter().map(|&b| RefKey::from(&blob(b))).collect()
    }

    fn rules(max_unused: f64) -> Rules {
        Rules {
            grace: HOUR * 6,
            max_unused,
        }
    }

    fn marker(name: &str, packs: &[u8], age_hours: u64, now: SystemTime) -> MarkerFacts {
        MarkerFacts {
            name: name.into(),
            written: now - HOUR * age_hours as u32,
            packs: packs.iter().map(|&n| PackId([n; 32])).collect(),
        }
    }

    #[test]
    fn unused_old_packs_are_marked_young_used_ones_left_alone() {
        let now = crate::clock::now();
        let packs = [
            pack(1, &[1, 2], 24, now),
            pack(2, &[3], 24, now),
            pack(3, &[1], 1, now),
        ];
        let p = plan(&packs, &refs(&[1, 2]), &[], now, rules(0.05));
        assert_eq!(p.mark_unused, vec![PackId([2; 32])]);
        assert_eq!(p.young_packs, 1, "pack 3 is in use, and young");
        assert_eq!(p.waiting_packs, 1);
        let at = humantime::parse_rfc3339(p.eligible_at.as_deref().unwrap()).unwrap();
        assert!(
            at > now + HOUR * 5 && at <= now + HOUR * 6,
            "one grace period from now"
        );
    }

    #[test]
    fn young_unused_packs_are_marked_at_once_but_young_leftovers_and_repacks_wait() {
        let now = crate::clock::now();
        let mut leftover = pack(4, &[6], 1, now);
        leftover.indexed = false;
        let packs = [
            pack(1, &[1], 1, now),
            pack(2, &[2, 3], 1, now),
            pack(3, &[4], 1, now),
            leftover,
        ];
        let p = plan(&packs, &refs(&[1, 2]), &[], now, rules(0.0));
        assert_eq!(
            p.mark_unused,
            vec![PackId([3; 32])],
            "forgotten data goes now"
        );
        assert!(
            p.mark_repack.is_empty(),
            "a young partly used pack is not repacked"
        );
        assert_eq!(p.young_packs, 3);
        assert!(p.delete.is_empty() && p.copies.is_empty() && p.mark_repack.is_empty());
    }

    #[test]
    fn markers_finish_only_after_the_grace_period() {
        let now = crate::clock::now();
        let packs = [pack(1, &[1], 24, now), pack(2, &[2], 24, now)];
        let markers = [
            marker("prune/old", &[1], 7, now),
            marker("prune/new", &[2], 5, now),
        ];
        let p = plan(&packs, &refs(&[]), &markers, now, rules(0.05));
        assert_eq!(p.finish_markers, vec!["prune/old".to_string()]);
        assert_eq!(p.delete, vec![PackId([1; 32])]);
        assert_eq!(p.waiting_markers, 1);
        assert!(
            p.mark_unused.is_empty(),
            "marked packs are not marked twice"
        );
    }

    #[test]
    fn a_live_blob_in_a_finished_pack_is_copied_unless_safe_elsewhere() {
        let now = crate::clock::now();
        // Blob 1 became referenced again during the grace period (a backup that started before
        // the marker); blob 2 also lives in pack 2, which stays.
        let packs = [pack(1, &[1, 2, 3], 24, now), pack(2, &[2], 24, now)];
        let markers = [marker("prune/m", &[1], 7, now)];
        let p = plan(&packs, &refs(&[1, 2]), &markers, now, rules(0.05));
        assert_eq!(p.delete, vec![PackId([1; 32])]);
        assert_eq!(p.copies.len(), 1);
        let copied: Vec<BlobId> = p.copies[0].blobs.iter().map(|e| e.id).collect();
        assert_eq!(copied, vec![blob(1)]);
    }

    #[test]
    fn partly_used_packs_are_repacked_worst_first_down_to_max_unused() {
        let now = crate::clock::now();
        let packs = [
            pack(1, &[1, 2, 3, 4], 24, now), // 1 of 4 unused
            pack(2, &[5, 6, 7, 8], 24, now), // 3 of 4 unused
            pack(3, &[9, 10, 11, 12], 24, now),
        ];
        let live = refs(&[1, 2, 3, 5, 9, 10, 11, 12]);
        let p = plan(&packs, &live, &[], now, rules(0.15));
        assert_eq!(p.mark_repack, vec![PackId([2; 32])]);
        assert_eq!(p.unused_bytes_left, 100);
        let copied: Vec<BlobId> = p
            .copies
            .iter()
            .flat_map(|c| c.blobs.iter().map(|e| e.id))
            .collect();
        assert_eq!(copied, vec![blob(5)]);

        let all = plan(&packs, &live, &[], now, rules(0.0));
        assert_eq!(
            all.mark_repack.len(),
            2,
            "max-unused 0 repacks every partly used pack"
        );
        assert_eq!(all.unused_bytes_left, 0);
    }

    #[test]
    fn grace_zero_marks_and_finishes_everything_old_or_new() {
        let now = crate::clock::now();
        let packs = [pack(1, &[1], 0, now), pack(2, &[2], 0, now)];
        let markers = [marker("prune/m", &[2], 0, now)];
        let p = plan(
            &packs,
            &refs(&[]),
            &markers,
            now,
            Rules {
                grace: Duration::ZERO,
                max_unused: 0.0,
            },
        );
        assert_eq!(p.mark_unused, vec![PackId([1; 32])]);
        assert_eq!(p.delete, vec![PackId([2; 32])]);
    }

    #[test]
    fn leftovers_with_live_blobs_are_retired_after_copying() {
        let now = crate::clock::now();
        let mut leftover = pack(1, &[1, 2], 24, now);
        leftover.indexed = false;
        let p = plan(&[leftover], &refs(&[1]), &[], now, rules(0.5));
        assert_eq!(p.mark_repack, vec![PackId([1; 32])]);
        assert_eq!(p.copy_blobs, 1);
    }
}
