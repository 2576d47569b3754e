//! An opened repository: its backend, config and whatever keys the caller holds. Opening with the
//! writer credential gives bookkeeping access only; opening with an operator identity adds the
//! domain identities that read content. Every read-side method checks which one it has.

mod blobs;
mod exclusive;
mod index;
mod keyring;
mod marks;
mod packer;
mod records;
mod repack;
mod snapshots;

pub use blobs::{coalesce, decode_tree, validate_tree_blob, BlobReader, PackBlobs};
pub use index::{Location, MasterIndex};
pub use keyring::{init, InitOptions, Initialized};
pub use marks::{Marks, PruneMarker};
pub use packer::{PackUploader, PackWriter};
pub use records::{DestroyedSnapshot, DestructionRecord, Hold};
pub use repack::FrameCopier;
pub use snapshots::{Scanned, SnapshotInfo, SnapshotSelector};

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
    pub backend: Arc<dyn Backend>,
    pub config: RepoConfig,
    pub meta: MetadataKeys,
    meta_recipient: x25519::Recipient,
    operator_recipients: Vec<x25519::Recipient>,
    operator: Option<Vec<x25519::Identity>>,
    sessions: Mutex<HashMap<crate::id::SessionId, Arc<SessionKey>>>,
    /// What the store does with create-if-absent, once probed.
    create_if_absent: OnceLock<crate::backend::probe::CreateIfAbsent>,
    /// Which credential opened this, for destruction records and holds ("writer credential
    /// 3f9a…", "operator age1…").
    pub opened_by: String,
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
        let config = Self::read_config(backend.as_ref())?;
        let meta_recipient = crypto::keys::parse_recipient(
            &config.metadata_recipient,
            "repository metadata recipient",
        )?;
        let operator_recipients = config
            .operator_recipients
            .iter()
            .map(|r| {
                crypto::keys::parse_recipient(r, "operator recipient in the repository config")
            })
            .collect::<Result<Vec<_>>>()?;
        let opened_by = match credential {
            Credential::Writer(path) => format!(
                "writer credential {}",
                keyring::writer_credential_id(path).unwrap_or_else(|| "unknown".into())
            ),
            Credential::Operator(_) => String::new(),
        };
        let (meta, operator) = match credential {
            Credential::Writer(path) => (keyring::load_writer_credential(path, &config)?, None),
            Credential::Operator(path) => {
                let identities = crypto::keys::load_identity_file(path)?;
                (
                    keyring::load_metadata_as_operator(
                        backend.as_ref(),
                        &identities,
                        &config,
                        path,
                    )?,
                    Some(identities),
                )
            }
        };
        if meta.identity.to_public().to_string() != config.metadata_recipient {
            return Err(Error::Invalid(format!(
                "the metadata identity in your key does not match repository {} at {}: the key belongs to another repository.",
                config.repo_id.short(),
                backend.location()
            )));
        }
        Ok(Repository {
            backend,
            config,
            meta,
            meta_recipient,
            operator_recipients,
            opened_by: match &operator {
                Some(ids) => ids
                    .first()
                    .map(|i| format!("operator {}", i.to_public()))
                    .unwrap_or_default(),
                None => opened_by,
            },
            operator,
            sessions: Mutex::default(),
            create_if_absent: OnceLock::new(),
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

    /// Seal a bookkeeping object (zstd JSON) to the metadata identity.
    pub fn seal_meta<T: Serialize>(&self, value: &T, what: &str) -> Result<Vec<u8>> {
        Ok(crypto::seal_to(
            std::slice::from_ref(&self.meta_recipient),
            &crate::compress::pack_json(value),
            what,
        )?)
    }

    /// Open a bookkeeping object sealed with [`Self::seal_meta`], stored as `name`. The
    /// object is hostile input: a hash-named kind must hash to its name, and its plaintext may
    /// not exceed its kind's limit.
    pub fn open_meta<T: DeserializeOwned>(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<T> {
        let what = format!("{} {}", kind.what(), name);
        if kind.hash_named() {
            let expected = name.rsplit('/').next().unwrap_or_default();
            if hex::encode(crate::id::content_hash(bytes)) != expected {
                return Err(crate::error::FormatError::Malformed {
                    what,
                    reason: "its bytes do not hash to its name: it was altered, or copied \
                             from another name"
                        .into(),
                }
                .into());
            }
        }
        let plain = crypto::open_with(
            &[&self.meta.identity],
            bytes,
            &what,
            "The object was not written for this repository's metadata key.",
        )?;
        Ok(crate::format::decode_packed(
            &plain,
            &what,
            kind.version(),
            kind.max_plain(),
        )?)
    }

    /// Fetch and open a bookkeeping object by name.
    pub fn get_meta<T: DeserializeOwned>(&self, kind: ObjectKind, name: &str) -> Result<T> {
        let bytes = self.backend.get(name)?;
        self.open_meta(kind, name, &bytes)
    }

    /// Seal to every operator recipient (key records).
    fn seal_to_operators(
        &self,
        plain: &[u8],
        what: &str,
    ) -> std::result::Result<Vec<u8>, CryptoError> {
        crypto::seal_to(&self.operator_recipients, plain, what)
    }

    /// Seal something only operators may read (drill reports name customer files).
    pub fn seal_for_operators(&self, plain: &[u8], what: &str) -> Result<Vec<u8>> {
        Ok(self.seal_to_operators(plain, what)?)
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

/// Object name of a pack: two-character fan-out keeps directories small.
pub fn pack_name(id: &crate::id::PackId) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{}", &hex[..2], hex)
}
