//! erase (right to erasure) through the real binary: every snapshot rewritten without a client's
//! folder, then prune removes the data, and no blob of the erased files is left anywhere.

use crate::common;

use common::*;
use custodian::format::tree::NodeKind;
use custodian::id::BlobId;
use custodian::repository::{BlobReader, Credential, Repository};
use serde_json::Value;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

const TINY_PACKS: &[&str] = &["--pack-size", "65536", "--chunk-sizes", "4096,16384,65536"];

fn json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set_mtime(path: &Path, t: i64) {
    filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(t, 0)).unwrap();
}

/// Generation `gen` of a record store with two clients; `acme` only when `with_acme`. Every
/// mtime is fixed, so the tree without acme is exactly what a restore after erase must give.
fn records(dir: &Path, gen: u64, with_acme: bool) {
    let _ = fs::remove_dir_all(dir);
    for client in ["acme", "bolt"] {
        if client == "acme" && !with_acme {
            continue;
        }
        let folder = dir.join("clients").join(client);
        fs::create_dir_all(&folder).unwrap();
        for k in 0..4u64 {
            // File 0 changes every generation; the rest stay.
            let version = if k == 0 { gen } else { 0 };
            let seed = (client.len() as u64 * 7 + client.as_bytes()[0] as u64) * 10_000
                + k * 100
                + version;
            let path = folder.join(format!("contract-{k}.pdf"));
            fs::write(&path, noise(20_000 + (k as usize) * 5_000, seed)).unwrap();
            set_mtime(&path, 1_700_000_000 + (k * 10 + version) as i64);
        }
        set_mtime(&folder, 1_700_000_500);
    }
    fs::write(
        dir.join("ledger.csv"),
        format!("generation,{gen}\n").repeat(500),
    )
    .unwrap();
    set_mtime(&dir.join("ledger.csv"), 1_700_001_000 + gen as i64);
    set_mtime(&dir.join("clients"), 1_700_002_000);
    set_mtime(dir, 1_700_003_000);
}

/// `erase --source crm --path clients/acme EXTRA…` with the key `cmd` carries.
fn erase_acme(mut cmd: std::process::Command, extra: &[&str]) -> std::process::Output {
    cmd.args(["erase", "--source", "crm", "--path", "clients/acme"])
        .args(extra)
        .output()
        .unwrap()
}

fn operator_repo(w: &World) -> Repository {
    let backend = custodian::backend::open(w.repo.to_str().unwrap()).unwrap();
    let repo = Repository::open(backend, &Credential::Operator(w.operator.clone())).unwrap();
    // Reading content needs this process's audit entry first, as every command's does.
    let intent = custodian::audit::Intent::read("test inspection", "erase test");
    custodian::audit::begin(&repo, &intent, None, None).unwrap();
    repo
}

/// Content and tree blobs of everything under `clients/acme` in every snapshot.
fn acme_blobs(w: &World) -> HashSet<BlobId> {
    let repo = operator_repo(w);
    let index = repo.load_index().unwrap();
    let reader = BlobReader::new(&repo, &index);
    let mut out = HashSet::new();
    for snap in repo.list_snapshots().unwrap() {
        let mut stack = vec![(snap.head.root.subtree.unwrap(), PathBuf::new())];
        while let Some((tree, rel)) = stack.pop() {
            let inside = rel.starts_with("clients/acme");
            if inside {
                out.insert(tree);
            }
            for node in reader.tree(&tree).unwrap().nodes {
                let path = rel.join(node.name.as_os());
                match node.kind {
                    NodeKind::Dir => stack.push((node.subtree.unwrap(), path)),
                    NodeKind::File if path.starts_with("clients/acme") => {
                        out.extend(node.content.iter().map(|c| c.0))
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Every blob id in every pack's header and in the index.
fn stored_blobs(w: &World) -> HashSet<BlobId> {
    let repo = operator_repo(w);
    let mut out: HashSet<BlobId> = repo.load_index().unwrap().blob_ids().collect();
    for (id, object) in repo.list_ids::<custodian::id::PackId>("packs/").unwrap() {
        let header = repo.read_pack_header(&id, object.size).unwrap();
        out.extend(header.blobs.iter().map(|b| b.id));
    }
    out
}

/// Heads committed together share reference blobs: two snapshots of the same store, rewritten
/// by one erase, get the same reference list, which is stored once (it was stored once per
/// head, since the index learns of the session's packs only when it ends).
#[test]
fn heads_rewritten_together_store_a_shared_reference_list_once() {
    let w = World::new(TINY_PACKS);
    let src = w.dir.path().join("records");
    records(&src, 0, true);
    for _ in 0..2 {
        let out = w
            .writer_cmd(&["backup", "--source", "crm"])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = erase_acme(w.operator_cmd(&[]), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let repo = operator_repo(&w);
    let files = repo.load_index_files().unwrap();
    let listed: usize = files
        .iter()
        .flat_map(|(_, f)| &f.packs)
        .map(|p| p.blobs.len())
        .sum();
    assert_eq!(
        listed,
        repo.load_index().unwrap().blob_count(),
        "a blob stored twice"
    );
}

#[test]
fn erase_then_prune_leaves_no_blob_of_the_erased_files_and_every_other_file_restores() {
    let w = World::new(TINY_PACKS);
    let src = w.dir.path().join("records");
    let mut times = Vec::new();
    for gen in 0..3 {
        records(&src, gen, true);
        let out = w
            .writer_cmd(&[
                "backup",
                "--json",
                "--source",
                "crm",
                "--tag",
                &format!("gen-{gen}"),
            ])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    for s in w.snapshots() {
        times.push(s["time"].as_str().unwrap().to_string());
    }
    let erased = acme_blobs(&w);
    assert!(erased.len() > 8, "acme's files and trees: {}", erased.len());
    assert!(erased.iter().all(|b| stored_blobs(&w).contains(b)));

    // Dry run: the plan, no change.
    let ids_before: Vec<String> = w
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let dry = json(erase_acme(w.operator_cmd(&[]), &["--dry-run", "--json"]));
    assert_eq!(dry["snapshots"].as_array().unwrap().len(), 3);
    assert_eq!(
        dry["files_removed"], 12,
        "four files per snapshot, not one folder"
    );
    let ids_now: Vec<String> = w
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids_before, ids_now);

    // The writer credential cannot erase (it cannot read trees).
    let out = erase_acme(w.writer_cmd(&[]), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("identity"), "{}", text(&out));

    // A legal hold outranks erasure.
    let out = w
        .writer_cmd(&["hold", &ids_before[0][..8], "--reason", "litigation"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = erase_acme(w.operator_cmd(&[]), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("hold outranks erase"), "{}", text(&out));
    // A dry run still works, and names the hold that would block the real run.
    let out = erase_acme(w.operator_cmd(&[]), &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("would be refused") && text(&out).contains("litigation"),
        "{}",
        text(&out)
    );
    assert_eq!(w.snapshots().len(), 3);
    let out = w
        .operator_cmd(&["release", &ids_before[0][..8]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let done = json(erase_acme(w.operator_cmd(&[]), &["--json"]));
    assert_eq!(done["files_removed"], 12);
    assert!(done["exclusion"].is_string(), "{done}");
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 3);
    for (s, time) in snaps.iter().zip(&times) {
        assert_eq!(
            s["time"].as_str().unwrap(),
            time,
            "rewritten heads keep their time"
        );
        assert!(!ids_before.contains(&s["id"].as_str().unwrap().to_string()));
        assert_eq!(s["rewritten"], true, "{s}");
    }
    // The heads are gone but the data is still in packs until prune.
    assert!(erased.iter().all(|b| stored_blobs(&w).contains(b)));

    let pruned = json(
        w.writer_cmd(&["prune", "--json", "--grace", "0s", "--max-unused", "0"])
            .output()
            .unwrap(),
    );
    assert!(pruned["deleted_packs"].as_u64().unwrap() > 0, "{pruned}");
    let stored = stored_blobs(&w);
    let left = erased.iter().filter(|b| stored.contains(b)).count();
    assert_eq!(left, 0, "{left} blobs of erased files remain");

    // Every other file of every snapshot comes back exactly.
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for s in w.snapshots() {
        let gen: u64 = s["tags"][0].as_str().unwrap()["gen-".len()..]
            .parse()
            .unwrap();
        let expected = w.dir.path().join("expected");
        records(&expected, gen, false);
        let target = w.dir.path().join("restored");
        let _ = fs::remove_dir_all(&target);
        w.restore(&s["id"].as_str().unwrap()[..12], &target, &[]);
        assert_same_tree(&expected, &target);
    }

    // Records for the erase and the prune; neither names the erased client.
    let records = json(
        w.writer_cmd(&["destruction-records", "--json"])
            .output()
            .unwrap(),
    );
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"erase") && actions.contains(&"prune"),
        "{actions:?}"
    );
    let erase = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "erase")
        .unwrap();
    assert_eq!(erase["snapshots"].as_array().unwrap().len(), 3);
    assert!(!records.to_string().contains("acme"));
    for (path, bytes) in all_bytes(&w.state.join("destruction")) {
        assert!(
            !contains(&bytes, b"acme"),
            "{} names the erased client",
            path.display()
        );
    }
}

/// The record store still holds an erased client's files: later backups must not store them
/// again, until an operator lifts the exclusion.
#[test]
fn erased_paths_stay_out_of_later_backups_until_an_operator_lifts_the_exclusion() {
    let w = World::new(TINY_PACKS);
    let src = w.dir.path().join("records");
    records(&src, 0, true);
    w.backup("crm", &src);
    let out = erase_acme(w.operator_cmd(&[]), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("still holds the files") && said.contains("4 file(s)"),
        "{said}"
    );

    // The files are still in the store; the next backup leaves them out.
    w.backup("crm", &src);
    let ls = |w: &World| {
        let out = w.operator_cmd(&["ls", "latest"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(!ls(&w).contains("acme"), "{}", ls(&w));
    assert!(ls(&w).contains("bolt"));

    // Listed: counted in `snapshots` (never named), named by `exclusions` for an operator.
    let out = w.writer_cmd(&["snapshots"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("source crm: 1 erased path pattern(s)"),
        "{listing}"
    );
    assert!(!listing.contains("acme"), "{listing}");
    let out = w.writer_cmd(&["exclusions", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["pattern"], "clients/acme", "{list}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    // The exclusion is sealed: the storage cannot read the path.
    for (path, bytes) in all_bytes(&w.repo.join("exclusions")) {
        assert!(
            !contains(&bytes, b"acme"),
            "{} shows the path",
            path.display()
        );
    }

    // Only an operator lifts it; then the files are backed up again.
    let out = w
        .writer_cmd(&["exclusions", "--remove", &id[..8]])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("identity"), "{}", text(&out));
    let out = w
        .operator_cmd(&["exclusions", "--remove", &id[..8]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    w.backup("crm", &src);
    assert!(ls(&w).contains("acme"));
}

/// A match that removes no regular file (a symlink, an empty directory) still rewrites the
/// snapshot: the file count is for the report, not the decision.
#[test]
fn erasing_only_a_symlink_and_an_empty_folder_still_rewrites() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(src.join("clients/acme")).unwrap();
    fs::create_dir_all(src.join("clients/bolt")).unwrap();
    fs::write(src.join("clients/bolt/a.csv"), b"a").unwrap();
    std::os::unix::fs::symlink("../bolt/a.csv", src.join("clients/acme-link")).unwrap();
    w.backup("crm", &src);
    for pattern in ["clients/acme", "clients/acme-link"] {
        let out = w
            .operator_cmd(&["erase", "--json", "--source", "crm", "--path", pattern])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            done["snapshots"].as_array().unwrap().len(),
            1,
            "{pattern}: {done}"
        );
        assert_eq!(done["files_removed"], 0, "{done}");
    }
    let out = w.operator_cmd(&["ls", "latest"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("acme"), "{listing}");
    assert!(listing.contains("bolt/a.csv"), "{listing}");
}
