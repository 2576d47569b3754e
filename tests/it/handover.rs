//! `custodian handover`: one record store changes hands from a local repository into a new
//! owner's repository on a real S3 server. The new owner restores it with its own identity
//! alone, the old owner can open nothing there and destroys its copy, nothing of any other
//! store travels along, and a list altered in transit, a pack dropped or a snapshot added is
//! named by `accept`.

use crate::common;

use common::*;
use custodian::backend::Backend;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The new owner: its own identity, recipient, signing key and machine (state dir).
struct NewOwner {
    key: PathBuf,
    recipient: String,
    signing: String,
    state: PathBuf,
}

fn new_owner(w: &World) -> NewOwner {
    let key = w.dir.path().join("newco.key");
    NewOwner {
        recipient: generate_identity(&key),
        signing: signing_key_of(&key),
        key,
        state: w.dir.path().join("newco-state"),
    }
}

impl NewOwner {
    /// `custodian ARGS…` on the new owner's machine, against `repo`.
    fn cmd(&self, repo: &str, env: &[(&'static str, String)], args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("CUSTODIAN_REPO", repo)
            .env("CUSTODIAN_STATE_DIR", &self.state)
            .env("CUSTODIAN_IDENTITY", &self.key)
            .env_remove("CUSTODIAN_WRITER_KEY")
            .envs(env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// Two stores in one repository: `branch-07` (two snapshots) and `other`.
fn two_stores(w: &World) -> (PathBuf, PathBuf) {
    let (branch, other) = (w.dir.path().join("branch"), w.dir.path().join("other"));
    custodian::sample::generate(&branch, 2 << 20, 71).unwrap();
    custodian::sample::generate(&other, 1 << 20, 72).unwrap();
    w.backup("branch-07", &branch);
    w.backup("other", &other);
    custodian::sample::mutate(&branch, 73).unwrap();
    w.backup("branch-07", &branch);
    (branch, other)
}

fn prepare(w: &World, to: &str, env: &[(&'static str, String)], n: &NewOwner, out: &Path) -> Value {
    let mut c = prepare_cmd(w, to, n, out);
    c.args([
        "--json",
        "--purpose",
        "continuation of the branch's bookkeeping",
    ])
    .envs(env.iter().map(|(k, v)| (k, v)));
    ok_json(c)
}

fn accept_cmd(
    n: &NewOwner,
    to: &str,
    env: &[(&'static str, String)],
    dir: &Path,
    from_key: &str,
) -> Command {
    let mut c = n.cmd(
        to,
        env,
        &["handover", "accept", "--json", "--from-key", from_key],
    );
    c.arg(dir);
    c
}

fn ok_json(mut c: Command) -> Value {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails_with(mut c: Command, needles: &[&str]) -> String {
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    for n in needles {
        assert!(err.contains(n), "'{n}' missing from: {err}");
    }
    err
}

/// Secrets of the old repository other than the handed-over domain's: the other domains'
/// identities, dedup keys and chunker seeds, the metadata identity and dedup key, and the
/// writer credentials' keys, as text and as bytes (public values such as ids are left out).
/// Also returns the handed-over domain's dedup key, which must arrive (the control).
fn other_secrets(w: &World, handed: &str) -> (Vec<Vec<u8>>, String) {
    let ids = custodian::crypto::keys::load_identity_file(&w.operator).unwrap();
    let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
    let mut out = Vec::new();
    let mut control = String::new();
    for (path, bytes) in all_bytes(&w.repo.join("keys")) {
        let body = custodian::crypto::sign::unverified_body(&bytes);
        let Ok(plain) = custodian::crypto::open_with(&refs, body, "record", "") else {
            continue;
        };
        let json = custodian::compress::unpack_json(&plain, 1 << 20).unwrap_or(plain.to_vec());
        let Ok(record) = serde_json::from_slice::<Value>(&json) else {
            continue;
        };
        if record["name"] == handed {
            control = record["dedup-key"].as_str().unwrap().to_string();
            continue;
        }
        let secret_fields = [
            "identity",
            "identities",
            "dedup-key",
            "key",
            "metadata-identity",
            "metadata-dedup-key",
            "signing-key",
            "later-metadata-identities",
        ];
        let values = secret_fields.iter().flat_map(|f| walk(&record[*f]));
        for v in values {
            if v.len() >= 32 {
                out.push(v.as_bytes().to_vec());
                if let Ok(raw) = hex::decode(&v) {
                    out.push(raw);
                }
            }
        }
        if let Some(seed) = record["chunker-seed"].as_u64() {
            out.push(seed.to_le_bytes().to_vec());
            out.push(seed.to_be_bytes().to_vec());
        }
        assert!(!out.is_empty(), "{} held no secret", path.display());
    }
    (out, control)
}

fn walk(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(walk).collect(),
        Value::Object(o) => o.values().flat_map(walk).collect(),
        _ => Vec::new(),
    }
}

/// Every object of a store, raw, plus what the new owner's identity (and the keys it finds that
/// way, such as the repository's metadata identity) can decrypt of it.
fn readable_by(store: &dyn custodian::backend::Backend, identity: &Path) -> Vec<Vec<u8>> {
    let mut raw = Vec::new();
    for folder in [
        "config",
        "keys/",
        "sessions/",
        "snapshots/",
        "index/",
        "packs/",
        "handovers/",
        "holds/",
        "audit/",
        "exclusions/",
    ] {
        for o in store.list(folder).unwrap() {
            raw.push(store.get(&o.name).unwrap());
        }
    }
    let mut ids = custodian::crypto::keys::load_identity_file(identity).unwrap();
    let mut plain = Vec::new();
    // Twice: the second round opens what the identities found in the first round seal.
    for _ in 0..2 {
        let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
        plain.clear();
        for bytes in &raw {
            let body = custodian::crypto::sign::unverified_body(bytes);
            if let Ok(p) = custodian::crypto::open_with(&refs, body, "object", "") {
                plain.push(custodian::compress::unpack_json(&p, 64 << 20).unwrap_or(p.to_vec()));
            }
        }
        let found: Vec<age::x25519::Identity> = plain
            .iter()
            .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
            .flat_map(|v| walk(&v))
            .filter_map(|s| s.parse().ok())
            .collect();
        ids.extend(found);
    }
    raw.extend(plain);
    raw
}

#[test]
fn a_store_changes_hands_into_s3_and_only_that_store_goes() {
    let Some(server) = s3_servers().into_iter().find(|s| s.name == "moto") else {
        return;
    };
    let w = World::new(SMALL_PACKS);
    let (branch, _) = two_stores(&w);
    let n = new_owner(&w);
    let to = format!("s3://{}/records", server.bucket());
    let env = server.env();
    let out = w.dir.path().join("handover-branch-07");
    let list = prepare(&w, &to, &env, &n, &out);
    assert_eq!(list["totals"]["snapshots"], 2, "{list}");
    assert_eq!(list["source"], "branch-07");
    assert!(list["packs"].as_array().unwrap().len() > 3, "{list}");
    let old_key = signing_key_of(&w.operator);
    assert_eq!(list["from"]["key"], old_key.as_str());

    // The old repository no longer takes backups of the store, and says why.
    let c = {
        let mut c = w.writer_cmd(&["backup", "--source", "branch-07"]);
        c.arg(&branch);
        c
    };
    fails_with(c, &["was handed over", "handover"]);

    // The new owner checks, drills the whole snapshot, and signs the receipt.
    let server_key = w.dir.path().join("newco-server.key");
    let mut c = accept_cmd(&n, &to, &env, &out, &old_key);
    c.args(["--drill", "full", "--writer-key-out"])
        .arg(&server_key);
    let receipt = ok_json(c);
    assert_eq!(receipt["drill"]["passed"], true, "{receipt}");
    assert_eq!(
        receipt["drill"]["files"], list["snapshots"][1]["files"],
        "{receipt}"
    );
    assert_eq!(receipt["signed-by"], n.signing.as_str());

    // With its own identity alone it restores the store byte for byte.
    let target = w.dir.path().join("restored");
    let mut c = n.cmd(
        &to,
        &env,
        &["restore", "latest", "--source", "branch-07", "--target"],
    );
    c.arg(&target);
    ok_text(c);
    assert_same_tree(&branch, &target);
    // Its server backs up into the new repository, deduplicating against what was handed
    // over (the store's dedup key and chunker seed came along).
    let mut c = n.cmd(&to, &env, &["backup", "--json", "--source", "branch-07"]);
    c.env_remove("CUSTODIAN_IDENTITY")
        .env("CUSTODIAN_WRITER_KEY", &server_key)
        .arg(&branch);
    let again = ok_json(c);
    let added = again["stats"]["bytes_added"].as_u64().unwrap();
    assert!(
        added < 64 << 10,
        "the same store stored {added} bytes again: {again}"
    );

    // The old owner's identity opens nothing there.
    let store = custodian::backend::ObjectStoreBackend::s3_with(&to, &server.settings()).unwrap();
    let ids = custodian::crypto::keys::load_identity_file(&w.operator).unwrap();
    let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
    let mut objects = 0;
    for folder in [
        "keys/",
        "sessions/",
        "snapshots/",
        "index/",
        "handovers/",
        "audit/",
    ] {
        for o in store.list(folder).unwrap() {
            let bytes = store.get(&o.name).unwrap();
            let body = custodian::crypto::sign::unverified_body(&bytes);
            assert!(
                custodian::crypto::open_with(&refs, body, "object", "").is_err(),
                "the old owner opens {}",
                o.name
            );
            objects += 1;
        }
    }
    assert!(objects > 20, "{objects}");
    let mut c = w.operator_cmd(&["restore", "latest", "--target"]);
    c.arg(w.dir.path().join("never"))
        .env("CUSTODIAN_REPO", &to)
        .envs(env.iter().map(|(k, v)| (k, v)));
    fails_with(c, &["not one of this repository's operators"]);

    // Nothing of the other store went along: no snapshot, no key domain, no pack of it, and
    // none of its secrets (nor the old repository's metadata identity), in the raw objects, in
    // anything the new owner's keys decrypt there, or in the handover directory.
    let snaps = ok_json(n.cmd(&to, &env, &["snapshots", "--json"]));
    assert!(
        snaps
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["source"] == "branch-07"),
        "{snaps}"
    );
    let (secrets, control) = other_secrets(&w, "branch-07");
    assert!(secrets.len() >= 6, "{}", secrets.len());
    let mut received = readable_by(&store, &n.key);
    received.extend(all_bytes(&out).into_iter().map(|(_, b)| b));
    // The scan sees inside what the new owner can open: the store's own dedup key is there.
    assert!(received.iter().any(|b| contains(b, control.as_bytes())));
    for secret in &secrets {
        for bytes in &received {
            assert!(
                !contains(bytes, secret),
                "a secret of another store reached the new owner: {} in {}",
                String::from_utf8_lossy(secret),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
    }

    // The receipt goes back; the old owner destroys its copy.
    let mut c = w.operator_cmd(&[
        "handover",
        "complete",
        "--json",
        "--destroy",
        "--to-key",
        &n.signing,
    ]);
    c.arg(&out);
    let done = ok_json(c);
    assert_eq!(done["holds-released"], 2, "{done}");
    let records = ok_json(w.operator_cmd(&["destruction-records", "--json"]));
    assert!(records.to_string().contains("branch-07"), "{records}");
    // The other store is untouched.
    store_gone_other_intact(&w);
    // And the daemon's writer, still configured for the store, is refused by name again.
    let mut c = w.writer_cmd(&["backup", "--source", "branch-07"]);
    c.arg(&branch);
    fails_with(c, &["was handed over"]);

    // Both logs hold every step, and both reports show them.
    let mut c = w.operator_cmd(&["report", "--since", "30d", "--out"]);
    c.arg(w.dir.path().join("report"));
    let old_ops = report_handovers(c, &w.dir.path().join("report"));
    assert_eq!(
        old_ops,
        ["handover prepare", "handover complete", "handover accept"]
    );
    let mut c = n.cmd(&to, &env, &["report", "--since", "30d", "--out"]);
    c.arg(w.dir.path().join("new-report"));
    let new_ops = report_handovers(c, &w.dir.path().join("new-report"));
    assert_eq!(new_ops, ["handover prepare", "handover accept"]);
}

/// The old owner reads `branch-07` no more, and `other` still restores exactly.
fn store_gone_other_intact(w: &World) {
    let mut c = w.operator_cmd(&["restore", "latest", "--source", "branch-07", "--target"]);
    c.arg(w.dir.path().join("gone"));
    fails_with(c, &[]);
    let back = w.dir.path().join("other-back");
    w.restore("latest", &back, &["--source", "other"]);
    assert_same_tree(&w.dir.path().join("other"), &back);
}

/// Run `report` and return the ops of its Handovers section.
fn report_handovers(c: Command, dir: &Path) -> Vec<String> {
    ok_text(c);
    let facts: Value = serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    facts["handovers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["op"].as_str().map(str::to_string))
        .collect()
}

/// Run a command that prints text, requiring success.
fn ok_text(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Two stores in a local repository, a new owner, and where its repository will be.
fn local_world() -> (World, NewOwner, String) {
    let w = World::new(SMALL_PACKS);
    two_stores(&w);
    let n = new_owner(&w);
    let to = w.dir.path().join("newco-repo");
    (w, n, to.to_str().unwrap().to_string())
}

/// A copy of the handover directory `out` whose list `edit` changed (it must change).
fn edited_list(w: &World, out: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let edited = w.dir.path().join("edited");
    copy_tree(out, &edited);
    let json = fs::read_to_string(edited.join("handover-list.json")).unwrap();
    let changed = edit(&json);
    assert_ne!(json, changed);
    fs::write(edited.join("handover-list.json"), changed).unwrap();
    edited
}

/// A local handover, prepared, for the tampering and interruption tests.
fn prepared_locally() -> (World, NewOwner, String, PathBuf, Value) {
    let (w, n, to) = local_world();
    let out = w.dir.path().join("handover");
    let list = prepare(&w, &to, &[], &n, &out);
    (w, n, to, out, list)
}

#[test]
fn accept_names_a_list_altered_a_pack_dropped_and_a_snapshot_added_in_transit() {
    let (w, n, to, out, list) = prepared_locally();
    let old_key = signing_key_of(&w.operator);

    // A count edited in the list: the signature no longer holds.
    let files = list["snapshots"][0]["files"].as_u64().unwrap();
    let edited = edited_list(&w, &out, |json| {
        json.replacen(
            &format!("\"files\": {files}"),
            &format!("\"files\": {}", files + 1),
            1,
        )
    });
    fails_with(
        accept_cmd(&n, &to, &[], &edited, &old_key),
        &["signature that does not verify", "Do not accept it"],
    );
    // A mark the storage planted (no signature) stops nothing, and hides no real one: the
    // other store still backs up, the handed-over one is still refused.
    fs::write(
        Path::new(&w.repo).join("handovers/planted.mark"),
        b"\0garbage",
    )
    .unwrap();
    let mut c = w.writer_cmd(&["backup", "--source", "other"]);
    c.arg(w.dir.path().join("other"));
    ok_text(c);
    let mut c = w.writer_cmd(&["backup", "--source", "branch-07"]);
    c.arg(w.dir.path().join("branch"));
    fails_with(c, &["was handed over"]);
    // Signed by someone else than the key confirmed out of band.
    fails_with(
        accept_cmd(&n, &to, &[], &out, &n.signing),
        &["not by the key you confirmed"],
    );

    // A pack dropped on the way: named.
    let pack = list["packs"][1]["id"].as_str().unwrap();
    let path = Path::new(&to).join("packs").join(&pack[..2]).join(pack);
    let aside = w.dir.path().join("aside");
    fs::rename(&path, &aside).unwrap();
    fails_with(
        accept_cmd(&n, &to, &[], &out, &old_key),
        &[&format!("pack {}", &pack[..16]), "not in the repository"],
    );
    fs::rename(&aside, &path).unwrap();

    // A snapshot added on the way (by whoever held the creation's writer credential): named.
    let id = fs::read_to_string(out.join("handover-id")).unwrap();
    let writer = w
        .state
        .join("handover")
        .join(id.trim())
        .join("init-writer.key");
    let planted = w.dir.path().join("planted");
    fs::create_dir_all(&planted).unwrap();
    fs::write(planted.join("extra.csv"), "1,2\n").unwrap();
    let mut c = Command::new(BIN);
    c.args([
        "backup",
        "--new-source",
        "--source",
        "branch-07",
        "--writer-key",
    ])
    .arg(&writer)
    .arg(&planted)
    .env("CUSTODIAN_REPO", &to)
    .env("CUSTODIAN_STATE_DIR", w.dir.path().join("planter"));
    ok_text(c);
    fails_with(
        accept_cmd(&n, &to, &[], &out, &old_key),
        &["is in the repository but not on the list"],
    );
    // Nothing was accepted: no receipt.
    assert!(!out.join("receipt.json").exists());
}

#[test]
fn a_prepare_killed_at_eight_points_finishes_on_the_next_run_without_duplicates() {
    // Two identical worlds (same generated stores): one counts an uninterrupted prepare's
    // writes, the others are killed at eight points spread over them, then run again.
    let (w, n, to) = local_world();
    let log = w.dir.path().join("ops.log");
    let counted = w.dir.path().join("counted");
    let mut c = prepare_cmd(&w, &to, &n, &counted);
    c.env("CUSTODIAN_TEST_OP_LOG", &log);
    ok_text(c);
    let ops = fs::read_to_string(&log).unwrap().lines().count();
    assert!(ops > 20, "{ops}");
    let whole: Value =
        serde_json::from_slice(&fs::read(counted.join("handover-list.json")).unwrap()).unwrap();
    for point in (1..=8).map(|k| k * ops / 9) {
        let (w, n, to) = local_world();
        let out = w.dir.path().join("handover");
        let mut c = prepare_cmd(&w, &to, &n, &out);
        c.env("CUSTODIAN_TEST_PAUSE_AT", format!("op:{point}:after"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        wait_until_stopped(child.id());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        assert!(!out.join("handover-list.json").exists());
        ok_text(prepare_cmd(&w, &to, &n, &out));
        // Accept passes: every stored pack and snapshot is on the list, each once.
        let receipt = ok_json(accept_cmd(&n, &to, &[], &out, &signing_key_of(&w.operator)));
        assert_eq!(receipt["snapshots"], 2, "{receipt}");
        // No frame was stored twice, nor a pack indexed twice: every blob the index objects
        // list is a distinct one, as an uninterrupted run leaves it.
        let repo = custodian::repository::Repository::open_pinned(
            std::sync::Arc::new(custodian::backend::LocalBackend::new(&to)),
            &custodian::repository::Credential::Operator(n.key.clone()),
            Some(n.state.join("trust")),
        )
        .unwrap();
        let files = repo.load_index_files().unwrap();
        let packs: Vec<_> = files.iter().flat_map(|(_, f)| &f.packs).collect();
        let listed: usize = packs.iter().map(|p| p.blobs.len()).sum();
        let unique = repo.load_index().unwrap().blob_count();
        assert_eq!(listed, unique, "kill at op {point}: a blob stored twice");
        let ids: std::collections::HashSet<_> = packs.iter().map(|p| p.id).collect();
        assert_eq!(
            ids.len(),
            packs.len(),
            "kill at op {point}: a pack indexed twice"
        );
        assert_eq!(receipt["packs"], ids.len(), "{receipt}");
        assert_eq!(whole["totals"]["snapshots"], 2);
    }
}

fn prepare_cmd(w: &World, to: &str, n: &NewOwner, out: &Path) -> Command {
    let mut c = w.operator_cmd(&[
        "handover",
        "prepare",
        "--source",
        "branch-07",
        "--to-repo",
        to,
        "--to-recipient",
        &n.recipient,
        "--reason",
        "Sale of branch 07 to NewCo, contract 2026-118",
        "--out",
    ]);
    c.arg(out);
    c
}

#[test]
fn the_handover_list_renders_in_chromium_with_its_counts() {
    let (w, _, _, out, list) = prepared_locally();
    let url = format!("file://{}", out.join("handover-list.html").display());
    let profile = w.dir.path().join("chromium-profile");
    let done = chromium()
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", text(&done));
    let dom = String::from_utf8_lossy(&done.stdout);
    let first = list["snapshots"][0]["id"].as_str().unwrap();
    let pack = list["packs"][0]["id"].as_str().unwrap();
    for fact in [
        "交接清单",
        "branch-07",
        "Sale of branch 07",
        &first[..16],
        pack,
        list["from"]["key"].as_str().unwrap(),
    ] {
        assert!(dom.contains(fact), "{fact} missing from the rendered page");
    }
    let rows = dom.matches("<tr>").count();
    let expected =
        list["snapshots"].as_array().unwrap().len() + list["packs"].as_array().unwrap().len();
    assert!(rows >= expected, "{rows} rows for {expected} items");
}

#[test]
fn a_retained_store_stays_readable_until_its_day_then_the_daemon_destroys_it() {
    let (w, n, to, out, _) = prepared_locally();
    ok_json(accept_cmd(&n, &to, &[], &out, &signing_key_of(&w.operator)));
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(4);
    let until = humantime::format_rfc3339_seconds(until).to_string();
    let mut c = w.operator_cmd(&[
        "handover",
        "complete",
        "--json",
        "--to-key",
        &n.signing,
        "--retain-until",
        &until,
    ]);
    c.arg(&out);
    let done = ok_json(c);
    assert!(done["destroyed"].is_null(), "{done}");
    // Until then the old owner's operators still read it.
    let kept = w.dir.path().join("kept");
    w.restore("latest", &kept, &["--source", "branch-07"]);

    // The daemon, still configured for the store, is refused by name, and destroys it on the
    // day from its retention run, with the writer credential alone.
    let branch = w.dir.path().join("branch");
    let config = w.dir.path().join("custodian.toml");
    fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\nwriter-key-file = {:?}\nstate-dir = {:?}\n\n\
             [daemon]\nretry-initial = \"1s\"\nforget-schedule = \"* * * * * *\"\n\n\
             [[source]]\nname = \"branch-07\"\npath = {branch:?}\nschedule = \"* * * * * *\"\n",
            w.repo,
            w.writer,
            w.dir.path().join("daemon-state")
        ),
    )
    .unwrap();
    let log = w.dir.path().join("daemon.log");
    let mut daemon = Command::new(BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let destroyed = loop {
        let records = ok_json(w.writer_cmd(&["destruction-records", "--json"]));
        let found = records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "destroy-domain" && r["domain"] == "branch-07")
            .cloned();
        if let Some(r) = found {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    let log = fs::read_to_string(&log).unwrap();
    assert!(log.contains("was handed over"), "{log}");
    // A refusal that cannot pass by itself is not retried: the source needs an operator.
    assert!(log.contains("needs an operator"), "{log}");
    assert!(!log.contains("retrying later"), "{log}");
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["sources"][0]["needs_operator"], true, "{status}");
    let when = humantime::parse_rfc3339_weak(destroyed["time"].as_str().unwrap()).unwrap();
    assert!(
        when >= humantime::parse_rfc3339_weak(&until).unwrap(),
        "{destroyed}"
    );
    assert!(destroyed["note"]
        .as_str()
        .unwrap()
        .contains("Retained after handover"));
    assert_eq!(
        destroyed["snapshots"].as_array().unwrap().len(),
        2,
        "{destroyed}"
    );
    // Nobody can read it any more; the other store is untouched.
    store_gone_other_intact(&w);
}

#[test]
fn accept_refuses_a_repository_the_old_side_kept_a_way_into_and_a_list_whose_id_is_a_path() {
    let (w, n, to, out, _) = prepared_locally();
    let old_key = signing_key_of(&w.operator);
    // An id that would name a directory elsewhere, re-signed is beside the point: refused first.
    let id = fs::read_to_string(out.join("handover-id")).unwrap();
    let edited = edited_list(&w, &out, |json| {
        json.replace(id.trim(), "../../../../tmp/planted")
    });
    fails_with(
        accept_cmd(&n, &to, &[], &edited, &old_key),
        &["not a handover id"],
    );
    assert!(
        !n.state.join("handover").exists()
            || fs::read_dir(n.state.join("handover")).unwrap().count() == 0
    );

    // The old side, still holding the handover operator, adds an operator of its own.
    let spare = w.dir.path().join("spare.key");
    let spare_recipient = generate_identity(&spare);
    let handover_key = w
        .state
        .join("handover")
        .join(id.trim())
        .join("operator.key");
    let added = Command::new(BIN)
        .args([
            "access",
            "add-operator",
            &spare_recipient,
            "--key",
            &signing_key_of(&spare),
            "--name",
            "spare",
        ])
        .env("CUSTODIAN_REPO", &to)
        .env("CUSTODIAN_IDENTITY", &handover_key)
        .env("CUSTODIAN_STATE_DIR", &w.state)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added));
    let err = fails_with(
        accept_cmd(&n, &to, &[], &out, &old_key),
        &["is not the new owner nor the handover operator"],
    );
    assert!(err.contains(&spare_recipient), "{err}");
    assert!(!out.join("receipt.json").exists());
}

#[test]
fn complete_refuses_to_destroy_a_snapshot_that_never_reached_the_new_owner() {
    let (w, n, to) = local_world();
    let out = w.dir.path().join("handover");
    let first = w
        .snapshots()
        .iter()
        .find(|s| s["source"] == "branch-07")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = prepare_cmd(&w, &to, &n, &out);
    c.args(["--snapshot", &first]);
    ok_text(c);
    ok_json(accept_cmd(&n, &to, &[], &out, &signing_key_of(&w.operator)));
    let mut c = w.operator_cmd(&["handover", "complete", "--destroy", "--to-key", &n.signing]);
    c.arg(&out);
    fails_with(
        c,
        &[
            "does not",
            "never reached the new owner",
            "nothing was changed",
        ],
    );
    // Both snapshots are still readable in the old repository.
    w.restore(
        "latest",
        &w.dir.path().join("still"),
        &["--source", "branch-07"],
    );
}

#[test]
fn every_write_of_handover_prepare_and_complete_is_a_safe_kill_point() {
    use crate::sweep::{report, sweep, Case};
    let (w, n, to) = local_world();
    let out = w.dir.path().join("handover");
    let other = w
        .snapshots()
        .iter()
        .find(|s| s["source"] == "other")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = vec![(other, w.dir.path().join("other"))];
    let prepare = prepare_cmd(&w, &to, &n, &out);
    let args: Vec<String> = prepare
        .get_args()
        .map(|a| a.to_string_lossy().to_string())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut table = Vec::new();
    // prepare: the old repository (checked after each kill), the new one and the handover
    // directory (reset with it), every write of both repositories.
    let mut case = Case::new(&w, &args);
    case.operator = true;
    case.expected = &expected;
    case.creates = vec![PathBuf::from(&to), out.clone()];
    table.push(("handover prepare", sweep(&case)));
    // complete, once prepared and accepted.
    ok_text(prepare_cmd(&w, &to, &n, &out));
    ok_json(accept_cmd(&n, &to, &[], &out, &signing_key_of(&w.operator)));
    let dir = out.to_str().unwrap().to_string();
    let complete = [
        "handover",
        "complete",
        "--destroy",
        "--to-key",
        &n.signing,
        &dir,
    ];
    let mut case = Case::new(&w, &complete);
    case.operator = true;
    case.expected = &expected;
    table.push(("handover complete --destroy", sweep(&case)));
    report(&table);
}
