//! Bytes in object stores. A handful of create-only methods, so the same repository works on a
//! local disk and (later) any S3-compatible store. Errors are classified so that only transient
//! ones are ever retried.

pub mod counting;
mod direct;
pub mod local;
pub mod object;
mod object_errors;
pub mod probe;

pub use counting::{Counting, RequestCounts};
pub use local::LocalBackend;
pub use object::{ObjectStoreBackend, S3Settings};

/// Open the backend a `--repo` value names: `s3://bucket/prefix` or a local path.
pub fn open(repo: &str) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    if repo.starts_with("s3://") {
        Ok(std::sync::Arc::new(ObjectStoreBackend::s3(repo)?))
    } else {
        Ok(std::sync::Arc::new(LocalBackend::new(repo)))
    }
}

pub use crate::error::{BackendError, ErrorKind};

/// One listed object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Name relative to the repository root, `/`-separated.
    pub name: String,
    pub size: u64,
    /// When the store last wrote it, if the store says: prune leaves young packs alone, because
    /// a running backup may be about to reference them.
    pub modified: Option<std::time::SystemTime>,
}

/// The storage interface every repository operation goes through.
pub trait Backend: Send + Sync {
    /// Where this is, for messages.
    fn location(&self) -> String;
    /// Store `bytes` durably under `name` unless it exists. Returns false if it already existed
    /// (objects are immutable, so an existing object with that name is left untouched).
    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, BackendError>;
    /// Store content-addressed bytes (a pack): any object already under the name holds the same
    /// bytes, so no condition is needed and large objects may go up in parts. Returns the
    /// number of requests made (multipart uploads take several).
    fn put_immutable(&self, name: &str, bytes: &[u8]) -> Result<u64, BackendError> {
        self.put_new(name, bytes).map(|_| 1)
    }
    /// Replace an object whole, atomically (readers see the old bytes or the new, never a
    /// mix). Objects are write-once; only `migrate` replaces one, `config`, once.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), BackendError>;
    /// Whole object.
    fn get(&self, name: &str) -> Result<Vec<u8>, BackendError>;
    /// The whole object, or None when it does not exist (never was, or was deleted since a
    /// listing named it: prune deletes while others list).
    fn get_if_present(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        match self.get(name) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// `len` bytes from `start`.
    fn get_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>, BackendError>;
    /// Every object under `prefix` (a folder such as `packs/`), with sizes.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError>;
    /// Remove an object; removing a missing one is not an error.
    fn delete(&self, name: &str) -> Result<(), BackendError>;
    /// How many requests to keep in flight: a local disk needs one writer, a remote store several
    /// to hide latency. Each in-flight pack upload holds one pack (~17 MiB) in memory.
    fn connections(&self) -> usize {
        1
    }
    /// Whether `put_new` is atomic by construction (a local file system's hard link), so
    /// writers sharing a name need no check-write-settle-verify round (`create_exclusive`).
    fn atomic_create(&self) -> bool {
        false
    }
    /// Remove what killed writers left behind that is older than `older_than` (a local disk's
    /// temporary files, each a second name for an object it was about to publish); returns how
    /// many went. An object store keeps nothing of an upload that did not finish.
    fn sweep_leftovers(&self, _older_than: std::time::Duration) -> Result<u64, BackendError> {
        Ok(0)
    }
}
