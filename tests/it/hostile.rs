//! A forger holding only the writer credential (or no key at all) writes hostile snapshots.
//! Each must be refused or made harmless: restore writes only beneath its target, whatever a
//! listing says, and `check --read-data` reports the forgery as damage.

use crate::common;

use common::forge::{node, Forger};
use common::*;
use custodian::format::tree::{Name, NodeKind};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A world with one real snapshot of source `s`, and an empty `outside` directory beside the
/// restore target that nothing may ever touch.
fn world() -> (World, std::path::PathBuf) {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), b"1,2,3\n").unwrap();
    w.backup("s", &src);
    let outside = w.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    (w, outside)
}

fn forger(w: &World) -> Forger {
    Forger::new(w.repo.to_str().unwrap(), &w.writer, "s")
}

/// Restore `id` and expect exit 1 with every needle in the message, and nothing written
/// anywhere but (at most) inside the target.
fn refused(w: &World, id: &str, outside: &Path, needles: &[&str]) {
    let target = w.dir.path().join("target");
    let out = w
        .operator_cmd(&["restore", id, "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert_eq!(
        fs::read_dir(outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    assert!(!w.dir.path().join("pwned").exists());
    if target.exists() {
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "wrote into the target"
        );
    }
}

#[test]
fn names_that_leave_the_directory_are_refused() {
    let (w, outside) = world();
    let abs = format!("{}/pwned", outside.display());
    for (bad, needle) in [
        (b"..".to_vec(), "'..'"),
        (abs.into_bytes(), "'/' in its name"),
        (b"a/b".to_vec(), "'/' in its name"),
        (b"".to_vec(), "empty name"),
    ] {
        let mut f = forger(&w);
        let file = f.file(b"pwned", b"owned by the forger");
        let evil = if bad == b".." {
            f.dir(&bad, vec![file])
        } else {
            f.file(&bad, b"x")
        };
        let root = f.dir(b"", vec![evil]);
        let id = f.commit("s", root, true);
        refused(
            &w,
            &id.to_hex(),
            &outside,
            &["is refused", needle, &id.short()],
        );
    }
}

#[test]
fn a_symlink_then_a_directory_of_the_same_name_is_refused() {
    let (w, outside) = world();
    let mut f = forger(&w);
    let mut link = node(b"x", NodeKind::Symlink);
    link.target = Some(Name(outside.as_os_str().as_encoded_bytes().to_vec()));
    let payload = f.file(b"pwned", b"through the link");
    let dir = f.dir(b"x", vec![payload]);
    let root = f.dir(b"", vec![link, dir]);
    let id = f.commit("s", root, true);
    refused(&w, &id.to_hex(), &outside, &["entry 'x'", "listed twice"]);
    // check --read-data calls it damage.
    let out = exits(&mut w.operator_cmd(&["check", "--read-data"]), 1);
    assert!(out.contains("listed twice"), "{}", out);
}

#[test]
fn a_file_whose_size_differs_from_its_chunks_is_refused() {
    let (w, outside) = world();
    let mut f = forger(&w);
    let mut file = f.file(b"short.csv", b"12345");
    file.size = 100;
    let root = f.dir(b"", vec![file]);
    let id = f.commit("s", root, true);
    refused(
        &w,
        &id.to_hex(),
        &outside,
        &["entry 'short.csv'", "says 100 bytes"],
    );
}

#[test]
fn a_zstd_bomb_listing_is_refused_within_its_limit() {
    let (w, outside) = world();
    let mut f = forger(&w);
    let mut json = br#"{"version":1,"nodes":["#.to_vec();
    json.resize(json.len() + (80 << 20), b' ');
    json.extend_from_slice(b"]}");
    let tree = f.raw_tree(json);
    let mut root = node(b"", NodeKind::Dir);
    root.subtree = Some(tree);
    let id = f.commit("s", root, true);
    refused(&w, &id.to_hex(), &outside, &["limit"]);
}

#[test]
fn special_bits_are_dropped_unless_asked_for() {
    let (w, _) = world();
    let mut f = forger(&w);
    let mut file = f.file(b"tool", b"#!/bin/sh\n");
    file.mode = 0o4755;
    let mut dir = f.dir(b"tmp", vec![]);
    dir.mode = 0o1777;
    let root = f.dir(b"", vec![dir, file]);
    let id = f.commit("s", root, true).to_hex();
    let plain = w.dir.path().join("plain");
    w.restore(&id, &plain, &[]);
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&plain.join("tool")), 0o755);
    assert_eq!(mode(&plain.join("tmp")), 0o777);
    let kept = w.dir.path().join("kept");
    w.restore(&id, &kept, &["--keep-special-bits"]);
    assert_eq!(mode(&kept.join("tool")), 0o4755);
    assert_eq!(mode(&kept.join("tmp")), 0o1777);
}

#[test]
fn overwrite_removes_links_not_what_they_point_at() {
    let (w, outside) = world();
    fs::write(outside.join("precious"), b"keep me").unwrap();
    let target = w.dir.path().join("target");
    fs::create_dir_all(&target).unwrap();
    // A symlink already in the target where the snapshot has a directory and a file.
    std::os::unix::fs::symlink(&outside, target.join("a.csv")).unwrap();
    w.restore("latest", &target, &["--overwrite"]);
    assert_eq!(fs::read(target.join("a.csv")).unwrap(), b"1,2,3\n");
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn a_root_with_an_absolute_name_needs_no_key_and_is_still_refused() {
    let (w, outside) = world();
    // Only public facts: the metadata recipient in `config` seals a head anyone can write.
    let f = forger(&w);
    let mut head = f.repo.list_snapshots().unwrap().pop().unwrap().head;
    let mut root = node(
        format!("{}/pwned", outside.display()).as_bytes(),
        NodeKind::File,
    );
    root.size = 0;
    head.root = root;
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(w.repo.join("config")).unwrap()).unwrap();
    let recipient: age::x25519::Recipient = config["metadata-recipient"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let sealed = custodian::crypto::seal_to(
        &[recipient],
        &custodian::compress::pack_json(&head).unwrap(),
        "forged head",
    )
    .unwrap();
    let name = hex::encode(custodian::id::content_hash(&sealed));
    fs::write(w.repo.join("snapshots").join(&name), &sealed).unwrap();
    refused(&w, &name, &outside, &["is not signed"]);
    // The same root signed with the writer credential passes the signature check and is
    // refused by validation.
    let f = forger(&w);
    let mut root = node(
        format!("{}/pwned", outside.display()).as_bytes(),
        NodeKind::File,
    );
    root.size = 0;
    let id = f.commit("s", root, true);
    refused(
        &w,
        &id.to_hex(),
        &outside,
        &["is refused", "'/' in its name"],
    );
}

#[test]
fn damaged_heads_are_skipped_by_name_and_copies_are_caught() {
    let (w, _) = world();
    let snaps = w.repo.join("snapshots");
    let real = fs::read_dir(&snaps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // Garbage, and a real head copied under another name.
    fs::write(snaps.join("00".repeat(32)), b"garbage").unwrap();
    fs::copy(&real, snaps.join("11".repeat(32))).unwrap();
    let out = w.writer_cmd(&["snapshots", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1, "only the real snapshot");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&"00".repeat(32)) && err.contains(&"11".repeat(32)),
        "{err}"
    );
    assert!(err.contains("altered, renamed or forged"), "{err}");
    let out = exits(&mut w.writer_cmd(&["check"]), 1);
    assert!(out.contains(&"11".repeat(32)[..8]), "{}", out);
}

#[test]
fn swapped_domain_records_are_refused() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), b"1\n").unwrap();
    w.backup("a", &src);
    w.backup("b", &src);
    let domains = w.repo.join("keys").join("domains");
    let writers: Vec<_> = fs::read_dir(&domains)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "writer"))
        .collect();
    assert_eq!(writers.len(), 2);
    let (a, b) = (
        fs::read(&writers[0]).unwrap(),
        fs::read(&writers[1]).unwrap(),
    );
    fs::write(&writers[0], &b).unwrap();
    fs::write(&writers[1], &a).unwrap();
    let out = exits(w.writer_cmd(&["backup", "--source", "a"]).arg(&src), 1);
    assert!(out.contains("altered, renamed or forged"), "{}", out);
}

#[test]
fn a_drill_of_a_hostile_snapshot_fails_and_writes_nothing_outside_its_scratch() {
    let (w, outside) = world();
    let mut f = forger(&w);
    let payload = f.file(b"pwned", b"escaped");
    let escape = f.dir(b"..", vec![payload]);
    let root = f.dir(b"", vec![escape]);
    f.commit("s", root, true);
    let runbook = w.dir.path().join("runbook.md");
    fs::write(
        &runbook,
        "+++\nid = \"hostile\"\ntitle = \"Hostile\"\nsources = [\"s\"]\nowner = \"tests\"\n\
         rto = \"10m\"\nrpo = \"1h\"\nselect = \"latest\"\n+++\n\n# Steps\n",
    )
    .unwrap();
    let state = w.dir.path().join("state");
    let out = exits(
        w.operator_cmd(&["drill", "--json", "--report-dir"])
            .arg(w.dir.path().join("reports"))
            .arg(&runbook),
        1,
    );
    assert!(out.contains("is refused"), "{}", out);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!w.dir.path().join("pwned").exists() && !state.join("pwned").exists());
    let scratch = state.join("scratch");
    assert!(
        fs::read_dir(&scratch).map_or(true, |mut d| d.next().is_none()),
        "scratch kept"
    );
}

#[test]
fn listings_that_repeat_a_subtree_without_end_are_refused() {
    let (w, outside) = world();
    let mut f = forger(&w);
    // Each level lists the level below twice: 2^24 paths from 24 small listings.
    let mut level = f.file(b"f", b"x");
    for depth in 0..24 {
        let mut a = level.clone();
        a.name = Name(b"a".to_vec());
        let mut b = level;
        b.name = Name(b"b".to_vec());
        level = f.dir(format!("d{depth}").as_bytes(), vec![a, b]);
    }
    let root = f.dir(b"", vec![level]);
    let id = f.commit("s", root, true);
    refused(&w, &id.to_hex(), &outside, &["repeat subtrees"]);
    exits(&mut w.operator_cmd(&["ls", &id.to_hex()]), 1);
}

#[test]
fn a_chain_deeper_than_any_store_is_refused_without_exhausting_the_stack() {
    let (w, outside) = world();
    let mut f = forger(&w);
    let mut level = f.file(b"f", b"x");
    for _ in 0..1100 {
        level = f.dir(b"d", vec![level]);
    }
    let mut root = level;
    root.name = Name(Vec::new());
    let id = f.commit("s", root, true);
    refused(&w, &id.to_hex(), &outside, &["directories deep"]);
}

#[test]
fn a_device_node_cannot_even_be_listed() {
    let (w, outside) = world();
    let mut f = forger(&w);
    // The format has no kind for devices: a listing that names one does not decode.
    let raw = br#"{"version":1,"nodes":[{"name":"sda","type":"block-device","mode":432,"uid":0,"gid":0,"mtime":0,"mtime_ns":0}]}"#;
    let tree = f.raw_tree(raw.to_vec());
    let mut root = node(b"", NodeKind::Dir);
    root.subtree = Some(tree);
    let id = f.commit("s", root, true);
    refused(&w, &id.to_hex(), &outside, &["block-device"]);
}

#[test]
fn a_writer_cannot_get_a_snapshot_erased_by_claiming_to_replace_it() {
    let (w, _) = world();
    let f = forger(&w);
    let real = f.repo.list_snapshots().unwrap().pop().unwrap();
    let mut head = real.head.clone();
    head.rewritten = Some(custodian::format::snapshot::Rewritten {
        time: "2026-01-01T00:00:00Z".into(),
        by: "forger".into(),
        from: real.id,
        reason: "erase".into(),
        entries_removed: 0,
    });
    f.repo.write_snapshot(&head).unwrap();
    let out = w
        .operator_cmd(&["erase", "--source", "s", "--path", "no/such/path"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<String> = w
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&real.id.to_hex()),
        "the real snapshot survives: {ids:?}"
    );
}

/// `init` meets a `--writer-key-out` file that already exists, at a location a hostile store
/// dressed up: a garbage `config` leaves the file alone; a replayed copy of the file's own
/// operators' record (so it looks like an interrupted init's) gets it moved aside, never lost.
#[test]
fn init_never_loses_an_existing_credential_file() {
    let w = World::new(&[]);
    let original = fs::read(&w.writer).unwrap();
    let init_at = |location: &Path| {
        w.operator_cmd(&["init", "--recipient", &w.recipient(), "--writer-key-out"])
            .arg(&w.writer)
            .env("CUSTODIAN_REPO", location)
            .output()
            .unwrap()
    };
    let garbage = w.dir.path().join("garbage");
    fs::create_dir_all(&garbage).unwrap();
    fs::write(garbage.join("config"), b"\xff\xfe{ not json").unwrap();
    let out = init_at(&garbage);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("never overwrites a key"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(&w.writer).unwrap(), original);

    let replay = w.dir.path().join("replay");
    fs::create_dir_all(replay.join("keys")).unwrap();
    for e in fs::read_dir(w.repo.join("keys")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("writer-") {
            fs::copy(e.path(), replay.join("keys").join(e.file_name())).unwrap();
        }
    }
    let out = init_at(&replay);
    assert!(out.status.success(), "{}", text(&out));
    let aside: Vec<_> = fs::read_dir(w.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(".interrupted-init-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, once");
    assert_eq!(
        fs::read(aside[0].path()).unwrap(),
        original,
        "byte for byte"
    );
    assert_ne!(
        fs::read(&w.writer).unwrap(),
        original,
        "a new credential in its place"
    );
}

/// Only an operator erases, so only an operator's exclusion counts. One a writer credential
/// signed (a stolen server trying to empty another source's backups, or to stop them with a
/// pattern such as `/`) is refused by every backup, which names it, and by `check`.
#[test]
fn an_erase_exclusion_signed_by_a_writer_is_refused() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(src.join("clients")).unwrap();
    fs::write(src.join("clients/a.csv"), b"a").unwrap();
    w.backup("s", &src);
    let repo = Forger::new(w.repo.to_str().unwrap(), &w.writer, "s").repo;
    let exclusion = custodian::repository::Exclusion {
        version: 1,
        source: "s".into(),
        pattern: "clients".into(),
        time: "2026-01-01T00:00:00Z".into(),
        by: "operator".into(),
    };
    let (name, _) = repo
        .put_meta(custodian::format::ObjectKind::Exclusion, &exclusion)
        .unwrap();
    let out = exits(w.writer_cmd(&["backup", "--source", "s"]).arg(&src), 1);
    assert!(out.contains(&name), "{}", out);
    assert_eq!(w.snapshots().len(), 1, "nothing was committed");
    let out = exits(&mut w.writer_cmd(&["check"]), 1);
    assert!(out.contains(&name), "{}", out);
}
