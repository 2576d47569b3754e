//! Every core command works the same on an S3-compatible store as on local disk, against a real
//! server on loopback; bad S3 settings fail fast with a clear message.

use crate::common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

fn s3_world(server: &S3Server) -> (tempfile::TempDir, Vec<(&'static str, String)>, String) {
    (
        tempfile::tempdir().unwrap(),
        server.env(),
        format!("s3://{}/backups/main", server.bucket()),
    )
}

fn run(
    dir: &std::path::Path,
    env: &[(&str, String)],
    repo: &str,
    args: &[&str],
) -> std::process::Output {
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .env("CUSTODIAN_REPO", repo)
        .env("CUSTODIAN_STATE_DIR", dir.join("state"))
        .current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn backup_restore_and_check_on_s3() {
    for server in s3_servers() {
        eprintln!("server: {}", server.name);
        backup_restore_and_check(&server);
    }
}

fn backup_restore_and_check(server: &S3Server) {
    let (dir, env, repo) = s3_world(server);
    let d = dir.path();
    let out = run(d, &env, &repo, &["key", "generate", "--output", "ops.key"]);
    assert!(out.status.success(), "{}", text(&out));
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = run(
        d,
        &env,
        &repo,
        &[
            "init",
            "--identity",
            "ops.key",
            "--recipient",
            &recipient,
            "--writer-key-out",
            "writer.key",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let src = d.join("records");
    custodian::sample::generate(&src, 3 << 20, 3).unwrap();
    let mut puts = Vec::new();
    for _ in 0..2 {
        let out = run(
            d,
            &env,
            &repo,
            &[
                "backup",
                "--writer-key",
                "writer.key",
                "--source",
                "customers",
                "--json",
                src.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        puts.push(summary["requests"]["put"].as_u64().unwrap());
    }
    // First backup: 2 domain key records, 2 sessions, a data pack, a reference pack, an index
    // and a snapshot. An unchanged backup writes only its session key, snapshot head and the
    // create-if-absent probe (refused, so nothing is stored). Each command adds its audit
    // entry and the checkpoint that closes it.
    assert!(puts[0] <= 12, "a 3 MiB first backup took {} PUTs", puts[0]);
    assert!(puts[1] <= 5, "an unchanged backup took {} PUTs", puts[1]);
    let out = run(
        d,
        &env,
        &repo,
        &["snapshots", "--writer-key", "writer.key", "--json"],
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1]["stats"]["files_read"], 0, "incremental on S3 too");
    let out = run(
        d,
        &env,
        &repo,
        &[
            "restore",
            "latest",
            "--identity",
            "ops.key",
            "--target",
            "restored",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(&src, &d.join("restored"));
    // Trees are fetched in batches by pack, not one request per directory.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (gets, dirs) = (
        summary["requests"]["get"].as_u64().unwrap(),
        snaps[1]["stats"]["dirs"].as_u64().unwrap(),
    );
    eprintln!("restore on S3: {gets} GETs for {dirs} directories");
    assert!(
        dirs > 30 && gets < dirs,
        "restore took {gets} GETs for {dirs} directories"
    );
    let out = run(
        d,
        &env,
        &repo,
        &["check", "--identity", "ops.key", "--read-data", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        d,
        &env,
        &repo,
        &[
            "restore",
            "latest",
            "--writer-key",
            "writer.key",
            "--target",
            "nope",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator identity"));
    assert!(fs::read_dir(d.join("restored")).unwrap().count() > 0);
}

#[test]
fn missing_bucket_and_unreachable_endpoint_fail_fast_and_clearly() {
    let servers = s3_servers();
    let Some(first) = servers.first() else { return };
    let started = Instant::now();
    for server in &servers {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            dir.path(),
            &server.env(),
            "s3://no-such-bucket-here/x",
            &["snapshots", "--writer-key", "w.key"],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            server.name,
            text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("the bucket does not exist"),
            "{}: {err}",
            server.name
        );
    }
    let (dir, mut env, _) = s3_world(first);
    // Unreachable: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")));
    let out = run(
        dir.path(),
        &env,
        "s3://any/x",
        &["snapshots", "--writer-key", "w.key"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3://any/x"),
        "the error must name the repository: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bad endpoints must fail in bounded time, took {:?}",
        started.elapsed()
    );
}

#[test]
fn wrong_credentials_fail_fast_and_clearly() {
    // moto accepts any credentials; s3s-fs checks signatures.
    for server in s3_servers().into_iter().filter(|s| s.name == "s3s-fs") {
        let (dir, mut env, repo) = s3_world(&server);
        for (k, v) in env.iter_mut() {
            if *k == "AWS_SECRET_ACCESS_KEY" {
                *v = "not-the-secret".into();
            }
        }
        let started = Instant::now();
        let out = run(
            dir.path(),
            &env,
            &repo,
            &["snapshots", "--writer-key", "w.key"],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("access denied") && err.contains("AWS_SECRET_ACCESS_KEY"),
            "the error must say what to fix: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one clear error: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "4xx is never retried"
        );
    }
}
