//! Errors located in a file a person edits (the daemon's config, runbooks): file, line, key and
//! what to do. A leaf, so the config and the runbooks share it without depending on each other.

use std::path::Path;

/// A configuration problem, located for the person who has to fix it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// An error at byte `offset` of `text` (the contents of `file`), by line number.
    pub(crate) fn at(
        file: &Path,
        text: &str,
        offset: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.display().to_string(),
            // Counted in bytes: an offset inside a character can never panic.
            line: text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
            key: key.to_string(),
            message: message.into(),
        }
    }
}
