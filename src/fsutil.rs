//! Small filesystem helpers every layer uses for its private local files (the state dir, key
//! files' folders, caches, staging): private directories, and whole-or-nothing replacement.

use crate::error::{IoContext, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Create `dir` and parents with mode 0700, and tighten it if it already exists.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).at(dir)
}

/// Replace `path` with `bytes` so that a reader sees the old file or the new one, never half:
/// a private (0600) temporary file unique to this writer, synced, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = private_tmp_name(path);
    let written =
        private_tmp(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(crate::error::Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).at(path)
}

/// A temporary name beside `path`, unique to this process and call.
pub(crate) fn private_tmp_name(path: &Path) -> PathBuf {
    path.with_extension(format!(
        "{}-{}.tmp",
        std::process::id(),
        crate::id::SessionId::random().to_hex()
    ))
}

/// Create `tmp` new, readable by its owner only (mode 0600).
pub(crate) fn private_tmp(tmp: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
}
