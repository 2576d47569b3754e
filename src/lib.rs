//! custodian keeps customer records safe: deduplicated, compressed, encrypted snapshots that the
//! backing-up server cannot read back, restored exactly by operators who hold the age identity.
//!
//! Data flows down the module list (docs/DESIGN.md has the map):
//!
//! ```text
//! backup:  source::walk (a directory at a time) -> cache hit? reuse ids : read -> chunker
//!          -> keyed BLAKE3 -> dedup -> compress -> crypto::seal_blob -> repository::PackWriter
//!          -> PackUploader (backend) -> index; each directory's tree as its files are in
//!          -> reference list -> snapshot head (last) -> local cache
//! restore: snapshot -> trees -> restorer::plan (grouped by pack) -> fetch packs in parallel
//!          -> open + verify each blob -> write files -> apply metadata
//! ```

pub mod archiver;
pub mod audit;
pub mod backend;
pub mod check;
pub mod chunker;
pub mod clock;
pub mod compress;
pub mod config;
pub mod constants;
pub mod copy;
pub mod crypto;
pub mod daemon;
pub mod drill;
pub mod dump;
pub mod erase;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod handover;
pub mod human;
pub mod id;
pub mod incident;
pub mod prune;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod runbook;
pub mod sample;
pub mod source;
pub mod when;

pub use error::{Error, Result};
