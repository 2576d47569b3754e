//! Repositories in object stores through `object_store`: any S3-compatible store
//! (`s3://bucket/prefix`) and an in-memory store for tests. The engine is synchronous, so each
//! backend owns a small tokio runtime and blocks on it; callers must be plain threads (the
//! daemon calls in through `spawn_blocking`).
//!
//! Transient failures (5xx, timeouts, resets) are retried with backoff by object_store's
//! client, bounded in count and time; 4xx answers are not retried.

use super::{Backend, BackendError, ErrorKind, ObjectInfo};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use std::sync::Arc;
use std::time::Duration;

/// Retries per request, and the most time one request may take with its retries: an
/// unreachable or misconfigured endpoint must fail in bounded time, not hang a backup.
const MAX_RETRIES: usize = 4;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight against a remote store by default (`backup --connections` overrides).
const S3_CONNECTIONS: usize = 4;

/// An `object_store` store seen through the [`Backend`] trait.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket, empty or ending in `/`.
    prefix: String,
    location: String,
    runtime: tokio::runtime::Runtime,
}

fn runtime() -> Result<tokio::runtime::Runtime, BackendError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custodian-io")
        .enable_all()
        .build()
        .map_err(|e| BackendError {
            kind: ErrorKind::Permanent,
            operation: "starting",
            object: String::new(),
            location: "the I/O runtime".into(),
            message: e.to_string(),
        })
}

impl ObjectStoreBackend {
    /// A store in memory (tests and the conformance suite).
    pub fn memory() -> Result<Self, BackendError> {
        Ok(ObjectStoreBackend {
            store: Arc::new(InMemory::new()),
            prefix: String::new(),
            location: "memory".into(),
            runtime: runtime()?,
        })
    }

    /// `s3://bucket[/prefix]`, configured from the standard AWS environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint such as a loopback test server).
    pub fn s3(url: &str) -> Result<Self, BackendError> {
        let bad = |message: String| BackendError {
            kind: ErrorKind::Permanent,
            operation: "opening",
            object: String::new(),
            location: url.to_string(),
            message,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(
                "the URL names no bucket; write s3://BUCKET/PREFIX".into()
            ));
        }
        let prefix = prefix.trim_matches('/');
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_allow_http(
                        std::env::var("AWS_ALLOW_HTTP")
                            .is_ok_and(|v| v.eq_ignore_ascii_case("true")),
                    ),
            );
        if std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT").is_some()
        {
            // Custom endpoints (MinIO, Garage, moto…) almost always want path-style requests.
            builder = builder.with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| {
            bad(format!(
                "{e}. Set AWS_REGION, credentials and (for non-AWS stores) AWS_ENDPOINT_URL."
            ))
        })?;
        Ok(ObjectStoreBackend {
            store: Arc::new(store),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            location: url.to_string(),
            runtime: runtime()?,
        })
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}{}", self.prefix, name))
    }

    fn err(&self, operation: &'static str, name: &str, e: object_store::Error) -> BackendError {
        let text = e.to_string();
        let (kind, message) = if text.contains("NoSuchBucket") {
            (ErrorKind::Permanent, "the bucket does not exist. Create it first, or check the bucket name, AWS_REGION and AWS_ENDPOINT_URL.".to_string())
        } else if text.contains("AccessDenied")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("InvalidAccessKeyId")
        {
            (ErrorKind::Permanent, format!("access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy ({text})"))
        } else {
            let kind = match &e {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::Generic { source, .. } if is_transient(source.as_ref()) => {
                    ErrorKind::Transient
                }
                _ => ErrorKind::Permanent,
            };
            (kind, text)
        };
        BackendError {
            kind,
            operation,
            object: name.to_string(),
            location: self.location.clone(),
            message,
        }
    }
}

/// Timeouts and connection failures are worth retrying at a higher level; the rest is not.
fn is_transient(e: &(dyn std::error::Error + 'static)) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "connection",
        "reset",
        "503",
        "500",
        "502",
        "504",
    ]
    .iter()
    .any(|w| text.contains(w))
}

impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, BackendError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self
            .runtime
            .block_on(self.store.put_opts(&self.path(name), payload, opts))
        {
            Ok(_) => Ok(true),
            // Some stores answer an existing name with 412 Precondition Failed instead.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.err("writing", name, e)),
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path(name);
        self.runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.err("reading", name, e))
    }

    fn get_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&self.path(name), start..start + len))
            .map_err(|e| self.err("reading", name, e))?;
        if (bytes.len() as u64) < len {
            return Err(BackendError {
                kind: ErrorKind::Permanent,
                operation: "reading",
                object: name.to_string(),
                location: self.location.clone(),
                message: format!("object ends before byte {}", start + len),
            });
        }
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let base = self.path(prefix.trim_end_matches('/'));
        let listed: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&base)).try_collect())
            .map_err(|e| self.err("listing", prefix, e))?;
        let mut out: Vec<ObjectInfo> = listed
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref().to_string();
                full.strip_prefix(&self.prefix).map(|n| ObjectInfo {
                    name: n.to_string(),
                    size: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn connections(&self) -> usize {
        S3_CONNECTIONS
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        match self.runtime.block_on(self.store.delete(&self.path(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", name, e)),
        }
    }
}
