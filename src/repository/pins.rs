//! What an operator's or auditor's machine remembers of a repository's trust list: the first
//! version's fingerprint, pinned per location after the whole chain verified, so a replaced list
//! or a downgrade to unsigned format 1 is caught later.

use super::trust::{forged, read_chain};
use crate::backend::Backend;
use crate::crypto::sign::open_envelope;
use crate::error::{Error, Result};
use crate::format::config::RepoConfig;
use crate::format::trust::{TrustList, TRUST_VERSION};
use crate::format::{decode_json, ObjectKind};
use std::path::{Path, PathBuf};

/// Refuse to treat a repository as format 1 when this credential or machine knows it was
/// format 2: deleting the trust list and editing `config` back must not switch signatures off.
pub fn refuse_downgrade(
    config: &RepoConfig,
    signed_credential: bool,
    pin: Option<(&Path, &str)>,
) -> Result<()> {
    let pinned = pin.is_some_and(|(dir, location)| pin_file(dir, location).exists());
    if signed_credential || pinned {
        return Err(Error::Untrusted(format!(
            "repository {} says it is format version {}, but your {} knows it as format 2 \
             (signed): its config was replaced to switch signatures off. Nothing was read or \
             written; compare the repository with a copy.",
            config.repo_id.short(),
            config.version,
            if signed_credential {
                "writer credential"
            } else {
                "machine"
            }
        )));
    }
    Ok(())
}

/// What operators compare before trusting a repository they did not create: the first 32 hex
/// characters (128 bits) of `H(first trust list as stored)`.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(&crate::id::content_hash(bytes)[..16])
}

/// The pin file for a repository location (an attacker controls the repository id, not where
/// the operator points custodian).
pub(super) fn pin_file(dir: &Path, location: &str) -> PathBuf {
    dir.join(location_key(location))
}

/// A file name for what this machine keeps about the repository at `location` (pins, audit
/// anchors): one repository, one name, so `/srv/r`, `/srv/r/` and a symlink to it agree.
pub fn location_key(location: &str) -> String {
    let canonical = match location.contains("://") {
        true => location.to_string(),
        false => std::fs::canonicalize(location)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| location.to_string()),
    };
    hex::encode(crate::id::content_hash(canonical.as_bytes()))[..32].to_string()
}

/// Whether a pin exists for `location` and matches; a different one is an error.
pub(super) fn check_pin(
    dir: &Path,
    location: &str,
    list: &TrustList,
    bytes: &[u8],
) -> Result<bool> {
    let file = pin_file(dir, location);
    let Ok(pinned) = std::fs::read_to_string(&file) else {
        return Ok(false);
    };
    if pinned.trim() == pin_text(list, bytes) {
        return Ok(true);
    }
    Err(Error::Untrusted(format!(
        "the repository at {location} is not the one this machine knows there (pinned in {}): \
         its trust list or identity was replaced. Do not use it until an operator who signed \
         it confirms what happened.",
        file.display()
    )))
}

/// Pin the (verified) first trust list for `location` unless a pin is there already.
pub(super) fn pin_verified(dir: &Path, location: &str, name: &str, bytes: &[u8]) -> Result<()> {
    if pin_file(dir, location).exists() {
        return Ok(());
    }
    let (_, body) = open_envelope(ObjectKind::Trust.what(), name, bytes)
        .map_err(|e| forged(name, &e.to_string()))?;
    let list: TrustList = decode_json(body, name, TRUST_VERSION)?;
    write_pin(dir, location, &list, bytes)
}

pub(super) fn pin_text(list: &TrustList, bytes: &[u8]) -> String {
    format!(
        "{} {}",
        list.repo_id.to_hex(),
        hex::encode(crate::id::content_hash(bytes))
    )
}

pub(super) fn write_pin(dir: &Path, location: &str, list: &TrustList, bytes: &[u8]) -> Result<()> {
    crate::fsutil::private_dir(dir)?;
    let file = pin_file(dir, location);
    std::fs::write(&file, pin_text(list, bytes)).map_err(|e| Error::io(&file, e))
}

/// `custodian key trust`: pin the repository at `backend` after the operator compared its
/// fingerprint. Returns who signed the first trust list.
pub fn confirm(backend: &dyn Backend, pin_dir: &Path, fingerprint_given: &str) -> Result<String> {
    let chain = read_chain(backend)?;
    let Some((name, bytes)) = chain.first() else {
        return Err(Error::Usage(
            "this repository has no trust list (format 1): there is nothing to pin.".into(),
        ));
    };
    if fingerprint(bytes) != fingerprint_given.trim().to_ascii_lowercase() {
        return Err(Error::Untrusted(format!(
            "the repository's fingerprint is {}, not {fingerprint_given}: do not trust it until \
             the operator who created it confirms which is right.",
            fingerprint(bytes)
        )));
    }
    let (_, body) = open_envelope(ObjectKind::Trust.what(), name, bytes)
        .map_err(|e| forged(name, &e.to_string()))?;
    let list: TrustList = decode_json(body, name, TRUST_VERSION)?;
    write_pin(pin_dir, &backend.location(), &list, bytes)?;
    Ok(list.by)
}
