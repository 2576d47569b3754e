//! Reference lists: the ids of every blob a snapshot needs, so prune can compute reachability
//! without decrypting trees. Readers treat a list as a set; the writer keeps each id in the
//! position it first appeared (see `archiver::order_refs`) and splits at content-defined points,
//! so consecutive snapshots share nearly all of their reference blobs.
//! Plaintext: `"CREF" | version | key*` where a key is the first 16 bytes of a blob id.
//!
//! Why 16 bytes: the list only decides what prune keeps, and a prefix that matched another
//! blob could only keep garbage longer (the safe direction); with 2^128 prefixes that takes
//! around 10^19 blobs. Half-size keys halve the lists' storage.

use crate::constants::{REFS_MAX_IDS, REFS_SPLIT_MODULUS};
use crate::error::FormatError;
use crate::id::BlobId;

const MAGIC: &[u8; 4] = b"CREF";
const REFS_VERSION: u8 = 1;
const KEY_LEN: usize = 16;

/// A blob as a reference list names it: the first 16 bytes of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefKey(pub [u8; KEY_LEN]);

impl From<&BlobId> for RefKey {
    fn from(id: &BlobId) -> Self {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&id.0[..KEY_LEN]);
        RefKey(key)
    }
}

/// Split a de-duplicated key list into reference-blob plaintexts (order is kept).
pub fn encode(ids: &[RefKey]) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    let mut current = new_blob();
    let mut count = 0;
    for id in ids {
        current.extend_from_slice(&id.0);
        count += 1;
        // The last bytes, not the first: keys are often sorted, and sorting correlates the first
        // bytes with position, which would bunch every boundary at the start of the list.
        let boundary = u16::from_le_bytes([id.0[14], id.0[15]]) % REFS_SPLIT_MODULUS == 0;
        if boundary || count == REFS_MAX_IDS {
            blobs.push(std::mem::replace(&mut current, new_blob()));
            count = 0;
        }
    }
    if count > 0 {
        blobs.push(current);
    }
    blobs
}

fn new_blob() -> Vec<u8> {
    let mut blob = Vec::with_capacity(5 + KEY_LEN * 512);
    blob.extend_from_slice(MAGIC);
    blob.push(REFS_VERSION);
    blob
}

/// Keys in one reference-blob plaintext.
pub fn decode(plain: &[u8], what: &str) -> Result<Vec<RefKey>, FormatError> {
    let malformed = |reason: &str| FormatError::Malformed {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    if plain.len() < 5 || &plain[..4] != MAGIC {
        return Err(malformed("not a reference list"));
    }
    if plain[4] != REFS_VERSION {
        return Err(FormatError::UnknownVersion {
            what: what.to_string(),
            found: u32::from(plain[4]),
            supported: 1,
        });
    }
    let body = &plain[5..];
    if !body.len().is_multiple_of(KEY_LEN) {
        return Err(malformed("length is not a whole number of keys"));
    }
    Ok(body
        .chunks_exact(KEY_LEN)
        .filter_map(|k| <[u8; KEY_LEN]>::try_from(k).ok().map(RefKey))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_round_trips_and_is_stable_under_insertion() {
        // Fixed ids: boundaries are a property of the ids, so random ones made this test flaky
        // (5,000 ids give ten boundaries on average, and sometimes five).
        let id = |i: u32| RefKey::from(&BlobId(crate::id::content_hash(&i.to_le_bytes())));
        let mut ids: Vec<RefKey> = (0..5000).map(id).collect();
        ids.sort();
        let blobs = encode(&ids);
        assert!(
            blobs.len() > 5,
            "5000 ids should split into about ten blobs, got {}",
            blobs.len()
        );
        assert!(
            blobs.iter().all(|b| b.len() < 5 + KEY_LEN * 3000),
            "no part may approach the forced cap"
        );
        let back: Vec<RefKey> = blobs.iter().flat_map(|b| decode(b, "r").unwrap()).collect();
        assert_eq!(back, ids);
        let mut more = ids.clone();
        more.push(id(5000));
        more.sort();
        let shared = encode(&more).iter().filter(|b| blobs.contains(b)).count();
        assert!(
            shared + 2 >= blobs.len(),
            "one new id must change at most two blobs"
        );
    }
}
