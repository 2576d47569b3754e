//! `migrate`: upgrade a format-1 repository to format 2 in place, re-encrypting nothing. Format 1
//! objects carry no signatures, and rewriting every one would need overwrites a write-once
//! (object-locked) store refuses; instead the operator signs a list of every object's hash
//! (`keys/migrated-v1`), which readers accept for exactly those bytes. Then a trust list and a
//! new, signing writer credential are written, and `config` is replaced last, so an interrupted
//! migrate leaves a format-1 repository that works as before and a rerun starts over.

use super::trust::{Anchor, Auth};
use super::{verify, Repository};
use crate::backend::Backend;
use crate::crypto::sign::{key_id, ObjectSigner};
use crate::error::{Error, Result};
use crate::format::config::REPO_VERSION;
use crate::format::keys::{WriterCredential, KEYS_VERSION, WRITER_KIND};
use crate::format::trust::{
    trust_name, Migration, TrustList, TrustedOperator, TrustedWriter, MIGRATION_NAME, TRUST_VERSION,
};
use crate::format::ObjectKind;
use age::x25519;
use zeroize::Zeroizing;

/// What a migration did.
#[derive(Debug, serde::Serialize)]
pub struct Migrated {
    pub objects: usize,
    pub packs: usize,
    /// Objects that did not open as their kind: not vouched for, reported by name.
    pub refused: Vec<(String, String)>,
    #[serde(skip)]
    pub writer_credential: Zeroizing<String>,
    pub credential_id: String,
}

/// Upgrade the format-1 repository `repo` (opened with `operator`'s identity) to format 2.
pub fn migrate(repo: &Repository, operator: &x25519::Identity, now: &str) -> Result<Migrated> {
    repo.require_operator("migrate")?;
    if repo.config.signed() {
        return Err(Error::Invalid(format!(
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
    let (writer, seed) = ObjectSigner::generate();
    let credential = WriterCredential {
        version: KEYS_VERSION,
        kind: WRITER_KIND.into(),
        repo_id: config.repo_id,
        credential_id: crate::id::SessionId::random().to_hex(),
        metadata_identity: crate::crypto::keys::identity_secret(&repo.meta.identity).to_string(),
        metadata_dedup_key: hex::encode(*repo.meta.dedup_key),
        signing_key: Some(hex::encode(*seed)),
        config_digest: Some(config.digest()),
        operator_keys: vec![hex::encode(signer.public())],
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&credential).map_err(internal)? + "\n");
    let body = serde_json::to_vec(&manifest).map_err(internal)?;
    let stored = signer.envelope(ObjectKind::Migration.what(), MIGRATION_NAME, &body);
    let migrated = hex::encode(crate::id::content_hash(&stored));
    backend.put_new(MIGRATION_NAME, &stored)?;
    let copy_name = format!("keys/writer-{}", credential.credential_id);
    let sealed = repo.seal_for_operators(text.as_bytes(), "writer credential")?;
    backend.put_new(
        &copy_name,
        &signer.envelope(ObjectKind::KeyRecord.what(), &copy_name, &sealed),
    )?;
    let own = operator.to_public().to_string();
    let list = TrustList {
        version: TRUST_VERSION,
        repo_id: config.repo_id,
        seq: 1,
        prev: None,
        time: now.to_string(),
        by: format!("operator {}", key_id(&signer.public())),
        config: config.clone(),
        operators: config
            .operator_recipients
            .iter()
            .map(|r| TrustedOperator {
                recipient: r.clone(),
                signing_key: (*r == own).then(|| hex::encode(signer.public())),
            })
            .collect(),
        writers: vec![TrustedWriter {
            id: credential.credential_id.clone(),
            name: "writer (issued by migrate)".into(),
            key: hex::encode(writer.public()),
            added: now.to_string(),
        }],
        migrated: Some(migrated),
    };
    let name = trust_name(1);
    let body = serde_json::to_vec_pretty(&list).map_err(internal)?;
    backend.put_new(
        &name,
        &signer.envelope(ObjectKind::Trust.what(), &name, &body),
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
    let json = serde_json::to_vec_pretty(&config).map_err(internal)?;
    backend.replace("config", &json)?;
    Ok(Migrated {
        objects: manifest.objects.len(),
        packs: manifest.packs.len(),
        refused,
        writer_credential: text,
        credential_id: credential.credential_id,
    })
}

/// An interrupted migrate left a trust list or a migration list behind; nobody reads them
/// while `config` says format 1, so they are removed and made afresh.
fn clear_leftovers(backend: &dyn Backend) -> Result<()> {
    for o in backend.list("keys/")? {
        if o.name.starts_with("keys/trust-") || o.name == MIGRATION_NAME {
            backend.delete(&o.name)?;
        }
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

fn internal(e: serde_json::Error) -> Error {
    Error::Invalid(format!(
        "internal error: serialising for migrate failed: {e}"
    ))
}
