//! Creating a repository: the metadata key sealed to the operators, the first writer credential
//! and the first trust list, all signed by the creating operator, and `config` last, so an
//! interrupted init leaves no repository. `migrate` issues its first trust list the same way.

use super::keyring::metadata_object;
use super::Repository;
use crate::backend::Backend;
use crate::chunker::ChunkerParams;
use crate::crypto;
use crate::crypto::keys::{identity_secret, parse_recipient, random_key, MetadataKeys};
use crate::crypto::sign::{key_id, ObjectSigner};
use crate::error::{Error, Result};
use crate::format::config::{RepoConfig, REPO_VERSION};
use crate::format::keys::*;
use crate::format::trust::{trust_name, TrustList, TrustedOperator, TrustedWriter, TRUST_VERSION};
use crate::format::ObjectKind;
use crate::id::RepoId;
use age::x25519;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Choices fixed at `init`.
pub struct InitOptions {
    /// The operator who creates the repository: signs its first trust list (format 2).
    pub operator: x25519::Identity,
    /// Further operators' recipients (the creating operator's own is always included).
    pub recipients: Vec<String>,
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    pub pack_target: u64,
    pub created: String,
}

/// A new repository (its writer credential went to `keep_credential`).
pub struct Initialized {
    pub repo: Repository,
}

/// Create a repository. `config` is written last, so an interrupted init leaves no repository;
/// before it come the key records and the trust list, all signed by the creating operator.
/// `keep_credential` stores the writer credential before `config` exists, so a kill can never
/// leave a repository whose credential was not handed out.
pub fn init(
    backend: Arc<dyn Backend>,
    opts: InitOptions,
    keep_credential: impl FnOnce(&str) -> Result<()>,
) -> Result<Initialized> {
    if backend.get_if_present("config")?.is_some() {
        return Err(Error::RepositoryExists(backend.location()));
    }
    clear_interrupted_init(backend.as_ref())?;
    let create_if_absent = crate::backend::probe::at_init(backend.as_ref())?;
    if !create_if_absent.is_atomic() {
        super::exclusive::warn_safe_mode(&backend.location(), create_if_absent);
    }
    let own = opts.operator.to_public().to_string();
    let mut recipients = vec![own.clone()];
    recipients.extend(opts.recipients.iter().filter(|r| **r != own).cloned());
    let operators = recipients
        .iter()
        .map(|r| parse_recipient(r, "--recipient"))
        .collect::<Result<Vec<_>>>()?;
    opts.chunker.validate().map_err(Error::Usage)?;
    use crate::constants::{PACK_TARGET_MAX, PACK_TARGET_MIN};
    if !(PACK_TARGET_MIN..=PACK_TARGET_MAX).contains(&opts.pack_target) {
        return Err(Error::Usage(format!(
            "--pack-size {} is out of range: choose between {PACK_TARGET_MIN} (64 KiB) and \
             {PACK_TARGET_MAX} (512 MiB) bytes; the default is 16 MiB.",
            opts.pack_target
        )));
    }
    let meta_identity = x25519::Identity::generate();
    let meta_dedup = random_key();
    let config = RepoConfig {
        version: REPO_VERSION,
        repo_id: RepoId::random(),
        created: opts.created.clone(),
        chunker: opts.chunker,
        zstd_level: opts.zstd_level,
        pack_target: opts.pack_target,
        operator_recipients: operators.iter().map(|r| r.to_string()).collect(),
        metadata_recipient: meta_identity.to_public().to_string(),
    };
    let signer = ObjectSigner::for_operator(&opts.operator);
    let record = MetadataKeyRecord {
        version: KEYS_VERSION,
        identity: identity_secret(&meta_identity).to_string(),
        dedup_key: hex::encode(*meta_dedup),
    };
    let name = metadata_object(&config.metadata_recipient);
    let sealed = crypto::seal_to(
        &operators,
        &crate::compress::pack_json(&record)?,
        "metadata key",
    )?;
    backend.put_new(
        &name,
        &signer.envelope(ObjectKind::KeyRecord.what(), &name, &sealed),
    )?;
    let credential_text = first_trust(
        backend.as_ref(),
        &FirstTrust {
            config: &config,
            signer: &signer,
            operator: &recipients[0],
            metadata: &record,
            now: &opts.created,
            writer_name: "writer",
            migrated: None,
        },
        |plain| Ok(crypto::seal_to(&operators, plain, "writer credential")?),
    )?;
    keep_credential(&credential_text)?;
    let config_json = serde_json::to_vec_pretty(&config).map_err(internal)?;
    let auth = super::trust::Auth::load(
        backend.as_ref(),
        &config,
        signer,
        &super::trust::Anchor::Operator {
            pin_dir: None,
            recipient: own.clone(),
        },
    )?;
    let repo = Repository::open_with_meta(
        backend.clone(),
        config.clone(),
        MetadataKeys {
            identity: meta_identity,
            dedup_key: meta_dedup,
        },
        create_if_absent,
        Some(auth),
    )?;
    if !repo.create_exclusive("config", &config_json)? {
        return Err(Error::RepositoryExists(backend.location()));
    }
    Ok(Initialized { repo })
}

/// Make way for a new init where an earlier one was interrupted (no `config`): its trust list
/// would clash by name, so trust lists go; its other key records have unique names and stay,
/// inert. A location with data but no `config` is a damaged repository, not a leftover: refused,
/// since creating over it would strand that data for good.
fn clear_interrupted_init(backend: &dyn Backend) -> Result<()> {
    for prefix in ["snapshots/", "index/", "packs/"] {
        if let Some(o) = backend.list(prefix)?.into_iter().next() {
            return Err(Error::Damaged(format!(
                "{} holds repository data ({}) but no config: this is a damaged repository, not \
                 an empty location. Restore its config from a copy, or choose another location \
                 for the new repository.",
                backend.location(),
                o.name
            )));
        }
    }
    clear_trust_lists(backend)
}

/// Delete every trust list: only ever done where no `config` gives them meaning (an interrupted
/// init, or a migrate that has not switched `config` yet).
pub(super) fn clear_trust_lists(backend: &dyn Backend) -> Result<()> {
    for o in backend.list("keys/")? {
        if o.name.starts_with("keys/trust-") {
            backend.delete(&o.name)?;
        }
    }
    Ok(())
}

/// What the first trust list of a repository is made from (`init`, `migrate`).
pub(super) struct FirstTrust<'a> {
    pub config: &'a RepoConfig,
    pub signer: &'a ObjectSigner,
    /// The signing operator's recipient.
    pub operator: &'a str,
    pub metadata: &'a MetadataKeyRecord,
    pub now: &'a str,
    pub writer_name: &'a str,
    pub migrated: Option<String>,
}

/// Issue the first writer credential (its copy sealed by `seal_for_operators` and signed) and
/// write trust list version 1 naming it, signed by `t.signer`. Returns the credential file text.
pub(super) fn first_trust(
    backend: &dyn Backend,
    t: &FirstTrust,
    seal_for_operators: impl Fn(&[u8]) -> Result<Vec<u8>>,
) -> Result<Zeroizing<String>> {
    let (writer, seed) = ObjectSigner::generate();
    let credential = WriterCredential {
        version: KEYS_VERSION,
        kind: WRITER_KIND.into(),
        repo_id: t.config.repo_id,
        credential_id: crate::id::SessionId::random().to_hex(),
        metadata_identity: t.metadata.identity.clone(),
        metadata_dedup_key: t.metadata.dedup_key.clone(),
        signing_key: Some(hex::encode(*seed)),
        config_digest: Some(t.config.digest()?),
        operator_keys: vec![hex::encode(t.signer.public())],
        later_metadata_identities: Vec::new(),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&credential).map_err(internal)? + "\n");
    // A copy for the operators, so they can re-issue the credential if the server's copy is lost.
    let name = format!("keys/writer-{}", credential.credential_id);
    let sealed = seal_for_operators(text.as_bytes())?;
    backend.put_new(
        &name,
        &t.signer
            .envelope(ObjectKind::KeyRecord.what(), &name, &sealed),
    )?;
    let list = TrustList {
        version: TRUST_VERSION,
        repo_id: t.config.repo_id,
        seq: 1,
        prev: None,
        time: t.now.to_string(),
        by: format!("operator {}", key_id(&t.signer.public())),
        config: t.config.clone(),
        operators: t
            .config
            .operator_recipients
            .iter()
            .map(|r| TrustedOperator {
                recipient: r.clone(),
                signing_key: (r == t.operator).then(|| hex::encode(t.signer.public())),
                registry: None,
                removed: None,
                sources: None,
            })
            .collect(),
        writers: vec![TrustedWriter {
            id: credential.credential_id.clone(),
            name: t.writer_name.into(),
            key: hex::encode(writer.public()),
            added: t.now.to_string(),
            revoked: None,
            added_by: Some(format!("operator {}", key_id(&t.signer.public()))),
            expires: None,
            metadata_generation: 0,
        }],
        auditors: Vec::new(),
        migrated: t.migrated.clone(),
        key_generation: 0,
        metadata_keys: Vec::new(),
        handovers: false,
    };
    let name = trust_name(1);
    let body = serde_json::to_vec_pretty(&list).map_err(internal)?;
    backend.put_new(
        &name,
        &t.signer.envelope(ObjectKind::Trust.what(), &name, &body),
    )?;
    Ok(text)
}

fn internal(e: serde_json::Error) -> Error {
    Error::Internal(format!(
        "internal error: serialising a key record failed: {e}"
    ))
}
