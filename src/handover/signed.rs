//! Detached signatures over a handover list or receipt: the object envelope of
//! `crypto::sign` (Ed25519 over context, kind, name and BLAKE3 of the body), with the body kept
//! as a readable JSON file and the envelope's header (magic, public key, signature) beside it.

use crate::crypto::sign::{open_envelope, ObjectSigner};
use crate::error::{Error, Result};
use crate::format::handover::MAX_LIST;
use crate::repository::SignedDocument;
use std::path::Path;

/// The two files of a signed document in a handover directory.
pub struct SignedFiles<'a> {
    pub json: &'a str,
    pub sig: &'a str,
}

/// Sign `json` as handover `id`'s document of `kind`.
pub fn sign_document(signer: &ObjectSigner, kind: &str, id: &str, json: String) -> SignedDocument {
    let envelope = signer.envelope(kind, &format!("handovers/{id}"), json.as_bytes());
    let header = &envelope[..envelope.len() - json.len()];
    SignedDocument {
        version: crate::format::handover::HANDOVER_VERSION,
        signature: hex::encode(header),
        json,
    }
}

/// Check `doc` as handover `id`'s document of `kind`; returns the signer's public key.
pub fn verify_document(doc: &SignedDocument, kind: &str, id: &str) -> Result<[u8; 32]> {
    let header = hex::decode(doc.signature.trim()).map_err(|_| {
        Error::Untrusted(format!("the {kind}'s signature is not hex: it was altered"))
    })?;
    let mut stored = header;
    stored.extend_from_slice(doc.json.as_bytes());
    let (public, _) = open_envelope(kind, &format!("handovers/{id}"), &stored).map_err(|e| {
        Error::Untrusted(format!(
            "the {kind} of handover {id} {e}. Do not accept it: ask the other owner to send \
             the handover directory again over a channel you trust."
        ))
    })?;
    Ok(public)
}

/// Write a signed document into the handover directory.
pub fn write_signed(dir: &Path, files: &SignedFiles, doc: &SignedDocument) -> Result<()> {
    for (name, text) in [(files.json, &doc.json), (files.sig, &doc.signature)] {
        super::write_file(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Read a signed document from the handover directory and check its signature for handover
/// `id` (or, when `id` is `None`, the id the document names itself); returns it, its parsed
/// value, and the signer.
pub fn read_signed<T: serde::de::DeserializeOwned>(
    dir: &Path,
    files: &SignedFiles,
    kind: &str,
    id_of: impl Fn(&T) -> String,
) -> Result<(SignedDocument, T, [u8; 32])> {
    let json = super::read_limited(&dir.join(files.json), MAX_LIST as u64)?;
    let signature = super::read_limited(&dir.join(files.sig), 4096)?;
    let json = String::from_utf8(json).map_err(|_| {
        Error::Untrusted(format!("{} is not UTF-8 text: it was altered", files.json))
    })?;
    let value: T = crate::format::decode_json(
        json.as_bytes(),
        files.json,
        crate::format::handover::HANDOVER_VERSION,
    )?;
    // The id names files and objects: checked before anything uses it.
    crate::format::handover::valid_id(&id_of(&value))?;
    let doc = SignedDocument {
        version: crate::format::handover::HANDOVER_VERSION,
        json,
        signature: String::from_utf8_lossy(&signature).trim().to_string(),
    };
    let signer = verify_document(&doc, kind, &id_of(&value))?;
    Ok((doc, value, signer))
}
