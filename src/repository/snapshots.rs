//! Writing, listing and naming snapshots. A snapshot head is written last in a backup: once it
//! exists, everything it references is already durable and indexed.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::snapshot::{SnapshotHead, SNAPSHOT_VERSION};
use crate::id::{content_hash, SnapshotId};
use std::time::SystemTime;

/// A snapshot with its parsed time.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub head: SnapshotHead,
    pub time: SystemTime,
}

/// How a user names a snapshot.
pub enum SnapshotSelector<'a> {
    /// The newest, optionally of one source.
    Latest(Option<&'a str>),
    /// A unique prefix of the id.
    Prefix(&'a str),
}

impl<'a> SnapshotSelector<'a> {
    /// `latest` or an id prefix.
    pub fn parse(text: &'a str, source: Option<&'a str>) -> Self {
        if text == "latest" {
            SnapshotSelector::Latest(source)
        } else {
            SnapshotSelector::Prefix(text)
        }
    }
}

impl Repository {
    /// Commit a snapshot: the last write of a backup.
    pub fn write_snapshot(&self, head: &SnapshotHead) -> Result<SnapshotId> {
        let sealed = self.seal_meta(head, "snapshot")?;
        let id = SnapshotId(content_hash(&sealed));
        self.backend.put_new(&format!("snapshots/{id}"), &sealed)?;
        Ok(id)
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for (id, object) in self.list_ids::<SnapshotId>("snapshots/")? {
            // None: forgotten between the listing and this read.
            let Some(bytes) = self.backend.get_if_present(&object.name)? else {
                continue;
            };
            let head: SnapshotHead = self.open_meta(
                &bytes,
                &format!("snapshot {}", id.short()),
                SNAPSHOT_VERSION,
            )?;
            let time = humantime::parse_rfc3339_weak(&head.time).map_err(|e| {
                crate::error::FormatError::Malformed {
                    what: format!("snapshot {}", id.short()),
                    reason: format!("bad time: {e}"),
                }
            })?;
            out.push(SnapshotInfo { id, head, time });
        }
        out.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Resolve a snapshot as users type it: `latest` (of `source`, if given) or an id prefix.
    pub fn resolve_snapshot(&self, text: &str, source: Option<&str>) -> Result<SnapshotInfo> {
        self.find_snapshot(&SnapshotSelector::parse(text, source))
    }

    /// Resolve what the user typed to exactly one snapshot.
    pub fn find_snapshot(&self, selector: &SnapshotSelector) -> Result<SnapshotInfo> {
        let all = self.list_snapshots()?;
        match selector {
            SnapshotSelector::Latest(source) => {
                let sources: std::collections::BTreeSet<&str> =
                    all.iter().map(|s| s.head.source.as_str()).collect();
                if source.is_none() && sources.len() > 1 {
                    return Err(Error::Invalid(format!(
                        "'latest' is ambiguous: the repository holds several sources ({}). Add --source NAME.",
                        sources.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
                all.into_iter()
                    .rev()
                    .find(|s| source.is_none_or(|src| s.head.source == src))
                    .ok_or_else(|| {
                        Error::SnapshotNotFound(format!(
                            "latest{}",
                            source.map(|s| format!(" (source {s})")).unwrap_or_default()
                        ))
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
