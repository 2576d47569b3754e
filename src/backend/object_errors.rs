//! What a failed object-store request means, decided by `object_store`'s error variant and,
//! beneath it, the HTTP layer's error kind, never by the wording of a message: an upgrade that
//! rewords one cannot change what is retried. The tests pin the classification against a real
//! HTTP server answering with each status.

use super::ErrorKind;
use object_store::client::{HttpError, HttpErrorKind};

/// The classes of failure custodian acts on differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 404: the object (or, for a write or a listing, the bucket) is not there.
    NotFound,
    /// 401 or 403: wrong or missing credentials, or a policy that refuses.
    Denied,
    /// No answer: the connection failed, dropped or timed out.
    Transport,
    /// An answer with a status object_store names no variant for (5xx and 429, which it has
    /// already retried, and 400), or a body that did not decode.
    Server,
    /// What retrying cannot change: an unsupported operation, an invalid path, a conflict.
    Refused,
}

impl Failure {
    /// Whether a later attempt may succeed.
    pub fn kind(self) -> ErrorKind {
        match self {
            Failure::NotFound => ErrorKind::NotFound,
            Failure::Transport | Failure::Server => ErrorKind::Transient,
            Failure::Denied | Failure::Refused => ErrorKind::Permanent,
        }
    }
}

/// Classify `e` by its variant and the HTTP error kind in its source chain.
pub fn classify(e: &object_store::Error) -> Failure {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Failure::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Failure::Denied,
        E::Generic { source, .. } => match http_kind(source.as_ref()) {
            Some(
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted,
            ) => Failure::Transport,
            _ => Failure::Server,
        },
        _ => Failure::Refused,
    }
}

/// The kind of the HTTP-layer error somewhere in `e`'s source chain, if there is one.
fn http_kind(e: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::object::{ObjectStoreBackend, S3Settings};
    use super::super::{Backend, ErrorKind};
    use std::io::{Read, Write};
    use std::time::Duration;

    /// An HTTP server on loopback answering every request with `status` and an S3 error body.
    fn answering(status: u16) -> String {
        answering_by(move |_| status)
    }

    /// The same, with the status chosen from the request line (`HEAD /bucket/… HTTP/1.1`).
    fn answering_by(status_of: impl Fn(&str) -> u16 + Send + 'static) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                let mut buf = [0u8; 65536];
                let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
                let n = client.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let status = status_of(head.lines().next().unwrap_or(""));
                let body = "<?xml version=\"1.0\"?><Error><Code>Pinned</Code></Error>";
                let _ = write!(
                    client,
                    "HTTP/1.1 {status} Pinned\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    fn backend(endpoint: String) -> ObjectStoreBackend {
        let settings = S3Settings {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("pinned".into()),
            secret_access_key: Some(zeroize::Zeroizing::new("pinned-secret".into())),
            allow_http: true,
            request_timeout: Duration::from_secs(2),
        };
        ObjectStoreBackend::s3_with("s3://bucket/prefix", &settings).unwrap()
    }

    /// (GET, PUT-if-absent, LIST) against a server answering `status` (None: nobody listens).
    fn kinds(status: Option<u16>) -> [ErrorKind; 3] {
        let endpoint = match status {
            Some(s) => answering(s),
            None => {
                let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                format!("http://{}", free.local_addr().unwrap())
            }
        };
        let b = backend(endpoint);
        [
            b.get("config").unwrap_err().kind,
            b.put_new("config", b"x").unwrap_err().kind,
            b.list("snapshots/").unwrap_err().kind,
        ]
    }

    #[test]
    fn each_answer_is_classified_by_status_and_variant_not_by_wording() {
        use ErrorKind::*;
        assert_eq!(kinds(Some(403)), [Permanent; 3], "403");
        assert_eq!(kinds(Some(401)), [Permanent; 3], "401");
        assert_eq!(kinds(Some(404)), [NotFound; 3], "404");
        assert_eq!(
            kinds(Some(503)),
            [Transient; 3],
            "503, after object_store's retries"
        );
        // A status object_store names no variant for is an answer, not a refusal it can read:
        // retried by the daemon with backoff (400 includes an expired token).
        assert_eq!(kinds(Some(400)), [Transient; 3], "400");
        assert_eq!(kinds(None), [Transient; 3], "nobody listening");
    }

    #[test]
    fn a_listing_that_fails_in_a_bucket_that_answers_is_transient() {
        // LIST answers 503 every time; HEAD of `config` answers 200: the bucket is there, the
        // listing failed. A HEAD answering 404 means there is no bucket.
        for (head, want) in [(200, ErrorKind::Transient), (404, ErrorKind::NotFound)] {
            let endpoint =
                answering_by(move |line| if line.starts_with("HEAD") { head } else { 503 });
            let err = backend(endpoint).list("snapshots/").unwrap_err();
            assert_eq!(err.kind, want, "HEAD {head}: {err}");
        }
    }
}
