//! `kill -9` at any point of a backup leaves every earlier snapshot restorable, no visible partial
//! snapshot, and a next backup that succeeds and reuses what was already uploaded. The backup
//! stops itself at a named point (CUSTODIAN_TEST_PAUSE_AT) and the test delivers a real SIGKILL.

use crate::common;

use common::*;
use std::fs;
use std::path::Path;

fn killed_backup(w: &World, src: &Path, point: &str) {
    let mut child = w
        .writer_cmd(&["backup", "--source", "customers"])
        .arg(src)
        .env("CUSTODIAN_TEST_PAUSE_AT", point)
        .spawn()
        .unwrap();
    wait_until_stopped(child.id());
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

/// Copy a flat directory keeping modes and mtimes, as the expected state of a snapshot.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let mtime =
        |p: &Path| filetime::FileTime::from_last_modification_time(&fs::metadata(p).unwrap());
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
        filetime::set_file_mtime(to.join(e.file_name()), mtime(&e.path())).unwrap();
    }
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    filetime::set_file_mtime(to, mtime(from)).unwrap();
}

#[test]
fn kill_nine_at_every_stage_loses_nothing() {
    // Small packs and chunks so a few MiB make many packs.
    let w = World::new(SMALL_PACKS);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("base.csv"), b"id,name\n1,first\n").unwrap();
    let first = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_copy = w.dir.path().join("first-copy");
    copy_tree(&src, &first_copy);

    let points = [
        "after-first-listing",
        "pack:1",
        "pack:4",
        "before-index",
        "before-snapshot",
        "before-cache",
    ];
    for (i, point) in points.iter().enumerate() {
        let new_file = src.join(format!("scan-{i}.pdf"));
        let new_bytes = 3 << 20;
        fs::write(&new_file, noise(new_bytes, 100 + i as u64)).unwrap();
        let before = w.snapshots().len();
        killed_backup(&w, &src, point);

        let after = w.snapshots();
        let committed = *point == "before-cache";
        assert_eq!(
            after.len(),
            before + usize::from(committed),
            "{point}: a killed backup must not leave a visible partial snapshot"
        );
        let out = w.writer_cmd(&["check", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{point}: repository inconsistent after kill: {}",
            text(&out)
        );

        // The earliest snapshot still restores byte for byte.
        let restored = w.dir.path().join(format!("restore-first-{i}"));
        w.restore(&first[..16], &restored, &[]);
        assert_same_tree(&first_copy, &restored);

        // The next backup succeeds and reuses uploaded packs instead of sending them again.
        let next = w.backup("customers", &src);
        let added = next["stats"]["bytes_added"].as_u64().unwrap();
        match *point {
            "after-first-listing" | "pack:1" => assert!(
                added > new_bytes as u64 / 2,
                "{point}: expected most data to be new, added {added}"
            ),
            "pack:4" => assert!(
                added < new_bytes as u64 * 3 / 4,
                "{point}: durable packs must be reused, added {added}"
            ),
            _ => assert!(
                added < 64 * 1024,
                "{point}: everything was uploaded already, yet {added} bytes were added"
            ),
        }
        let latest = w.dir.path().join(format!("restore-latest-{i}"));
        w.restore("latest", &latest, &[]);
        assert_same_tree(&src, &latest);
    }
    let out = w.operator_cmd(&["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_first_backup_killed_between_its_domain_records_does_not_block_the_source() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.csv"), b"1,2\n").unwrap();
    killed_backup(&w, &src, "domain-operator");
    // check names the leftover as harmless.
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("half-created"), "{}", text(&out));
    // The next backup rolls it back (after the settle time) and succeeds.
    let out = w
        .writer_cmd(&["backup", "--json", "--source", "customers"])
        .arg(&src)
        .env("CUSTODIAN_TEST_DOMAIN_SETTLE", "1s")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("rolled back a half-created key domain"),
        "{}",
        text(&out)
    );
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_eq!(fs::read(target.join("a.csv")).unwrap(), b"1,2\n");
    let out = w.writer_cmd(&["check"]).output().unwrap();
    assert!(
        out.status.success() && !text(&out).contains("half-created"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_compression_thread_that_panics_fails_the_backup_and_commits_nothing() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 2 << 20, 5).unwrap();
    let out = w
        .writer_cmd(&["backup", "--json", "--source", "customers"])
        .arg(&src)
        .env("CUSTODIAN_TEST_PANIC_AT", "seal")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("compression thread(s) stopped unexpectedly"),
        "{}",
        text(&out)
    );
    assert!(
        w.snapshots().is_empty(),
        "a snapshot missing a blob was committed"
    );
    // The next backup stores the lost blob and restores whole.
    w.backup("customers", &src);
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
}
