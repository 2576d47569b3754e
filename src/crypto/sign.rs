//! Signed envelopes (format version 2): every stored object that is not a content-hashed pack
//! carries the Ed25519 public key of whoever wrote it and a signature binding its kind, its full
//! object name and the BLAKE3 hash of its body. A storage provider holds no signing key, so it
//! cannot create, alter, rename or swap an object without the signature failing; a writer
//! credential's key says which credential wrote what. docs/FORMAT.md gives the argument.

use crate::crypto::keys::identity_secret;
use age::x25519;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// First bytes of a signed envelope (age files start with "age-encryption.org", JSON with '{').
pub const MAGIC: &[u8; 8] = b"CUSTSIG1";
/// Magic, public key, signature.
pub const HEADER_LEN: usize = 8 + 32 + 64;

const CONTEXT: &[u8] = b"custodian 2026 signed object v2";
const OPERATOR_KDF: &str = "custodian 2026 operator signing key v2";

/// A signing key and what to call it in records.
pub struct ObjectSigner {
    key: SigningKey,
}

impl ObjectSigner {
    /// From a 32-byte Ed25519 seed (a writer credential's `signing-key`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        ObjectSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh random key, for a new writer credential.
    pub fn generate() -> (Self, Zeroizing<[u8; 32]>) {
        let seed = crate::crypto::keys::random_key();
        (Self::from_seed(&seed), seed)
    }

    /// The operator's signing key: an age X25519 identity cannot sign, so the Ed25519 seed is
    /// `BLAKE3 derive_key("custodian 2026 operator signing key v2", identity string)`. Whoever
    /// holds the identity can re-derive it; nobody else learns anything about the identity from
    /// the public key (derive_key is a PRF keyed by the identity).
    pub fn for_operator(identity: &x25519::Identity) -> Self {
        let secret = identity_secret(identity);
        let seed = Zeroizing::new(blake3::derive_key(OPERATOR_KDF, secret.as_bytes()));
        Self::from_seed(&seed)
    }

    /// The public half, as stored in envelopes and the trust list.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Wrap `body` stored as `name` of `kind` in a signed envelope.
    pub fn envelope(&self, kind: &str, name: &str, body: &[u8]) -> Vec<u8> {
        let sig = self.key.sign(&message(kind, name, body));
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.public());
        out.extend_from_slice(&sig.to_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// What is signed: a context string, the kind, the full object name, and H(body). Binding the
/// name means a valid object copied under another name (another domain's record, another
/// snapshot's hold) fails.
fn message(kind: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + kind.len() + name.len() + 34);
    m.extend_from_slice(CONTEXT);
    m.push(0);
    m.extend_from_slice(kind.as_bytes());
    m.push(0);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(blake3::hash(body).as_bytes());
    m
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("is not signed (format version 2 signs every object)")]
    Unsigned,
    #[error("has a signature that does not verify: it was altered, renamed or forged")]
    BadSignature,
}

/// Split a stored object into (signer public key, body) after checking the signature over
/// `kind` and `name`. Whether the signer is trusted is the caller's question.
pub fn open_envelope<'a>(
    kind: &str,
    name: &str,
    stored: &'a [u8],
) -> Result<([u8; 32], &'a [u8]), EnvelopeError> {
    if stored.len() < HEADER_LEN || &stored[..8] != MAGIC {
        return Err(EnvelopeError::Unsigned);
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&stored[8..40]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&stored[40..HEADER_LEN]);
    let body = &stored[HEADER_LEN..];
    let key = VerifyingKey::from_bytes(&public).map_err(|_| EnvelopeError::BadSignature)?;
    key.verify_strict(&message(kind, name, body), &Signature::from_bytes(&sig))
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok((public, body))
}

/// The body of a stored object without checking anything: for names that are the hash of the
/// body (copy compares them before the destination's readers verify the signature).
pub fn unverified_body(stored: &[u8]) -> &[u8] {
    match stored.get(..8) {
        Some(m) if m == MAGIC && stored.len() >= HEADER_LEN => &stored[HEADER_LEN..],
        _ => stored,
    }
}

/// A short, stable name for a public key in messages and listings.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&blake3::hash(public).as_bytes()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_bind_kind_name_and_body() {
        let (signer, _) = ObjectSigner::generate();
        let env = signer.envelope("hold", "holds/ab", b"body");
        let (public, body) = open_envelope("hold", "holds/ab", &env).unwrap();
        assert_eq!((public, body), (signer.public(), &b"body"[..]));
        assert_eq!(
            open_envelope("hold", "holds/cd", &env),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(
            open_envelope("index", "holds/ab", &env),
            Err(EnvelopeError::BadSignature)
        );
        let mut altered = env.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open_envelope("hold", "holds/ab", &altered),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(
            open_envelope("hold", "holds/ab", b"age-encryption.org/v1"),
            Err(EnvelopeError::Unsigned)
        );
    }

    #[test]
    fn an_operator_key_is_derived_from_the_identity_alone() {
        let id = x25519::Identity::generate();
        let again: x25519::Identity = identity_secret(&id).parse().unwrap();
        assert_eq!(
            ObjectSigner::for_operator(&id).public(),
            ObjectSigner::for_operator(&again).public()
        );
        let other = x25519::Identity::generate();
        assert_ne!(
            ObjectSigner::for_operator(&id).public(),
            ObjectSigner::for_operator(&other).public()
        );
    }
}
