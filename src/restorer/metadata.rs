//! Applying metadata after content: ownership (as root), mode, and mtime to the nanosecond.
//! Directories are finished last, deepest first, because writing into them changes their mtime.

use crate::error::{IoContext, Result};
use crate::format::tree::{Node, NodeKind};
use filetime::FileTime;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether we may restore ownership (only root can give files away).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Set owner, mode and mtime of `path` from `node`.
pub fn apply(path: &Path, node: &Node, as_root: bool) -> Result<()> {
    if as_root {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)).at(path)?;
    }
    if node.kind != NodeKind::Symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).at(path)?;
    }
    // Path-based utimensat without following links: never opens the file (a FIFO would block).
    // atime is not stored, so it is set to the mtime.
    let mtime = FileTime::from_unix_time(node.mtime, node.mtime_ns);
    filetime::set_symlink_file_times(path, mtime, mtime).at(path)
}
