//! Which metadata to apply after content: ownership (as root), mode, and mtime to the nanosecond.
//! Directories are finished last, deepest first, because writing into them changes their mtime.

use super::beneath::Meta;
use crate::format::tree::{Node, NodeKind, MODE_BITS};

/// Whether we may restore ownership (only root can give files away).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What to apply to an entry restored from `node`: ownership only as root, permission bits
/// without setuid, setgid and sticky unless `keep_special` (a snapshot could be forged by a
/// writer, and a setuid-root file restored as root is a way in), and never a symlink's mode.
pub fn meta(node: &Node, as_root: bool, keep_special: bool) -> Meta {
    let bits = if keep_special { MODE_BITS } else { 0o777 };
    Meta {
        owner: as_root.then_some((node.uid, node.gid)),
        mode: (node.kind != NodeKind::Symlink).then_some(node.mode & bits),
        mtime: node.mtime,
        mtime_ns: node.mtime_ns,
    }
}
