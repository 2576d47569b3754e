//! Pack files: `frame* | header | header length (u32 LE) | magic "CUSTPAK1"`. The header is the
//! age-encrypted (metadata identity) zstd JSON list of the blobs. A pack's name is the BLAKE3 of
//! all its bytes, so `check` can verify packs without any key.

use crate::error::FormatError;
use crate::id::BlobId;
use serde::{Deserialize, Serialize};

/// Version of the header's JSON.
pub const PACK_HEADER_VERSION: u32 = 1;
/// Trailer magic; the last byte is the layout version.
pub const PACK_MAGIC: &[u8; 8] = b"CUSTPAK1";
/// Length-field plus magic at the end of every pack.
pub const TRAILER_LEN: usize = 12;

/// What a blob holds; decides which key seals it and who can read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobKind {
    /// File content (domain session key).
    Data,
    /// Directory listing or skipped-file list (domain session key).
    Tree,
    /// Reference list (metadata session key).
    Refs,
}

impl BlobKind {
    /// Byte bound into the AEAD's associated data.
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
            BlobKind::Refs => 2,
        }
    }
}

/// Where one blob sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackEntry {
    pub id: BlobId,
    pub kind: BlobKind,
    pub offset: u64,
    pub length: u32,
}

/// The decrypted pack header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    pub version: u32,
    /// Key domain of every blob in the pack ("" for the metadata domain).
    pub domain: String,
    pub blobs: Vec<PackEntry>,
    /// Format 2: `hex(H(frames))`, the bytes before the header. The header is signed, so this
    /// ties it to its own pack: a copy of it spliced onto other bytes is refused on adoption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
}

/// Build the trailer for a sealed header of `len` bytes.
pub fn trailer(len: usize) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..].copy_from_slice(PACK_MAGIC);
    out
}

/// Read the sealed header's length from a pack's last bytes.
pub fn parse_trailer(tail: &[u8], what: &str) -> Result<u32, FormatError> {
    let malformed = |reason: &str| FormatError::Malformed {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    if tail.len() != TRAILER_LEN {
        return Err(malformed("too short to be a pack"));
    }
    if &tail[4..11] != b"CUSTPAK" {
        return Err(malformed("no pack trailer"));
    }
    if tail[11] != PACK_MAGIC[7] {
        return Err(FormatError::UnknownVersion {
            what: what.to_string(),
            found: u32::from(tail[11].wrapping_sub(b'0')),
            supported: 1,
        });
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&tail[..4]);
    Ok(u32::from_le_bytes(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_version_refusal() {
        let t = trailer(1234);
        assert_eq!(parse_trailer(&t, "p").unwrap(), 1234);
        let mut future = t;
        future[11] = b'2';
        assert!(matches!(
            parse_trailer(&future, "p"),
            Err(FormatError::UnknownVersion { found: 2, .. })
        ));
        assert!(parse_trailer(&t[1..], "p").is_err());
    }
}
