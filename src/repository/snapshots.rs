//! Writing, listing and naming snapshots. A snapshot head is written last in a backup: once it
//! exists, everything it references is already durable and indexed.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::snapshot::SnapshotHead;
use crate::format::ObjectKind;
use crate::id::SnapshotId;
use std::collections::HashMap;
use std::time::SystemTime;

/// A snapshot with its parsed time.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub head: SnapshotHead,
    pub time: SystemTime,
    /// Who signed the head (format 2): "writer NAME (ID)" or "operator KEY".
    pub writer: Option<String>,
}

impl Repository {
    /// [`Repository::get_listed`] for a scan: an object too large for its kind is noted in
    /// `scan` as damaged (`None`), like one that vanished since the listing.
    pub(super) fn fetch_for_scan<T>(
        &self,
        kind: ObjectKind,
        object: &crate::backend::ObjectInfo,
        scan: &mut Scanned<T>,
    ) -> Result<Option<Vec<u8>>> {
        match self.get_listed(kind, object) {
            Err(e) if e.is_damage() => {
                scan.damaged.push((object.name.clone(), e.to_string()));
                Ok(None)
            }
            other => other,
        }
    }
}

impl SnapshotInfo {
    /// How many listing entries a walk of this snapshot may take: twice its own counts of files
    /// and directories (symlinks and FIFOs are not counted there), and at least a million. A
    /// walk beyond it means listings that repeat subtrees to describe more than was backed up.
    pub fn walk_allowance(&self) -> u64 {
        (2 * (self.head.stats.files + self.head.stats.dirs)).max(1_000_000)
    }
}

/// Objects read from one folder: those that opened, and those that did not (name, reason).
#[derive(Debug)]
pub struct Scanned<T> {
    pub good: Vec<T>,
    pub damaged: Vec<(String, String)>,
}

impl<T> Default for Scanned<T> {
    fn default() -> Self {
        Scanned {
            good: Vec::new(),
            damaged: Vec::new(),
        }
    }
}

impl<T> Scanned<T> {
    /// The good ones, warning about each damaged one by name.
    pub fn lenient(self, what: &str) -> Vec<T> {
        warn_damaged(&self.damaged, what);
        self.good
    }

    /// The good ones, or an error naming every damaged one.
    pub fn strict(self) -> Result<Vec<T>> {
        if self.damaged.is_empty() {
            return Ok(self.good);
        }
        let names: Vec<&str> = self.damaged.iter().map(|(n, _)| n.as_str()).collect();
        Err(Error::Damaged(format!(
            "{} cannot be read ({}), so this operation, which must see every one, stopped before \
             changing anything. Run 'custodian check' and remove or repair the named objects.",
            names.join(", "),
            self.damaged[0].1
        )))
    }
}

/// Warn about each damaged object (name, reason) a lenient reader skipped.
pub(super) fn warn_damaged(damaged: &[(String, String)], what: &str) {
    for (name, reason) in damaged {
        tracing::warn!(object = %name, "skipped a damaged or forged {what}: {reason}");
    }
}

/// How a user names a snapshot.
pub enum SnapshotSelector<'a> {
    /// The newest of those the filter lets through.
    Latest(Filter<'a>),
    /// A unique prefix of the id.
    Prefix(&'a str),
}

/// Which snapshots a listing, `forget` or `latest` looks at (restic's --host and --tag):
/// all of `tags` must be on a snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter<'a> {
    pub source: Option<&'a str>,
    pub host: Option<&'a str>,
    pub tags: &'a [String],
}

impl Filter<'_> {
    /// Whether `s` passes.
    pub fn matches(&self, s: &SnapshotInfo) -> bool {
        self.source.is_none_or(|w| s.head.source == w)
            && self.host.is_none_or(|w| s.head.host == w)
            && self.tags.iter().all(|t| s.head.tags.contains(t))
    }

    /// The filter in words, for "no snapshot matches".
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.source {
            parts.push(format!("source {s}"));
        }
        if let Some(h) = self.host {
            parts.push(format!("host {h}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", self.tags.join(",")));
        }
        parts.join(", ")
    }
}

impl<'a> SnapshotSelector<'a> {
    /// `latest` or an id prefix.
    pub fn parse(text: &'a str, source: Option<&'a str>) -> Self {
        Self::parse_filtered(
            text,
            Filter {
                source,
                ..Default::default()
            },
        )
    }

    /// `latest` (of what `filter` lets through) or an id prefix.
    pub fn parse_filtered(text: &'a str, filter: Filter<'a>) -> Self {
        if text == "latest" {
            SnapshotSelector::Latest(filter)
        } else {
            SnapshotSelector::Prefix(text)
        }
    }
}

impl Repository {
    /// Commit a snapshot: the last write of a backup.
    pub fn write_snapshot(&self, head: &SnapshotHead) -> Result<SnapshotId> {
        self.require_current_trust()?;
        let (name, _) = self.put_meta(ObjectKind::Snapshot, head)?;
        name["snapshots/".len()..]
            .parse()
            .map_err(|_| Error::Internal(format!("internal error: bad snapshot name {name}")))
    }

    /// Every readable snapshot, oldest first, and the heads that could not be read (damaged or
    /// forged), by name. Errors reaching the store still fail the whole listing.
    pub fn scan_snapshots(&self) -> Result<Scanned<SnapshotInfo>> {
        let mut out = Scanned::default();
        for (_, object) in self.list_ids::<SnapshotId>("snapshots/")? {
            // None: forgotten between the listing and this read.
            let Some(bytes) = self.fetch_for_scan(ObjectKind::Snapshot, &object, &mut out)? else {
                continue;
            };
            match self.read_head(&object.name, &bytes) {
                Ok(info) => out.good.push(info),
                Err(e) if e.is_damage() => out.damaged.push((object.name, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        // Oldest first in lineage order: a snapshot never sorts before its parent, whatever
        // its clock said, so "latest", the next backup's parent and retention agree.
        let keys = lineage_times(&out.good.iter().collect::<Vec<_>>());
        let mut keyed: Vec<_> = keys
            .into_iter()
            .zip(std::mem::take(&mut out.good))
            .collect();
        keyed.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then(a.id.cmp(&b.id)));
        out.good = keyed.into_iter().map(|(_, s)| s).collect();
        Ok(out)
    }

    /// Every readable snapshot, oldest first; a damaged or forged head is skipped with a
    /// warning naming it, so one bad object cannot hide the good ones.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(self.scan_snapshots()?.lenient("snapshot"))
    }

    /// Every snapshot, failing on one that cannot be read: for work that must see them all
    /// (prune would otherwise free the data of a snapshot it could not read).
    pub fn list_snapshots_strict(&self) -> Result<Vec<SnapshotInfo>> {
        self.scan_snapshots()?.strict()
    }

    fn read_head(&self, name: &str, bytes: &[u8]) -> Result<SnapshotInfo> {
        let id: SnapshotId = name
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Damaged(format!("{name} is not a snapshot name")))?;
        let (head, writer): (SnapshotHead, _) =
            self.open_meta_signed(ObjectKind::Snapshot, name, bytes)?;
        let time = humantime::parse_rfc3339_weak(&head.time).map_err(|e| {
            crate::error::FormatError::Malformed {
                what: format!("snapshot {}", id.short()),
                reason: format!("bad time: {e}"),
            }
        })?;
        Ok(SnapshotInfo {
            id,
            head,
            time,
            writer,
        })
    }

    /// Resolve a snapshot as users type it: `latest` (of `source`, if given) or an id prefix.
    pub fn resolve_snapshot(&self, text: &str, source: Option<&str>) -> Result<SnapshotInfo> {
        self.find_snapshot(&SnapshotSelector::parse(text, source))
    }

    /// Resolve what the user typed to exactly one snapshot.
    pub fn find_snapshot(&self, selector: &SnapshotSelector) -> Result<SnapshotInfo> {
        let scan = self.scan_snapshots()?;
        if let SnapshotSelector::Prefix(prefix) = selector {
            // Asked for by id: say why a head that exists cannot be used.
            let wanted = prefix.to_ascii_lowercase();
            let usable = scan.good.iter().any(|s| s.id.to_hex().starts_with(&wanted));
            let bad = scan.damaged.iter().find(|(n, _)| {
                !wanted.is_empty()
                    && n.strip_prefix("snapshots/")
                        .is_some_and(|h| h.starts_with(&wanted))
            });
            if let (false, Some((name, reason))) = (usable, bad) {
                return Err(Error::Damaged(format!("{name} cannot be used: {reason}")));
            }
        }
        let all = scan.lenient("snapshot");
        match selector {
            SnapshotSelector::Latest(filter) => {
                let sources: std::collections::BTreeSet<&str> =
                    all.iter().map(|s| s.head.source.as_str()).collect();
                if filter.source.is_none() && sources.len() > 1 {
                    return Err(Error::Usage(format!(
                        "'latest' is ambiguous: the repository holds several sources ({}). Add --source NAME.",
                        sources.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
                if let Some(want) = filter.source.filter(|w| !sources.contains(w)) {
                    return Err(Error::Usage(format!(
                        "the repository has no snapshots of source '{want}'; its sources are: {}",
                        sources.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
                all.into_iter()
                    .rev()
                    .find(|s| filter.matches(s))
                    .ok_or_else(|| {
                        let what = filter.describe();
                        Error::SnapshotNotFound(if what.is_empty() {
                            "latest".into()
                        } else {
                            format!("latest ({what})")
                        })
                    })
            }
            SnapshotSelector::Prefix(prefix) => {
                let prefix = prefix.to_ascii_lowercase();
                if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(Error::SnapshotNotFound(prefix));
                }
                let matches: Vec<SnapshotInfo> = all
                    .into_iter()
                    .filter(|s| s.id.to_hex().starts_with(&prefix))
                    .collect();
                match matches.len() {
                    0 => Err(Error::SnapshotNotFound(prefix)),
                    1 => Ok(matches
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::SnapshotNotFound(prefix.clone()))?),
                    count => Err(Error::AmbiguousSnapshot {
                        prefix,
                        count,
                        examples: matches
                            .iter()
                            .take(3)
                            .map(|s| s.id.short())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    }
}

/// Each snapshot's key for ordering, and its generation: a backup records its parent (the
/// snapshot of its source it compared against), so a snapshot whose clock said it was older than
/// its parent (the clock stepped back between them) is really the newer one. It sorts at its
/// parent's time, after it. Only the order uses this: retention buckets and ages count from each
/// snapshot's own time, so one snapshot timed in the future cannot move the others' ages.
pub fn lineage_times(snapshots: &[&SnapshotInfo]) -> Vec<(SystemTime, u32)> {
    let index: HashMap<SnapshotId, usize> = snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    // Only a parent of the same source counts: a backup's parent is always one.
    let parent_of = |i: usize| {
        let p = snapshots[i]
            .head
            .parent
            .and_then(|p| index.get(&p).copied())?;
        (snapshots[p].head.source == snapshots[i].head.source).then_some(p)
    };
    let mut memo: Vec<Option<(SystemTime, u32)>> = vec![None; snapshots.len()];
    let mut on_chain = vec![false; snapshots.len()];
    for start in 0..snapshots.len() {
        if memo[start].is_some() {
            continue;
        }
        // Walk up to the first ancestor already known (or the root), then fill in downwards.
        // `on_chain` stops a forged loop of parents.
        let mut chain = vec![start];
        on_chain[start] = true;
        while let Some(p) = chain.last().and_then(|&i| parent_of(i)) {
            if memo[p].is_some() || on_chain[p] {
                break;
            }
            on_chain[p] = true;
            chain.push(p);
        }
        for &i in chain.iter().rev() {
            on_chain[i] = false;
            let own = snapshots[i].time;
            memo[i] = Some(match parent_of(i).and_then(|p| memo[p]) {
                Some((t, g)) => (own.max(t), g + 1),
                None => (own, 0),
            });
        }
    }
    memo.into_iter()
        .zip(snapshots)
        .map(|(m, s)| m.unwrap_or((s.time, 0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(id: SnapshotId, source: &str, secs: u64, parent: Option<SnapshotId>) -> SnapshotInfo {
        let head = serde_json::json!({
            "version": 1, "time": "", "source": source, "domain": source, "host": "h",
            "root_path": "/", "tags": [], "refs": [], "skipped": 0,
            "root": {"name": "r", "type": "dir", "mode": 0, "uid": 0, "gid": 0, "mtime": 0, "mtime_ns": 0},
            "stats": crate::format::snapshot::SnapshotStats::default(),
            "parent": parent,
        });
        SnapshotInfo {
            id,
            head: serde_json::from_value(head).unwrap(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            writer: None,
        }
    }

    #[test]
    fn a_child_timed_before_its_parent_sorts_after_it() {
        let (a, b, c) = (
            SnapshotId::random(),
            SnapshotId::random(),
            SnapshotId::random(),
        );
        let s = [
            snap(a, "s", 1000, None),
            snap(b, "s", 400, Some(a)),
            snap(c, "s", 500, Some(b)),
        ];
        let keys = lineage_times(&s.iter().collect::<Vec<_>>());
        let t = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(keys, [(t(1000), 0), (t(1000), 1), (t(1000), 2)]);
    }

    #[test]
    fn forged_parent_links_neither_loop_nor_cross_sources() {
        let (a, b, c) = (
            SnapshotId::random(),
            SnapshotId::random(),
            SnapshotId::random(),
        );
        // a and b name each other (a loop only a forger could write); c names another source's.
        let s = [
            snap(a, "s", 100, Some(b)),
            snap(b, "s", 200, Some(a)),
            snap(c, "t", 50, Some(b)),
        ];
        let keys = lineage_times(&s.iter().collect::<Vec<_>>());
        let t = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[2], (t(50), 0), "a parent of another source is ignored");
        assert!(keys[0].0 >= t(100) && keys[1].0 >= t(200));
    }
}
