//! Blob frames: `version(1) | session id(16) | XChaCha20-Poly1305(payload) | tag(16)`.
//! The associated data binds the ciphertext to its blob id and kind, so a blob moved to another
//! id or kind fails to open. Frames are self-describing, so prune can copy them without keys.
//!
//! The nonce is synthetic (as in SIV modes): a keyed hash of the blob id and kind under a key
//! derived from the session key. The id is itself a keyed hash of the plaintext, so two
//! different plaintexts never share a nonce under one key, and the 24 bytes need not be stored
//! (about 1 MB saved per 40,000 blobs). docs/DESIGN.md records the reasoning.

use crate::error::CryptoError;
use crate::id::{BlobId, SessionId};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_CONTEXT: &str = "custodian 2026 blob nonce v1";

/// Frame format version written by this build.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the ciphertext.
pub const FRAME_HEADER_LEN: usize = 1 + SessionId::LEN;
/// Total bytes a frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 16;
const AAD_PREFIX: &[u8] = b"custodian-blob-v1";

/// A backup run's symmetric key; zeroed when dropped so it is forgotten when the run ends.
pub struct SessionKey {
    /// Which `sessions/<id>` object holds this key wrapped to its domain.
    pub id: SessionId,
    key: Zeroizing<[u8; 32]>,
    nonce_key: Zeroizing<[u8; 32]>,
}

impl SessionKey {
    /// A fresh random key for one run.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self::from_bytes(SessionId::random(), key)
    }

    /// Rebuild from stored bytes.
    pub fn from_bytes(id: SessionId, bytes: [u8; 32]) -> Self {
        let nonce_key = Zeroizing::new(blake3::derive_key(NONCE_CONTEXT, &bytes));
        SessionKey {
            id,
            key: Zeroizing::new(bytes),
            nonce_key,
        }
    }

    /// Raw key bytes, for wrapping into the session object.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()))
    }

    /// The synthetic nonce of blob `id` of `kind` under this key.
    fn nonce(&self, id: &BlobId, kind: u8) -> XNonce {
        let mut hasher = blake3::Hasher::new_keyed(&self.nonce_key);
        hasher.update(&id.0);
        hasher.update(&[kind]);
        *XNonce::from_slice(&hasher.finalize().as_bytes()[..24])
    }
}

fn aad(id: &BlobId, kind: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 33);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(&id.0);
    aad.push(kind);
    aad
}

/// Seal `compression_tag || payload` into a frame under `key`.
pub fn seal_blob(
    key: &SessionKey,
    id: &BlobId,
    kind: u8,
    compression_tag: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + 1 + payload.len());
    frame.push(FRAME_VERSION);
    frame.extend_from_slice(&key.id.0);
    frame.push(compression_tag);
    frame.extend_from_slice(payload);
    let tag = key
        .cipher()
        .encrypt_in_place_detached(
            &key.nonce(id, kind),
            &aad(id, kind),
            &mut frame[FRAME_HEADER_LEN..],
        )
        // XChaCha20 fails only beyond 256 GiB per message; a blob is at most a chunk.
        .unwrap_or_else(|_| unreachable!("a blob is far below the AEAD's length limit"));
    frame.extend_from_slice(&tag);
    frame
}

/// The session a frame was sealed under, readable without any key.
pub fn frame_session(frame: &[u8]) -> Option<SessionId> {
    if frame.len() < FRAME_OVERHEAD + 1 || frame[0] != FRAME_VERSION {
        return None;
    }
    SessionId::from_slice(&frame[1..1 + SessionId::LEN])
}

/// Open a frame, returning `(compression_tag, payload)`. Fails on any change to its bytes.
pub fn open_blob(
    key: &SessionKey,
    id: &BlobId,
    kind: u8,
    frame: &[u8],
    what: &str,
) -> Result<(u8, Vec<u8>), CryptoError> {
    let tampered = || CryptoError::Tampered {
        what: what.to_string(),
    };
    if frame_session(frame) != Some(key.id) {
        return Err(tampered());
    }
    let body_end = frame.len() - 16;
    let mut body = frame[FRAME_HEADER_LEN..body_end].to_vec();
    let tag = Tag::from_slice(&frame[body_end..]);
    key.cipher()
        .decrypt_in_place_detached(&key.nonce(id, kind), &aad(id, kind), &mut body, tag)
        .map_err(|_| tampered())?;
    let compression = body.remove(0);
    Ok((compression, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..4096), tag in 0u8..2) {
            let key = SessionKey::generate();
            let id = BlobId::random();
            let frame = seal_blob(&key, &id, 0, tag, &payload);
            prop_assert_eq!(frame.len(), payload.len() + 1 + FRAME_OVERHEAD);
            let (t, p) = open_blob(&key, &id, 0, &frame, "b").unwrap();
            prop_assert_eq!(t, tag);
            prop_assert_eq!(p, payload);
        }
    }

    #[test]
    fn any_flipped_bit_or_wrong_binding_fails() {
        let key = SessionKey::generate();
        let id = BlobId::random();
        let frame = seal_blob(&key, &id, 0, 0, b"customer ledger line");
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x40;
            assert!(
                open_blob(&key, &id, 0, &bad, "b").is_err(),
                "flip at {i} went unnoticed"
            );
        }
        assert!(open_blob(&key, &BlobId::random(), 0, &frame, "b").is_err());
        assert!(open_blob(&key, &id, 1, &frame, "b").is_err());
        let other = SessionKey::from_bytes(key.id, [7u8; 32]);
        assert!(open_blob(&other, &id, 0, &frame, "b").is_err());
    }
}
