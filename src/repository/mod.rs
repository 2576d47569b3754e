//! An opened repository: its backend, config and whatever keys the caller holds. Opening with the
//! writer credential gives bookkeeping access only; opening with an operator identity adds the
//! domain identities that read content. Every read-side method checks which one it has.

mod access;
mod blob_table;
mod blobs;
mod domains;
mod exclusions;
mod exclusive;
mod generations;
mod grants;
mod handover;
mod handover_expiry;
mod index;
mod init;
mod keyring;
mod marks;
pub mod migrate;
mod operators;
mod packer;
mod pins;
mod records;
mod registry;
mod repack;
mod rotation;
mod snapshots;
pub mod trust;
mod verify;

pub use access::{Issued, Principal, Revoked};
pub use blobs::{coalesce, decode_tree, validate_tree_blob, BlobReader, PackBlobs};
pub use exclusions::Exclusion;

/// A cached session key's slot: its id and the domain it opened with (`None`: metadata).
type SessionSlot = (crate::id::SessionId, Option<String>);
pub use handover::SignedDocument;
pub use handover_expiry::Expired;
pub use index::{Location, MasterIndex};
pub use init::{init, InitOptions, Initialized};
pub use keyring::DomainDestroyed;
pub use marks::{Marks, PruneMarker};
pub use operators::{RemovedOperator, Resealed};
pub use packer::{PackUploader, PackWriter, UploadSummary};
pub use records::{held_among, DestroyedSnapshot, DestructionRecord, Hold};
pub use repack::FrameCopier;
pub use snapshots::{lineage_times, Filter, Scanned, SnapshotInfo, SnapshotSelector};
pub use verify::verify_signatures;

use crate::backend::{Backend, ErrorKind};
use crate::crypto::{self, MetadataKeys, SessionKey};
use crate::error::{CryptoError, Error, Result};
use crate::format::config::{RepoConfig, REPO_VERSION};
use crate::format::{decode_json, ObjectKind};
use age::x25519;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Which key the caller brings.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The daemon's writer credential file: write and list, never read content.
    Writer(PathBuf),
    /// An operator's age identity file: everything.
    Operator(PathBuf),
}

/// An open repository.
pub struct Repository {
    /// Private: everything outside this module reaches objects through the namespace
    /// (`ObjectKind`), which checks, limits and signs them.
    backend: Arc<dyn Backend>,
    pub config: RepoConfig,
    /// The founding metadata keys: the config's identity (and the keys derived from it).
    pub meta: MetadataKeys,
    /// Later metadata generations' identities held, oldest first (`rotation.rs`).
    meta_later: Vec<x25519::Identity>,
    /// Where new bookkeeping is sealed: the newest metadata generation.
    meta_recipient: x25519::Recipient,
    operator_recipients: Vec<x25519::Recipient>,
    operator: Option<Vec<x25519::Identity>>,
    /// Opened session keys, by id and the domain they opened with (`None`: metadata), so a
    /// frame naming another domain's (or the metadata) session never gets that key from here.
    sessions: Mutex<HashMap<SessionSlot, Arc<SessionKey>>>,
    /// What the store does with create-if-absent, once probed.
    create_if_absent: OnceLock<crate::backend::probe::CreateIfAbsent>,
    /// Which credential opened this, for destruction records and holds ("writer credential
    /// 3f9a…", "operator age1…").
    pub opened_by: String,
    /// Format 2: who may sign and this process's signing key; `None` for format 1.
    auth: Option<trust::Auth>,
    /// Set once this process's audit entry is written (or kept offline): no domain identity is
    /// unwrapped before (reads fail closed).
    audited: OnceLock<()>,
}

impl Repository {
    /// Read and validate `config` without any key.
    pub fn read_config(backend: &dyn Backend) -> Result<RepoConfig> {
        let bytes = match backend.get("config") {
            Ok(bytes) => bytes,
            Err(e) if e.kind == ErrorKind::NotFound => {
                // Some stores answer a missing bucket with NoSuchKey on GET; a listing tells them
                // apart, so the message says "no bucket" rather than "no repository".
                backend.list("config")?;
                return Err(Error::NotARepository(backend.location()));
            }
            Err(e) => return Err(e.into()),
        };
        let config: RepoConfig = decode_json(&bytes, "repository config", REPO_VERSION)?;
        config
            .chunker
            .validate()
            .map_err(|reason| crate::error::FormatError::Malformed {
                what: "repository config".into(),
                reason,
            })?;
        Ok(config)
    }

    /// Open with a credential; fails with a clear message if it does not fit this repository.
    pub fn open(backend: Arc<dyn Backend>, credential: &Credential) -> Result<Repository> {
        Self::open_pinned(backend, credential, None)
    }

    /// Open, pinning (for an operator who did not sign the repository's first trust list) that
    /// list in `pin_dir` on first use, and refusing a different one later.
    pub fn open_pinned(
        backend: Arc<dyn Backend>,
        credential: &Credential,
        pin_dir: Option<PathBuf>,
    ) -> Result<Repository> {
        let config = Self::read_config(backend.as_ref())?;
        let (meta, meta_later, operator, auth, opened_by) = match credential {
            Credential::Writer(path) => {
                let keys = keyring::load_writer_credential(path, &config)?;
                let auth = match keys.signer {
                    Some(signer) if config.signed() => Some(trust::Auth::load(
                        backend.as_ref(),
                        &config,
                        signer,
                        &keys.anchor,
                    )?),
                    None if config.signed() => return Err(keyring::unsigned_credential(path)),
                    Some(_) => {
                        trust::refuse_downgrade(&config, true, None)?;
                        None
                    }
                    None => None,
                };
                rotation::check_writer_holds(auth.as_ref().map(|a| &a.list), &keys.later, path)?;
                let by = format!("writer credential {}", keys.credential_id);
                (keys.meta, keys.later, None, auth, by)
            }
            Credential::Operator(path) => {
                let identities = crypto::keys::load_identity_file(path)?;
                if !config.signed() {
                    let location = backend.location();
                    trust::refuse_downgrade(
                        &config,
                        false,
                        pin_dir.as_deref().map(|d| (d, location.as_str())),
                    )?;
                }
                let auth = match identities.first() {
                    Some(first) if config.signed() => Some(trust::Auth::load(
                        backend.as_ref(),
                        &config,
                        crypto::sign::ObjectSigner::for_operator(first),
                        &trust::Anchor::Operator {
                            pin_dir,
                            recipient: first.to_public().to_string(),
                        },
                    )?),
                    _ => None,
                };
                let meta = keyring::load_metadata_as_operator(
                    backend.as_ref(),
                    &identities,
                    &config,
                    path,
                    auth.as_ref(),
                )?;
                let later = rotation::load_later_as_operator(
                    backend.as_ref(),
                    &identities,
                    auth.as_ref(),
                    path,
                )?;
                let by = identities
                    .first()
                    .map(|i| format!("operator {}", i.to_public()))
                    .unwrap_or_default();
                (meta, later, Some(identities), auth, by)
            }
        };
        let operator_recipients = sealing_recipients(&config, auth.as_ref())?;
        let meta_recipient = crypto::keys::parse_recipient(
            rotation::current_recipient(auth.as_ref().map(|a| &a.list), &config.metadata_recipient),
            "repository metadata recipient",
        )?;
        if meta.identity.to_public().to_string() != config.metadata_recipient {
            return Err(Error::Usage(format!(
                "the metadata identity in your key does not match repository {} at {}: the key belongs to another repository.",
                config.repo_id.short(),
                backend.location()
            )));
        }
        Ok(Repository {
            backend,
            config,
            meta,
            meta_later,
            meta_recipient,
            operator_recipients,
            opened_by,
            operator,
            sessions: Mutex::default(),
            create_if_absent: OnceLock::new(),
            auth,
            audited: OnceLock::new(),
        })
    }

    /// Whether an operator identity is loaded (content can be read).
    pub fn can_read(&self) -> bool {
        self.operator.is_some()
    }

    /// Fail with the "operator identity needed" message unless one is loaded.
    pub fn require_operator(&self, what: &str) -> Result<&[x25519::Identity]> {
        self.operator
            .as_deref()
            .ok_or_else(|| Error::NeedsIdentity {
                what: what.to_string(),
            })
    }

    /// Seal a bookkeeping object (zstd JSON) to the metadata identity (unsigned: see
    /// [`Self::sign`]).
    fn seal_meta<T: Serialize>(&self, value: &T, what: &str) -> Result<Vec<u8>> {
        Ok(crypto::seal_to(
            std::slice::from_ref(&self.meta_recipient),
            &crate::compress::pack_json(value)?,
            what,
        )?)
    }

    /// Sign `body` for storage as `name` (format 2); format 1 stores the body as it is.
    pub fn sign(&self, kind: ObjectKind, name: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        match &self.auth {
            Some(auth) => auth.sign(kind, name, body),
            None => Ok(body),
        }
    }

    /// The body of a stored object after checking its signature and signer (format 2), and
    /// who signed it; a hash-named object must also hash to its name.
    pub fn verify<'a>(
        &self,
        kind: ObjectKind,
        name: &str,
        stored: &'a [u8],
    ) -> Result<(&'a [u8], Option<String>)> {
        let (body, by) = match &self.auth {
            Some(auth) => auth
                .verify(kind, name, stored)
                .map(|(b, by)| (b, Some(by)))?,
            None => (stored, None),
        };
        if kind.hash_named() && !verify::hashes_to_name(body, name) {
            return Err(crate::error::FormatError::Malformed {
                what: format!("{} {name}", kind.what()),
                reason: "its bytes do not hash to its name: it was altered, or copied from \
                         another name"
                    .into(),
            }
            .into());
        }
        Ok((body, by))
    }

    /// Seal `value` as a hash-named object of `kind`, sign and store it; returns its name and
    /// whether it was new.
    pub fn put_meta<T: Serialize>(&self, kind: ObjectKind, value: &T) -> Result<(String, bool)> {
        let body = self.seal_meta(value, kind.what())?;
        self.put_hash_named(kind, body)
    }

    /// Store an already sealed body under `prefix || hex(H(body))`, signed.
    pub fn put_hash_named(&self, kind: ObjectKind, body: Vec<u8>) -> Result<(String, bool)> {
        let name = format!(
            "{}{}",
            kind.prefix(),
            hex::encode(crate::id::content_hash(&body))
        );
        let stored = self.sign(kind, &name, body)?;
        let created = self.backend.put_new(&name, &stored)?;
        Ok((name, created))
    }

    /// Seal and sign `value` for the fixed name `name` (not stored yet).
    pub fn seal_meta_at<T: Serialize>(
        &self,
        kind: ObjectKind,
        name: &str,
        value: &T,
    ) -> Result<Vec<u8>> {
        let body = self.seal_meta(value, kind.what())?;
        self.sign(kind, name, body)
    }

    /// Open a bookkeeping object stored as `name`. The object is hostile input: its signature
    /// and signer are checked (format 2), a hash-named kind must hash to its name, and its
    /// plaintext may not exceed its kind's limit.
    pub fn open_meta<T: DeserializeOwned>(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<T> {
        Ok(self.open_meta_signed(kind, name, bytes)?.0)
    }

    /// [`Self::open_meta`], also saying who signed the object (format 2).
    pub fn open_meta_signed<T: DeserializeOwned>(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<(T, Option<String>)> {
        let what = format!("{} {}", kind.what(), name);
        let (body, by) = self.verify(kind, name, bytes)?;
        let plain = crypto::open_with(
            &self.meta_identities(),
            body,
            &what,
            "The object was not written for this repository's metadata key.",
        )?;
        let value = crate::format::decode_packed(&plain, &what, kind.version(), kind.max_plain())?;
        Ok((value, by))
    }

    /// Fetch a listed object of `kind`, refusing one larger than the kind allows before
    /// reading it (so a planted giant costs nothing); `None` when it vanished since the listing.
    pub fn get_listed(
        &self,
        kind: ObjectKind,
        object: &crate::backend::ObjectInfo,
    ) -> Result<Option<Vec<u8>>> {
        if object.size > kind.max_stored() {
            return Err(Error::Damaged(format!(
                "{} is {} bytes, more than any {} may be",
                object.name,
                object.size,
                kind.what()
            )));
        }
        Ok(self.backend.get_if_present(&object.name)?)
    }

    /// Fetch and open a bookkeeping object by name.
    pub fn get_meta<T: DeserializeOwned>(&self, kind: ObjectKind, name: &str) -> Result<T> {
        let bytes = self.backend.get(name)?;
        self.open_meta(kind, name, &bytes)
    }

    /// Requests worth keeping in flight on this store (1 on local disk, more on S3).
    pub fn connections(&self) -> usize {
        self.backend.connections()
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Objects of `kind` as listed (names and sizes; nothing read).
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<crate::backend::ObjectInfo>> {
        Ok(self.backend.list(kind.prefix())?)
    }

    /// A whole pack, for verification.
    pub fn get_pack(&self, id: &crate::id::PackId) -> Result<Vec<u8>> {
        Ok(self.backend.get(&pack_name(id))?)
    }

    /// Delete a pack or a bookkeeping object (prune, forget, release, leases); anything else,
    /// such as `config` or a name outside the namespace, is refused.
    pub fn delete_object(&self, name: &str) -> Result<()> {
        let audit = verify::kind_of(name).is_some_and(ObjectKind::is_audit);
        if audit || !(name.starts_with("packs/") || verify::kind_of(name).is_some()) {
            return Err(Error::Internal(format!(
                "internal error: '{name}' is not an object custodian deletes"
            )));
        }
        Ok(self.backend.delete(name)?)
    }

    /// Delete `name` only if it still holds `bytes` (a lease judged stale, our own lease):
    /// never what another process has written since. Returns whether it was deleted.
    pub fn delete_if_unchanged(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        match self.backend.get_if_present(name)? {
            Some(now) if now == bytes => self.delete_object(name).map(|()| true),
            _ => Ok(false),
        }
    }

    /// The current bytes of a fixed-name object (the prune lease), if it exists.
    pub fn get_named(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.backend.get_if_present(name)?)
    }

    /// The store itself, for `copy` alone: a mirror moves objects byte for byte, and every
    /// reader of the mirror verifies them through its own namespace.
    pub fn store_for_mirror(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// Record that this process's audit entry exists, which lets it unwrap domain identities.
    pub fn mark_audited(&self) {
        let _ = self.audited.set(());
    }

    /// Refuse to read content before the audit entry is written (see `crate::audit`).
    pub(crate) fn require_audited(&self, what: &str) -> Result<()> {
        match self.audited.get() {
            Some(()) => Ok(()),
            None => Err(Error::AuditUnavailable {
                op: what.to_string(),
                cause: "no audit entry was written for this command".into(),
            }),
        }
    }

    /// The store, for the audit log's own namespace (`crate::audit::chain`).
    pub(crate) fn backend_ref(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Seal an audit entry's details to the metadata key and the auditors.
    pub fn seal_for_audit(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let mut recipients = vec![self.meta_recipient.clone()];
        for r in self.auth.iter().flat_map(|a| a.auditor_recipients()) {
            recipients.push(crypto::keys::parse_recipient(
                &r,
                "auditor in the trust list",
            )?);
        }
        Ok(crypto::seal_to(&recipients, plain, "audit entry")?)
    }

    /// Open an audit entry's details with the metadata key (writers and operators).
    pub fn open_audit(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        Ok(crypto::open_with(
            &self.meta_identities(),
            sealed,
            "audit entry",
            "It was not sealed for this repository.",
        )?)
    }

    /// Format 2's trust list, if this repository has one.
    pub fn auth(&self) -> Option<&trust::Auth> {
        self.auth.as_ref()
    }

    /// Seal to every operator recipient (key records).
    fn seal_to_operators(
        &self,
        plain: &[u8],
        what: &str,
    ) -> std::result::Result<Vec<u8>, CryptoError> {
        crypto::seal_to(&self.operator_recipients, plain, what)
    }

    /// Seal something every operator in office may read (the metadata key record).
    pub fn seal_for_operators(&self, plain: &[u8], what: &str) -> Result<Vec<u8>> {
        Ok(self.seal_to_operators(plain, what)?)
    }

    /// Seal a writer credential's copy: only operators granted every source hold one, since
    /// issuing and revoking writers is theirs.
    pub(super) fn seal_for_full_operators(&self, plain: &[u8]) -> Result<Vec<u8>> {
        Ok(crypto::seal_to(
            &self.full_recipients()?,
            plain,
            "writer credential",
        )?)
    }

    /// Open what [`Self::seal_for_operators`] sealed; needs an operator identity.
    pub fn open_for_operators(&self, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let identities = self.require_operator(what)?;
        let refs: Vec<&x25519::Identity> = identities.iter().collect();
        Ok(crypto::open_with(
            &refs,
            sealed,
            what,
            "Your identity is not an operator of this repository.",
        )?)
    }
}

impl Repository {
    /// Objects under `folder` whose last name component parses as an id, with name and size.
    /// Other names (temporary files, foreign files) are ignored.
    pub fn list_ids<T: std::str::FromStr>(
        &self,
        folder: &str,
    ) -> Result<Vec<(T, crate::backend::ObjectInfo)>> {
        Ok(self
            .backend
            .list(folder)?
            .into_iter()
            .filter_map(|o| {
                o.name
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .map(|id| (id, o))
            })
            .collect())
    }
}

/// Whom key records are sealed to: the operators in office on the trust list (format 2, where
/// operators change), else the config's.
fn sealing_recipients(
    config: &RepoConfig,
    auth: Option<&trust::Auth>,
) -> Result<Vec<x25519::Recipient>> {
    let listed: Vec<&str> = match auth {
        Some(auth) => auth
            .list
            .current_operators()
            .map(|o| o.recipient.as_str())
            .collect(),
        None => config
            .operator_recipients
            .iter()
            .map(String::as_str)
            .collect(),
    };
    listed
        .into_iter()
        .map(|r| crypto::keys::parse_recipient(r, "operator recipient in the trust list"))
        .collect()
}

/// Object name of a pack: two-character fan-out keeps directories small.
pub fn pack_name(id: &crate::id::PackId) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{}", &hex[..2], hex)
}
