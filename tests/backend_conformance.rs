//! One behaviour suite for every backend: in-memory, local disk, and a real S3-compatible server
//! on loopback (moto, started by scripts/test, which sets CUSTODIAN_TEST_S3_ENDPOINT).

mod common;

use custodian::backend::{Backend, ErrorKind, LocalBackend, ObjectInfo, ObjectStoreBackend};
use std::sync::Arc;

fn conformance(b: Arc<dyn Backend>) {
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
    assert_eq!(
        b.list("packs/").unwrap(),
        vec![
            ObjectInfo {
                name: "packs/ab/abcd".into(),
                size: 3000
            },
            ObjectInfo {
                name: "packs/cd/cdef".into(),
                size: 3
            },
        ]
    );
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
    conformance(Arc::new(ObjectStoreBackend::memory().unwrap()));
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(LocalBackend::new(dir.path().join("repo"))));
}

#[test]
fn s3_backend_conforms() {
    let Some(bucket) = common::s3_bucket() else {
        return;
    };
    conformance(Arc::new(
        ObjectStoreBackend::s3(&format!("s3://{bucket}/some/prefix")).unwrap(),
    ));
}
