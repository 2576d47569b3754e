//! custodian keeps customer records safe: deduplicated, compressed, encrypted snapshots that the
//! backing-up server cannot read back, restored exactly by operators who hold the age identity.
//!
//! Modules are listed by layer, each using only the layers above it (docs/DESIGN.md has the
//! map), and data flows down:
//!
//! ```text
//! backup:  source::walk (a directory at a time) -> cache hit? reuse ids : read -> chunker
//!          -> keyed BLAKE3 -> dedup -> compress -> crypto::seal_blob -> repository::PackWriter
//!          -> PackUploader (backend) -> index; each directory's tree as its files are in
//!          -> reference list -> snapshot head (last) -> local cache
//! restore: snapshot -> trees -> restorer::plan (grouped by pack) -> fetch packs in parallel
//!          -> open + verify each blob -> write files -> apply metadata
//! ```

// Pure: types, formats and primitives; no I/O.
pub mod chunker;
pub mod compress;
pub mod constants;
pub mod crypto;
pub mod error;
pub mod format;
pub mod human;
pub mod id;
pub mod located;
pub mod parallel;
pub mod pattern;
pub mod schedule;
pub mod when;

// Adapters: storage, the file system, memory, the clock, test hooks.
pub mod backend;
pub mod clock;
pub mod failpoint;
pub mod fsutil;
pub mod memory;
pub mod sample;
pub mod source;

// Engine: the repository and what reads and writes it.
pub mod archiver;
pub mod audit;
pub mod check;
pub mod copy;
pub mod dump;
pub mod erase;
pub mod handover;
pub mod incident;
pub mod prune;
pub mod repository;
pub mod restorer;

// Service: configuration, the daemon and what it schedules.
pub mod config;
pub mod daemon;
pub mod drill;
pub mod retention;
pub mod runbook;

pub use error::{Error, Result};
