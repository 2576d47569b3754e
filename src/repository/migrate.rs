//! `migrate`: upgrade a format-1 repository to format 2 in place, re-encrypting nothing. Format 1
//! objects carry no signatures, and rewriting every one would need overwrites a write-once
//! (object-locked) store refuses; instead the operator signs a list of every object's hash
//! (`keys/migrated-v1`), which readers accept for exactly those bytes. Then a trust list and a
//! new, signing writer credential are written, and `config` is replaced last, so an interrupted
//! migrate leaves a format-1 repository that works as before and a rerun starts over.

use super::init::{first_trust, FirstTrust};
use super::trust::{Anchor, Auth};
use super::{verify, Repository};
use crate::backend::Backend;
use crate::crypto::sign::ObjectSigner;
use crate::error::{Error, Result};
use crate::format::config::REPO_VERSION;
use crate::format::keys::{MetadataKeyRecord, WriterCredential, KEYS_VERSION};
use crate::format::trust::{Migration, MIGRATION_NAME, TRUST_VERSION};
use crate::format::ObjectKind;
use age::x25519;

/// What a migration did.
#[derive(Debug, serde::Serialize)]
pub struct Migrated {
    pub objects: usize,
    pub packs: usize,
    /// Objects that did not open as their kind: not vouched for, reported by name.
    pub refused: Vec<(String, String)>,
    pub credential_id: String,
}

/// Upgrade the format-1 repository `repo` (opened with `operator`'s identity) to format 2.
/// `keep_credential` stores the new writer credential; it runs before `config` switches, so a
/// crash can never leave a format-2 repository whose only writer credential was lost.
pub fn migrate(
    repo: &Repository,
    operator: &x25519::Identity,
    now: &str,
    keep_credential: impl FnOnce(&str) -> Result<()>,
) -> Result<Migrated> {
    repo.require_operator("migrate")?;
    if repo.config.signed() {
        return Err(Error::Usage(format!(
            "repository {} is already format version {}; there is nothing to migrate.",
            repo.config.repo_id.short(),
            repo.config.version
        )));
    }
    let backend = repo.backend.as_ref();
    clear_leftovers(backend)?;
    let (manifest, refused) = vouch(repo)?;
    let signer = ObjectSigner::for_operator(operator);
    let mut config = repo.config.clone();
    config.version = REPO_VERSION;
    let body = serde_json::to_vec(&manifest).map_err(internal)?;
    let stored = signer.envelope(ObjectKind::Migration.what(), MIGRATION_NAME, &body);
    let migrated = hex::encode(crate::id::content_hash(&stored));
    backend.put_new(MIGRATION_NAME, &stored)?;
    let own = operator.to_public().to_string();
    let metadata = MetadataKeyRecord {
        version: KEYS_VERSION,
        identity: crate::crypto::keys::identity_secret(&repo.meta.identity).to_string(),
        dedup_key: hex::encode(*repo.meta.dedup_key),
    };
    let text = first_trust(
        backend,
        &FirstTrust {
            config: &config,
            signer: &signer,
            operator: &own,
            metadata: &metadata,
            now,
            writer_name: "writer (issued by migrate)",
            migrated: Some(migrated),
        },
        |plain| repo.seal_for_operators(plain, "writer credential"),
    )?;
    // Everything format 2 needs is in place and verifies; only then does config switch.
    Auth::load(
        backend,
        &config,
        signer,
        &Anchor::Operator {
            pin_dir: None,
            recipient: own.clone(),
        },
    )?;
    keep_credential(&text)?;
    let json = serde_json::to_vec_pretty(&config).map_err(internal)?;
    backend.replace("config", &json)?;
    Ok(Migrated {
        objects: manifest.objects.len(),
        packs: manifest.packs.len(),
        refused,
        credential_id: credential_id(&text),
    })
}

/// An interrupted migrate left a trust list or a migration list behind; nobody reads them
/// while `config` says format 1, so they are removed and made afresh.
fn clear_leftovers(backend: &dyn Backend) -> Result<()> {
    super::init::clear_trust_lists(backend)?;
    if backend
        .list("keys/")?
        .iter()
        .any(|o| o.name == MIGRATION_NAME)
    {
        backend.delete(MIGRATION_NAME)?;
    }
    Ok(())
}

/// List every object with the hash of its bytes, after opening each as its kind: format 1
/// could not authenticate anything, so migrate vouches only for what is well-formed (a
/// well-formed forgery planted before the migration cannot be told apart: FORMAT.md).
fn vouch(repo: &Repository) -> Result<(Migration, Vec<(String, String)>)> {
    let mut manifest = Migration {
        version: TRUST_VERSION,
        ..Default::default()
    };
    let mut refused = Vec::new();
    for (object, kind) in verify::all_objects(repo)? {
        let name = object.name.clone();
        let bytes = match repo.get_listed(kind, &object) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                refused.push((name, e.to_string()));
                continue;
            }
        };
        match well_formed(repo, kind, &name, &bytes) {
            Ok(()) => {
                manifest
                    .objects
                    .insert(name, hex::encode(crate::id::content_hash(&bytes)));
            }
            Err(e) => refused.push((name, e.to_string())),
        }
    }
    manifest.packs = repo
        .list_ids::<crate::id::PackId>("packs/")?
        .into_iter()
        .map(|(id, _)| id.to_hex())
        .collect();
    Ok((manifest, refused))
}

/// Open an object as its kind would be opened (format 1: no signatures to check).
fn well_formed(repo: &Repository, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
    use serde_json::Value;
    match kind {
        ObjectKind::Snapshot
        | ObjectKind::Index
        | ObjectKind::Hold
        | ObjectKind::Destruction
        | ObjectKind::Marker
        | ObjectKind::Lease
        | ObjectKind::DomainWriter => repo.open_meta::<Value>(kind, name, bytes).map(drop),
        // Sealed to operators or domains: the hash check of hash-named ones is what remains.
        _ => repo.verify(kind, name, bytes).map(drop),
    }
}

/// The id in a credential file just made.
fn credential_id(text: &str) -> String {
    serde_json::from_str::<WriterCredential>(text)
        .map(|c| c.credential_id)
        .unwrap_or_default()
}

fn internal(e: serde_json::Error) -> Error {
    Error::Internal(format!(
        "internal error: serialising for migrate failed: {e}"
    ))
}
