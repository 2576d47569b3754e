//! Path patterns as operators type them (`find`, `erase`, restore's includes): a glob that
//! matches a name anywhere without `/`, or the path from the root with one.

use crate::error::{Error, Result};
use globset::{Glob, GlobMatcher};
use std::path::Path;

/// A glob: without `/` it matches a name anywhere, with `/` the path from the snapshot root.
pub struct Pattern {
    glob: GlobMatcher,
    whole_path: bool,
}

impl Pattern {
    /// Compile `text`; a malformed glob is refused with its reason.
    pub fn new(text: &str) -> Result<Pattern> {
        let glob = Glob::new(text.trim_start_matches('/'))
            .map_err(|e| Error::Usage(format!("'{text}' is not a valid pattern: {e}")))?
            .compile_matcher();
        Ok(Pattern {
            glob,
            whole_path: text.contains('/'),
        })
    }

    /// Whether `path` (relative to the root) matches.
    pub fn matches(&self, path: &Path) -> bool {
        if self.whole_path {
            self.glob.is_match(path)
        } else {
            path.file_name().is_some_and(|n| self.glob.is_match(n))
        }
    }
}
