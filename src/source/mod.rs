//! Record stores on disk: walking a directory tree into nodes, with excludes and the file
//! identity (size, mtime, ctime, inode) that decides whether a file must be read again.

pub mod walk;

pub use walk::{walk, Excludes, FileStat, WalkEntry, WalkResult};
