//! A store that ignores create-if-absent (as Garage 2.5 does; here a proxy strips If-None-Match
//! in front of moto): custodian detects it, warns, and in safe mode concurrent writers that
//! create the same key domain still end up with one domain every snapshot of which restores.

use crate::common;

use common::proxy::{Fault, FaultProxy};
use common::*;
use custodian::backend::{Backend, ObjectStoreBackend};
use custodian::format::audit::entry_name;
use std::sync::atomic::Ordering;

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

/// A store may show the loser of two racing creates of one audit entry for a moment before the
/// winner's write lands. A command that reads the loser must neither refuse the log (the next
/// entry continues the winner) nor chain its own entry to the loser, which would fork the log
/// for good. moto plays the store; a proxy answers the first read of the entry with the loser.
#[test]
fn an_audit_entry_that_lost_a_race_is_never_chained_to() {
    let Some(server) = s3_servers().into_iter().find(|s| s.name == "moto") else {
        return;
    };
    let w = World::on_s3(&server, &[]);
    let url = w.s3.as_ref().unwrap().0.clone();
    let store = ObjectStoreBackend::s3_with(&url, &server.settings()).unwrap();
    let prefix = format!("/{}/", url.trim_start_matches("s3://"));
    let records = w.dir.path().join("records");
    custodian::sample::generate(&records, 20 << 10, 7).unwrap();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    // One backup, one new entry; `state` names the machine (its anchor), `via` a proxy.
    let backup = |state: Option<&str>, via: Option<&str>| {
        let fresh = format!("fresh-{}", runs.fetch_add(1, Ordering::SeqCst));
        let before = last_entry(&store);
        let mut c = w.writer_cmd(&["backup", "--source", "s"]);
        c.arg(&records).env(
            "CUSTODIAN_STATE_DIR",
            w.dir.path().join(state.unwrap_or(&fresh)),
        );
        if let Some(endpoint) = via {
            c.env("AWS_ENDPOINT_URL", endpoint);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let after = last_entry(&store);
        assert_eq!(after, before + 1);
        after
    };
    // Entry n written twice, as a race leaves it: the loser kept aside, the winner in place.
    // A real loser learns it lost before it acts, so it never writes its closing checkpoint.
    let race = || {
        let n = backup(None, None);
        let name = entry_name(n);
        let loser = store.get(&name).unwrap();
        store.replace(&format!("aside/{n}"), &loser).unwrap();
        store.delete(&name).unwrap();
        for c in store.list("audit/checkpoints/").unwrap() {
            if c.name.contains(&format!("{n:012}-")) {
                store.delete(&c.name).unwrap();
            }
        }
        assert_eq!(backup(None, None), n);
        assert_ne!(store.get(&name).unwrap(), loser);
        n
    };
    let loser_first = |n: u64| {
        let served = std::sync::atomic::AtomicBool::new(false);
        let (entry, aside) = (
            format!("{prefix}{}", entry_name(n)),
            format!("{prefix}aside/{n}"),
        );
        FaultProxy::start(&server.endpoint, move |r| {
            if r.method == "GET" && r.target == entry && !served.swap(true, Ordering::SeqCst) {
                Fault::Redirect(aside.clone())
            } else {
                Fault::Pass
            }
        })
    };

    // The walk: a machine whose anchor is before the raced entry reads the loser first.
    backup(Some("machine"), None);
    let n = race();
    backup(None, None);
    let proxy = loser_first(n);
    backup(Some("machine"), Some(&proxy.endpoint));
    assert!(proxy.log().iter().any(|l| l.contains("Redirect")));

    // The head: a machine with no anchor finds the raced entry last, and reads the loser.
    let m = race();
    let proxy = loser_first(m);
    backup(None, Some(&proxy.endpoint));
    assert!(proxy.log().iter().any(|l| l.contains("Redirect")));

    let out = w.operator_cmd(&["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The number of the last entry in the log.
fn last_entry(store: &ObjectStoreBackend) -> u64 {
    store
        .list("audit/log/")
        .unwrap()
        .iter()
        .filter_map(|o| custodian::format::audit::parse_entry_name(&o.name))
        .max()
        .unwrap_or(0)
}
