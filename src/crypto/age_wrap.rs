//! age encryption of whole small objects (keys, index, snapshot heads, pack headers). age costs
//! ~0.1 ms and ~300 bytes per object, so it is never used per blob.

use crate::error::CryptoError;
use age::x25519;
use std::io::{Read, Write};

/// Encrypt `plaintext` so any one of `recipients` can open it.
pub fn seal_to(
    recipients: &[x25519::Recipient],
    plaintext: &[u8],
    what: &str,
) -> Result<Vec<u8>, CryptoError> {
    let fail = |reason: String| CryptoError::Encrypt {
        what: what.to_string(),
        reason,
    };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| fail(e.to_string()))?;
    writer
        .write_all(plaintext)
        .map_err(|e| fail(e.to_string()))?;
    writer.finish().map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

/// Decrypt with whichever of `identities` matches. `hint` tells the user which key was expected.
pub fn open_with(
    identities: &[&x25519::Identity],
    ciphertext: &[u8],
    what: &str,
    hint: &str,
) -> Result<Vec<u8>, CryptoError> {
    let no_key = || CryptoError::NoMatchingKey {
        what: what.to_string(),
        hint: hint.to_string(),
    };
    let decryptor = age::Decryptor::new(ciphertext).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            CryptoError::Tampered {
                what: what.to_string(),
            }
        }
        _ => no_key(),
    })?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| *i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => no_key(),
            _ => CryptoError::Tampered {
                what: what.to_string(),
            },
        })?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| CryptoError::Tampered {
            what: what.to_string(),
        })?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens() {
        let alice = x25519::Identity::generate();
        let mallory = x25519::Identity::generate();
        let sealed = seal_to(&[alice.to_public()], b"ledger", "test object").unwrap();
        assert_eq!(open_with(&[&alice], &sealed, "t", "").unwrap(), b"ledger");
        assert!(matches!(
            open_with(&[&mallory], &sealed, "t", ""),
            Err(CryptoError::NoMatchingKey { .. })
        ));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(open_with(&[&alice], &damaged, "t", "").is_err());
    }
}
