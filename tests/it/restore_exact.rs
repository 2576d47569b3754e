//! Restore brings back exactly what was backed up: content, modes, nanosecond mtimes, directory
//! mtimes, symlinks (dangling too), empty files and dirs, awkward names, hard links, sparse files,
//! FIFOs, and ownership when root. Also partial restores and incremental backups.

use crate::common;

use common::*;
use filetime::FileTime;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

/// A record store that exercises every kind of entry restore must reproduce.
fn awkward_tree(root: &Path) {
    fs::create_dir_all(root.join("clients/Zoë Ng")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(
        root.join("clients/Zoë Ng/ledger €.csv"),
        b"date,amount\n2026-01-01,10.00\n".repeat(500),
    )
    .unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join("line\nbreak.txt"), b"newline in the name").unwrap();
    fs::write(root.join(os(b"latin1-\xe9t\xe9.txt")), b"non-UTF-8 name").unwrap();
    fs::write(root.join("big-scan.pdf"), noise(3 * 1024 * 1024 + 17, 1)).unwrap();
    symlink("clients/Zoë Ng/ledger €.csv", root.join("link-to-ledger")).unwrap();
    symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    fs::write(root.join("original.txt"), b"hard linked").unwrap();
    fs::hard_link(root.join("original.txt"), root.join("clients/hardlink.txt")).unwrap();
    let c = std::ffi::CString::new(root.join("queue.fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
    // Sparse: 8 MiB with data only at 1 MiB and at the end.
    let sparse = fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"data in the middle", 1 << 20).unwrap();
    sparse.write_all_at(b"tail", (8 << 20) - 4).unwrap();
    chmod(&root.join("empty.txt"), 0o600);
    chmod(&root.join("big-scan.pdf"), 0o444);
    chmod(&root.join("clients"), 0o750);
    if is_root() {
        std::os::unix::fs::lchown(root.join("original.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("dangling"), Some(4321), Some(8765)).unwrap();
    }
    // Nanosecond mtimes everywhere, directories last (writing into them changes theirs).
    let t = FileTime::from_unix_time(1_700_000_000, 123_456_789);
    for p in [
        "empty.txt",
        "big-scan.pdf",
        "sparse.img",
        "original.txt",
        "line\nbreak.txt",
    ] {
        filetime::set_file_mtime(root.join(p), t).unwrap();
    }
    filetime::set_symlink_file_times(
        root.join("dangling"),
        t,
        FileTime::from_unix_time(1_600_000_000, 987_654_321),
    )
    .unwrap();
    filetime::set_file_mtime(
        root.join("clients/Zoë Ng"),
        FileTime::from_unix_time(1_650_000_000, 5),
    )
    .unwrap();
    filetime::set_file_mtime(
        root.join("empty-dir"),
        FileTime::from_unix_time(1_650_000_001, 6),
    )
    .unwrap();
    filetime::set_file_mtime(
        root.join("clients"),
        FileTime::from_unix_time(1_650_000_002, 7),
    )
    .unwrap();
}

#[test]
fn restore_is_exact() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    awkward_tree(&src);
    let summary = w.backup("customers", &src);
    assert_eq!(summary["skipped"].as_array().unwrap().len(), 0);
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
    let m = fs::metadata(target.join("sparse.img")).unwrap();
    assert_eq!(m.len(), 8 << 20);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "sparse file restored dense: {} blocks",
        m.blocks()
    );
    let (a, b) = (
        fs::metadata(target.join("original.txt")).unwrap(),
        fs::metadata(target.join("clients/hardlink.txt")).unwrap(),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "hard links must be restored as hard links"
    );
}

#[test]
fn partial_restore_by_path_and_include() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    awkward_tree(&src);
    let id = w.backup("customers", &src)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = w.dir.path().join("sub");
    w.restore(&format!("{}:clients/Zoë Ng", &id[..10]), &sub, &[]);
    let names: Vec<_> = fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ledger €.csv")]);
    assert_eq!(
        fs::read(sub.join("ledger €.csv")).unwrap(),
        fs::read(src.join("clients/Zoë Ng/ledger €.csv")).unwrap()
    );

    let inc = w.dir.path().join("inc");
    w.restore(
        &id[..12],
        &inc,
        &["--include", "*.pdf", "--include", "clients/**"],
    );
    assert!(inc.join("big-scan.pdf").is_file());
    assert!(
        inc.join("clients/hardlink.txt").is_file(),
        "a hard link whose first name was excluded still gets its content"
    );
    assert_eq!(
        fs::read(inc.join("clients/hardlink.txt")).unwrap(),
        b"hard linked"
    );
    assert!(!inc.join("empty.txt").exists());
    assert!(!inc.join("empty-dir").exists());
}

#[test]
fn unchanged_files_are_not_reread_and_a_lost_cache_uploads_nothing() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    custodian::sample::generate(&src, 3 << 20, 11).unwrap();
    let first = w.backup("customers", &src);
    assert!(first["stats"]["files_read"].as_u64().unwrap() > 100);
    let second = w.backup("customers", &src);
    assert_eq!(
        second["stats"]["files_read"], 0,
        "no file changed, none may be read: {second}"
    );
    assert_eq!(second["stats"]["blobs_added"], 0);
    fs::write(
        src.join("branch-01/new-note.json"),
        b"{\"note\":\"new client\"}",
    )
    .unwrap();
    let third = w.backup("customers", &src);
    assert_eq!(
        third["stats"]["files_read"], 1,
        "only the new file is read: {third}"
    );
    // Changes spread over the tree, in its first and last directories and a new one that
    // sorts before all: the cache, read in walk order, still meets every unchanged file.
    let sorted = |dir: &std::path::Path, want_dir: bool| {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() == want_dir)
            .collect();
        v.sort();
        v
    };
    let dirs = sorted(&src, true);
    fs::remove_file(&sorted(dirs.last().unwrap(), false)[0]).unwrap();
    let modified = &sorted(&dirs[0], false)[0];
    let mut bytes = fs::read(modified).unwrap();
    bytes.extend_from_slice(b" amended");
    fs::write(modified, bytes).unwrap();
    fs::create_dir(src.join("0-new-branch")).unwrap();
    fs::write(src.join("0-new-branch/first.txt"), b"opened today").unwrap();
    let spread = w.backup("customers", &src);
    assert_eq!(spread["stats"]["files_read"], 2, "{spread}");
    let changes = &spread["changes"];
    assert_eq!(changes["files_added"], 1, "{spread}");
    assert_eq!(changes["files_modified"], 1, "{spread}");
    assert_eq!(changes["files_deleted"], 1, "{spread}");
    let third = spread;
    fs::remove_dir_all(&w.state).unwrap();
    let fourth = w.backup("customers", &src);
    assert_eq!(
        fourth["stats"]["files_read"], third["stats"]["files"],
        "a lost cache re-reads everything"
    );
    assert_eq!(
        fourth["stats"]["blobs_added"], 0,
        "…but uploads nothing: {fourth}"
    );
    let snaps = w.snapshots();
    assert_eq!(snaps.len(), 5);
    assert_eq!(snaps[4]["parent"], snaps[3]["id"]);
    let target = w.dir.path().join("r");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
}

#[test]
fn state_dir_is_private_and_names_are_hashed() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("Okafor-private-ledger.csv"), b"x").unwrap();
    w.backup("customers", &src);
    assert_eq!(fs::metadata(&w.state).unwrap().mode() & 0o777, 0o700);
    for (path, bytes) in all_bytes(&w.state) {
        let plain = zstd::stream::decode_all(&bytes[..]).unwrap_or(bytes.clone());
        assert!(
            !contains(&plain, b"Okafor"),
            "cache {} leaks a file name",
            path.display()
        );
    }
}

#[test]
fn new_files_add_only_a_few_reference_blobs() {
    let w = World::new(&[]);
    let src = w.dir.path().join("records");
    for d in 0..60 {
        fs::create_dir_all(src.join(format!("client-{d:02}"))).unwrap();
        for f in 0..100 {
            fs::write(
                src.join(format!("client-{d:02}/note-{f:03}.txt")),
                format!("note {d} {f}"),
            )
            .unwrap();
        }
    }
    w.backup("customers", &src);
    fs::create_dir_all(src.join("new-client")).unwrap();
    for f in 0..200 {
        fs::write(
            src.join(format!("new-client/scan-{f:03}.txt")),
            format!("new {f}"),
        )
        .unwrap();
    }
    let second = w.backup("customers", &src);
    let added = second["stats"]["blobs_added"].as_u64().unwrap();
    // 200 data blobs, 2 trees (new dir, root), and the tail of the reference list: one blob plus
    // one per content-defined boundary among the 200 new ids (0.4 expected; 5 or more happens
    // about once in 10,000 runs). A sorted list of ~6,000 random ids (about 12 blobs) would have
    // had every blob rewritten (219 new blobs measured).
    assert!(added <= 207, "expected at most 207 new blobs, got {added}");
    let target = w.dir.path().join("r");
    w.restore("latest", &target, &[]);
    assert_same_tree(&src, &target);
    assert!(w.writer_cmd(&["check"]).output().unwrap().status.success());
}

/// A SQLite ledger rewritten in place uploads the page groups that changed, not whole
/// content-defined chunks (512 KiB to 8 MiB each), and restores byte for byte.
#[test]
fn a_ledger_update_uploads_its_changed_pages_not_whole_chunks() {
    let w = World::new(&[]);
    let src = w.dir.path().join("branch");
    fs::create_dir(&src).unwrap();
    let db = src.join("ledger.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE entries(id INTEGER PRIMARY KEY, memo BLOB NOT NULL);")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..4000i64 {
        // Incompressible memos, so stored bytes track the bytes uploaded.
        tx.execute(
            "INSERT INTO entries(id, memo) VALUES (?1, ?2)",
            rusqlite::params![i, noise(2000, i as u64)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let size = fs::metadata(&db).unwrap().len();
    assert!(size > 6 << 20, "{size}");
    w.backup("ledger", &src);
    // A day's work: three entries corrected in place, far apart in the file.
    for id in [10i64, 2000, 3990] {
        conn.execute(
            "UPDATE entries SET memo = ?1 WHERE id = ?2",
            rusqlite::params![noise(2000, id as u64 + 99_999), id],
        )
        .unwrap();
    }
    drop(conn);
    let stats = w.backup("ledger", &src);
    let added = stats["stats"]["bytes_added"].as_u64().unwrap();
    // Four 64 KiB groups (three entries' pages and the header page) and the listings; one
    // content-defined chunk alone would be at least 512 KiB.
    assert!(added < 400 << 10, "{added} bytes added: {stats}");
    let target = w.dir.path().join("restored");
    w.restore("latest", &target, &[]);
    assert_eq!(
        fs::read(&db).unwrap(),
        fs::read(target.join("ledger.db")).unwrap()
    );
}
