//! Whoever can write to the storage but holds no key: every object it creates, alters, renames
//! or swaps is refused or reported, and no snapshot is lost or wrongly restored. Runs against
//! local disk and moto. A second forger holding the writer credential signs what it writes: the
//! prune marker and lease it forges still cannot cost a snapshot.

use crate::common;

use common::*;
use custodian::backend::{Backend, ObjectStoreBackend};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store as the provider sees it, and what it can learn without a key.
struct Storage {
    store: Arc<dyn Backend>,
    metadata_recipient: age::x25519::Recipient,
}

impl Storage {
    fn new(w: &World, server: Option<&S3Server>) -> Storage {
        let store: Arc<dyn Backend> = match (server, &w.s3) {
            (Some(s), Some((url, _))) => {
                Arc::new(ObjectStoreBackend::s3_with(url, &s.settings()).unwrap())
            }
            _ => custodian::backend::open(w.repo.to_str().unwrap()).unwrap(),
        };
        let config: Value = serde_json::from_slice(&store.get("config").unwrap()).unwrap();
        let metadata_recipient = config["metadata-recipient"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Storage {
            store,
            metadata_recipient,
        }
    }

    /// Seal `value` the way bookkeeping objects are sealed: to the public metadata recipient.
    fn seal(&self, value: &Value) -> Vec<u8> {
        custodian::crypto::seal_to(
            std::slice::from_ref(&self.metadata_recipient),
            &custodian::compress::pack_json(value).unwrap(),
            "forgery",
        )
        .unwrap()
    }

    /// Store `bytes` under `prefix` + the hash of the bytes, as hash-named objects are.
    fn put_hashed(&self, prefix: &str, bytes: &[u8]) -> String {
        let name = format!(
            "{prefix}{}",
            hex::encode(custodian::id::content_hash(bytes))
        );
        self.store.put_new(&name, bytes).unwrap();
        name
    }

    fn names(&self, prefix: &str) -> Vec<String> {
        self.store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }
}

fn records(w: &World) -> PathBuf {
    let src = w.dir.path().join("records");
    fs::create_dir_all(src.join("clients")).unwrap();
    fs::write(src.join("clients/a.csv"), b"1,2,3\n").unwrap();
    fs::write(src.join("ledger.bin"), noise(300_000, 7)).unwrap();
    src
}

/// Restore `latest` and compare it with `src`, byte for byte.
fn restores_exactly(w: &World, src: &Path, name: &str) {
    let target = w.dir.path().join(name);
    w.restore("latest", &target, &[]);
    assert_same_tree(src, &target);
}

fn check_names(w: &World, object: &str) {
    let out = exits(&mut w.writer_cmd(&["check"]), 1);
    assert!(out.contains(object), "check must name {object}: {}", out);
}

fn forged_objects_are_refused(w: World, server: Option<&S3Server>) {
    let src = records(&w);
    w.backup("s", &src);
    let s = Storage::new(&w, server);
    let head = s.names("snapshots/").pop().unwrap();
    let pack = s.names("packs/").pop().unwrap();
    let pack_id = pack.rsplit('/').next().unwrap().to_string();

    // A head copied under another name, and one sealed to the public recipient.
    let copy = format!("snapshots/{}", "11".repeat(32));
    s.store
        .put_new(&copy, &s.store.get(&head).unwrap())
        .unwrap();
    let fake = s.put_hashed("snapshots/", &s.seal(&json!({"version": 1})));
    let list = w.snapshots();
    assert_eq!(list.len(), 1, "only the real snapshot is listed: {list:?}");
    let out = exits(
        w.operator_cmd(&["restore", &fake["snapshots/".len()..], "--target"])
            .arg(w.dir.path().join("t0")),
        1,
    );
    assert!(out.contains("is not signed"), "{}", out);
    check_names(&w, &copy);

    // An index that points every blob of the real pack at another pack, a marker naming the
    // live pack, a hold, and a lease until 9999: all unsigned.
    let index = json!({"version": 1, "packs": [{"id": "22".repeat(32), "domain": "s", "size": 1,
        "blobs": [{"id": "33".repeat(32), "kind": "data", "offset": 0, "length": 1}]}]});
    let forged_index = s.put_hashed("index/", &s.seal(&index));
    let marker =
        json!({"version": 1, "time": "2000-01-01T00:00:00Z", "by": "x", "packs": [pack_id]});
    let forged_marker = s.put_hashed("prune/", &s.seal(&marker));
    let snap_id = head.rsplit('/').next().unwrap();
    let hold =
        json!({"version": 1, "snapshot": snap_id, "reason": "forged", "time": "x", "by": "x"});
    s.store
        .put_new(&format!("holds/{snap_id}"), &s.seal(&hold))
        .unwrap();
    let lease = json!({"version": 1, "by": "x", "host": "x", "pid": 1,
        "taken": "2026-01-01T00:00:00Z", "expires": "9999-01-01T00:00:00Z"});
    s.store.put_new("locks/prune", &s.seal(&lease)).unwrap();
    // Prune must see every head: it refuses while forged ones are there, naming them, rather
    // than guess that an unreadable head is garbage. Once they are removed, the forged lease
    // binds nobody and the forged marker costs nothing.
    let prune = || {
        w.writer_cmd(&["prune", "--grace", "0s", "--max-unused", "0"])
            .output()
            .unwrap()
    };
    check_names(&w, &forged_index);
    check_names(&w, &format!("holds/{snap_id}"));
    check_names(&w, &forged_marker);
    restores_exactly(&w, &src, "t1");
    let out = prune();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&copy) && text(&out).contains(&fake),
        "{}",
        text(&out)
    );
    for forged in [&copy, &fake, &forged_index] {
        s.store.delete(forged).unwrap();
    }
    let out = prune();
    assert!(
        out.status.success(),
        "a forged lease binds nobody: {}",
        text(&out)
    );
    assert!(
        s.store.get(&pack).is_ok(),
        "the live pack survived the forged marker"
    );
    restores_exactly(&w, &src, "t1b");
    // The forged hold still keeps its snapshot (an unreadable hold errs towards keeping).
    let out = w
        .writer_cmd(&["forget", "--max-age", "0s", "--source", "s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        w.snapshots().len(),
        1,
        "a snapshot under an unreadable hold is kept"
    );

    // A recipient added to the plaintext config: the next backup of a new source is refused
    // before anything is sealed to it, saying what changed.
    let stranger = age::x25519::Identity::generate().to_public().to_string();
    let config = s.store.get("config").unwrap();
    let mut edited: Value = serde_json::from_slice(&config).unwrap();
    edited["operator-recipients"]
        .as_array_mut()
        .unwrap()
        .push(json!(stranger));
    s.store.delete("config").unwrap();
    s.store
        .put_new("config", &serde_json::to_vec_pretty(&edited).unwrap())
        .unwrap();
    let out = exits(w.writer_cmd(&["backup", "--source", "new"]).arg(&src), 1);
    assert!(
        out.contains(&format!("operator recipient {stranger} was added")),
        "{}",
        out
    );
    exits(&mut w.operator_cmd(&["ls", "latest"]), 1);
    assert_eq!(
        s.names("keys/domains/").len(),
        2,
        "no key domain was made for 'new'"
    );
    s.store.delete("config").unwrap();
    s.store.put_new("config", &config).unwrap();
    restores_exactly(&w, &src, "t2");
}

#[test]
fn storage_forgeries_on_local_disk() {
    forged_objects_are_refused(World::new(&[]), None);
}

#[test]
fn storage_forgeries_on_moto() {
    for server in s3_servers().iter().filter(|s| s.name == "moto") {
        forged_objects_are_refused(World::on_s3(server, &[]), Some(server));
    }
}

#[test]
fn a_writer_forged_marker_and_lease_cost_no_snapshot() {
    let w = World::new(&[]);
    let src = records(&w);
    w.backup("s", &src);
    let f = common::forge::Forger::new(w.repo.to_str().unwrap(), &w.writer, "s");
    let repo = &f.repo;
    let packs: Vec<String> = repo
        .list_ids::<custodian::id::PackId>("packs/")
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_hex())
        .collect();
    let marker =
        json!({"version": 1, "time": "2000-01-01T00:00:00Z", "by": "forger", "packs": packs});
    repo.put_meta(custodian::format::ObjectKind::Marker, &marker)
        .unwrap();
    let lease = json!({"version": 1, "by": "forger", "host": "x", "pid": 1,
        "taken": "2026-01-01T00:00:00Z", "expires": "9999-01-01T00:00:00Z"});
    let sealed = repo
        .seal_meta_at(custodian::format::ObjectKind::Lease, "locks/prune", &lease)
        .unwrap();
    repo.store_for_mirror()
        .put_new("locks/prune", &sealed)
        .unwrap();
    let out = w
        .writer_cmd(&["prune", "--grace", "0s", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    restores_exactly(&w, &src, "after-prune");
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_pack_spliced_from_a_real_header_and_other_bytes_is_never_reused() {
    let w = World::new(&[]);
    let src = records(&w);
    w.backup("s", &src);
    let s = Storage::new(&w, None);
    // The biggest pack holds the data; keep its signed header and trailer, replace its frames.
    let real = s
        .store
        .list("packs/")
        .unwrap()
        .into_iter()
        .max_by_key(|o| o.size)
        .unwrap();
    let bytes = s.store.get(&real.name).unwrap();
    let header_len =
        u32::from_le_bytes(bytes[bytes.len() - 12..bytes.len() - 8].try_into().unwrap());
    let data_len = bytes.len() - 12 - header_len as usize;
    let mut spliced = noise(data_len, 99);
    spliced.extend_from_slice(&bytes[data_len..]);
    let id = hex::encode(custodian::id::content_hash(&spliced));
    s.store
        .put_new(&format!("packs/{}/{id}", &id[..2]), &spliced)
        .unwrap();
    // The real pack goes missing: a backup that adopted the splice would rely on garbage.
    s.store.delete(&real.name).unwrap();
    let out = w
        .writer_cmd(&["backup", "--source", "s"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        text(&out).contains("not reusing a leftover pack"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("belongs to other bytes"),
        "{}",
        text(&out)
    );
}

/// A repository with a second operator (identity `second.key` in the returned directory) and
/// one snapshot of source `s` taken from the returned record store.
fn two_operators() -> (tempfile::TempDir, World, PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let recipient = generate_identity(&keys.path().join("second.key"));
    fs::write(keys.path().join("second.pub"), &recipient).unwrap();
    let w = World::new(&["--recipient", &recipient]);
    let src = records(&w);
    w.backup("s", &src);
    (keys, w, src)
}

fn second_recipient(keys: &tempfile::TempDir) -> String {
    fs::read_to_string(keys.path().join("second.pub")).unwrap()
}

#[test]
fn another_operator_trusts_only_a_confirmed_fingerprint_and_notices_a_swap() {
    let (keys, w, src) = two_operators();
    let (second, recipient) = (keys.path().join("second.key"), second_recipient(&keys));
    // The second operator works on its own machine: its own state dir, nothing pinned yet.
    let as_second = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &second)
            .env("CUSTODIAN_STATE_DIR", keys.path().join("state"));
        c.output().unwrap()
    };
    // First use: refused, with the fingerprint to compare.
    let out = as_second(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    let fingerprint = message
        .split("--fingerprint ")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap()
        .to_string();
    assert_eq!(fingerprint.len(), 32, "{message}");
    let out = as_second(&["key", "trust", "--fingerprint", &"0".repeat(32)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = as_second(&["key", "trust", "--fingerprint", &fingerprint]);
    assert!(out.status.success(), "{}", text(&out));
    // A read leaves an audit entry signed by the reader: until the first operator lists the
    // second one's signing key, the second cannot sign one, so it cannot read.
    let out = as_second(&["ls", "latest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("key add-operator"), "{}", text(&out));
    let out = w
        .operator_cmd(&["key", "add-operator", "--recipient", &recipient, "--key"])
        .arg(common::signing_key_of(&second))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let target = w.dir.path().join("second-restore");
    let mut c = w.cmd(&["restore", "latest", "--target"]);
    c.arg(&target)
        .env("CUSTODIAN_IDENTITY", &second)
        .env("CUSTODIAN_STATE_DIR", keys.path().join("state"));
    assert!(c.output().unwrap().status.success());
    assert_same_tree(&src, &target);
    // A config switched back to format 1 under another repository id is refused.
    let config_path = w.repo.join("config");
    let original = fs::read(&config_path).unwrap();
    let mut config: Value = serde_json::from_slice(&original).unwrap();
    config["version"] = json!(1);
    config["repo-id"] = json!("ab".repeat(32));
    fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = as_second(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("switch signatures off"),
        "{}",
        text(&out)
    );
    fs::write(&config_path, &original).unwrap();
    // A replaced trust list (here: one made for another repository) is refused.
    let other = World::new(&["--recipient", &recipient]);
    let trust = "keys/trust-0000000001";
    fs::copy(other.repo.join(trust), w.repo.join(trust)).unwrap();
    let out = as_second(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not the one this machine knows"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_second_operator_writes_only_once_its_key_is_on_the_trust_list() {
    let (keys, w, _src) = two_operators();
    let (second, recipient) = (keys.path().join("second.key"), second_recipient(&keys));
    let id = w.snapshots()[0]["id"].as_str().unwrap().to_string();
    // The second operator works on its own machine: its own state dir, nothing pinned yet.
    let as_second = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &second)
            .env("CUSTODIAN_STATE_DIR", keys.path().join("state"));
        c.output().unwrap()
    };
    let fingerprint = {
        let out = as_second(&["snapshots"]);
        let message = text(&out);
        message.split("--fingerprint ").nth(1).unwrap()[..32].to_string()
    };
    assert!(as_second(&["key", "trust", "--fingerprint", &fingerprint])
        .status
        .success());
    // Reading works; writing (a hold) is refused before anything is stored.
    let out = as_second(&["hold", &id, "--reason", "case 1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not on this repository's trust list"),
        "{}",
        text(&out)
    );
    assert!(
        !w.repo.join("holds").exists() || fs::read_dir(w.repo.join("holds")).unwrap().count() == 0
    );
    // The first operator adds the key it was told.
    let key = signing_key_of(&second);
    let out = w
        .operator_cmd(&[
            "key",
            "add-operator",
            "--recipient",
            &recipient,
            "--key",
            &key,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = as_second(&["hold", &id, "--reason", "case 1"]);
    assert!(out.status.success(), "{}", text(&out));
    // Everyone verifies the longer chain; the writer sees the hold as signed.
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(w.snapshots()[0]["held"], "case 1");
}

/// Erase exclusions are read by every backup. One the storage forged (unsigned), or planted
/// larger than any exclusion may be, must never be obeyed silently (dropping a client's files
/// from backups) nor be skipped silently (storing erased files again): backups refuse, naming
/// it; `check` names it; listings still answer.
#[test]
fn forged_and_oversized_erase_exclusions_stop_backups_and_are_named() {
    let w = World::new(&[]);
    let src = records(&w);
    w.backup("s", &src);
    let s = Storage::new(&w, None);
    let exclusion = json!({"version": 1, "source": "s", "pattern": "*", "time": "x", "by": "x"});
    let forged = s.put_hashed("exclusions/", &s.seal(&exclusion));
    let backup = || {
        w.writer_cmd(&["backup", "--source", "s"])
            .arg(&src)
            .output()
            .unwrap()
    };
    let out = backup();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&forged) && text(&out).contains("no backup runs"),
        "{}",
        text(&out)
    );
    assert_eq!(w.snapshots().len(), 1, "nothing was committed");
    check_names(&w, &forged);
    let out = w.writer_cmd(&["snapshots"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&forged),
        "the listing warns: {}",
        text(&out)
    );
    s.store.delete(&forged).unwrap();

    // Larger than any exclusion: refused by its listed size, before it is read.
    let giant = vec![0u8; 256 << 10];
    let planted = s.put_hashed("exclusions/", &giant);
    let out = backup();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("more than any erase exclusion may be"),
        "{}",
        text(&out)
    );
    s.store.delete(&planted).unwrap();
    let out = backup();
    assert!(out.status.success(), "{}", text(&out));
    restores_exactly(&w, &src, "after");
}
