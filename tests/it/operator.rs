//! Operator experience (issue 13): every promise README makes to someone in an incident,
//! checked through the real binary.

use crate::common;

use common::{exits, text, World};
use std::fs;

fn store(w: &World) -> std::path::PathBuf {
    let src = w.dir.path().join("store");
    fs::create_dir_all(src.join("clients/acme")).unwrap();
    fs::write(src.join("clients/acme/ledger.csv"), b"1,2,3\n").unwrap();
    src
}

#[test]
fn a_hold_blocks_destroy_domain_and_its_dry_run_names_the_hold() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("books", &src);
    let id = w.latest_id();
    let out = w
        .writer_cmd(&["hold", &id, "--reason", "court order 7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let said = exits(
        &mut w.operator_cmd(&["key", "destroy-domain", "books", "--dry-run"]),
        1,
    );
    assert!(
        said.contains(&id[..8]) && said.contains("court order 7"),
        "{said}"
    );

    let real = exits(
        &mut w.operator_cmd(&["key", "destroy-domain", "books", "--confirm", "books"]),
        1,
    );
    assert!(real.contains("hold outranks"), "{}", real);
    assert_eq!(w.snapshots().len(), 1, "nothing may be destroyed");
    let records = w
        .writer_cmd(&["destruction-records", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&records.stdout).trim(), "[]");

    let out = w.operator_cmd(&["release", &id]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dry = w
        .operator_cmd(&["key", "destroy-domain", "books", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("would be destroyed: 1 snapshot(s)"),
        "{}",
        text(&dry)
    );
    assert_eq!(w.snapshots().len(), 1, "a dry run changes nothing");
}

/// A zone that is UTC+1 all year (the sign of Etc/ zones is inverted).
const PLUS_ONE: &str = "Etc/GMT-1";

fn snapshot_time(w: &World) -> std::time::SystemTime {
    let t = w.snapshots().last().unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();
    humantime::parse_rfc3339_weak(&t).unwrap()
}

fn listed(w: &World, tz: &str, before: &str) -> (usize, String) {
    let out = w
        .writer_cmd(&["snapshots", "--json", "--before", before])
        .env("TZ", tz)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    (list.len(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn times_with_offsets_and_zoneless_local_times_mean_what_the_operator_meant() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("books", &src);
    let taken = snapshot_time(&w);
    let fmt = |t: std::time::SystemTime, hours: u64| {
        let shifted = t + std::time::Duration::from_secs(hours * 3600);
        humantime::format_rfc3339_seconds(shifted).to_string()[..19].to_string()
    };
    let half = std::time::Duration::from_secs(1800);
    // Half an hour after the snapshot, written with a +01:00 offset: includes it.
    let after = format!("{}+01:00", fmt(taken + half, 1));
    assert_eq!(listed(&w, "UTC", &after).0, 1, "{after}");
    // Half an hour before, with the offset: excludes it.
    let before = format!("{}+01:00", fmt(taken - half, 1));
    assert_eq!(listed(&w, "UTC", &before).0, 0, "{before}");
    // The same wall-clock times without a zone, in a UTC+1 zone: read as local time. Read as
    // UTC (the old bug), the earlier one would have included the snapshot.
    let (n, said) = listed(&w, PLUS_ONE, &fmt(taken - half, 1));
    assert_eq!(n, 0, "a zoneless time is local time: {said}");
    assert!(
        said.contains("read as local time") && said.contains("+01:00"),
        "{said}"
    );
    assert_eq!(listed(&w, PLUS_ONE, &fmt(taken + half, 1)).0, 1);

    // Display: local with its offset, or UTC with --utc.
    let show = |extra: &[&str]| {
        let mut c = w.writer_cmd(&["snapshots"]);
        c.args(extra).env("TZ", PLUS_ONE);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let local = show(&[]);
    assert!(
        local.contains("time (local)") && local.contains(" +01:00"),
        "{local}"
    );
    let utc = show(&["--utc"]);
    let stamp = humantime::format_rfc3339_seconds(taken).to_string();
    let expect = format!("{} {} UTC", &stamp[..10], &stamp[11..19]);
    assert!(utc.contains("time (UTC)") && utc.contains(&expect), "{utc}");

    let bad = exits(
        &mut w.writer_cmd(&["snapshots", "--before", "last tuesday"]),
        2,
    );
    assert!(bad.contains("RFC 3339"), "{}", bad);
}

#[test]
fn a_trailing_slash_excludes_a_directory_of_that_name_at_any_depth() {
    let w = World::new(&[]);
    let src = store(&w);
    for dir in ["cache", "clients/acme/cache"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        fs::write(src.join(dir).join("junk.bin"), b"junk").unwrap();
    }
    fs::write(src.join("clients/cache"), b"a file named cache stays").unwrap();
    let out = w
        .writer_cmd(&["backup", "--source", "books", "--exclude", "cache/"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = w.operator_cmd(&["ls", "latest"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("junk.bin"), "{listing}");
    assert!(listing.contains("/clients/cache\n"), "{listing}");
    assert!(listing.contains("/clients/acme/ledger.csv"), "{listing}");
}

/// A daemon config for world `w` whose one source, `books`, is `src` with `extra` lines.
fn books_config(w: &World, src: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = w.dir.path().join("custodian.toml");
    fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\nwriter-key-file = {:?}\nstate-dir = {:?}\n\n\
             [[source]]\nname = \"books\"\npath = {src:?}\n{extra}",
            w.repo, w.writer, w.state
        ),
    )
    .unwrap();
    config
}

#[test]
fn config_check_warns_about_excludes_that_cannot_match() {
    let w = World::new(&[]);
    let src = store(&w);
    let config = books_config(
        &w,
        &src,
        &format!(
            "schedule = \"0 2 * * *\"\nexclude = [\"cache/\", \"./tmp\", \"/no-such-dir/*\", {:?}]\n",
            format!("{}/clients", src.display())
        ),
    );
    let out = w
        .cmd(&["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("'./tmp' cannot match"), "{said}");
    assert!(said.contains("'/no-such-dir/*' cannot match"), "{said}");
    assert!(said.contains("write '/clients'"), "{said}");
    assert!(!said.contains("'cache/' cannot match"), "{said}");
    assert!(said.contains("3 warning(s)"), "{said}");
}

/// A store with enough files that a listing overflows a pipe's buffer.
fn big_store(w: &World) -> std::path::PathBuf {
    let src = w.dir.path().join("many");
    for d in 0..20 {
        let dir = src.join(format!("client-{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..200 {
            fs::write(
                dir.join(format!("invoice-{f:04}-with-a-long-name.pdf")),
                format!("{d}{f}"),
            )
            .unwrap();
        }
    }
    src
}

/// Run `args`, read one line of its output and close the pipe, as `| head -1` does.
fn first_line_then_close(w: &World, args: &[&str]) {
    use std::io::BufRead;
    let mut child = w
        .operator_cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "{args:?} printed nothing");
    // `stdout` is dropped here: the pipe is closed under the writer.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn listings_piped_into_head_end_quietly() {
    let w = World::new(&[]);
    let src = big_store(&w);
    w.backup("books", &src);
    fs::write(src.join("client-00/new.pdf"), b"new").unwrap();
    fs::remove_dir_all(src.join("client-01")).unwrap();
    w.backup("books", &src);
    let first = w.snapshots()[0]["id"].as_str().unwrap().to_string();
    first_line_then_close(&w, &["ls", "latest"]);
    first_line_then_close(&w, &["ls", "latest", "--json"]);
    first_line_then_close(&w, &["find", "*.pdf"]);
    first_line_then_close(&w, &["diff", &first, "latest"]);
    first_line_then_close(&w, &["dump", "latest:client-02"]);
}

fn runbook(id: &str, source: &str) -> String {
    format!(
        "+++\nid = \"{id}\"\ntitle = \"{id}\"\nsources = [\"{source}\"]\nowner = \"ops\"\n\
         rto = \"1h\"\nrpo = \"1d\"\n+++\n# Steps\n1. restore\n"
    )
}

#[test]
fn one_broken_runbook_does_not_block_the_others() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("books", &src);
    let dir = w.dir.path().join("runbooks");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("books-lost.md"), runbook("books-lost", "books")).unwrap();
    fs::write(
        dir.join("ransomware.md"),
        runbook("ransomware", "books").replace("rto", "rto_typo"),
    )
    .unwrap();
    let rb = dir.to_str().unwrap();

    let out = w
        .operator_cmd(&["runbook", "show", "books-lost", "--runbooks", rb])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RESTORE COMMANDS"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ransomware.md"),
        "{}",
        text(&out)
    );

    let out = exits(
        &mut w.operator_cmd(&["runbook", "show", "ransomware", "--runbooks", rb]),
        1,
    );
    assert!(out.contains("cannot be used until it is fixed"), "{}", out);

    let out = w
        .operator_cmd(&["drill", "books-lost", "--runbooks", rb])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // --all drills the good one and says the broken one could not run.
    let out = w
        .operator_cmd(&["drill", "--all", "--runbooks", rb])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("books-lost"),
        "{}",
        text(&out)
    );

    // Run from another folder, the message names --runbooks.
    let out = exits(
        w.operator_cmd(&["drill", "books-lost"])
            .current_dir(w.dir.path().join("repo")),
        2,
    );
    assert!(out.contains("--runbooks"), "{}", out);
}

/// A daemon config for world `w` with one directory source and one SQLite source.
fn daemon_config(w: &World, store: &std::path::Path, db: &std::path::Path) -> std::path::PathBuf {
    let config = w.dir.path().join("custodian.toml");
    fs::write(
        &config,
        format!(
            "[repository]\nurl = {:?}\nwriter-key-file = {:?}\nstate-dir = {:?}\n\n\
             [[source]]\nname = \"books\"\npath = {:?}\nschedule = \"0 2 * * *\"\n\
             exclude = [\"*.tmp\"]\nkeep-last = 1\n\n\
             [[source]]\nname = \"ledger\"\npath = {:?}\nkind = \"sqlite\"\nschedule = \"0 3 * * *\"\n",
            w.repo,
            w.writer,
            w.dir.path().join("daemon-state"),
            store,
            db
        ),
    )
    .unwrap();
    config
}

#[test]
fn the_cli_acts_on_the_daemons_config_as_borgmatic_users_expect() {
    let w = World::new(&[]);
    let src = store(&w);
    fs::write(src.join("scratch.tmp"), b"tmp").unwrap();
    let db = w.dir.path().join("ledger.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    let config = daemon_config(&w, &src, &db);
    let cfg = config.to_str().unwrap();
    let cmd = |args: &[&str]| {
        let out = w.cmd(args).env_remove("CUSTODIAN_REPO").output().unwrap();
        (
            out.status.code(),
            text(&out),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };

    // Every configured source, SQLite included, with the config's excludes.
    let (code, said, _) = cmd(&["backup", "--config", cfg]);
    assert_eq!(code, Some(0), "{said}");
    for _ in 0..2 {
        let (code, said, _) = cmd(&["backup", "--config", cfg, "--source", "books"]);
        assert_eq!(code, Some(0), "{said}");
    }
    let (_, _, listing) = cmd(&["snapshots", "--config", cfg, "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    let of = |s: &str| snaps.iter().filter(|x| x["source"] == s).count();
    assert_eq!((of("books"), of("ledger")), (3, 1), "{listing}");
    let out = w
        .operator_cmd(&["ls", "latest", "--source", "books"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("scratch.tmp"));
    let out = w
        .operator_cmd(&["ls", "latest", "--source", "ledger"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ledger.sqlite"),
        "{}",
        text(&out)
    );

    // A source the config does not have is named, with the ones it has.
    let (code, said, _) = cmd(&["backup", "--config", cfg, "--source", "bokos"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("no source 'bokos'") && said.contains("books, ledger"),
        "{said}"
    );

    // forget --config --dry-run previews the daemon's retention (keep-last 1 for books only).
    let (code, said, out) = cmd(&["forget", "--config", cfg, "--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{said}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["forgotten"], 2, "{plan}");
    assert!(plan["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["source"] == "books"));
    let (_, _, listing) = cmd(&["snapshots", "--config", cfg, "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&listing)
            .unwrap()
            .len(),
        4
    );

    // prune --config opens the same repository with the same credential.
    let (code, said, _) = cmd(&["prune", "--config", cfg, "--dry-run"]);
    assert_eq!(code, Some(0), "{said}");
}

#[test]
fn a_mistyped_source_is_refused_and_the_real_ones_listed() {
    let w = World::new(&[]);
    let src = store(&w);
    w.backup("customers", &src);
    let out = exits(
        w.strict_cmd(&["backup", "--source", "customer"])
            .env("CUSTODIAN_WRITER_KEY", &w.writer)
            .arg(&src),
        1,
    );
    assert!(out.contains("its sources are: customers") && out.contains("--new-source"));
    assert_eq!(w.snapshots().len(), 1, "no new source was made");
    let out = w
        .strict_cmd(&["backup", "--source", "branch-2", "--new-source"])
        .env("CUSTODIAN_WRITER_KEY", &w.writer)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = exits(&mut w.writer_cmd(&["snapshots", "--source", "customer"]), 1);
    assert!(out.contains("branch-2, customers"), "{}", out);
}

#[test]
fn restic_filters_and_dry_runs() {
    let w = World::new(&[]);
    let src = store(&w);
    fs::create_dir_all(src.join("scans")).unwrap();
    fs::write(src.join("scans/a.pdf"), b"scan").unwrap();
    let backup = |tag: &str, host: &str| {
        let out = w
            .writer_cmd(&[
                "backup", "--json", "--source", "books", "--tag", tag, "--host", host,
            ])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = backup("nightly", "old-server");
    let b = backup("manual", "old-server");
    let c = backup("nightly", "new-server");
    let ids = |args: &[&str]| -> Vec<String> {
        let mut cmd = w.writer_cmd(&["snapshots", "--json"]);
        cmd.args(args);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--tag", "nightly"]), vec![a.clone(), c.clone()]);
    assert_eq!(ids(&["--host", "old-server"]), vec![a.clone(), b.clone()]);
    assert_eq!(
        ids(&["--latest", "1"]),
        vec![b.clone(), c.clone()],
        "one per host"
    );

    // forget groups by source and host: keep-last 1 keeps the newest of each host.
    let out = w
        .writer_cmd(&["forget", "--keep-last", "1", "--dry-run", "--json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["forgotten"], 1, "{plan}");
    let out = w
        .writer_cmd(&[
            "forget",
            "--keep-last",
            "1",
            "--tag",
            "nightly",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["forgotten"], 0, "one nightly per host: {plan}");

    // latest with filters.
    let target = w.dir.path().join("restored");
    let out = w
        .operator_cmd(&[
            "restore",
            "latest",
            "--host",
            "old-server",
            "--tag",
            "nightly",
            "--exclude",
            "scans/",
            "--json",
            "--target",
        ])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["snapshot"], a.as_str());
    assert!(target.join("clients/acme/ledger.csv").exists());
    assert!(
        !target.join("scans").exists(),
        "--exclude left the folder out"
    );

    // restore --dry-run writes nothing and still checks the target.
    let fresh = w.dir.path().join("fresh");
    let out = w
        .operator_cmd(&["restore", "latest", "--dry-run", "--target"])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run: would restore snapshot"));
    assert!(!fresh.exists());
    let out = w
        .operator_cmd(&["restore", "latest", "--dry-run", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a full target is refused: {}",
        text(&out)
    );

    // backup --dry-run walks and writes nothing.
    let before = w.snapshots().len();
    let out = w
        .writer_cmd(&[
            "backup",
            "--dry-run",
            "--source",
            "books",
            "--exclude",
            "*.pdf",
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would hold 1 files"),
        "{}",
        text(&out)
    );
    assert_eq!(w.snapshots().len(), before);
}

#[test]
fn small_things_an_operator_notices() {
    let w = World::new(&[]);
    let src = store(&w);
    // An operator identity given to backup: told what backup takes instead.
    let out = w
        .cmd(&["backup", "--source", "books", "--writer-key"])
        .arg(&w.operator)
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("init --writer-key-out"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("Pass it with --identity instead"),
        "{}",
        text(&out)
    );

    // backup --json and snapshots --json call the id the same.
    let made = w.backup("books", &src);
    assert_eq!(made["id"], w.snapshots()[0]["id"]);

    // ls --json gives mtime as RFC 3339.
    let out = w
        .operator_cmd(&["ls", "latest", "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mtime = rows[0]["mtime"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(mtime).is_ok(), "{mtime}");

    // dump of a directory streams a tar archive.
    let out = w
        .operator_cmd(&["dump", "latest:clients"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, vec!["acme", "acme/ledger.csv"]);

    // Help on the options people reach for.
    for (cmd, flag) in [
        (["forget", "--help"], "--keep-daily"),
        (["hold", "--help"], "--source"),
    ] {
        let out = w.cmd(&cmd).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap();
        let next = help.lines().skip_while(|l| *l != line).nth(1).unwrap_or("");
        assert!(
            line.trim().len() > flag.len() + 10
                || !next.trim().is_empty() && !next.trim().starts_with('-'),
            "{flag} has no help:\n{help}"
        );
    }
}

#[test]
fn cron_errors_name_the_field_and_runbook_show_uses_the_runbooks_own_target() {
    let w = World::new(&[]);
    let src = store(&w);
    let config = books_config(&w, &src, "schedule = \"0 25 * * *\"\n");
    let out = w
        .cmd(&["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(
        said.contains("hour field's range 0-23") && !said.contains("less than"),
        "{said}"
    );

    // runbook show: the runbook's own restore target, and a suspicious newest snapshot flagged.
    w.backup("books", &src);
    let dir = w.dir.path().join("runbooks");
    fs::create_dir_all(&dir).unwrap();
    let book = runbook("books-lost", "books").replace(
        "rpo = \"1d\"\n",
        "rpo = \"1d\"\nrestore-target = \"/srv/records-clean\"\n",
    );
    fs::write(dir.join("books-lost.md"), book).unwrap();
    let out = w
        .operator_cmd(&[
            "runbook",
            "show",
            "books-lost",
            "--runbooks",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("--target /srv/records-clean"), "{shown}");
    assert!(!shown.contains("/srv/restore/"), "{shown}");
}

#[test]
fn verbose_and_quiet_change_only_what_goes_to_stderr() {
    let w = World::new(&[]);
    let src = store(&w);
    let run = |flag: &str| {
        let out = w
            .writer_cmd(&[flag, "backup", "--source", "books"])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {}", text(&out));
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (out_v, err_v) = run("-vv");
    assert!(
        err_v.contains("DEBUG") && err_v.contains("walked the source"),
        "{err_v}"
    );
    assert!(
        !err_v.contains("clients/acme"),
        "no file names in logs: {err_v}"
    );
    let (out_q, err_q) = run("-q");
    assert!(out_v.contains("saved") && out_q.contains("saved"));
    assert!(
        !err_q.contains("INFO") && !err_q.contains("WARN"),
        "{err_q}"
    );
}
