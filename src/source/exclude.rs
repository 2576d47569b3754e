//! Exclude patterns, read the way gitignore and restic read them, because that is what the
//! people writing them already know:
//! - without a `/` (other than a trailing one), a name at any depth: `*.tmp`, `cache/`;
//! - with a `/` at the start or in the middle, a path from the source root: `/cache`,
//!   `clients/*/scratch`;
//! - a trailing `/` matches directories only: `cache/` is every directory named `cache`,
//!   whatever its depth, with all it holds.

use crate::error::{Error, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::path::Path;

/// Compiled exclude patterns.
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    dir_names: GlobSet,
    dir_paths: GlobSet,
}

/// How one pattern is read.
struct Reading<'a> {
    glob: &'a str,
    anchored: bool,
    dir_only: bool,
}

fn read(pattern: &str) -> Reading<'_> {
    let dir_only = pattern.len() > 1 && pattern.ends_with('/');
    let body = pattern.trim_end_matches('/');
    Reading {
        anchored: body.contains('/'),
        glob: body.trim_start_matches('/'),
        dir_only,
    }
}

impl Excludes {
    /// Compile patterns; a bad pattern is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut sets: [GlobSetBuilder; 4] = std::array::from_fn(|_| GlobSetBuilder::new());
        for p in patterns {
            let r = read(p);
            if r.glob.is_empty() {
                return Err(Error::Usage(format!(
                    "exclude pattern '{p}' names nothing (it would exclude the whole source); \
                     remove it, or name the directory to leave out"
                )));
            }
            let glob = Glob::new(r.glob).map_err(|e| {
                Error::Usage(format!("exclude pattern '{p}' is not a valid glob: {e}"))
            })?;
            sets[usize::from(r.anchored) + 2 * usize::from(r.dir_only)].add(glob);
        }
        let [names, paths, dir_names, dir_paths] = sets.map(|b| {
            b.build()
                .map_err(|e| Error::Usage(format!("exclude patterns: {e}")))
        });
        Ok(Excludes {
            names: names?,
            paths: paths?,
            dir_names: dir_names?,
            dir_paths: dir_paths?,
        })
    }

    /// Whether the entry at `rel` (from the source root) named `name` is left out.
    pub fn excluded(&self, rel: &Path, name: &std::ffi::OsStr, is_dir: bool) -> bool {
        let name = Path::new(name);
        self.names.is_match(name)
            || self.paths.is_match(rel)
            || (is_dir && (self.dir_names.is_match(name) || self.dir_paths.is_match(rel)))
    }
}

/// Patterns that are valid but match nothing in the source at `root`, each with why and the
/// fix, for `config check`. A pattern that excludes nothing is a leak waiting to happen: the
/// operator believes the files are left out.
pub fn lint(patterns: &[String], root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        let r = read(p);
        let why = if r.glob.split('/').any(|c| c == "." || c == "..") {
            Some("'.' and '..' never appear in the paths it is matched against".to_string())
        } else if r.glob.contains("//") {
            Some("'//' never appears in the paths it is matched against".to_string())
        } else if r.anchored
            && root.to_str().is_some_and(|root| {
                let root = root.trim_matches('/');
                !root.is_empty() && r.glob.starts_with(root)
            })
        {
            Some(format!(
                "paths are matched from the source root, not the file system root: write \
                 '/{}'",
                r.glob
                    .strip_prefix(root.to_str().unwrap_or_default().trim_matches('/'))
                    .unwrap_or(r.glob)
                    .trim_start_matches('/')
            ))
        } else if r.anchored && !literal_prefix_exists(r.glob, root) {
            Some(format!(
                "nothing at '/{}' exists in {} today",
                literal_prefix(r.glob),
                root.display()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            out.push(format!("exclude pattern '{p}' cannot match: {why}"));
        }
    }
    out
}

/// The leading path components of an anchored glob that hold no wildcard.
fn literal_prefix(glob: &str) -> String {
    glob.split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .collect::<Vec<_>>()
        .join("/")
}

fn literal_prefix_exists(glob: &str, root: &Path) -> bool {
    let prefix = literal_prefix(glob);
    prefix.is_empty() || root.join(&prefix).symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn hit(e: &Excludes, rel: &str, is_dir: bool) -> bool {
        let rel = Path::new(rel);
        e.excluded(rel, rel.file_name().unwrap_or(OsStr::new("")), is_dir)
    }

    #[test]
    fn a_trailing_slash_is_a_directory_at_any_depth() {
        let e = ex(&["cache/"]);
        assert!(hit(&e, "cache", true));
        assert!(hit(&e, "clients/acme/cache", true));
        assert!(!hit(&e, "cache", false), "a file named cache stays");
        assert!(!hit(&e, "cachet", true));
    }

    #[test]
    fn anchored_and_name_patterns() {
        let e = ex(&["/tmp", "clients/*/scratch/", "*.bak"]);
        assert!(hit(&e, "tmp", false) && hit(&e, "tmp", true));
        assert!(!hit(&e, "a/tmp", true), "a leading / anchors at the root");
        assert!(hit(&e, "clients/acme/scratch", true));
        assert!(!hit(&e, "clients/acme/scratch", false));
        assert!(hit(&e, "x/y/z.bak", false));
    }

    #[test]
    fn empty_patterns_are_refused() {
        for p in ["/", "", "//"] {
            assert!(Excludes::new(&[p.to_string()]).is_err(), "{p:?}");
        }
    }

    #[test]
    fn lint_finds_patterns_that_cannot_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        let root = dir.path();
        let full = format!("{}/cache", root.display());
        let pats: Vec<String> = ["cache/", "/cache", "/nothere/*", "./cache", &full, "*.tmp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let warnings = lint(&pats, root);
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].contains("'/nothere/*'") && warnings[0].contains("nothing at"));
        assert!(warnings[1].contains("'.' and '..'"));
        assert!(warnings[2].contains("write '/cache'"), "{}", warnings[2]);
    }
}
