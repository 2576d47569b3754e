//! Counts requests by kind, so every `--json` summary and the benchmark can show request economy
//! (a 1.5 GiB backup should be about a hundred requests, not thousands).

use super::{Backend, BackendError, ObjectInfo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Requests made through a [`Counting`] backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub delete: u64,
}

/// A backend wrapper that counts every call (a ranged read is one GET, a listing one LIST).
pub struct Counting {
    inner: Arc<dyn Backend>,
    put: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

impl Counting {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Counting {
            inner,
            put: AtomicU64::new(0),
            get: AtomicU64::new(0),
            list: AtomicU64::new(0),
            delete: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            put: self.put.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            list: self.list.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
        }
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, BackendError> {
        self.put.fetch_add(1, Ordering::Relaxed);
        let op = crate::failpoint::op_before("put", name);
        let result = self.inner.put_new(name, bytes);
        crate::failpoint::op_after(op);
        result
    }

    fn put_immutable(&self, name: &str, bytes: &[u8]) -> Result<u64, BackendError> {
        let op = crate::failpoint::op_before("put", name);
        let requests = self.inner.put_immutable(name, bytes)?;
        crate::failpoint::op_after(op);
        self.put.fetch_add(requests, Ordering::Relaxed);
        Ok(requests)
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), BackendError> {
        self.put.fetch_add(1, Ordering::Relaxed);
        let op = crate::failpoint::op_before("replace", name);
        let result = self.inner.replace(name, bytes);
        crate::failpoint::op_after(op);
        result
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        self.get.fetch_add(1, Ordering::Relaxed);
        self.inner.get(name)
    }

    fn get_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.get.fetch_add(1, Ordering::Relaxed);
        self.inner.get_range(name, start, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.delete.fetch_add(1, Ordering::Relaxed);
        let op = crate::failpoint::op_before("delete", name);
        let result = self.inner.delete(name);
        crate::failpoint::op_after(op);
        result
    }

    fn atomic_create(&self) -> bool {
        self.inner.atomic_create()
    }

    fn sweep_leftovers(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        let op = crate::failpoint::op_before("delete", ".tmp-* leftovers");
        let removed = self.inner.sweep_leftovers(older_than)?;
        crate::failpoint::op_after(op);
        Ok(removed)
    }

    fn connections(&self) -> usize {
        self.inner.connections()
    }
}
