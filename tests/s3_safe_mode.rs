//! A store that ignores create-if-absent (as Garage 2.5 does; here a proxy strips If-None-Match
//! in front of moto): custodian detects it, warns, and in safe mode concurrent writers that
//! create the same key domain still end up with one domain every snapshot of which restores.

mod common;

use common::proxy::{Fault, FaultProxy};
use common::*;

#[test]
fn concurrent_first_backups_on_a_store_without_create_if_absent_all_restore() {
    let Some(server) = s3_servers().into_iter().find(|s| s.name == "moto") else {
        return;
    };
    let proxy = FaultProxy::start(&server.endpoint, |_| Fault::StripConditional);

    // init through the proxy warns.
    let w = World::on_s3(&server, &[]);
    let out = w
        .operator_cmd(&["init", "--recipient", &w.recipient(), "--writer-key-out"])
        .arg(w.dir.path().join("other-writer.key"))
        .env("CUSTODIAN_REPO", format!("s3://{}/other", server.bucket()))
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ignores create-if-absent") && err.contains("safe mode"),
        "{err}"
    );

    concurrent_first_backups(&w, Some(&proxy.endpoint), "ignored");
}

#[test]
fn concurrent_first_backups_on_each_real_server_all_restore() {
    // s3s-fs lets concurrent creators all win; moto can under load: custodian must not care.
    for server in s3_servers() {
        let w = World::on_s3(&server, &[]);
        let mode = if server.name == "s3s-fs" { "racy" } else { "" };
        concurrent_first_backups(&w, None, mode);
    }
}

/// Five writers back up the same new source at once (through `endpoint` if given); every
/// snapshot must restore. Without check-write-settle-verify, a writer whose domain record
/// another overwrote leaves unreadable snapshots. `mode`: the create-if-absent verdict the
/// backups must report, if known.
fn concurrent_first_backups(w: &World, endpoint: Option<&str>, mode: &str) {
    let dirs: Vec<_> = (0..5)
        .map(|i| {
            let d = w.dir.path().join(format!("records-{i}"));
            custodian::sample::generate(&d, 300 << 10, 50 + i).unwrap();
            d
        })
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut c = w.writer_cmd(&["backup", "--json", "--source", "shared"]);
            if let Some(e) = endpoint {
                c.env("AWS_ENDPOINT_URL", e);
            }
            c.arg(d)
                .env(
                    "CUSTODIAN_STATE_DIR",
                    w.dir.path().join(format!("state-{i}")),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if !mode.is_empty() {
            assert_eq!(summary["create_if_absent"], mode);
            assert!(String::from_utf8_lossy(&out.stderr).contains("safe mode"));
        }
    }
    // Every snapshot restores with the operator identity, byte for byte.
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 5);
    for snap in &snaps {
        let id = snap["id"].as_str().unwrap();
        let path = snap["path"].as_str().unwrap();
        let target = w.dir.path().join(format!("restored-{id}"));
        w.restore(id, &target, &[]);
        assert_same_tree(std::path::Path::new(path), &target);
    }
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
