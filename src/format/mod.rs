//! Every type stored in a repository, in one place, pure and versioned. Each object carries a
//! `version`; a version newer than this build understands is refused, never guessed at.
//! docs/FORMAT.md describes these bytes for anyone writing another reader.

pub mod audit;
pub mod config;
pub mod handover;
pub mod index;
pub mod keys;
pub mod kind;
pub mod pack;
pub mod refs;
pub mod snapshot;
pub mod tree;
pub mod trust;

use crate::error::FormatError;
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use kind::ObjectKind;
pub use pack::{BlobKind, PackEntry};

/// Decode JSON after checking its `version` against what this build supports.
pub fn decode_json<T: DeserializeOwned>(
    json: &[u8],
    what: &str,
    supported: u32,
) -> Result<T, FormatError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let malformed = |e: serde_json::Error| FormatError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let probe: Versioned = serde_json::from_slice(json).map_err(malformed)?;
    if probe.version == 0 || probe.version > supported {
        return Err(FormatError::UnknownVersion {
            what: what.to_string(),
            found: probe.version,
            supported,
        });
    }
    serde_json::from_slice(json).map_err(malformed)
}

/// Decode zstd-compressed JSON (the plaintext form of every sealed bookkeeping object), at
/// most `limit` bytes of it.
pub fn decode_packed<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    supported: u32,
    limit: usize,
) -> Result<T, FormatError> {
    let json = crate::compress::unpack_json(bytes, limit).map_err(|e| FormatError::Malformed {
        what: what.to_string(),
        reason: format!("not zstd JSON within limits: {e}"),
    })?;
    decode_json(&json, what, supported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_are_refused_by_name() {
        #[derive(Deserialize, Debug)]
        struct Thing {
            #[allow(dead_code)]
            version: u32,
        }
        assert!(decode_json::<Thing>(br#"{"version":1}"#, "thing", 1).is_ok());
        let err = decode_json::<Thing>(br#"{"version":7}"#, "thing x", 1).unwrap_err();
        assert!(
            err.to_string().contains("thing x has format version 7"),
            "{err}"
        );
        assert!(matches!(
            decode_json::<Thing>(b"garbage", "t", 1),
            Err(FormatError::Malformed { .. })
        ));
    }
}
