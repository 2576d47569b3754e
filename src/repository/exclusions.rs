//! Erase exclusions. `erase` removes a path from every snapshot, but the record store may still
//! hold the files, and the next backup would store them again. So erase also writes
//! `exclusions/<hash>`: the source and the pattern, sealed to the metadata key (the storage
//! cannot read the path; the writer, which reads the source itself, can) and signed. Every
//! backup of the source leaves matching paths out until an operator removes the exclusion.
//! A writer credential can delete the object, as it can delete anything it may prune; that is
//! the least-privilege storage question of FORMAT.md's threat model, not a new one.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::kind::RECORD_VERSION;
use crate::format::ObjectKind;
use serde::{Deserialize, Serialize};

/// Contents of `exclusions/<hash>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Exclusion {
    pub version: u32,
    pub source: String,
    /// As erase took it: without `/` a name anywhere, with `/` a path from the source root.
    pub pattern: String,
    pub time: String,
    pub by: String,
}

impl Repository {
    /// Leave `pattern` out of every later backup of `source` (operators only); returns the
    /// object's name. The same source and pattern again change nothing.
    pub fn add_exclusion(&self, source: &str, pattern: &str) -> Result<String> {
        self.require_operator("excluding erased paths from later backups")?;
        if let Some((name, _)) = self
            .exclusions(Some(source))?
            .into_iter()
            .find(|(_, e)| e.pattern == pattern)
        {
            return Ok(name);
        }
        let exclusion = Exclusion {
            version: RECORD_VERSION,
            source: source.to_string(),
            pattern: pattern.to_string(),
            time: crate::when::rfc3339(crate::clock::now()),
            by: self.opened_by.clone(),
        };
        Ok(self.put_meta(ObjectKind::Exclusion, &exclusion)?.0)
    }

    /// Every exclusion (of `source`, if given), by object name. One that cannot be read is an
    /// error: silently backing up an erased client's files again is the failure this prevents.
    pub fn exclusions(&self, source: Option<&str>) -> Result<Vec<(String, Exclusion)>> {
        let mut out = Vec::new();
        for object in self.list(ObjectKind::Exclusion)? {
            let Some(bytes) = self.get_listed(ObjectKind::Exclusion, &object)? else {
                continue;
            };
            let e: Exclusion = self
                .open_meta(ObjectKind::Exclusion, &object.name, &bytes)
                .map_err(|e| {
                    Error::Damaged(format!(
                        "erase exclusion {} cannot be read ({e}); no backup runs until it can, \
                         so erased files are not stored again. Run 'custodian check'.",
                        object.name
                    ))
                })?;
            if source.is_none_or(|s| s == e.source) {
                out.push((object.name, e));
            }
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time));
        Ok(out)
    }

    /// Remove an exclusion by (a prefix of) its id: operators only, an explicit act. A whole
    /// id that is no longer there answers `None`, so a removal killed after its delete can be
    /// run again; a prefix that matches nothing is an error (a typo, not a rerun).
    pub fn remove_exclusion(&self, id: &str) -> Result<Option<Exclusion>> {
        self.require_operator("removing an erase exclusion")?;
        if id.trim_start_matches("exclusions/").is_empty() {
            return Err(Error::Usage(
                "name the exclusion to remove by its id ('custodian exclusions' lists them)".into(),
            ));
        }
        let wanted = format!("exclusions/{}", id.trim_start_matches("exclusions/"));
        let found: Vec<_> = self
            .exclusions(None)?
            .into_iter()
            .filter(|(n, _)| n.starts_with(&wanted))
            .collect();
        match found.as_slice() {
            [(name, e)] => {
                self.require_granted(&e.source)?;
                self.delete_object(name)?;
                Ok(Some(e.clone()))
            }
            [] if is_whole_id(id) => Ok(None),
            [] => Err(Error::Usage(format!(
                "no erase exclusion '{id}'; 'custodian exclusions' lists them"
            ))),
            _ => Err(Error::Usage(format!(
                "'{id}' matches {} exclusions; give more characters of the id",
                found.len()
            ))),
        }
    }
}

/// A whole exclusion id: the 64 hex digits of its hash.
fn is_whole_id(id: &str) -> bool {
    let id = id.trim_start_matches("exclusions/");
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}
