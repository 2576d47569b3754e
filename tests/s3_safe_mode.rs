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
        .cmd(&["init", "--recipient", &w.recipient(), "--writer-key-out"])
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

    // Five writers back up the same new source at once, all through the proxy. (Without safe
    // mode, a writer whose domain record another overwrote leaves unreadable snapshots.)
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
            w.writer_cmd(&["backup", "--json", "--source", "shared"])
                .arg(d)
                .env("AWS_ENDPOINT_URL", &proxy.endpoint)
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
        assert_eq!(summary["create_if_absent"], "ignored");
        assert!(String::from_utf8_lossy(&out.stderr).contains("safe mode"));
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
