//! Reference lists: the ids of every blob a snapshot needs, so prune can compute reachability
//! without decrypting trees. Readers treat a list as a set; the writer keeps each id in the
//! position it first appeared (see `archiver::order_refs`) and splits at content-defined points,
//! so consecutive snapshots share nearly all of their reference blobs.
//! Plaintext: `"CREF" | version | id*`.

use crate::constants::{REFS_MAX_IDS, REFS_SPLIT_MODULUS};
use crate::error::FormatError;
use crate::id::BlobId;

const MAGIC: &[u8; 4] = b"CREF";
const REFS_VERSION: u8 = 1;

/// Split a de-duplicated id list into reference-blob plaintexts (order is kept).
pub fn encode(ids: &[BlobId]) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    let mut current = new_blob();
    let mut count = 0;
    for id in ids {
        current.extend_from_slice(&id.0);
        count += 1;
        // The last bytes, not the first: ids are often sorted, and sorting correlates the first
        // bytes with position, which would bunch every boundary at the start of the list.
        let boundary = u16::from_le_bytes([id.0[30], id.0[31]]) % REFS_SPLIT_MODULUS == 0;
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
    let mut blob = Vec::with_capacity(5 + 32 * 512);
    blob.extend_from_slice(MAGIC);
    blob.push(REFS_VERSION);
    blob
}

/// Ids in one reference-blob plaintext.
pub fn decode(plain: &[u8], what: &str) -> Result<Vec<BlobId>, FormatError> {
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
    if !body.len().is_multiple_of(32) {
        return Err(malformed("length is not a whole number of ids"));
    }
    Ok(body
        .chunks_exact(32)
        .filter_map(BlobId::from_slice)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_round_trips_and_is_stable_under_insertion() {
        let mut ids: Vec<BlobId> = (0..5000).map(|_| BlobId::random()).collect();
        ids.sort();
        let blobs = encode(&ids);
        assert!(
            blobs.len() > 5,
            "5000 ids should split into about ten blobs, got {}",
            blobs.len()
        );
        assert!(
            blobs.iter().all(|b| b.len() < 5 + 32 * 3000),
            "no part may approach the forced cap"
        );
        let back: Vec<BlobId> = blobs.iter().flat_map(|b| decode(b, "r").unwrap()).collect();
        assert_eq!(back, ids);
        let mut more = ids.clone();
        more.push(BlobId::random());
        more.sort();
        let shared = encode(&more).iter().filter(|b| blobs.contains(b)).count();
        assert!(
            shared + 2 >= blobs.len(),
            "one new id must change at most two blobs"
        );
    }
}
