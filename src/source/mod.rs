//! Record stores on disk: walking a directory tree into nodes, with excludes and the file
//! identity (size, mtime, ctime, inode) that decides whether a file must be read again.

pub mod exclude;
pub mod sqlite;
pub mod walk;

pub use exclude::Excludes;
pub use walk::{walk_order, Child, FileStat, Listing, Walk};

/// This machine's name, recorded in snapshots.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
