//! A flaky network between custodian and a real S3 server: dropped connections, 5xx answers,
//! slow answers and uploads that stall half way. In every case the backup completes or fails
//! with one clear error in bounded time, no snapshot references a missing or partial pack, a
//! re-run completes, and what was backed up restores byte for byte.

use crate::common;

use common::proxy::{Fault, FaultProxy, Request};
use common::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a faulty backup must end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Retries hide the fault.
    Completes,
    /// The fault outlasts the retries: one clear error, exit 1.
    FailsClearly,
}

fn is_pack_put(r: &Request) -> bool {
    r.method == "PUT" && r.target.contains("/packs/")
}

/// Back up through a faulty proxy, then check, re-run and restore directly against the server.
fn backup_through_faults(
    server: &S3Server,
    expect: Expect,
    plan: impl Fn(&Request) -> Fault + Send + Sync + 'static,
) {
    let w = World::on_s3(server, SMALL_PACKS);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 2 << 20, 11).unwrap();
    w.backup("customers", &src);
    custodian::sample::mutate(&src, 12).unwrap();
    std::fs::write(src.join("fresh.bin"), noise(1 << 20, 13)).unwrap();

    let proxy = FaultProxy::start(&server.endpoint, plan);
    let started = Instant::now();
    let out = w
        .writer_cmd(&["backup", "--json", "--source", "customers"])
        .arg(&src)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("CUSTODIAN_S3_REQUEST_TIMEOUT", "2s")
        .output()
        .unwrap();
    let took = started.elapsed();
    let faults = proxy.log().iter().filter(|l| !l.ends_with("Pass")).count();
    eprintln!(
        "{}: exit {:?} after {took:?}, {faults} faults in {} requests",
        server.name,
        out.status.code(),
        proxy.log().len()
    );
    assert!(faults > 0, "the plan injected no fault");
    assert!(
        took < Duration::from_secs(120),
        "bounded time, took {took:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let snapshots_before_rerun = w.snapshots().len();
    match expect {
        Expect::Completes => {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert_eq!(snapshots_before_rerun, 2);
        }
        Expect::FailsClearly => {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            let (url, _) = w.s3.as_ref().unwrap();
            eprintln!("{err}");
            assert!(
                err.contains(url.as_str()),
                "the error names the store: {err}"
            );
            assert!(err.contains("packs/"), "the error names the object: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");
            assert_eq!(snapshots_before_rerun, 1, "no snapshot from a failed run");
        }
    }
    // Nothing references a missing or partial pack: structure and every blob check out.
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "after faults: {}", text(&out));
    // A re-run completes and the result restores byte for byte.
    w.backup("customers", &src);
    let out = w.operator_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "after the re-run: {}", text(&out));
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
}

/// `fault` on the first attempt of every request that `which` picks; retries pass.
fn first_attempts(
    which: fn(&Request) -> bool,
    fault: Fault,
) -> impl Fn(&Request) -> Fault + Send + Sync + 'static {
    let seen = Mutex::new(HashSet::new());
    move |r| {
        let first = seen
            .lock()
            .unwrap()
            .insert(format!("{} {}", r.method, r.target));
        if first && which(r) {
            fault.clone()
        } else {
            Fault::Pass
        }
    }
}

#[test]
fn dropped_connections_are_retried() {
    for server in s3_servers() {
        backup_through_faults(
            &server,
            Expect::Completes,
            first_attempts(is_pack_put, Fault::Drop),
        );
    }
}

#[test]
fn service_unavailable_answers_are_retried() {
    for server in s3_servers() {
        backup_through_faults(
            &server,
            Expect::Completes,
            first_attempts(|_| true, Fault::Status(503)),
        );
    }
}

#[test]
fn slow_answers_are_waited_for() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    backup_through_faults(&server, Expect::Completes, |_| {
        Fault::Slow(Duration::from_millis(300))
    });
}

#[test]
fn an_upload_stalled_half_way_times_out_and_is_retried() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    let stalled = AtomicUsize::new(0);
    backup_through_faults(&server, Expect::Completes, move |r| {
        if is_pack_put(r) && stalled.fetch_add(1, Ordering::SeqCst) == 0 {
            Fault::Stall(Duration::from_secs(20))
        } else {
            Fault::Pass
        }
    });
}

#[test]
fn a_persistent_server_error_fails_clearly_and_leaves_no_snapshot() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    backup_through_faults(&server, Expect::FailsClearly, |r| {
        if is_pack_put(r) {
            Fault::Status(500)
        } else {
            Fault::Pass
        }
    });
}

#[test]
fn uploads_that_always_stall_fail_in_bounded_time() {
    let Some(server) = s3_servers().into_iter().next() else {
        return;
    };
    backup_through_faults(&server, Expect::FailsClearly, |r| {
        if is_pack_put(r) {
            Fault::Stall(Duration::from_secs(30))
        } else {
            Fault::Pass
        }
    });
}

#[test]
fn a_bucket_without_permission_fails_fast_and_clearly() {
    // What S3 answers when the bucket policy denies the caller: 403 AccessDenied on every request.
    for server in s3_servers() {
        let proxy = FaultProxy::start(&server.endpoint, |_| Fault::Status(403));
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = std::process::Command::new(BIN)
            .args(["snapshots", "--writer-key", "w.key"])
            .envs(server.env_via(&proxy.endpoint))
            .env("CUSTODIAN_REPO", format!("s3://{}/r", server.bucket()))
            .env("CUSTODIAN_STATE_DIR", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("access denied") && err.contains("bucket policy"),
            "{err}"
        );
        assert_eq!(
            proxy.log().len(),
            1,
            "a 403 is never retried: {:?}",
            proxy.log()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn large_packs_go_up_in_parts_and_a_dropped_part_is_retried() {
    for server in s3_servers() {
        let w = World::on_s3(&server, &["--pack-size", &(40 << 20).to_string()]);
        let src = w.dir.path().join("records");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("scans.bin"), noise(45 << 20, 21)).unwrap();
        let proxy = FaultProxy::start(
            &server.endpoint,
            first_attempts(|r| r.target.contains("partNumber=2"), Fault::Drop),
        );
        let out = w
            .writer_cmd(&["backup", "--json", "--source", "scans"])
            .arg(&src)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", server.name, text(&out));
        let log = proxy.log();
        let started = log
            .iter()
            .filter(|l| l.starts_with("POST ") && l.contains("?uploads"))
            .count();
        let parts = log
            .iter()
            .filter(|l| l.starts_with("PUT ") && l.contains("partNumber="))
            .count();
        eprintln!(
            "{}: {started} multipart uploads, {parts} part PUTs",
            server.name
        );
        assert!(started >= 1 && parts >= 3, "{log:#?}");
        assert!(log
            .iter()
            .any(|l| l.contains("partNumber=2") && l.ends_with("Drop")));
        let target = w.dir.path().join("restored");
        w.restore("latest", &target, &[]);
        assert_same_tree(&src, &target);
        let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}
