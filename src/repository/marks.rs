//! Prune markers: `prune/<hash>` objects naming packs that a prune means to delete once its
//! grace period has passed. Marking deletes nothing; it tells every writer that starts later
//! not to deduplicate against those packs, and tells a writer already running (which compares
//! marker names at commit) which of the blobs it reuses it must copy out first. See
//! docs/FORMAT.md, "Prune".

use super::Repository;
use crate::error::{FormatError, Result};
use crate::format::ObjectKind;
use crate::id::PackId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

/// Version of `prune/` objects.
pub use crate::format::kind::MARKER_VERSION;

/// Contents of `prune/<hash>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneMarker {
    pub version: u32,
    /// When the marking prune wrote it (RFC 3339): the grace period counts from here.
    pub time: String,
    pub by: String,
    /// Packs to delete after the grace period, unless something still needs their blobs (then
    /// those blobs are copied out first).
    pub packs: Vec<PackId>,
}

impl PruneMarker {
    /// The marker's time; a marker with an unreadable time counts as written now (it then waits
    /// a full grace period, the safe direction).
    pub fn written(&self) -> SystemTime {
        humantime::parse_rfc3339_weak(&self.time).unwrap_or_else(|_| crate::clock::now())
    }
}

/// Every marker in the repository, by object name.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    pub markers: BTreeMap<String, PruneMarker>,
}

impl Marks {
    /// Every pack some marker names.
    pub fn packs(&self) -> HashSet<PackId> {
        self.markers
            .values()
            .flat_map(|m| m.packs.iter().copied())
            .collect()
    }

    /// Markers that are here but were not in `earlier`: written by a prune that ran since.
    pub fn since<'a>(&'a self, earlier: &'a Marks) -> impl Iterator<Item = &'a PruneMarker> {
        self.markers
            .iter()
            .filter(|(name, _)| !earlier.markers.contains_key(*name))
            .map(|(_, m)| m)
    }
}

impl Repository {
    /// Read every prune marker. A marker deleted between listing and reading (a prune finished
    /// it) is skipped: its packs are gone or going, and nobody may use them.
    pub fn prune_marks(&self) -> Result<Marks> {
        let mut marks = Marks::default();
        for object in self.backend.list("prune/")? {
            // A marker that does not verify was not written by a prune of this repository: it is
            // ignored (its packs stay usable and are never deleted on its account).
            let read = self
                .get_listed(ObjectKind::Marker, &object)
                .and_then(|bytes| {
                    bytes
                        .map(|b| {
                            self.open_meta::<PruneMarker>(ObjectKind::Marker, &object.name, &b)
                        })
                        .transpose()
                });
            match read {
                Ok(None) => {}
                Ok(Some(marker)) => {
                    marks.markers.insert(object.name, marker);
                }
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %object.name, "ignored a damaged or forged prune marker: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(marks)
    }

    /// Write a marker naming `packs`; returns its object name.
    pub fn write_prune_marker(&self, packs: Vec<PackId>) -> Result<String> {
        let marker = PruneMarker {
            version: MARKER_VERSION,
            time: humantime::format_rfc3339_nanos(crate::clock::now()).to_string(),
            by: self.opened_by.clone(),
            packs,
        };
        let (name, created) = self.put_meta(ObjectKind::Marker, &marker)?;
        if !created {
            return Err(FormatError::Malformed {
                what: name,
                reason: "a marker with this content hash already exists".into(),
            }
            .into());
        }
        Ok(name)
    }
}
