//! Key material in memory and key files on disk. Key files must be mode 0600 (as ssh insists),
//! and are written with that mode from the start so a secret is never briefly world-readable.

use crate::error::{Error, IoContext, Result};
use crate::id::BlobId;
use age::secrecy::ExposeSecret;
use age::x25519;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The secrets of one key domain. `identity` is present only when an operator opened the repository.
pub struct DomainKeys {
    pub name: String,
    pub dedup_key: Zeroizing<[u8; 32]>,
    pub chunker_seed: u64,
    pub recipient: x25519::Recipient,
    pub identity: Option<x25519::Identity>,
    /// Identities of the domain's earlier generations (operators, for reading old content).
    pub older: Vec<x25519::Identity>,
}

impl DomainKeys {
    /// Every identity held, newest first (empty for a writer).
    pub fn identities(&self) -> Vec<&x25519::Identity> {
        self.identity.iter().chain(self.older.iter()).collect()
    }
}

impl DomainKeys {
    /// Blob id: keyed BLAKE3, so the same file has different ids in different domains and repositories.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.dedup_key, plaintext).as_bytes())
    }
}

/// The metadata identity: opens index, snapshot heads and reference lists, never record content.
pub struct MetadataKeys {
    pub identity: x25519::Identity,
    pub dedup_key: Zeroizing<[u8; 32]>,
}

impl MetadataKeys {
    /// Id of a reference-list blob.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.dedup_key, plaintext).as_bytes())
    }

    /// A key derived for one purpose (e.g. hashing cache paths) so no key is used twice.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, self.dedup_key.as_ref())
    }
}

/// 32 random bytes for a new secret key.
pub fn random_key() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), key.as_mut());
    key
}

/// The secret text of an age identity.
pub fn identity_secret(identity: &x25519::Identity) -> Zeroizing<String> {
    Zeroizing::new(identity.to_string().expose_secret().to_string())
}

/// Parse an `AGE-SECRET-KEY-1…` string.
pub fn parse_identity(text: &str, path: &Path) -> Result<x25519::Identity> {
    x25519::Identity::from_str(text.trim()).map_err(|_| Error::KeyFile {
        path: path.to_path_buf(),
        reason: "does not hold a valid age X25519 identity (AGE-SECRET-KEY-1…). Check you passed the right file.".into(),
    })
}

/// Parse an `age1…` recipient; `what` names where it came from.
pub fn parse_recipient(text: &str, what: &str) -> Result<x25519::Recipient> {
    x25519::Recipient::from_str(text.trim())
        .map_err(|_| Error::Usage(format!("{what} '{}' is not an age X25519 recipient (age1…); copy it from 'custodian key generate' output.", text.trim())))
}

/// Refuse a key file that group or others can read, as ssh does.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::KeyFile {
            path: path.to_path_buf(),
            reason:
                "does not exist. Check the path, or create a key with 'custodian key generate'."
                    .into(),
        },
        _ => Error::io(path, e),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Read a private key file after checking its mode.
pub fn read_private(path: &Path) -> Result<Zeroizing<String>> {
    check_private(path)?;
    Ok(Zeroizing::new(fs::read_to_string(path).at(path)?))
}

/// Create a new file with mode 0600; refuses to overwrite an existing key. The file appears
/// whole or not at all (written beside it, then hard-linked into place, which fails if the name
/// exists), so a kill never leaves half a key that blocks the rerun. Where the file system has
/// no hard links (FAT, some network mounts) it is written in place instead.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let exists = || {
        Error::KeyFile {
        path: path.to_path_buf(),
        reason: "already exists; custodian never overwrites a key. Choose another path or move the old one away.".into(),
    }
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    remove_partials(path, &name);
    let tmp = path.with_file_name(format!("{name}.partial-{:016x}", rand::random::<u64>()));
    let written = create_private(&tmp, contents).and_then(|()| {
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            // No hard links here: write in place (create_new still refuses an existing key).
            Err(_) => create_private(path, contents).map_err(|e| match e {
                Error::Io { ref cause, .. }
                    if cause.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    exists()
                }
                other => other,
            }),
        }
    });
    let _ = fs::remove_file(&tmp);
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Create `path` (mode 0600, refusing an existing name) holding `contents`, synced.
fn create_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    file.write_all(contents.as_bytes()).at(path)?;
    file.sync_all().at(path)
}

/// Remove `<name>.partial-*` beside `path`: secrets a write killed half way left behind.
fn remove_partials(path: &Path, name: &str) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!("{name}.partial-");
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Load an operator identity file (age's format: comments and one or more AGE-SECRET-KEY lines).
pub fn load_identity_file(path: &Path) -> Result<Vec<x25519::Identity>> {
    let text = read_private(path)?;
    let identities = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_identity(l, path))
        .collect::<Result<Vec<_>>>()?;
    if identities.is_empty() {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            reason: "holds no age identity (AGE-SECRET-KEY-1…).".into(),
        });
    }
    Ok(identities)
}

/// The first identity of an identity file: the one a person acts and signs with.
pub fn load_first_identity(path: &Path) -> Result<x25519::Identity> {
    load_identity_file(path)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::KeyFile {
            path: path.to_path_buf(),
            reason: "holds no age identity (AGE-SECRET-KEY-1…).".into(),
        })
}

/// Text of a new operator identity file, in age-keygen's layout.
pub fn identity_file_text(identity: &x25519::Identity, now: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# created: {now}\n# public key: {}\n{}\n",
        identity.to_public(),
        identity_secret(identity).as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.key");
        let id = x25519::Identity::generate();
        write_private(&path, &identity_file_text(&id, "now")).unwrap();
        let loaded = load_identity_file(&path).unwrap();
        assert_eq!(
            loaded[0].to_public().to_string(),
            id.to_public().to_string()
        );
        assert!(matches!(
            write_private(&path, "x"),
            Err(Error::KeyFile { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            load_identity_file(&path),
            Err(Error::KeyFilePermissions { mode: 0o640, .. })
        ));
    }
}
