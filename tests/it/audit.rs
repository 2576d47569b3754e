//! The audit log and the access registry (issue 14), through the real binary: one entry per
//! command with its actor and reason and never a path; tampering named by `audit verify`; reads
//! refused when the log cannot be written, and `--audit-offline`; revoked writers; auditors.

use crate::common;

use common::{chromium, exits, is_root, text, World};
use custodian::backend::Backend;
use custodian::format::audit::entry_name;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MARKER: &str = "Zq7MARKERclient";

fn store(w: &World) -> PathBuf {
    let src = w.dir.path().join("store");
    fs::create_dir_all(src.join(format!("clients/{MARKER}"))).unwrap();
    fs::write(
        src.join(format!("clients/{MARKER}/{MARKER}.csv")),
        format!("{MARKER},1,2\n"),
    )
    .unwrap();
    fs::write(src.join("clients/other.csv"), b"3,4\n").unwrap();
    src
}

/// `audit log --json` as the operator sees it.
fn entries(w: &World) -> Vec<serde_json::Value> {
    let out = w
        .operator_cmd(&["audit", "log", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run_ok(mut c: std::process::Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn stdout_ok(mut c: std::process::Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn verify(w: &World) -> (bool, String) {
    let out = w.operator_cmd(&["audit", "verify"]).output().unwrap();
    (out.status.success(), text(&out))
}

fn log_dir(w: &World) -> PathBuf {
    w.repo.join("audit/log")
}

#[test]
fn every_command_leaves_one_entry_with_its_actor_and_reason_and_no_path() {
    for (w, store) in places(0) {
        every_command_on(&w, store.as_ref());
    }
}

fn every_command_on(w: &World, storage: &dyn Backend) {
    let src = store(w);
    let first = entries(w);
    assert_eq!(first.len(), 1, "init is the first entry: {first:?}");
    assert_eq!(first[0]["op"], "init");

    w.backup("books", &src);
    fs::write(src.join("clients/other.csv"), b"3,4,5\n").unwrap();
    w.backup("books", &src);
    let id = w.latest_id();
    let target = w.dir.path().join("out");
    let marker_path = format!("latest:clients/{MARKER}/{MARKER}.csv");
    let runbooks = w.dir.path().join("runbooks");
    fs::create_dir_all(&runbooks).unwrap();
    fs::write(runbooks.join("books.md"), RUNBOOK).unwrap();
    let runbooks = runbooks.display().to_string();
    let cases: Vec<(&str, Vec<String>, &str, &str)> = vec![
        (
            "backup",
            vec![
                "backup".into(),
                "--source".into(),
                "books".into(),
                src.display().to_string(),
            ],
            "writer",
            "write",
        ),
        (
            "ls",
            vec![
                "ls".into(),
                "latest".into(),
                "--source".into(),
                "books".into(),
            ],
            "operator",
            "read",
        ),
        (
            "restore",
            vec![
                "restore".into(),
                "latest".into(),
                "--source".into(),
                "books".into(),
                "--target".into(),
                target.display().to_string(),
                "--include".into(),
                format!("clients/{MARKER}"),
            ],
            "operator",
            "read",
        ),
        (
            "dump",
            vec![
                "dump".into(),
                marker_path.clone(),
                "--source".into(),
                "books".into(),
            ],
            "operator",
            "read",
        ),
        (
            "find",
            vec!["find".into(), MARKER.into()],
            "operator",
            "read",
        ),
        (
            "diff",
            vec![
                "diff".into(),
                format!("{}", &w.snapshots()[0]["id"].as_str().unwrap()[..8]),
                id[..8].to_string(),
            ],
            "operator",
            "read",
        ),
        (
            "check --read-data",
            vec!["check".into(), "--read-data".into()],
            "operator",
            "read",
        ),
        (
            "drill",
            vec![
                "drill".into(),
                "books".into(),
                "--runbooks".into(),
                runbooks,
            ],
            "operator",
            "read",
        ),
        (
            "hold",
            vec!["hold".into(), id[..8].to_string()],
            "writer",
            "write",
        ),
        (
            "release",
            vec!["release".into(), id[..8].to_string()],
            "operator",
            "write",
        ),
        (
            "forget --dry-run",
            vec![
                "forget".into(),
                "--keep-last".into(),
                "1".into(),
                "--dry-run".into(),
            ],
            "writer",
            "write",
        ),
        (
            "prune --dry-run",
            vec!["prune".into(), "--dry-run".into()],
            "writer",
            "write",
        ),
        (
            "erase --dry-run",
            vec![
                "erase".into(),
                "--source".into(),
                "books".into(),
                "--path".into(),
                format!("clients/{MARKER}"),
                "--dry-run".into(),
            ],
            "operator",
            "write",
        ),
    ];
    for (i, (op, args, role, access)) in cases.iter().enumerate() {
        let before = entries(w).len();
        let reason = format!("ticket T-{i}");
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--reason", &reason]);
        let mut c = if *role == "writer" {
            w.writer_cmd(&all)
        } else {
            w.operator_cmd(&all)
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{op}: {}", text(&out));
        let now = entries(w);
        assert_eq!(
            now.len(),
            before + 1,
            "{op} leaves exactly one entry: {now:?}"
        );
        let e = &now[before];
        assert_eq!(e["op"], *op, "{e}");
        assert_eq!(e["role"], *role, "{op}: {e}");
        assert_eq!(e["access"], *access, "{op}: {e}");
        assert_eq!(e["reason"], reason.as_str(), "{op}: {e}");
        assert_eq!(e["closed"]["result"], "ok", "{op}: {e}");
        assert!(e["host"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
    }
    let restore = entries(w)
        .into_iter()
        .find(|e| e["op"] == "restore")
        .unwrap();
    assert_eq!(restore["source"], "books");
    let restored = w.snapshots().last().unwrap()["id"].clone();
    assert_eq!(restore["snapshots"][0], restored);
    assert_eq!(restore["closed"]["touched"]["files"], 1, "{restore}");

    // No file name or path in any entry, opened or exported, nor in the stored objects.
    let log = stdout_ok(w.operator_cmd(&["audit", "export", "--format", "jsonl"]));
    let syslog = stdout_ok(w.operator_cmd(&["audit", "export", "--format", "syslog"]));
    assert!(log.lines().count() >= cases.len() + 3, "{log}");
    assert!(syslog.contains("[custodian@32473 seq=\"1\""), "{syslog}");
    for (what, shown) in [("jsonl", &log), ("syslog", &syslog)] {
        assert!(
            !shown.contains(MARKER),
            "{what} names a customer path: {shown}"
        );
    }
    for folder in ["audit/log/", "audit/checkpoints/"] {
        for object in storage.list(folder).unwrap() {
            let bytes = storage.get(&object.name).unwrap();
            assert!(
                !common::contains(&bytes, MARKER.as_bytes()),
                "{}",
                object.name
            );
        }
    }
    let (ok, said) = verify(w);
    assert!(ok, "{said}");
}

const RUNBOOK: &str = "+++
id = \"books\"
title = \"Books restore\"
sources = [\"books\"]
owner = \"test\"
rto = \"10m\"
rpo = \"1d\"
select = \"latest\"
[checks.files]
min-files = 1
+++

Restore the books.
";

/// A world with `n` entries after init (backups of one small store).
fn world_with_entries(n: usize) -> World {
    with_entries(World::new(&[]), n)
}

fn with_entries(w: World, n: usize) -> World {
    let src = store(&w);
    for i in 0..n {
        fs::write(src.join("clients/other.csv"), format!("{i}\n")).unwrap();
        w.backup("books", &src);
    }
    w
}

/// A world with `n` backups on local disk and, when the test S3 servers run, one on moto, each
/// with the storage as the provider sees it (to edit, delete and plant objects).
fn places(n: usize) -> Vec<(World, Arc<dyn Backend>)> {
    let w = world_with_entries(n);
    let local: Arc<dyn Backend> = Arc::new(custodian::backend::LocalBackend::new(&w.repo));
    let mut out = vec![(w, local)];
    if let Some(moto) = common::s3_servers().into_iter().find(|s| s.name == "moto") {
        let w = with_entries(World::on_s3(&moto, &[]), n);
        let url = w.s3.as_ref().unwrap().0.clone();
        let s3: Arc<dyn Backend> = Arc::new(
            custodian::backend::ObjectStoreBackend::s3_with(&url, &moto.settings()).unwrap(),
        );
        out.push((w, s3));
    }
    out
}

#[test]
fn an_edited_entry_is_named_by_verify() {
    for (w, store) in places(3) {
        let name = entry_name(2);
        let mut bytes = store.get(&name).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        store.replace(&name, &bytes).unwrap();
        let (ok, said) = verify(&w);
        assert!(!ok);
        assert!(said.contains("FIRST BAD: audit/log/000000000002"), "{said}");
    }
}

#[test]
fn a_deleted_entry_is_named_as_a_gap() {
    for (w, store) in places(3) {
        store.delete(&entry_name(3)).unwrap();
        let (ok, said) = verify(&w);
        assert!(!ok);
        assert!(
            said.contains(
                "FIRST BAD: audit/log/000000000003 is missing (the log goes from entry 2 to entry 4)"
            ),
            "{said}"
        );
    }
}

#[test]
fn hostile_audit_objects_are_named_and_nothing_panics() {
    for (w, store) in places(3) {
        hostile_audit_objects(&w, store.as_ref());
    }
}

fn hostile_audit_objects(w: &World, store: &dyn Backend) {
    store.replace("audit/log/notes.txt", b"planted").unwrap();
    store
        .replace(&entry_name(3), &vec![b'{'; 300 * 1024])
        .unwrap();
    store
        .replace(
            "audit/checkpoints/000000000009-000000000009",
            b"CUSTSIG1 garbage",
        )
        .unwrap();
    let (ok, said) = verify(w);
    assert!(!ok);
    assert!(
        said.contains("audit/log/notes.txt is not an entry name"),
        "{said}"
    );
    assert!(
        said.contains("audit/log/000000000003 is larger than any audit entry"),
        "{said}"
    );
    assert!(
        said.contains("audit/checkpoints/000000000009-000000000009"),
        "{said}"
    );
    // Reading the log stops at the bad entry with a message, never a panic.
    let out = exits(&mut w.operator_cmd(&["audit", "log"]), 1);
    assert!(out.contains("000000000003"), "{}", out);
    // Garbage where an entry should be is refused as unsigned.
    store.replace(&entry_name(3), b"not an envelope").unwrap();
    let (ok, said) = verify(w);
    assert!(!ok);
    assert!(said.contains("FIRST BAD: audit/log/notes.txt"), "{said}");
    assert!(said.contains("also: audit/log/000000000003"), "{said}");
}

#[test]
fn reordered_entries_fail_their_signature() {
    for (w, store) in places(3) {
        let (a, b) = (entry_name(2), entry_name(3));
        let (x, y) = (store.get(&a).unwrap(), store.get(&b).unwrap());
        store.replace(&a, &y).unwrap();
        store.replace(&b, &x).unwrap();
        let (ok, said) = verify(&w);
        assert!(!ok);
        assert!(said.contains("FIRST BAD: audit/log/000000000002"), "{said}");
    }
}

#[test]
fn truncation_is_caught_by_a_checkpoint_and_by_this_machines_anchor() {
    for (w, store) in places(3) {
        truncation(&w, store.as_ref());
    }
}

fn truncation(w: &World, store: &dyn Backend) {
    let (ok, said) = verify(w);
    assert!(ok, "{said}");
    // The storage drops the last two entries: the checkpoints in the repository disagree.
    store.delete(&entry_name(4)).unwrap();
    store.delete(&entry_name(3)).unwrap();
    let (ok, said) = verify(w);
    assert!(!ok);
    assert!(said.contains("it was truncated"), "{said}");
    // It drops the checkpoints too: the anchor this machine kept still catches it.
    for c in store.list("audit/checkpoints/").unwrap() {
        store.delete(&c.name).unwrap();
    }
    let (ok, said) = verify(w);
    assert!(!ok, "{said}");
    assert!(
        said.contains("FIRST BAD: audit/log/000000000004 is missing: this machine's anchor"),
        "{said}"
    );
    // And the next read is refused rather than chained onto a shortened log.
    let out = w
        .operator_cmd(&["ls", "latest", "--source", "books"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
}

#[test]
fn a_read_on_read_only_storage_is_refused_and_audit_offline_catches_up_later() {
    if is_root() {
        eprintln!("skipped: root ignores directory permissions");
        return;
    }
    let w = world_with_entries(1);
    let target = w.dir.path().join("out");
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "latest", "--source", "books", "--target"];
        let t = target.display().to_string();
        args.push(&t);
        args.extend_from_slice(extra);
        w.operator_cmd(&args).output().unwrap()
    };
    common::chmod(&log_dir(&w), 0o555);
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--audit-offline"), "{}", text(&out));
    assert!(!target.exists(), "nothing may be restored without evidence");

    let out = restore(&["--audit-offline", "storage read-only, incident 9"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(target.join("clients/other.csv").exists());
    assert!(text(&out).contains("AUDIT OFFLINE"), "{}", text(&out));
    let count = fs::read_dir(log_dir(&w)).unwrap().count();

    common::chmod(&log_dir(&w), 0o755);
    run_ok(w.operator_cmd(&["snapshots"]));
    run_ok(w.operator_cmd(&["ls", "latest", "--source", "books"]));
    assert_eq!(
        fs::read_dir(log_dir(&w)).unwrap().count(),
        count + 2,
        "the kept entry arrives before the new one"
    );
    let all = entries(&w);
    let kept = &all[all.len() - 2];
    assert_eq!(kept["op"], "restore");
    assert_eq!(kept["flagged_offline"], true, "{kept}");
    assert_eq!(
        kept["offline"]["reason"], "storage read-only, incident 9",
        "{kept}"
    );
    let shown = run_ok(w.operator_cmd(&["audit", "log"]));
    assert!(shown.contains("OFFLINE since"), "{shown}");
    assert!(shown.contains("incident 9"), "{shown}");
    let (ok, said) = verify(&w);
    assert!(ok && said.contains("kept offline"), "{said}");
}

/// `--audit-offline` is for a store that cannot take the entry, not for a trust list that moved
/// since the process opened the repository: that is said as it is (run again), and nothing is
/// kept on this machine to be uploaded under a list that no longer holds.
#[test]
fn a_trust_list_that_moved_is_no_reason_to_keep_an_entry_offline() {
    let w = world_with_entries(1);
    let backend = custodian::backend::open(w.repo.to_str().unwrap()).unwrap();
    let repo = custodian::repository::Repository::open(
        backend,
        &custodian::repository::Credential::Operator(w.operator.clone()),
    )
    .unwrap();
    issue(&w, "second-server");
    let local = custodian::audit::Local::new(w.dir.path().join("kept"));
    let intent = custodian::audit::Intent::read("restore", "a test");
    let begun = custodian::audit::begin(&repo, &intent, Some(&local), Some("store read-only"));
    assert!(
        matches!(begun, Err(custodian::Error::Conflict(_))),
        "{:?}",
        begun.err()
    );
    let kept = fs::read_dir(w.dir.path().join("kept")).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "nothing kept offline");
}

/// A new identity `name.key` from `key generate`: its path, recipient and signing key.
fn person(w: &World, name: &str) -> (PathBuf, String, String) {
    let path = w.dir.path().join(format!("{name}.key"));
    let recipient = common::generate_identity(&path);
    let key = common::signing_key_of(&path);
    (path, recipient, key)
}

/// Issue a second writer credential named `name`; returns its path.
fn issue(w: &World, name: &str) -> PathBuf {
    let out_file = w.dir.path().join(format!("{name}.key"));
    let mut c = w.operator_cmd(&["access", "issue-writer", "--name", name, "--out"]);
    c.arg(&out_file);
    run_ok(c);
    out_file
}

fn backup_with(w: &World, key: &Path, src: &Path) -> std::process::Output {
    w.cmd(&["backup", "--source", "books", "--json"])
        .arg(src)
        .env("CUSTODIAN_WRITER_KEY", key)
        .output()
        .unwrap()
}

#[test]
fn a_revoked_writer_is_refused_and_what_it_signs_afterwards_too() {
    for (w, store) in places(0) {
        revoked_writer_on(&w, store.as_ref());
    }
}

fn revoked_writer_on(w: &World, storage: &dyn Backend) {
    let src = store(w);
    let second = issue(w, "branch-server");
    let out = backup_with(w, &second, &src);
    assert!(out.status.success(), "{}", text(&out));
    let id = w.latest_id();

    let listed = run_ok(w.operator_cmd(&["access", "list"]));
    assert!(listed.contains("branch-server"), "{listed}");
    run_ok(w.operator_cmd(&[
        "access",
        "revoke-writer",
        "branch-server",
        "--reason",
        "server stolen",
    ]));
    let listed = stdout_ok(w.operator_cmd(&["access", "list", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let row = rows.iter().find(|r| r["name"] == "branch-server").unwrap();
    assert!(row["revoked"].as_str().is_some(), "{row}");
    assert!(row["last_use"].as_str().is_some(), "{row}");

    fs::write(src.join("clients/other.csv"), b"new\n").unwrap();
    let out = backup_with(w, &second, &src);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("was revoked"), "{}", text(&out));

    // The inventory is pinned by the trust list: altering it stops everyone who opens the
    // repository, naming it.
    let inventory = storage
        .list("keys/")
        .unwrap()
        .into_iter()
        .find(|o| o.name.starts_with("keys/revoked-"))
        .unwrap()
        .name;
    let original = storage.get(&inventory).unwrap();
    let mut altered = original.clone();
    let last = altered.len() - 2;
    altered[last] ^= 1;
    storage.replace(&inventory, &altered).unwrap();
    let out = exits(&mut w.writer_cmd(&["snapshots"]), 1);
    assert!(out.contains("keys/revoked-"), "{}", out);
    storage.replace(&inventory, &original).unwrap();

    // What it wrote before the revocation still restores.
    w.restore(&id, &w.dir.path().join("before"), &[]);

    // A head it signs after the revocation (forged with its key) is refused on restore.
    let forged = forge_head_with(storage, &second, &id);
    let out = exits(
        w.operator_cmd(&["restore", &forged, "--target"])
            .arg(w.dir.path().join("forged")),
        1,
    );
    assert!(out.contains("revoked"), "{}", out);
    assert!(!w.dir.path().join("forged").exists());
    let out = w.operator_cmd(&["check"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains(&forged[..16]), "{}", text(&out));
}

/// Re-seal snapshot `id`'s head as a new object signed by the credential at `key`.
fn forge_head_with(storage: &dyn Backend, key: &Path, id: &str) -> String {
    let cred: serde_json::Value = serde_json::from_slice(&fs::read(key).unwrap()).unwrap();
    let identity: age::x25519::Identity =
        cred["metadata-identity"].as_str().unwrap().parse().unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(cred["signing-key"].as_str().unwrap(), &mut seed).unwrap();
    let stored = storage.get(&format!("snapshots/{id}")).unwrap();
    let body = custodian::crypto::sign::unverified_body(&stored);
    let plain = custodian::crypto::open_with(&[&identity], body, "head", "").unwrap();
    let resealed = custodian::crypto::seal_to(&[identity.to_public()], &plain, "head").unwrap();
    let name = hex::encode(blake3::hash(&resealed).as_bytes());
    let signer = custodian::crypto::sign::ObjectSigner::from_seed(&seed);
    let object = format!("snapshots/{name}");
    storage
        .replace(&object, &signer.envelope("snapshot", &object, &resealed))
        .unwrap();
    name
}

#[test]
fn an_auditor_verifies_and_reads_the_log_but_never_a_record() {
    for (w, store) in places(1) {
        auditor_on(&w, store.as_ref());
    }
}

fn auditor_on(w: &World, store: &dyn Backend) {
    let (auditor, recipient, key) = person(w, "auditor");
    let named = ["--name", "Ms Audit", "--reason", "annual review"];
    add_principal(w, "add-auditor", &recipient, &key, &named);
    // The auditor's machine trusts the repository after comparing its fingerprint.
    let first = store.get("keys/trust-0000000001").unwrap();
    let fingerprint = custodian::repository::trust::fingerprint(&first);
    let as_auditor = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &auditor)
            .env("CUSTODIAN_STATE_DIR", w.dir.path().join("auditor-state"));
        c
    };
    run_ok(as_auditor(&["key", "trust", "--fingerprint", &fingerprint]));
    let said = run_ok(as_auditor(&["audit", "verify"]));
    assert!(said.contains("audit log verified"), "{said}");
    // Entries written after the auditor was added are sealed to it; earlier ones show only
    // their signer (the chain still verifies).
    w.restore(
        "latest",
        &w.dir.path().join("out"),
        &["--source", "books", "--reason", "client request 5"],
    );
    let log = run_ok(as_auditor(&["audit", "log"]));
    assert!(log.contains("restore source books"), "{log}");
    assert!(log.contains("client request 5"), "{log}");
    assert!(log.contains("not sealed to your key"), "{log}");
    assert!(!log.contains("access add-auditor"), "{log}");
    let listed = run_ok(as_auditor(&["access", "list"]));
    assert!(listed.contains("Ms Audit"), "{listed}");
    let checked = run_ok(as_auditor(&["check"]));
    assert!(
        checked.contains("signatures and signers verified") && checked.contains("no errors"),
        "{checked}"
    );
    // A forged snapshot head (a different key) is named by the auditor's check.
    let head = store.list("snapshots/").unwrap().remove(0).name;
    let mut bytes = store.get(&head).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store.replace(&head, &bytes).unwrap();
    let out = exits(&mut as_auditor(&["check"]), 1);
    let name = head.trim_start_matches("snapshots/");
    assert!(out.contains(name), "{}", out);
    for args in [
        vec!["ls", "latest", "--source", "books"],
        vec![
            "restore",
            "latest",
            "--source",
            "books",
            "--target",
            "/tmp/never",
        ],
    ] {
        let out = as_auditor(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("is an auditor"), "{}", text(&out));
    }
}

#[test]
fn the_log_works_the_same_on_s3() {
    let Some(server) = common::s3_servers().into_iter().next() else {
        return;
    };
    let w = World::on_s3(&server, &[]);
    let src = store(&w);
    w.backup("books", &src);
    w.restore(
        "latest",
        &w.dir.path().join("out"),
        &["--source", "books", "--reason", "s3 drill"],
    );
    let all = entries(&w);
    let ops: Vec<&str> = all.iter().filter_map(|e| e["op"].as_str()).collect();
    assert_eq!(ops, ["init", "backup", "restore"]);
    assert_eq!(all[2]["reason"], "s3 drill");
    let (ok, said) = verify(&w);
    assert!(ok, "{said}");
    assert!(said.contains("3 entries"), "{said}");
}

/// How many stored objects `identity` can decrypt (as stored, or inside a signed envelope).
fn openable_by(w: &World, identity: &Path) -> usize {
    let ids = custodian::crypto::keys::load_identity_file(identity).unwrap();
    let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
    common::all_bytes(&w.repo)
        .iter()
        .filter(|(_, bytes)| {
            let body = custodian::crypto::sign::unverified_body(bytes);
            custodian::crypto::open_with(&refs, body, "object", "").is_ok()
                || custodian::crypto::open_with(&refs, bytes, "object", "").is_ok()
        })
        .count()
}

#[test]
fn an_added_operator_reads_and_a_removed_one_opens_nothing_afterwards() {
    let w = World::new(&[]);
    let src = store(&w);
    fs::write(src.join("clients/big.bin"), common::noise(3 << 20, 7)).unwrap();
    w.backup("books", &src);
    let before = w.latest_id();
    let (bob, recipient, key) = person(&w, "bob");
    // A writer that opened the repository before the change (a running daemon's view).
    let stale = custodian::repository::Repository::open(
        std::sync::Arc::new(custodian::backend::LocalBackend::new(&w.repo)),
        &custodian::repository::Credential::Writer(w.writer.clone()),
    )
    .unwrap();
    assert!(stale.trust_is_current().unwrap());
    let said = add_operator(
        &w,
        &recipient,
        &key,
        &["--name", "Bob", "--reason", "new bookkeeper"],
    );
    assert!(said.contains("operator 'Bob' added"), "{said}");
    // It no longer writes key domains: it would seal to keys the operators moved away from.
    assert!(!stale.trust_is_current().unwrap());
    let refused = stale.domain_for_write("books").err().unwrap().to_string();
    assert!(refused.contains("access registry changed"), "{refused}");
    // Every operators' record was re-sealed to Bob: the metadata key and the writer copies.
    let ids = custodian::crypto::keys::load_identity_file(&bob).unwrap();
    for (path, bytes) in common::all_bytes(&w.repo.join("keys")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("writer-") || name.starts_with("metadata-") {
            let body = custodian::crypto::sign::unverified_body(&bytes);
            let opened = custodian::crypto::open_with(&[&ids[0]], body, "record", "");
            assert!(
                opened.is_ok(),
                "{name} was not re-sealed to the new operator"
            );
        }
    }
    let as_bob = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &bob)
            .env("CUSTODIAN_STATE_DIR", w.dir.path().join("bob-state"));
        c
    };
    let first = fs::read(w.repo.join("keys/trust-0000000001")).unwrap();
    let fingerprint = custodian::repository::trust::fingerprint(&first);
    run_ok(as_bob(&["key", "trust", "--fingerprint", &fingerprint]));
    // Bob reads what was backed up before he was added (re-sealed to him).
    let mut c = as_bob(&["restore", &before, "--target"]);
    c.arg(w.dir.path().join("bob-out"))
        .args(["--reason", "first look"]);
    run_ok(c);
    common::assert_same_content(&src, &w.dir.path().join("bob-out"));
    assert!(openable_by(&w, &bob) > 0);

    let said = run_ok(w.operator_cmd(&[
        "access",
        "remove-operator",
        "Bob",
        "--reason",
        "left the firm",
    ]));
    assert!(said.contains("could already read"), "{said}");
    assert!(
        said.contains("cannot read: anything backed up from now on"),
        "{said}"
    );
    fs::write(src.join("clients/other.csv"), b"after Bob left\n").unwrap();
    // The metadata key was rotated with the removal: the server gets a new credential.
    let fresh = issue(&w, "server-2");
    let out = backup_with(&w, &fresh, &src);
    assert!(out.status.success(), "{}", text(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The new generation keeps the dedup key: the unchanged 3 MiB are not uploaded again.
    let added = stats["stats"]["bytes_added"].as_u64().unwrap();
    assert!(added < 1 << 20, "{stats}");
    let after = latest_by_operator(&w);

    // Refused by custodian, and nothing in the store opens with his identity any more: not
    // the new domain keys, not the re-sealed old ones, not the metadata key.
    let mut c = as_bob(&["restore", &after, "--target"]);
    c.arg(w.dir.path().join("bob-after"));
    let out = exits(&mut c, 1);
    assert!(out.contains("was removed"), "{}", out);
    assert!(!w.dir.path().join("bob-after").exists());
    assert_eq!(openable_by(&w, &bob), 0);

    // The operators in office read both generations; Bob's entries still verify.
    w.restore(&before, &w.dir.path().join("old"), &[]);
    w.restore(&after, &w.dir.path().join("new"), &[]);
    common::assert_same_content(&src, &w.dir.path().join("new"));
    assert_eq!(
        fs::read(w.dir.path().join("old/clients/other.csv")).unwrap(),
        b"3,4\n"
    );
    let (ok, said) = verify(&w);
    assert!(ok, "{said}");
    let said = run_ok(w.operator_cmd(&["check", "--read-data"]));
    assert!(said.contains("no errors"), "{said}");
    let ops: Vec<String> = entries(&w)
        .iter()
        .filter_map(|e| e["op"].as_str().map(str::to_string))
        .collect();
    for op in ["access add-operator", "access remove-operator", "restore"] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {ops:?}");
    }
    let listed = stdout_ok(w.operator_cmd(&["access", "list", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let row = rows.iter().find(|r| r["name"] == "Bob").unwrap();
    assert!(
        row["revoked"].as_str().unwrap().contains("removed"),
        "{row}"
    );
}

#[test]
fn an_access_review_lists_unused_expiring_and_changes_and_is_signed_off() {
    let w = World::new(&[]);
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400),
    )
    .to_string();
    let key = w.dir.path().join("branch.key");
    let mut c = w.operator_cmd(&["access", "issue-writer", "--name", "branch", "--expires"]);
    c.arg(&soon).arg("--out").arg(&key);
    run_ok(c);
    let review = |extra: &[&str], offset: &str| -> serde_json::Value {
        let mut c = w.operator_cmd(&["access", "review", "--json"]);
        c.args(extra).env("CUSTODIAN_TEST_CLOCK_OFFSET", offset);
        serde_json::from_str(&stdout_ok(c)).unwrap()
    };
    let doc = review(&[], "+0s");
    assert!(doc["last_review"].is_null(), "{doc}");
    assert!(
        doc["expiring"].to_string().contains("writer 'branch'"),
        "{doc}"
    );
    assert!(!doc["unused"].to_string().contains("branch"), "{doc}");
    let ops = doc["changes"].to_string();
    assert!(ops.contains("access issue-writer"), "{doc}");
    // Two hundred days on, the server that never backed up is unused.
    let doc = review(&["--unused-days", "90"], "+200d");
    assert!(
        doc["unused"].to_string().contains("writer 'branch'"),
        "{doc}"
    );

    let out = w
        .operator_cmd(&["access", "review", "--approve"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("needs --reason"), "{}", text(&out));
    let doc = review(&["--approve", "--reason", "Q4 review, ticket 7"], "+0s");
    let approved = doc["approved"].as_u64().unwrap();
    let doc = review(&[], "+0s");
    assert_eq!(doc["last_review"]["seq"].as_u64(), Some(approved), "{doc}");
    assert_eq!(doc["last_review"]["trust_seq"], doc["trust_list"], "{doc}");
    assert_eq!(doc["changes"].as_array().unwrap().len(), 0, "{doc}");
    let signed = entries(&w);
    let entry = signed.iter().find(|e| e["op"] == "access review").unwrap();
    assert_eq!(entry["reason"], "Q4 review, ticket 7");
}

#[test]
fn the_auditors_report_renders_in_chromium_with_the_key_facts() {
    // The auditor is added first: entries are sealed to the auditors listed when written.
    let w = World::new(&[]);
    let (auditor, recipient, key) = person(&w, "auditor");
    add_principal(&w, "add-auditor", &recipient, &key, &["--name", "Ms Audit"]);
    let src = store(&w);
    w.backup("books", &src);
    fs::write(src.join("clients/other.csv"), b"5,6\n").unwrap();
    w.backup("books", &src);
    let mut c = w.operator_cmd(&["access", "issue-writer", "--name", "branch", "--out"]);
    c.arg(w.dir.path().join("b.key"));
    run_ok(c);
    w.restore(
        "latest",
        &w.dir.path().join("out"),
        &["--source", "books", "--reason", "client request 9"],
    );
    let runbooks = w.dir.path().join("runbooks");
    fs::create_dir_all(&runbooks).unwrap();
    fs::write(runbooks.join("books.md"), RUNBOOK).unwrap();
    let mut c = w.operator_cmd(&["drill", "books", "--runbooks"]);
    c.arg(&runbooks);
    run_ok(c);
    run_ok(w.operator_cmd(&["access", "review", "--approve", "--reason", "quarterly"]));

    // The auditor alone writes the report.
    let dir = w.dir.path().join("report");
    let mut c = w.cmd(&["report", "--since", "30d", "--out"]);
    c.arg(&dir)
        .env("CUSTODIAN_IDENTITY", &auditor)
        .env("CUSTODIAN_STATE_DIR", w.dir.path().join("auditor-state"));
    let first = fs::read(w.repo.join("keys/trust-0000000001")).unwrap();
    let fingerprint = custodian::repository::trust::fingerprint(&first);
    let mut trust = w.cmd(&["key", "trust", "--fingerprint", &fingerprint]);
    trust
        .env("CUSTODIAN_IDENTITY", &auditor)
        .env("CUSTODIAN_STATE_DIR", w.dir.path().join("auditor-state"));
    run_ok(trust);
    run_ok(c);
    let facts: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(facts["audit"]["verified"], true, "{facts}");
    assert_eq!(facts["sources"][0]["name"], "books", "{facts}");
    assert_eq!(facts["sources"][0]["backups"], 2, "{facts}");
    let drill = &facts["drills"][0];
    assert_eq!(drill["result"], "ok", "{facts}");
    assert_eq!(drill["figures"][0]["passed"], true, "{facts}");
    assert!(drill["figures"][0]["rto-achieved"].as_f64().unwrap() > 0.0);
    let reads = facts["reads"].to_string();
    assert!(reads.contains("client request 9"), "{facts}");
    assert!(!facts["last_review"].is_null(), "{facts}");
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains(MARKER));

    // Rendered by a real browser: the DOM it built holds the facts and the charts, and the
    // screenshot is a real picture of them.
    let url = format!("file://{}", dir.join("report.html").display());
    let profile = w.dir.path().join("chromium-profile");
    let out = chromium()
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dom = String::from_utf8_lossy(&out.stdout);
    for fact in [
        "VERIFIED",
        "client request 9",
        "access issue-writer",
        "RPO met on",
        "Last access review signed off",
    ] {
        assert!(dom.contains(fact), "{fact} missing from the rendered page");
    }
    assert!(dom.matches("<svg").count() >= 3, "charts missing");
    assert!(dom.contains("class=\"met\""), "no backup bar in the chart");
    let shot = w.dir.path().join("report.png");
    let out = chromium()
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1200,2400", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let png = fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank screenshot: {} bytes",
        png.len()
    );
}

/// The one `.history` record of a repository with one domain after an operator change.
fn history_file(w: &World) -> PathBuf {
    fs::read_dir(w.repo.join("keys/domains"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "history"))
        .expect("an operator change writes a history record")
}

#[test]
fn hostile_history_records_are_refused_and_never_deleted() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("books", &src);
    let (_, recipient, key) = person(&w, "carol");
    add_operator(&w, &recipient, &key, &["--name", "Carol"]);
    let history = history_file(&w);
    let original = fs::read(&history).unwrap();
    let restore = |to: &str| {
        let mut c = w.operator_cmd(&["restore", "latest", "--source", "books", "--target"]);
        c.arg(w.dir.path().join(to));
        c.output().unwrap()
    };

    // Re-signed by the writer credential: only an operator writes a history.
    let cred: serde_json::Value = serde_json::from_slice(&fs::read(&w.writer).unwrap()).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(cred["signing-key"].as_str().unwrap(), &mut seed).unwrap();
    let writer = custodian::crypto::sign::ObjectSigner::from_seed(&seed);
    let name = format!(
        "keys/domains/{}",
        history.file_name().unwrap().to_string_lossy()
    );
    let body = custodian::crypto::sign::unverified_body(&original);
    fs::write(&history, writer.envelope("key record", &name, body)).unwrap();
    let out = restore("forged");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("only an operator may write it"),
        "{}",
        text(&out)
    );

    // Garbage, and a giant: named, refused, nothing restored.
    for bad in [b"not a record".to_vec(), vec![7u8; 300 << 10]] {
        fs::write(&history, &bad).unwrap();
        let out = restore("garbage");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(&name), "{}", text(&out));
        assert!(!w.dir.path().join("garbage/clients").exists());
    }

    // An operator change skips a record it cannot trust and never deletes it.
    fs::write(&history, &original).unwrap();
    let junk = w
        .repo
        .join("keys/domains/00112233445566778899aabbccddeeff.history");
    fs::write(&junk, b"junk").unwrap();
    run_ok(w.operator_cmd(&["access", "remove-operator", "Carol"]));
    assert_eq!(fs::read(&junk).unwrap(), b"junk");
    fs::remove_file(&junk).unwrap();
    w.restore(
        "latest",
        &w.dir.path().join("after"),
        &["--source", "books"],
    );
    common::assert_same_content(&src, &w.dir.path().join("after"));
}

/// An operator granted some sources reads those (old snapshots and new ones, and a granted
/// source first backed up later) and is refused the rest, by keys: no key record of another
/// source opens with its identity. It cannot change the registry. On local disk and moto.
#[test]
fn an_operator_granted_some_sources_reads_only_those() {
    granted_sources_on(&World::new(&[]), None);
    if let Some(moto) = common::s3_servers().into_iter().find(|s| s.name == "moto") {
        granted_sources_on(&World::on_s3(&moto, &[]), Some(&moto));
    }
}

fn granted_sources_on(w: &World, server: Option<&common::S3Server>) {
    let src = store(w);
    w.backup("branch-a", &src);
    w.backup("branch-b", &src);
    let (carol, recipient, key) = person(w, "carol");
    let grant = [
        "--name",
        "Carol",
        "--sources",
        "branch-a,branch-new",
        "--reason",
        "bookkeeper",
    ];
    add_operator(w, &recipient, &key, &grant);
    w.backup("branch-new", &src);
    w.backup("branch-c", &src);
    let as_carol = |args: &[&str]| {
        let mut c = w.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &carol)
            .env("CUSTODIAN_STATE_DIR", w.dir.path().join("carol-state"));
        c
    };
    let first = match (server, &w.s3) {
        (Some(s), Some((url, _))) => {
            use custodian::backend::Backend;
            custodian::backend::ObjectStoreBackend::s3_with(url, &s.settings())
                .unwrap()
                .get("keys/trust-0000000001")
                .unwrap()
        }
        _ => fs::read(w.repo.join("keys/trust-0000000001")).unwrap(),
    };
    let fingerprint = custodian::repository::trust::fingerprint(&first);
    run_ok(as_carol(&["key", "trust", "--fingerprint", &fingerprint]));
    for source in ["branch-a", "branch-new"] {
        let target = w.dir.path().join(format!("carol-{source}"));
        let mut c = as_carol(&["restore", "latest", "--source", source, "--target"]);
        c.arg(&target).args(["--reason", "month end"]);
        run_ok(c);
        common::assert_same_content(&src, &target);
    }
    for source in ["branch-b", "branch-c"] {
        let target = w.dir.path().join(format!("carol-{source}"));
        let mut c = as_carol(&["restore", "latest", "--source", source, "--target"]);
        c.arg(&target);
        let said = exits(&mut c, 1);
        assert!(
            said.contains(&format!("'Carol' is not granted source '{source}'")),
            "{said}"
        );
        assert!(!target.exists());
    }
    if w.s3.is_none() {
        // By keys: every domain record Carol opens is of a source she is granted.
        let ids = custodian::crypto::keys::load_identity_file(&carol).unwrap();
        let mut opened = std::collections::BTreeSet::new();
        for (path, bytes) in common::all_bytes(&w.repo.join("keys/domains")) {
            let body = custodian::crypto::sign::unverified_body(&bytes);
            if let Ok(plain) = custodian::crypto::open_with(&[&ids[0]], body, "record", "") {
                let json = custodian::compress::unpack_json(&plain, 1 << 20).unwrap();
                let record: serde_json::Value = serde_json::from_slice(&json).unwrap();
                opened.insert(record["name"].as_str().unwrap().to_string());
                assert!(!path.to_string_lossy().ends_with(".writer"));
            }
        }
        assert_eq!(
            opened.into_iter().collect::<Vec<_>>(),
            ["branch-a", "branch-new"]
        );
    }
    // The registry needs an operator granted every source.
    let (_, other, other_key) = person(w, "dave");
    let mut c = as_carol(&["access", "add-operator", &other, "--key", &other_key]);
    c.args(["--name", "Dave", "--reason", "help"]);
    let out = exits(&mut c, 1);
    assert!(out.contains("granted only some sources"), "{}", out);
    // access list names her sources (sorted by keyed id, so compared as a set).
    let listed = stdout_ok(w.operator_cmd(&["access", "list", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let carol_row = rows.iter().find(|r| r["name"] == "Carol").unwrap();
    let mut granted: Vec<&str> = carol_row["granted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    granted.sort();
    assert_eq!(granted, ["branch-a", "branch-new"]);
    let first_row = rows.iter().find(|r| r["role"] == "operator").unwrap();
    assert!(first_row["granted"].is_null(), "{first_row}");
    let (ok, said) = verify(w);
    assert!(ok, "{said}");
    if w.s3.is_none() {
        // A modified client: Carol signs a next trust list that drops her limits. Refused.
        let forged = forge_next_trust_list(w, &carol, |list| {
            for o in list["operators"].as_array_mut().unwrap() {
                o.as_object_mut().unwrap().remove("sources");
            }
        });
        let out = exits(&mut w.operator_cmd(&["snapshots"]), 1);
        assert!(out.contains("no trusted operator holds"), "{}", out);
        fs::remove_file(forged).unwrap();
    }
    // Removed (on moto too): refused by name, and a backup after it is sealed past her (with
    // a new writer credential: the removal rotated the metadata key).
    let said =
        run_ok(w.operator_cmd(&["access", "remove-operator", "Carol", "--reason", "moved on"]));
    assert!(said.contains("Writers to replace:"), "{said}");
    let fresh = issue(w, "server-2");
    let mut c = w.cmd(&["backup", "--source", "branch-a"]);
    c.arg(&src).env("CUSTODIAN_WRITER_KEY", &fresh);
    run_ok(c);
    let mut c = as_carol(&["restore", "latest", "--source", "branch-a", "--target"]);
    c.arg(w.dir.path().join("carol-after"));
    let out = exits(&mut c, 1);
    assert!(out.contains("was removed"), "{}", out);
    let (ok, said) = verify(w);
    assert!(ok, "{said}");
}

/// Sign, with `identity`'s operator key, the trust list after the newest, edited by `edit`;
/// returns its file.
fn forge_next_trust_list(
    w: &World,
    identity: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let keys = w.repo.join("keys");
    let newest = fs::read_dir(&keys)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("trust-"))
        .max()
        .unwrap();
    let stored = fs::read(keys.join(&newest)).unwrap();
    let body = custodian::crypto::sign::unverified_body(&stored);
    let mut list: serde_json::Value = serde_json::from_slice(body).unwrap();
    let seq = list["seq"].as_u64().unwrap() + 1;
    list["seq"] = seq.into();
    list["prev"] = hex::encode(custodian::id::content_hash(&stored)).into();
    edit(&mut list);
    let name = format!("keys/trust-{seq:010}");
    let ids = custodian::crypto::keys::load_identity_file(identity).unwrap();
    let signer = custodian::crypto::sign::ObjectSigner::for_operator(&ids[0]);
    let forged = signer.envelope("trust list", &name, &serde_json::to_vec(&list).unwrap());
    fs::write(w.repo.join(&name), forged).unwrap();
    w.repo.join(name)
}

/// A command killed before its closing leaves its entry open; a writer's key closing it (say,
/// "ok" for a restore that failed) does not give the entry a result: only the entry's own
/// signer closes it.
#[test]
fn only_the_entrys_own_signer_closes_it() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("books", &src);
    w.restore("latest", &w.dir.path().join("out"), &["--reason", "look"]);
    let restore =
        |all: Vec<serde_json::Value>| all.into_iter().find(|e| e["op"] == "restore").unwrap();
    let seq = restore(entries(&w))["seq"].as_u64().unwrap();
    let checkpoints = w.repo.join("audit/checkpoints");
    for c in fs::read_dir(&checkpoints).unwrap().flatten() {
        if c.file_name()
            .to_string_lossy()
            .ends_with(&format!("-{seq:012}"))
        {
            fs::remove_file(c.path()).unwrap();
        }
    }
    let repo = custodian::repository::Repository::open(
        std::sync::Arc::new(custodian::backend::LocalBackend::new(&w.repo)),
        &custodian::repository::Credential::Writer(w.writer.clone()),
    )
    .unwrap();
    let head = custodian::audit::store(&repo).unwrap().head(None).unwrap();
    let forged = custodian::format::audit::Closing {
        seq,
        result: "ok".into(),
        touched: None,
        drills: Vec::new(),
    };
    custodian::audit::checkpoint(&repo, &head, Some(forged)).unwrap();
    let entry = restore(entries(&w));
    assert!(entry["closed"].is_null(), "{entry}");
    // The backup's own closing (the writer's) still counts.
    let all = entries(&w);
    let backup = all.iter().find(|e| e["op"] == "backup").unwrap();
    assert_eq!(backup["closed"]["result"], "ok", "{backup}");
}

/// Revoking a writer rotates the metadata key, the secret its credential held that future data
/// depends on: nothing written afterwards opens with the revoked credential's key. The other
/// writer's credential predates the new key and is refused until replaced; retiring the
/// replaced one rotates nothing more; every snapshot restores.
#[test]
fn revoking_a_writer_rotates_the_metadata_key() {
    let w = World::new(&[]);
    let src = store(&w);
    let stolen = issue(&w, "branch-server");
    assert!(backup_with(&w, &stolen, &src).status.success());
    let first = w.latest_id();
    // A daemon's view, opened before the revocation.
    let stale = custodian::repository::Repository::open(
        std::sync::Arc::new(custodian::backend::LocalBackend::new(&w.repo)),
        &custodian::repository::Credential::Writer(w.writer.clone()),
    )
    .unwrap();
    let said = run_ok(w.operator_cmd(&[
        "access",
        "revoke-writer",
        "branch-server",
        "--reason",
        "server stolen",
    ]));
    // What exists now (the revocation's own entry was written before it acted).
    let before: std::collections::BTreeSet<PathBuf> = common::all_bytes(&w.repo)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(said.contains("metadata key was rotated"), "{said}");
    assert!(said.contains("Writers to replace:"), "{said}");

    // It writes no bookkeeping under the retired key: no index, no destruction record.
    for refused in [
        stale.write_index(Vec::new()).err(),
        stale.forget(&[], &w.dir.path().join("local")).err(),
    ] {
        let said = refused.unwrap().to_string();
        assert!(said.contains("access registry changed"), "{said}");
    }
    // The first writer's credential predates the new key: refused, naming the way out.
    let out = backup_with(&w, &w.writer, &src);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("issue-writer"), "{}", text(&out));
    let fresh = issue(&w, "main-server-2");
    fs::write(src.join("clients/other.csv"), b"after the theft\n").unwrap();
    assert!(backup_with(&w, &fresh, &src).status.success());
    let listed = stdout_ok(w.operator_cmd(&["access", "list", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let old = rows
        .iter()
        .find(|r| r["role"] == "writer" && r["revoked"].is_null() && r["name"] != "main-server-2")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let said = run_ok(w.operator_cmd(&["access", "revoke-writer", &old, "--reason", "replaced"]));
    assert!(said.contains("nothing to rotate"), "{said}");
    fs::write(src.join("clients/third.csv"), b"later\n").unwrap();
    assert!(backup_with(&w, &fresh, &src).status.success());
    let last = latest_by_operator(&w);

    // Both sides of the rotation restore, and the log verifies.
    w.restore(&first, &w.dir.path().join("first"), &[]);
    w.restore(&last, &w.dir.path().join("last"), &[]);
    common::assert_same_content(&src, &w.dir.path().join("last"));
    run_ok(w.operator_cmd(&["audit", "verify"]));

    // Nothing stored since opens with the stolen credential's metadata key; the new one's do.
    let key_of = |path: &Path, field: &str| -> Vec<age::x25519::Identity> {
        let cred: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        let mut out = vec![cred["metadata-identity"].as_str().unwrap().parse().unwrap()];
        for i in cred[field].as_array().into_iter().flatten() {
            out.push(i.as_str().unwrap().parse().unwrap());
        }
        out
    };
    let stolen_keys = key_of(&stolen, "later-metadata-identities");
    let fresh_keys = key_of(&fresh, "later-metadata-identities");
    let opens = |ids: &[age::x25519::Identity], bytes: &[u8]| {
        let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
        let body = custodian::crypto::sign::unverified_body(bytes);
        custodian::crypto::open_with(&refs, body, "object", "").is_ok()
    };
    let (mut by_stolen, mut by_fresh) = (Vec::new(), 0);
    for (path, bytes) in common::all_bytes(&w.repo) {
        if before.contains(&path) {
            continue;
        }
        // An audit entry is signed JSON; its details are sealed inside, as hex.
        let inner = path.to_string_lossy().contains("audit/log/").then(|| {
            let body = custodian::crypto::sign::unverified_body(&bytes);
            let entry: serde_json::Value = serde_json::from_slice(body).unwrap();
            hex::decode(entry["sealed"].as_str().unwrap()).unwrap()
        });
        let sealed = inner.as_deref().unwrap_or(&bytes);
        let open_raw = |ids: &[age::x25519::Identity]| {
            let refs: Vec<&age::x25519::Identity> = ids.iter().collect();
            inner.is_some() && custodian::crypto::open_with(&refs, sealed, "details", "").is_ok()
        };
        if opens(&stolen_keys, &bytes) || open_raw(&stolen_keys) {
            by_stolen.push(path.clone());
        }
        by_fresh += usize::from(opens(&fresh_keys, &bytes) || open_raw(&fresh_keys));
    }
    assert!(by_stolen.is_empty(), "{by_stolen:?}");
    assert!(by_fresh >= 4, "{by_fresh}");

    // The new generation's record, as the storage could alter or drop it: refused by name.
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(w.repo.join("config")).unwrap()).unwrap();
    let founding =
        custodian::id::content_hash(config["metadata-recipient"].as_str().unwrap().as_bytes());
    let founding = format!("metadata-{}", &hex::encode(founding)[..16]);
    let later = fs::read_dir(w.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("metadata-") && name != founding
        })
        .unwrap();
    let original = fs::read(&later).unwrap();
    let name = later.file_name().unwrap().to_string_lossy().to_string();
    let mut altered = original.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    for hostile in [Some(altered), Some(vec![0u8; 3 << 20]), None] {
        match &hostile {
            Some(bytes) => fs::write(&later, bytes).unwrap(),
            None => fs::remove_file(&later).unwrap(),
        }
        let out = exits(&mut w.operator_cmd(&["snapshots"]), 1);
        assert!(out.contains(&name), "{}", out);
    }
    fs::write(&later, original).unwrap();
    run_ok(w.operator_cmd(&["snapshots"]));
}

/// `access add-operator RECIPIENT --key KEY EXTRA…` by the first operator; its output.
fn add_operator(w: &World, recipient: &str, key: &str, extra: &[&str]) -> String {
    add_principal(w, "add-operator", recipient, key, extra)
}

/// `access VERB RECIPIENT --key KEY EXTRA…` (add-operator, add-auditor) by the first
/// operator; its output.
fn add_principal(w: &World, verb: &str, recipient: &str, key: &str, extra: &[&str]) -> String {
    let mut c = w.operator_cmd(&["access", verb, recipient, "--key", key]);
    c.args(extra);
    run_ok(c)
}

/// The newest snapshot's id, listed by the operator (the writer credential may be stale).
fn latest_by_operator(w: &World) -> String {
    let listed = stdout_ok(w.operator_cmd(&["snapshots", "--json"]));
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    snaps.last().unwrap()["id"].as_str().unwrap().to_string()
}

/// The same on S3: a proxy in front of moto refuses every write to `audit/` (as a bucket
/// policy or object lock during an incident would). The read is refused, `--audit-offline`
/// lets it through, and the kept entry is uploaded, flagged, once writes work again.
#[test]
fn a_read_on_s3_that_refuses_audit_writes_is_refused_and_audit_offline_catches_up() {
    let Some(moto) = common::s3_servers().into_iter().find(|s| s.name == "moto") else {
        return;
    };
    let w = with_entries(World::on_s3(&moto, &[]), 1);
    let url = w.s3.as_ref().unwrap().0.clone();
    let storage = custodian::backend::ObjectStoreBackend::s3_with(&url, &moto.settings()).unwrap();
    let proxy = common::proxy::FaultProxy::start(&moto.endpoint, |r| {
        if r.method == "PUT" && r.target.contains("/audit/") {
            common::proxy::Fault::Status(403)
        } else {
            common::proxy::Fault::Pass
        }
    });
    let target = w.dir.path().join("out");
    let restore = |extra: &[&str]| {
        let mut c = w.operator_cmd(&["restore", "latest", "--source", "books", "--target"]);
        c.arg(&target)
            .args(extra)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint);
        c.output().unwrap()
    };
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--audit-offline"), "{}", text(&out));
    assert!(!target.exists(), "nothing may be restored without evidence");
    let out = restore(&["--audit-offline", "bucket locked, incident 9"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(target.join("clients/other.csv").exists());
    let count = storage.list("audit/log/").unwrap().len();
    run_ok(w.operator_cmd(&["ls", "latest", "--source", "books"]));
    assert_eq!(storage.list("audit/log/").unwrap().len(), count + 2);
    let all = entries(&w);
    let kept = &all[all.len() - 2];
    assert_eq!(kept["op"], "restore");
    assert_eq!(kept["flagged_offline"], true, "{kept}");
    let (ok, said) = verify(&w);
    assert!(ok && said.contains("kept offline"), "{said}");
}
