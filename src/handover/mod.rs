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

/// Read a file of a handover directory (received from elsewhere: hostile input), refusing a
/// symlink, a device or FIFO, and anything larger than `max`.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let refuse = |why: String| {
        Error::Untrusted(format!(
            "{} {why}; it is not a file custodian wrote. Ask the other owner for the handover \
             directory again.",
            path.display()
        ))
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(refuse(format!(
            "is larger than a handover file may be ({max} bytes)"
        )));
    }
    Ok(bytes)
}

/// Write a file of a handover directory whole or not at all, replacing whatever name was there
/// (a symlink planted in the directory is replaced, never followed).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("partial-{:016x}", rand::random::<u64>()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The first 16 characters of an id from a list or a listing, for messages (never panics).
pub fn short(id: &str) -> &str {
    id.char_indices().nth(16).map_or(id, |(i, _)| &id[..i])
}
