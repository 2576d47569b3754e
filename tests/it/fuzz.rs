//! No panic on any byte string: every parser of repository objects, the config and the runbooks
//! is fed random bytes and random mutations of valid samples. A short run is part of the suite;
//! `CUSTODIAN_FUZZ_CASES=100000 cargo test --test it fuzz::` is the long one (scripts/fuzz).

use custodian::format::config::RepoConfig;
use custodian::format::index::IndexFile;
use custodian::format::pack::PackHeader;
use custodian::format::snapshot::SnapshotHead;
use custodian::format::tree::{SkippedList, Tree};
use custodian::format::trust::{Migration, TrustList};
use custodian::format::{decode_json, decode_packed};
use proptest::prelude::*;
use std::path::Path;

fn cases() -> u32 {
    std::env::var("CUSTODIAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Valid samples to mutate: a tree, a head-like object, a config, a runbook, a daemon config.
fn samples() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![
        br#"{"version":1,"nodes":[{"name":"a","type":"file","mode":420,"uid":0,"gid":0,"mtime":1,"mtime_ns":0,"size":3,"content":[["0101010101010101010101010101010101010101010101010101010101010101",3]]},{"name":{"hex":"ff"},"type":"symlink","mode":511,"uid":0,"gid":0,"mtime":1,"mtime_ns":0,"target":"/etc"}]}"#.to_vec(),
        br#"{"version":1,"packs":[{"id":"0101010101010101010101010101010101010101010101010101010101010101","domain":"d","size":9,"blobs":[{"id":"0202020202020202020202020202020202020202020202020202020202020202","kind":"data","offset":0,"length":9}]}]}"#.to_vec(),
        b"CREF\x01aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb".to_vec(),
    ];
    for f in [
        "tests/fixtures/v2/repo/config",
        "config/custodian.toml",
        "runbooks/ransomware.md",
    ] {
        out.push(std::fs::read(root.join(f)).unwrap());
    }
    out.push(serde_json::to_vec_pretty(&handover_list()).unwrap());
    out
}

/// A handover list of one snapshot and one pack, with non-ASCII text (the list travels by mail).
fn handover_list() -> custodian::format::handover::Manifest {
    use custodian::format::handover::*;
    let party = |key: &str| Party {
        repository: "s3://b/交接".into(),
        repository_id: "ab".repeat(32),
        key: key.into(),
    };
    Manifest {
        version: 1,
        id: "0123456789abcdef0123456789abcdef".into(),
        created: "2026-12-02T00:00:00Z".into(),
        reason: "Sale of branch 07 — contract 2026-118".into(),
        classification: "confidential".into(),
        purpose: "交接清单".into(),
        source: "branch-07".into(),
        domain: "branch-07".into(),
        from: party(&"cd".repeat(32)),
        to: party("age1xyz"),
        trust_fingerprint: "ef".repeat(16),
        handover_operator: "age1abc".into(),
        snapshots: vec![HandedSnapshot {
            id: "01".repeat(32),
            old_id: "02".repeat(32),
            time: "2026-12-01T00:00:00Z".into(),
            host: "branch".into(),
            files: 3,
            dirs: 1,
            bytes: 99,
            head_hash: "03".repeat(32),
            parent: None,
            holds: vec!["legal hold 7".into()],
        }],
        packs: vec![HandedPack {
            id: "04".repeat(32),
            size: 1 << 20,
        }],
        sessions: vec!["05".repeat(16)],
        totals: Totals::default(),
        retention: "none".into(),
        exclusions: 0,
        destruction: Vec::new(),
        audit: AuditPoint {
            entries: 7,
            head: "06".repeat(32),
        },
    }
}

/// Every parser custodian runs on bytes it did not write itself.
fn parse_everything(bytes: &[u8]) {
    let _ = decode_json::<Tree>(bytes, "t", 1).map(|t| t.validate());
    let _ = decode_json::<SkippedList>(bytes, "t", 1);
    let _ = decode_json::<SnapshotHead>(bytes, "t", 1).map(|h| h.root.validate_fields());
    let _ = decode_json::<IndexFile>(bytes, "t", 1);
    let _ = decode_json::<PackHeader>(bytes, "t", 1);
    let _ = decode_json::<RepoConfig>(bytes, "t", 2).map(|c| c.chunker.validate());
    let _ = decode_json::<TrustList>(bytes, "t", 1);
    let _ = decode_json::<Migration>(bytes, "t", 1);
    let _ = decode_json::<custodian::format::audit::EntryBody>(bytes, "t", 1);
    let _ = decode_json::<custodian::format::audit::Checkpoint>(bytes, "t", 1);
    let _ = decode_packed::<custodian::format::audit::Details>(bytes, "t", 1, 1 << 16);
    let _ = decode_packed::<Tree>(bytes, "t", 1, 1 << 20);
    let _ = custodian::compress::decompress_bounded(bytes, 1 << 20);
    let _ = custodian::format::refs::decode(bytes, "r");
    // A handover's files arrive from another owner: list, receipt, mark, and the page made
    // from a list (ids of any length or alphabet must not break it).
    use custodian::format::handover as h;
    if let Ok(m) = decode_json::<h::Manifest>(bytes, "t", 1) {
        let _ = h::valid_id(&m.id);
        let _ = custodian::handover::page::render(&m);
    }
    let _ = decode_json::<h::Receipt>(bytes, "t", 1);
    let _ = decode_json::<h::HandedOver>(bytes, "t", 1).map(|m| {
        m.plan
            .map(|p| p.sessions.iter().all(|o| h::plannable(&o.name)))
    });
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = h::valid_id(text);
        let _ = custodian::handover::short(text);
    }
    let _ = custodian::format::pack::parse_trailer(bytes, "p");
    let _ = custodian::crypto::sign::open_envelope("snapshot", "snapshots/x", bytes);
    let _ = custodian::crypto::blob_seal::frame_session(bytes);
    let key = custodian::crypto::SessionKey::generate();
    let id = custodian::id::BlobId([7; 32]);
    let _ = custodian::crypto::open_blob(&key, &id, 0, bytes, "b");
    let identity = age::x25519::Identity::generate();
    let _ = custodian::crypto::open_with(&[&identity], bytes, "x", "");
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = custodian::config::Config::parse_form(Path::new("fuzz.toml"), text);
        let _ = custodian::runbook::Runbook::parse(Path::new("fuzz.md"), text);
    }
}

fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, byte, op) in edits {
        let at = if data.is_empty() {
            0
        } else {
            pos % (data.len() + 1)
        };
        match op % 3 {
            0 if at < data.len() => data[at] = byte,
            1 => data.insert(at, byte),
            _ if at < data.len() => {
                data.remove(at);
            }
            _ => data.push(byte),
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything(&bytes);
    }

    #[test]
    fn mutated_samples_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12),
    ) {
        let sample = samples().swap_remove(which);
        parse_everything(&mutate(sample, &edits));
    }
}

#[test]
fn the_valid_samples_parse() {
    let s = samples();
    assert!(decode_json::<Tree>(&s[0], "t", 1)
        .unwrap()
        .validate()
        .is_ok());
    assert!(decode_json::<IndexFile>(&s[1], "i", 1).is_ok());
    assert_eq!(
        custodian::format::refs::decode(&s[2], "r").unwrap().len(),
        2
    );
    assert!(decode_json::<RepoConfig>(&s[3], "c", 2).is_ok());
    let text = std::str::from_utf8(&s[4]).unwrap();
    assert!(custodian::config::Config::parse_form(Path::new("c.toml"), text).is_ok());
    let text = std::str::from_utf8(&s[5]).unwrap();
    assert!(custodian::runbook::Runbook::parse(Path::new("r.md"), text).is_ok());
    let list: custodian::format::handover::Manifest = decode_json(&s[6], "h", 1).unwrap();
    assert_eq!(list, handover_list());
    assert!(custodian::handover::page::render(&list).contains("交接清单"));
}
