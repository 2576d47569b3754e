//! One behaviour suite for every backend: in-memory, local disk, and a real S3-compatible server
//! on loopback (moto, started by scripts/test, which sets CUSTODIAN_TEST_S3_ENDPOINT).

use crate::common;

use common::proxy::{Fault, FaultProxy};
use custodian::backend::probe::{self, CreateIfAbsent};
use custodian::backend::{Backend, ErrorKind, LocalBackend, ObjectStoreBackend, S3Settings};
use std::sync::Arc;

/// `expected`: the probe verdicts allowed; `strict_race`: whether exactly one of six concurrent
/// creators must win (true where we control the store: memory and local disk; real servers may
/// race under load whatever the probe saw, which custodian's check-write-settle-verify covers).
fn conformance(b: Arc<dyn Backend>, expected: &[CreateIfAbsent], strict_race: bool) {
    let verdict = probe::at_init(b.as_ref()).unwrap();
    assert!(
        expected.contains(&verdict),
        "{}: probe said {verdict:?}",
        b.location()
    );
    let at_open = probe::at_open(b.as_ref()).unwrap();
    assert!(
        expected.contains(&at_open),
        "{}: probe at open said {at_open:?}",
        b.location()
    );
    assert!(b.put_new("config", b"one").unwrap());
    assert!(
        !b.put_new("config", b"two").unwrap(),
        "{}: an existing object must never be replaced",
        b.location()
    );
    assert_eq!(b.get("config").unwrap(), b"one");

    b.put_new("packs/ab/abcd", &[7u8; 3000]).unwrap();
    b.put_new("packs/cd/cdef", b"xyz").unwrap();
    b.put_new("index/0001", b"i").unwrap();
    assert_eq!(b.get_range("packs/ab/abcd", 10, 20).unwrap(), vec![7u8; 20]);
    assert!(
        b.get_range("packs/cd/cdef", 1, 10).is_err(),
        "a range past the end must fail"
    );
    let listed = b.list("packs/").unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.name.as_str(), o.size))
            .collect::<Vec<_>>(),
        vec![("packs/ab/abcd", 3000), ("packs/cd/cdef", 3)]
    );
    for o in &listed {
        let age = std::time::SystemTime::now()
            .duration_since(o.modified.expect("listings carry modification times"))
            .unwrap_or_default();
        assert!(age.as_secs() < 600, "{}: modified {age:?} ago", o.name);
    }
    assert!(b.list("snapshots/").unwrap().is_empty());
    assert_eq!(b.get("nothing/here").unwrap_err().kind, ErrorKind::NotFound);

    b.delete("packs/cd/cdef").unwrap();
    b.delete("packs/cd/cdef").unwrap();
    assert_eq!(b.list("packs/").unwrap().len(), 1);

    let big = common::noise(20 << 20, 5);
    assert!(b.put_new("packs/ff/big", &big).unwrap());
    assert!(
        b.get("packs/ff/big").unwrap() == big,
        "a 20 MiB object must come back intact"
    );

    // Packs above 32 MiB go to S3 as multipart uploads; every backend stores them whole.
    let large = common::noise(40 << 20, 6);
    b.put_immutable("packs/ee/large", &large).unwrap();
    b.put_immutable("packs/ee/large", &large).unwrap();
    assert!(
        b.get("packs/ee/large").unwrap() == large,
        "a 40 MiB pack round trip"
    );

    // Create-if-absent under a race: exactly one writer wins, and its bytes are what is stored.
    let winners: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let b = b.clone();
                s.spawn(move || {
                    (
                        i,
                        b.put_new("locks/race", format!("writer {i}").as_bytes())
                            .unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<usize> = winners
        .iter()
        .filter(|(_, w)| *w)
        .map(|(i, _)| *i)
        .collect();
    let stored = b.get("locks/race").unwrap();
    assert!(
        won.iter()
            .any(|i| stored == format!("writer {i}").as_bytes()),
        "the stored bytes are a winner's"
    );
    eprintln!(
        "{}: {} of 6 concurrent creators won",
        b.location(),
        won.len()
    );
    if !strict_race {
        return;
    }
    assert_eq!(
        won.len(),
        1,
        "{}: exactly one create-if-absent may win, got {won:?}",
        b.location()
    );
    assert_eq!(
        b.get("locks/race").unwrap(),
        format!("writer {}", won[0]).as_bytes()
    );
}

#[test]
fn in_memory_backend_conforms() {
    conformance(
        Arc::new(ObjectStoreBackend::memory().unwrap()),
        &[CreateIfAbsent::Atomic],
        true,
    );
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(
        Arc::new(LocalBackend::new(dir.path().join("repo"))),
        &[CreateIfAbsent::Atomic],
        true,
    );
}

#[test]
fn s3_backends_conform() {
    for server in common::s3_servers() {
        let url = format!("s3://{}/some/prefix", server.bucket());
        eprintln!("conformance: {}", server.name);
        // s3s-fs checks the condition without a lock: concurrent creators all succeed. moto
        // usually keeps it, but can race under load.
        let expected: &[CreateIfAbsent] = match server.name {
            "s3s-fs" => &[CreateIfAbsent::Racy],
            _ => &[CreateIfAbsent::Atomic, CreateIfAbsent::Racy],
        };
        conformance(
            Arc::new(ObjectStoreBackend::s3_with(&url, &server.settings()).unwrap()),
            expected,
            false,
        );
    }
}

#[test]
fn a_store_that_ignores_create_if_absent_is_detected() {
    // As Garage 2.5 does: the proxy drops If-None-Match before the request reaches the server.
    // Only moto: it takes any signature, and s3s-fs rightly refuses the altered request.
    for server in common::s3_servers()
        .into_iter()
        .filter(|s| s.name == "moto")
    {
        let proxy = FaultProxy::start(&server.endpoint, |_| Fault::StripConditional);
        let url = format!("s3://{}/p", server.bucket());
        let settings = S3Settings {
            endpoint: Some(proxy.endpoint.clone()),
            ..server.settings()
        };
        let b = ObjectStoreBackend::s3_with(&url, &settings).unwrap();
        assert_eq!(probe::at_init(&b).unwrap(), CreateIfAbsent::Ignored);
        assert_eq!(probe::at_open(&b).unwrap(), CreateIfAbsent::Ignored);
        assert!(
            proxy.log().iter().any(|l| l.starts_with("PUT ")),
            "the probe went through the proxy"
        );
    }
}
