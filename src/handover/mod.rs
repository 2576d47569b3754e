//! Handing one record store to a new owner (issue #16; docs/DESIGN.md, "Handover").
//!
//! `prepare` (old owner) copies one key domain's frames, session keys and snapshots into the new
//! owner's repository without decrypting a byte of data, and writes a signed handover list;
//! `accept` (new owner) checks every count and hash and drills a restore, then signs a receipt;
//! `complete` (old owner) checks the receipt and destroys or retains the old copy.

pub mod accept;
pub mod complete;
pub mod page;
mod prepare;
mod signed;

pub use prepare::{prepare, PrepareOptions, Prepared};
pub use signed::{read_signed, sign_document, write_signed, SignedFiles};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Files of a handover directory (`--out`).
pub const LIST_FILE: &str = "handover-list.json";
pub const LIST_SIG: &str = "handover-list.sig";
pub const RECEIPT_FILE: &str = "receipt.json";
pub const RECEIPT_SIG: &str = "receipt.sig";
pub const PAGE_FILE: &str = "handover-list.html";
/// The handover operator's identity, sealed to the new owner.
pub const OPERATOR_FILE: &str = "handover-operator.age";
/// This handover's id, written first so a rerun of `prepare` continues the same handover.
pub const ID_FILE: &str = "handover-id";

/// Where this machine keeps a handover's private state (the handover operator's identity).
pub fn state_of(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("handover").join(id)
}

/// Read a small file of a handover directory, refusing anything larger than `max`.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > max {
        return Err(Error::Invalid(format!(
            "{} is {} bytes, more than a handover file may be ({max}); it is not one custodian \
             wrote. Ask the old owner for the handover directory again.",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
