//! The incident responder's tools through the real binary: diff, find, dump, snapshots --before
//! and runbook show.

use crate::common;

use common::*;
use serde_json::Value;
use std::fs;

fn json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn diff_find_dump_and_show_answer_from_the_snapshots() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 1 << 20, 101).unwrap();
    let a = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let between = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let client = src.join("branch-01/clients/CUST-00003");
    let mut notes: Vec<String> = fs::read_dir(&client)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    notes.sort();
    let note = notes[0].clone();
    let rel = format!("branch-01/clients/CUST-00003/{note}");
    let before_len = fs::metadata(client.join(&note)).unwrap().len();
    fs::write(
        client.join(&note),
        "{\"note\": \"rewritten during the incident\"}",
    )
    .unwrap();
    fs::remove_dir_all(src.join("branch-01/clients/CUST-00004")).unwrap();
    fs::write(src.join("branch-01/clients/new-client.txt"), "new").unwrap();
    chmod(&src.join("branch-01/ledger.sqlite"), 0o600);
    let b = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();

    let changes = json(
        w.operator_cmd(&["diff", "--json", &a[..8], &b[..8]])
            .output()
            .unwrap(),
    );
    let find = |change: &str, path: &str| {
        changes
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["change"] == change && c["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {change} {path} in {changes:#}"))
    };
    let modified = find("modified", &rel);
    assert_eq!(modified["size_before"], before_len);
    find("removed", "branch-01/clients/CUST-00004");
    find("added", "branch-01/clients/new-client.txt");
    find("metadata", "branch-01/ledger.sqlite");
    let removed_inside = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "removed")
        .count();
    assert!(
        removed_inside > 1,
        "files inside the removed folder are listed too"
    );

    // find: every version of a path, per snapshot.
    let found = json(w.operator_cmd(&["find", "--json", &note]).output().unwrap());
    let versions: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == rel.as_str())
        .collect();
    assert_eq!(versions.len(), 2, "{found:#}");
    assert_ne!(versions[0]["size"], versions[1]["size"]);
    let out = w
        .operator_cmd(&["find", "no-such-name-*.xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "no match exits 1, as grep");

    // dump: one file's bytes, exactly.
    let out = w
        .operator_cmd(&["dump", "latest:branch-01/ledger.sqlite"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout == fs::read(src.join("branch-01/ledger.sqlite")).unwrap());
    let out = w
        .operator_cmd(&["dump", "latest:branch-01"])
        .output()
        .unwrap();
    // A directory comes out as a tar archive (restic's dump), its files byte for byte.
    assert!(out.status.success(), "{}", text(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut found = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == std::path::Path::new("ledger.sqlite") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            assert!(bytes == fs::read(src.join("branch-01/ledger.sqlite")).unwrap());
            found = true;
        }
    }
    assert!(found, "the directory's tar holds its ledger");

    // snapshots --before.
    let before = humantime::format_rfc3339_nanos(between).to_string();
    let listed = json(
        w.writer_cmd(&["snapshots", "--json", "--before", &before])
            .output()
            .unwrap(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], a.as_str());

    // runbook show: live facts and the exact command, then the human steps.
    let runbooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let out = w
        .writer_cmd(&["runbook", "show", "client-folder-deleted", "--runbooks"])
        .arg(&runbooks)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains(&format!("newest snapshot {}", &b[..8])),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "custodian restore {}:branch-01/clients/CUST-00042",
            &b[..8]
        )),
        "{page}"
    );
    assert!(
        page.contains("# One client's folder was deleted by mistake"),
        "{page}"
    );
}
