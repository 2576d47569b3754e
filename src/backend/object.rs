//! Repositories in object stores through `object_store`: any S3-compatible store
//! (`s3://bucket/prefix`) and an in-memory store for tests. The engine is synchronous, so each
//! backend owns a small tokio runtime and blocks on it; callers must be plain threads (the
//! daemon runs every job on a thread of its own).
//!
//! Transient failures (5xx, timeouts, resets) are retried with backoff by object_store's
//! client, bounded in count and time; 4xx answers are not retried.

use super::object_errors::{classify, Failure};
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
use zeroize::Zeroizing;

/// Retries per request, and the most time one request may take with its retries: an
/// unreachable or misconfigured endpoint must fail in bounded time, not hang a backup.
const MAX_RETRIES: usize = 4;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Objects from this size go up as multipart uploads in parts of MULTIPART_PART (S3 wants parts
/// of at least 5 MiB). Default packs (16 MiB) stay single PUTs: fewer requests.
const MULTIPART_THRESHOLD: usize = 32 << 20;
const MULTIPART_PART: usize = 16 << 20;
/// Attempts per request at custodian's level, for transport failures (see `retrying`).
const TRANSPORT_ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides REQUEST_TIMEOUT (humantime, e.g. `20s`): slow links need more, tests less.
const REQUEST_TIMEOUT_VAR: &str = "CUSTODIAN_S3_REQUEST_TIMEOUT";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight against a remote store by default (`backup --connections` overrides).
const S3_CONNECTIONS: usize = 4;

/// Where and how to reach an S3-compatible store. Secrets stay out of `Debug`.
#[derive(Clone)]
pub struct S3Settings {
    /// `https://host:port` of a non-AWS store; path-style requests are used with it.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Zeroizing<String>>,
    /// Plain HTTP only when asked for: credentials and metadata would cross the wire unprotected.
    pub allow_http: bool,
    /// One request's limit, retries aside: a stalled upload must fail, not hang a backup.
    pub request_timeout: Duration,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The settings the AWS tools read from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true`), plus
    /// `CUSTODIAN_S3_REQUEST_TIMEOUT`. Unset values stay unset, for the AWS defaults and files.
    pub fn from_env() -> Result<S3Settings, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let request_timeout = match var(REQUEST_TIMEOUT_VAR) {
            None => REQUEST_TIMEOUT,
            Some(v) => humantime::parse_duration(&v).map_err(|e| {
                format!("{REQUEST_TIMEOUT_VAR}='{v}' is not a duration ({e}); write e.g. 30s")
            })?,
        };
        Ok(S3Settings {
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").map(Zeroizing::new),
            allow_http: var("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            request_timeout,
        })
    }
}

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

    /// `s3://bucket[/prefix]`, configured from the standard AWS environment variables.
    pub fn s3(url: &str) -> Result<Self, BackendError> {
        let settings = S3Settings::from_env().map_err(|message| opening_error(url, message))?;
        Self::s3_with(url, &settings)
    }

    /// `s3://bucket[/prefix]` with explicit settings; anything left unset falls back to the
    /// AWS environment variables and files, as the AWS tools do.
    pub fn s3_with(url: &str, settings: &S3Settings) -> Result<Self, BackendError> {
        let bad = |message: String| opening_error(url, message);
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
                    .with_timeout(settings.request_timeout)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_allow_http(settings.allow_http),
            );
        if let Some(endpoint) = &settings.endpoint {
            // Custom endpoints (MinIO, Garage, moto…) almost always want path-style requests.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.as_str());
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

    /// Run a request, again after transport failures that object_store leaves to us (it does
    /// not repeat a create-if-absent PUT whose connection dropped or timed out). Bounded in
    /// attempts and time. Returns the result and how many attempts it took.
    fn retrying<T, F, Fut>(
        &self,
        operation: &str,
        name: &str,
        request: F,
    ) -> (Result<T, object_store::Error>, u32)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            match self.runtime.block_on(request()) {
                Err(e)
                    if attempt < TRANSPORT_ATTEMPTS
                        && classify(&e) == Failure::Transport
                        && started.elapsed() < RETRY_TIMEOUT =>
                {
                    let pause = Duration::from_millis(200 << attempt);
                    tracing::info!(
                        "{operation} '{name}' in {} failed ({e}); trying again in {pause:?}",
                        self.location
                    );
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                result => return (result, attempt),
            }
        }
    }

    fn err(&self, operation: &'static str, name: &str, e: object_store::Error) -> BackendError {
        let failure = classify(&e);
        self.err_as(operation, name, e, failure)
    }

    /// What a failed listing means. object_store reports every failed listing as Generic,
    /// whatever the status (its list request keeps the answer private), so a listing that got
    /// an answer is asked about once more with a HEAD of `config`, which every repository has
    /// and whose 401, 403 and 404 object_store does name: refused means the credentials, 404
    /// means no bucket (or no repository), an answer means the listing itself failed.
    fn listing_failure(&self, e: &object_store::Error) -> Failure {
        match classify(e) {
            Failure::Server => {
                let probe = self.path("config");
                match self.runtime.block_on(self.store.head(&probe)) {
                    Err(h) => match classify(&h) {
                        f @ (Failure::NotFound | Failure::Denied) => f,
                        _ => Failure::Server,
                    },
                    Ok(_) => Failure::Server,
                }
            }
            f => f,
        }
    }

    fn err_as(
        &self,
        operation: &'static str,
        name: &str,
        e: object_store::Error,
        failure: Failure,
    ) -> BackendError {
        let text = e.to_string();
        let message = match failure {
            // A write or a listing finds no object missing but the bucket.
            Failure::NotFound if operation != "reading" => format!(
                "the bucket does not exist ({text}). Create it first, or check the bucket \
                 name, AWS_REGION and AWS_ENDPOINT_URL."
            ),
            Failure::Denied => format!(
                "access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket \
                 policy ({text})"
            ),
            Failure::Transport | Failure::Server => format!(
                "{text}. The store kept failing after retries; custodian commits nothing after \
                 such a failure and earlier snapshots are intact: run the command again when \
                 the store answers"
            ),
            Failure::NotFound | Failure::Refused => text,
        };
        BackendError {
            kind: failure.kind(),
            operation,
            object: name.to_string(),
            location: self.location.clone(),
            message,
        }
    }
}

/// A store that cannot be opened as configured: retrying cannot help.
fn opening_error(url: &str, message: String) -> BackendError {
    BackendError {
        kind: ErrorKind::Permanent,
        operation: "opening",
        object: String::new(),
        location: url.to_string(),
        message,
    }
}

impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, BackendError> {
        let path = self.path(name);
        let payload = PutPayload::from(bytes.to_vec());
        let (result, attempts) = self.retrying("writing", name, || {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            self.store.put_opts(&path, payload.clone(), opts)
        });
        match result {
            Ok(_) => Ok(true),
            // Some stores answer an existing name with 412 Precondition Failed instead. After a
            // retry it may be this very write, whose answer was lost: then it is ours.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(attempts > 1 && self.get(name)? == bytes),
            Err(e) => Err(self.err("writing", name, e)),
        }
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), BackendError> {
        let path = self.path(name);
        let payload = PutPayload::from(bytes.to_vec());
        // A plain PUT replaces the object atomically on S3; repeating it is harmless.
        let (result, _) = self.retrying("replacing", name, || {
            self.store
                .put_opts(&path, payload.clone(), PutOptions::default())
        });
        result.map(drop).map_err(|e| self.err("replacing", name, e))
    }

    fn put_immutable(&self, name: &str, bytes: &[u8]) -> Result<u64, BackendError> {
        if bytes.len() < MULTIPART_THRESHOLD {
            return self.put_new(name, bytes).map(|_| 1);
        }
        // Multipart: a failed part costs one part, not the pack. object_store cannot make it
        // conditional, which a content-addressed name does not need.
        let path = self.path(name);
        let (result, _) = self.retrying("writing", name, || async {
            let mut upload = self.store.put_multipart(&path).await?;
            let parts: Vec<_> = bytes
                .chunks(MULTIPART_PART)
                .map(|part| upload.put_part(PutPayload::from(part.to_vec())))
                .collect();
            match futures::future::try_join_all(parts).await {
                Ok(_) => upload.complete().await.map(|_| ()),
                Err(e) => {
                    // Best effort: a store keeps unfinished parts (and bills them) until aborted.
                    let _ = upload.abort().await;
                    Err(e)
                }
            }
        });
        result.map_err(|e| self.err("writing", name, e))?;
        Ok(2 + bytes.len().div_ceil(MULTIPART_PART) as u64)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path(name);
        self.retrying("reading", name, || async {
            self.store.get(&path).await?.bytes().await
        })
        .0
        .map(|b| b.to_vec())
        .map_err(|e| self.err("reading", name, e))
    }

    fn get_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let path = self.path(name);
        let bytes = self
            .retrying("reading", name, || {
                self.store.get_range(&path, start..start + len)
            })
            .0
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
            .retrying("listing", prefix, || {
                self.store.list(Some(&base)).try_collect()
            })
            .0
            .map_err(|e| {
                let failure = self.listing_failure(&e);
                self.err_as("listing", prefix, e, failure)
            })?;
        let mut out: Vec<ObjectInfo> = listed
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref().to_string();
                full.strip_prefix(&self.prefix).map(|n| ObjectInfo {
                    name: n.to_string(),
                    size: m.size,
                    modified: Some(m.last_modified.into()),
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
