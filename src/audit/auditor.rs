//! Opening a repository as an auditor: the trust list verified and pinned, the audit log read
//! with the auditor's own identity (entries are sealed to it), and nothing else: an auditor
//! holds no key that opens a record, a file name or a snapshot head.

use super::chain::Store;
use crate::backend::Backend;
use crate::crypto::sign::ObjectSigner;
use crate::error::Result;
use crate::repository::trust::{Anchor, Auth};
use crate::repository::Repository;
use age::x25519;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A repository as an auditor sees it.
pub struct AuditorView {
    pub backend: Arc<dyn Backend>,
    pub auth: Auth,
    identity: x25519::Identity,
    pub repo_id: crate::id::RepoId,
}

impl AuditorView {
    /// Open with the auditor identity in `identity_file`; the trust list must be pinned on
    /// this machine (`custodian key trust`) and list the identity among its auditors.
    pub fn open(
        backend: Arc<dyn Backend>,
        identity_file: &Path,
        pin_dir: Option<PathBuf>,
    ) -> Result<AuditorView> {
        let config = Repository::read_config(backend.as_ref())?;
        let identities = crate::crypto::keys::load_identity_file(identity_file)?;
        let identity = identities.into_iter().next().ok_or_else(|| {
            crate::error::Error::Usage(format!("{} holds no age identity", identity_file.display()))
        })?;
        let anchor = Anchor::Auditor {
            pin_dir,
            recipient: identity.to_public().to_string(),
        };
        let signer = ObjectSigner::for_operator(&identity);
        let auth = Auth::load(backend.as_ref(), &config, signer, &anchor)?;
        Ok(AuditorView {
            backend,
            auth,
            identity,
            repo_id: config.repo_id,
        })
    }

    /// The log's store view.
    pub fn store(&self) -> Store<'_> {
        Store {
            backend: self.backend.as_ref(),
            auth: &self.auth,
        }
    }

    /// Open an entry's sealed details with the auditor's identity.
    pub fn open_details(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        Ok(crate::crypto::open_with(
            &[&self.identity],
            sealed,
            "audit entry",
            "It was sealed before this auditor was added: ask an operator for an export.",
        )?)
    }
}
