//! Loading keys: the writer credential, the operators' metadata key, key domains and session
//! keys (repository creation is `init`). The writer can create a domain (its secret identity goes straight to the operators,
//! sealed, and is then forgotten) but can never load a domain's identity back.

use super::Repository;
use crate::backend::probe::CreateIfAbsent;
use crate::backend::{Backend, ErrorKind};
use crate::crypto::keys::{
    identity_secret, parse_identity, parse_recipient, random_key, read_private, DomainKeys,
    MetadataKeys,
};
use crate::crypto::sign::ObjectSigner;
use crate::crypto::{self, SessionKey};
use crate::error::{Error, FormatError, Result};
use crate::format::config::RepoConfig;
use crate::format::decode_json;
use crate::format::keys::*;
use crate::format::ObjectKind;
use crate::id::SessionId;
use age::x25519;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

/// Largest plaintext of a key record.
const KEY_MAX: usize = 64 * 1024;

pub(super) fn metadata_object(config_metadata_recipient: &str) -> String {
    format!(
        "keys/metadata-{}",
        &hex::encode(crate::id::content_hash(
            config_metadata_recipient.as_bytes()
        ))[..16]
    )
}

pub(super) fn decode_hex_key(text: &str, what: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, key.as_mut()).map_err(|_| FormatError::Malformed {
        what: what.to_string(),
        reason: "key is not 64 hex characters".into(),
    })?;
    Ok(key)
}

/// What a writer credential file gives: the metadata keys, its signing key (format 2) and what
/// it trusts before reading anything from the store.
pub struct WriterKeys {
    pub meta: MetadataKeys,
    /// Later metadata generations' identities, oldest first.
    pub later: Vec<x25519::Identity>,
    pub signer: Option<ObjectSigner>,
    pub anchor: super::trust::Anchor,
    pub credential_id: String,
}

/// The error for a format-1 credential used on a format-2 repository.
pub fn unsigned_credential(path: &Path) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        reason: "is a format-1 writer credential without a signing key, and this repository \
                 (format 2) accepts only signed writes. Use the credential 'custodian migrate' \
                 wrote for this repository."
            .into(),
    }
}

/// Load the writer credential file and check it belongs to this repository.
pub fn load_writer_credential(path: &Path, config: &RepoConfig) -> Result<WriterKeys> {
    let text = read_private(path)?;
    if text.trim_start().starts_with("AGE-SECRET-KEY") || text.trim_start().starts_with("# created")
    {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            reason: "is an operator identity, not a writer credential. Backups take the writer \
                     credential that 'custodian init --writer-key-out' wrote (an operator never \
                     needs to back up with its own identity); commands that read take this file \
                     with --identity instead of --writer-key."
                .into(),
        });
    }
    let cred: WriterCredential = decode_json(
        text.as_bytes(),
        &format!("writer credential {}", path.display()),
        KEYS_VERSION,
    )
    .map_err(|e| match e {
        FormatError::Malformed { .. } => Error::KeyFile {
            path: path.to_path_buf(),
            reason:
                "is not a custodian writer credential (made by 'custodian init --writer-key-out')."
                    .into(),
        },
        other => other.into(),
    })?;
    if cred.kind != WRITER_KIND {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            reason: "is not a custodian writer credential.".into(),
        });
    }
    if cred.repo_id != config.repo_id {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "belongs to repository {}, not to this one ({}). Use the credential made when this repository was initialised.",
                cred.repo_id.short(),
                config.repo_id.short()
            ),
        });
    }
    let signer = match &cred.signing_key {
        Some(seed) => Some(ObjectSigner::from_seed(&*decode_hex_key(
            seed,
            "writer credential",
        )?)),
        None => None,
    };
    Ok(WriterKeys {
        meta: MetadataKeys {
            identity: parse_identity(&cred.metadata_identity, path)?,
            dedup_key: decode_hex_key(&cred.metadata_dedup_key, "writer credential")?,
        },
        later: cred
            .later_metadata_identities
            .iter()
            .map(|i| parse_identity(i, path))
            .collect::<Result<_>>()?,
        signer,
        anchor: super::trust::Anchor::Writer {
            operator_keys: super::trust::parse_keys(&cred.operator_keys)?,
            config_digest: cred.config_digest.clone(),
            credential_id: cred.credential_id.clone(),
        },
        credential_id: cred.credential_id,
    })
}

/// Unwrap the metadata key with an operator identity.
pub fn load_metadata_as_operator(
    backend: &dyn Backend,
    identities: &[x25519::Identity],
    config: &RepoConfig,
    path: &Path,
    auth: Option<&super::trust::Auth>,
) -> Result<MetadataKeys> {
    let name = metadata_object(&config.metadata_recipient);
    let stored = backend.get(&name)?;
    let hint = format!(
        "The identity in {} (public key {}) is not one of this repository's operators ({}). Use an operator identity that was given to 'custodian init --recipient'.",
        path.display(),
        identities
            .first()
            .map_or_else(|| "none".to_string(), |i| i.to_public().to_string()),
        config.operator_recipients.join(", ")
    );
    open_metadata_record(&name, &stored, identities, auth, &hint, path)
}

/// Open a metadata key record (`keys/metadata-…`, any generation) with an operator identity:
/// signature (format 2), sealing, format.
pub(super) fn open_metadata_record(
    name: &str,
    stored: &[u8],
    identities: &[x25519::Identity],
    auth: Option<&super::trust::Auth>,
    hint: &str,
    path: &Path,
) -> Result<MetadataKeys> {
    let sealed = match auth {
        Some(auth) => auth.verify(ObjectKind::KeyRecord, name, stored)?.0,
        None => stored,
    };
    let refs: Vec<&x25519::Identity> = identities.iter().collect();
    let what = format!("the repository's metadata key {name}");
    let plain = crypto::open_with(&refs, sealed, &what, hint)?;
    let record: MetadataKeyRecord =
        crate::format::decode_packed(&plain, "metadata key record", KEYS_VERSION, KEY_MAX)?;
    Ok(MetadataKeys {
        identity: parse_identity(&record.identity, path)?,
        dedup_key: decode_hex_key(&record.dedup_key, "metadata key record")?,
    })
}

impl Repository {
    pub(super) fn open_with_meta(
        backend: Arc<dyn Backend>,
        config: RepoConfig,
        meta: MetadataKeys,
        create_if_absent: CreateIfAbsent,
        auth: Option<super::trust::Auth>,
    ) -> Result<Repository> {
        Ok(Repository {
            meta_recipient: meta.identity.to_public(),
            meta_later: Vec::new(),
            operator_recipients: config
                .operator_recipients
                .iter()
                .map(|r| parse_recipient(r, "operator recipient"))
                .collect::<Result<_>>()?,
            backend,
            config,
            meta,
            operator: None,
            sessions: Default::default(),
            create_if_absent: OnceLock::from(create_if_absent),
            opened_by: "init".into(),
            auth,
            audited: OnceLock::new(),
        })
    }

    /// Whether key domain `name` has its writer record: one listing, no read. A backup asks
    /// this before the costlier question of which sources the snapshots name.
    pub fn domain_exists(&self, name: &str) -> Result<bool> {
        let writers: Vec<String> = (0..=self.key_generation())
            .map(|g| format!("{}.writer", self.domain_object_at(name, g)))
            .collect();
        Ok(self
            .backend
            .list("keys/domains/")?
            .iter()
            .any(|o| writers.contains(&o.name)))
    }

    /// The current generation's records of domain `name` (what writers use).
    fn domain_object(&self, name: &str) -> String {
        self.domain_object_at(name, self.key_generation())
    }

    /// The keys a writer needs for domain `name`, creating the domain on first use.
    pub fn domain_for_write(&self, name: &str) -> Result<DomainKeys> {
        self.require_current_trust()?;
        // Before anything else: a store handed over must not be backed up here again, nor its
        // destroyed domain re-created by the next backup.
        self.refuse_handed_over(name)?;
        let base = self.domain_object(name);
        let settle = super::domains::settle_time();
        let deadline = std::time::Instant::now() + settle + std::time::Duration::from_secs(30);
        let mut stuck = super::domains::Stuck::default();
        while std::time::Instant::now() < deadline {
            let state = self.domain_state(&base, name)?;
            let super::domains::DomainState::Usable(keys) = state else {
                // Half-created (a first backup killed between its two records) or a pair that
                // does not match: never used. Another writer may be creating it right now, so
                // it is rolled back only once it has stayed exactly so for the settle time.
                if let super::domains::DomainState::Absent = state {
                    if self.create_domain(name)? {
                        continue;
                    }
                } else if stuck.unchanged_for(&state, settle) {
                    self.roll_back_domain(&base, name, &state)?;
                    stuck = super::domains::Stuck::default();
                    continue;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            };
            return Ok(keys);
        }
        Err(Error::Damaged(format!(
            "key domain '{name}' stayed half-created for {}s: a creator is stuck or its records \
             are damaged. Run 'custodian check'.",
            deadline.elapsed().as_secs() + settle.as_secs() + 30
        )))
    }

    /// Returns false when another process created the domain first. A domain that exists in
    /// an earlier generation gets its new one from an operator only (a writer could otherwise
    /// plant keys of its own choosing for every later backup).
    fn create_domain(&self, name: &str) -> Result<bool> {
        let (dedup, seed) = match self.earlier_domain_keys(name)? {
            // Passes once the operator finishes the change: a conflict, retried.
            Some(_) if !self.can_read() => {
                return Err(Error::Conflict(format!(
                    "key domain '{name}' is moving to key generation {} after a change of \
                     operators, and only an operator creates its new keys. Nothing was backed \
                     up: the operator who made the change reruns the same 'custodian access' \
                     command (it finishes the change); back up again after that.",
                    self.key_generation()
                )))
            }
            Some(kept) => kept,
            None => (random_key(), rand::random()),
        };
        self.create_domain_with(name, &dedup, seed)
    }

    /// Create the current generation's pair of domain `name` with these dedup key and seed.
    pub(super) fn create_domain_with(
        &self,
        name: &str,
        dedup: &[u8; 32],
        seed: u64,
    ) -> Result<bool> {
        let identity = x25519::Identity::generate();
        let operator = DomainOperatorRecord {
            version: KEYS_VERSION,
            name: name.to_string(),
            identity: identity_secret(&identity).to_string(),
            dedup_key: hex::encode(dedup),
            chunker_seed: seed,
        };
        let sealed = crypto::seal_to(
            &self.recipients_for(name)?,
            &crate::compress::pack_json(&operator)?,
            "domain key",
        )?;
        let base = self.domain_object(name);
        let operator_name = format!("{base}.operator");
        let sealed = self.sign(ObjectKind::KeyRecord, &operator_name, sealed)?;
        // Operators' copy first: a domain a writer can use must always be readable by operators.
        if !self.create_exclusive(&operator_name, &sealed)? {
            return Ok(false);
        }
        crate::failpoint::pause("domain-operator", 0);
        let writer = DomainWriterRecord {
            version: KEYS_VERSION,
            name: name.to_string(),
            recipient: identity.to_public().to_string(),
            dedup_key: operator.dedup_key.clone(),
            chunker_seed: seed,
            operator_hash: Some(hex::encode(crate::id::content_hash(&sealed))),
        };
        let writer_name = format!("{base}.writer");
        // If another record got there first, the pair check on the next read decides.
        self.backend.put_new(
            &writer_name,
            &self.seal_meta_at(ObjectKind::DomainWriter, &writer_name, &writer)?,
        )?;
        Ok(true)
    }
}

/// Objects a destruction deletes, with their sizes.
pub(super) type Doomed = Vec<(String, u64)>;

/// What `destroy_domain` did.
pub enum DomainDestroyed {
    /// Destroyed by this run; its destruction record.
    Now(super::DestructionRecord),
    /// Destroyed earlier; the record written then.
    Earlier(super::DestructionRecord),
    /// A dry run: what a real run would destroy (nothing was changed).
    WouldDestroy {
        snapshots: Vec<crate::id::SnapshotId>,
        objects: usize,
    },
}

impl Repository {
    /// Crypto-shred key domain `name`: delete its writer and operator records (the only copies
    /// of its identity) and the session keys sealed to it, after recording the destruction.
    /// Packs stay until a prune but nobody can decrypt them. Operators only. A domain already
    /// destroyed (a rerun after the first run finished, or was killed after its last delete)
    /// answers with the first record (the one that lists its snapshots): `Earlier`.
    pub fn destroy_domain(
        &self,
        name: &str,
        dry_run: bool,
        local_dir: &Path,
    ) -> Result<DomainDestroyed> {
        self.require_current_trust()?;
        self.require_granted(name)?;
        let keys = match self.domain_for_read(name) {
            Ok(keys) => keys,
            Err(Error::Backend(b)) if b.kind == ErrorKind::NotFound => {
                let earlier = self
                    .destruction_records()?
                    .into_iter()
                    .filter(|r| r.action == "destroy-domain" && r.domain.as_deref() == Some(name))
                    .min_by(|a, b| a.time.cmp(&b.time));
                return earlier.map(DomainDestroyed::Earlier).ok_or_else(|| {
                    Error::Usage(format!(
                        "there is no key domain '{name}' in this repository; 'custodian \
                         snapshots' lists the sources, whose names are their domains unless \
                         the config sets one"
                    ))
                });
            }
            Err(e) => return Err(e),
        };
        let (snapshots, doomed) = self.domain_doom(name, &keys)?;
        let ids: Vec<_> = snapshots.iter().map(|s| s.id).collect();
        self.refuse_held(&ids, "key destroy-domain")?;
        if dry_run {
            return Ok(DomainDestroyed::WouldDestroy {
                snapshots: ids,
                objects: doomed.len(),
            });
        }
        self.destroy(
            "destroy-domain",
            snapshots
                .iter()
                .map(|s| super::DestroyedSnapshot {
                    id: s.id.to_hex(),
                    source: s.head.source.clone(),
                    time: s.head.time.clone(),
                    reason: format!("key domain '{name}' destroyed"),
                })
                .collect(),
            doomed,
            shred_note(name),
            Some(name),
            local_dir,
        )
        .map(DomainDestroyed::Now)
    }

    /// What crypto-shredding domain `name` deletes, in the order that makes a killed run safe
    /// to repeat: the snapshots first (none is ever listed without its keys), then the
    /// sessions, found with the identity still here; then the writer's record, so nothing new
    /// can be written into the domain; the operators' record last, so a rerun can still open
    /// the domain and finish.
    pub(super) fn domain_doom(
        &self,
        name: &str,
        keys: &DomainKeys,
    ) -> Result<(Vec<super::SnapshotInfo>, Doomed)> {
        let identities = keys.identities();
        let snapshots: Vec<_> = self
            .list_snapshots_strict()?
            .into_iter()
            .filter(|s| s.head.domain == name)
            .collect();
        let ids: Vec<_> = snapshots.iter().map(|s| s.id).collect();
        let mut doomed = self.snapshot_objects(&ids)?;
        for o in self.backend.list("sessions/")? {
            let Some(stored) = self.get_listed(ObjectKind::Session, &o).ok().flatten() else {
                continue;
            };
            let Ok((sealed, _)) = self.verify(ObjectKind::Session, &o.name, &stored) else {
                continue;
            };
            if crypto::open_with(&identities, sealed, "session key", "").is_ok() {
                doomed.push((o.name, o.size));
            }
        }
        // Every generation's records, the operators' (identities) last.
        doomed.extend(self.domain_records(name)?);
        Ok((snapshots, doomed))
    }

    /// Full keys of domain `name`, including its identity: operators only.
    pub fn domain_for_read(&self, name: &str) -> Result<DomainKeys> {
        let identities = self.require_operator("reading backed-up content")?;
        self.require_granted(name)?;
        self.require_audited("reading backed-up content")?;
        self.domain_keys_held(name, identities)
    }

    /// Start a run's session: a fresh key, stored sealed to `recipient` before any blob uses it.
    pub fn start_session(&self, recipient: &x25519::Recipient) -> Result<Arc<SessionKey>> {
        let key = SessionKey::generate();
        self.store_session(&key, recipient)?;
        Ok(Arc::new(key))
    }

    /// Store session `key` sealed to `recipient` as `sessions/<id>`; false if it was there.
    pub(super) fn store_session(
        &self,
        key: &SessionKey,
        recipient: &x25519::Recipient,
    ) -> Result<bool> {
        let record = SessionRecord {
            version: KEYS_VERSION,
            key: hex::encode(key.bytes()),
        };
        let sealed = crypto::seal_to(
            std::slice::from_ref(recipient),
            &crate::compress::pack_json(&record)?,
            "session key",
        )?;
        let name = format!("sessions/{}", key.id);
        Ok(self
            .backend
            .put_new(&name, &self.sign(ObjectKind::Session, &name, sealed)?)?)
    }

    /// The key of session `id`: domain sessions need the domain identity, metadata ones (domain
    /// `None`) the metadata identity. Cached, since every blob of a run shares one.
    pub fn session_key(
        &self,
        id: SessionId,
        domain: Option<&DomainKeys>,
    ) -> Result<Arc<SessionKey>> {
        let slot = (id, domain.map(|d| d.name.clone()));
        if let Some(key) = self.sessions.lock().map_err(|_| poisoned())?.get(&slot) {
            return Ok(key.clone());
        }
        let identities = match domain {
            None => self.meta_identities(),
            Some(d) if d.identity.is_some() => d.identities(),
            Some(_) => {
                return Err(Error::NeedsIdentity {
                    what: "opening file content".into(),
                })
            }
        };
        let name = format!("sessions/{id}");
        let stored = self.backend.get(&name)?;
        let (sealed, _) = self.verify(ObjectKind::Session, &name, &stored)?;
        let plain = crypto::open_with(
            &identities,
            sealed,
            &format!("session {}", id),
            "The session belongs to another key domain.",
        )?;
        let rec: SessionRecord =
            crate::format::decode_packed(&plain, "session record", KEYS_VERSION, KEY_MAX)?;
        let bytes = decode_hex_key(&rec.key, "session record")?;
        let key = Arc::new(SessionKey::from_bytes(id, *bytes));
        self.sessions
            .lock()
            .map_err(|_| poisoned())?
            .insert(slot, key.clone());
        Ok(key)
    }
}

fn poisoned() -> Error {
    Error::Internal("internal error: a worker thread panicked".into())
}

/// The note of a domain's crypto-shredding record: what it covers and what it cannot.
pub(super) fn shred_note(name: &str) -> String {
    format!(
        "Key domain '{name}' crypto-shredded: its identity and session keys were deleted, so its \
         blobs cannot be decrypted by anyone; the packs holding them are removed by a later \
         prune. Not covered: copies of the repository made before this (mirrors, 'custodian \
         copy' targets, a handover's receiving repository) and copies the storage provider \
         keeps (versioning, replicas), which still hold the deleted key records."
    )
}
