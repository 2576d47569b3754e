//! Helpers for integration tests: a scratch world (repository, keys, state dir) driven through
//! the real `custodian` binary, and an exact tree comparison.

pub mod forge;
pub mod proxy;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_custodian");

/// `init` arguments for 256 KiB packs and small chunks, so a few MiB make many packs.
pub const SMALL_PACKS: &[&str] = &[
    "--pack-size",
    "262144",
    "--chunk-sizes",
    "65536,131072,262144",
];

/// A scratch directory with a repository, an operator identity and a writer credential.
pub struct World {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub operator: PathBuf,
    pub writer: PathBuf,
    pub state: PathBuf,
    /// For a repository on an S3 server: its `s3://` URL and the server's environment.
    pub s3: Option<(String, Vec<(&'static str, String)>)>,
}

impl World {
    /// A world with an initialised repository. `extra` are extra `init` arguments.
    pub fn new(extra: &[&str]) -> World {
        World::create(None, extra)
    }

    /// The same with the repository in a fresh bucket on `server`.
    pub fn on_s3(server: &S3Server, extra: &[&str]) -> World {
        let url = format!("s3://{}/repo", server.bucket());
        World::create(Some((url, server.env())), extra)
    }

    fn create(s3: Option<(String, Vec<(&'static str, String)>)>, extra: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let w = World {
            repo: dir.path().join("repo"),
            operator: dir.path().join("ops.key"),
            writer: dir.path().join("writer.key"),
            state: dir.path().join("state"),
            s3,
            dir,
        };
        let out = w
            .cmd(&["key", "generate", "--output"])
            .arg(&w.operator)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut init = w.operator_cmd(&["init", "--recipient", &recipient, "--writer-key-out"]);
        init.arg(&w.writer).args(extra);
        let out = init.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        w
    }

    /// The operator's public recipient (age1…), read from the identity file's comment.
    pub fn recipient(&self) -> String {
        fs::read_to_string(&self.operator)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("# public key: ").map(String::from))
            .unwrap()
    }

    /// `custodian ARGS…` with this world's repository and state dir in the environment. Tests
    /// back up many sources freely, so `backup` gets `--new-source`; `strict_cmd` does not add
    /// it (tests/it/operator.rs proves an unseen source is refused without it).
    pub fn cmd(&self, args: &[&str]) -> Command {
        match args.split_first() {
            Some((&"backup", rest)) if !args.contains(&"--config") => {
                let mut with: Vec<&str> = vec!["backup", "--new-source"];
                with.extend_from_slice(rest);
                self.strict_cmd(&with)
            }
            _ => self.strict_cmd(args),
        }
    }

    /// `custodian ARGS…` exactly as given, with this world's environment.
    pub fn strict_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("CUSTODIAN_REPO", &self.repo)
            .env("CUSTODIAN_STATE_DIR", &self.state)
            .env_remove("CUSTODIAN_IDENTITY")
            .env_remove("CUSTODIAN_WRITER_KEY")
            .env_remove("RUST_LOG");
        if let Some((url, env)) = &self.s3 {
            c.env("CUSTODIAN_REPO", url)
                .envs(env.iter().map(|(k, v)| (k, v)));
        }
        c
    }

    /// Same, with the writer credential.
    pub fn writer_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(args);
        c.env("CUSTODIAN_WRITER_KEY", &self.writer);
        c
    }

    /// Same, with the operator identity.
    pub fn operator_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(args);
        c.env("CUSTODIAN_IDENTITY", &self.operator);
        c
    }

    /// Back up `path` as `source`; returns the JSON summary. Panics unless the exit code is `want`.
    pub fn backup_expect(&self, source: &str, path: &Path, want: i32) -> serde_json::Value {
        let out = self
            .writer_cmd(&["backup", "--json", "--source", source])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(want), "{}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("backup --json: {e}: {}", text(&out)))
    }

    pub fn backup(&self, source: &str, path: &Path) -> serde_json::Value {
        self.backup_expect(source, path, 0)
    }

    /// Restore `spec` into `target` with the operator identity; panics on failure.
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) {
        let mut c = self.operator_cmd(&["restore", spec, "--target"]);
        c.arg(target).args(extra);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The id of the newest snapshot.
    pub fn latest_id(&self) -> String {
        self.snapshots().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `snapshots --json` as seen by the writer.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.writer_cmd(&["snapshots", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// `cp -a FROM TO`, replacing TO: a copy of a tree with its metadata.
pub fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The signing key `custodian key show` prints for an operator identity file.
/// A new age identity written to `path` by `key generate`; its recipient (age1…).
pub fn generate_identity(path: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["key", "generate", "--output"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn signing_key_of(identity: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["key", "show", "--identity"])
        .arg(identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("signing key: "))
        .unwrap()
        .trim()
        .to_string()
}

/// stdout and stderr, for assertion messages.
/// Run `cmd`, which must exit with `code`; what it said (stdout and stderr), to check the words.
pub fn exits(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(code), "{said}");
    said
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = custodian::sample::Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Assert two trees hold the same names and bytes (times and modes aside: for committed
/// fixtures, whose metadata git does not keep).
pub fn assert_same_content(a: &Path, b: &Path) {
    for e in fs::read_dir(a).unwrap() {
        let e = e.unwrap();
        let other = b.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            assert_same_content(&e.path(), &other);
        } else {
            assert_eq!(
                fs::read(e.path()).unwrap(),
                fs::read(&other).unwrap(),
                "{}",
                other.display()
            );
        }
    }
    assert_eq!(
        fs::read_dir(a).unwrap().count(),
        fs::read_dir(b).unwrap().count(),
        "{}",
        b.display()
    );
}

/// Assert two trees are identical: names, types, content, mode, owner, mtime (ns), symlink
/// targets, and which files are hard links of each other. Directory mtimes included.
pub fn assert_same_tree(a: &Path, b: &Path) {
    compare(a, b, true);
    assert_eq!(
        link_groups(a),
        link_groups(b),
        "hard link structure differs"
    );
}

fn compare(a: &Path, b: &Path, is_root: bool) {
    let (ma, mb) = (
        fs::symlink_metadata(a).unwrap(),
        fs::symlink_metadata(b).unwrap(),
    );
    assert_eq!(ma.file_type(), mb.file_type(), "type of {}", b.display());
    if !ma.file_type().is_symlink() {
        assert_eq!(
            ma.permissions().mode() & 0o7777,
            mb.permissions().mode() & 0o7777,
            "mode of {}",
            b.display()
        );
    }
    assert_eq!(
        (ma.uid(), ma.gid()),
        (mb.uid(), mb.gid()),
        "owner of {}",
        b.display()
    );
    if !is_root || ma.is_dir() {
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {}",
            b.display()
        );
    }
    if ma.file_type().is_symlink() {
        assert_eq!(
            fs::read_link(a).unwrap(),
            fs::read_link(b).unwrap(),
            "target of {}",
            b.display()
        );
    } else if ma.is_file() {
        assert!(
            fs::read(a).unwrap() == fs::read(b).unwrap(),
            "content of {}",
            b.display()
        );
    } else if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        assert_eq!(na, nb, "entries of {}", b.display());
        for n in na {
            compare(&a.join(&n), &b.join(&n), false);
        }
    }
}

fn link_groups(root: &Path) -> Vec<Vec<PathBuf>> {
    let mut by_inode: std::collections::BTreeMap<u64, Vec<PathBuf>> = Default::default();
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<u64, Vec<PathBuf>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                walk(root, &e.path(), out);
            } else if m.is_file() && m.nlink() > 1 {
                out.entry(m.ino())
                    .or_default()
                    .push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    walk(root, root, &mut by_inode);
    let mut groups: Vec<Vec<PathBuf>> = by_inode
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

/// Every file's bytes under `dir`, concatenated with names, for "is this string anywhere" tests.
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, &mut out);
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn os(s: &[u8]) -> &OsStr {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(s)
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether process `pid` has stopped itself (state T) at a CUSTODIAN_TEST_PAUSE_AT point.
pub fn is_stopped(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3, after the parenthesised command name, is the state.
    stat.rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('T'))
}

/// Wait until process `pid` has stopped itself at its pause point.
pub fn wait_until_stopped(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if is_stopped(pid) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process never reached its pause point"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Start `cmd` with its output piped, and return once it stopped itself at failpoint `point`
/// (`CUSTODIAN_TEST_PAUSE_AT`): the test then acts while the command is provably there.
pub fn paused_at(cmd: &mut Command, point: &str) -> std::process::Child {
    let child = cmd
        .env("CUSTODIAN_TEST_PAUSE_AT", point)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_stopped(child.id());
    child
}

/// A real S3-compatible server on loopback that scripts/test started: moto (faithful S3
/// semantics, any credentials) and s3s-fs (checks signatures, a bucket is a directory).
#[derive(Clone, Debug)]
pub struct S3Server {
    pub name: &'static str,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// s3s-fs keeps each bucket as a directory under this root.
    root: Option<PathBuf>,
}

/// Every configured test server. Empty (and a note) when none is configured; in CI a missing
/// server is a failure, so the S3 tests can never be skipped silently there.
pub fn s3_servers() -> Vec<S3Server> {
    let mut servers = Vec::new();
    if let Ok(endpoint) = std::env::var("CUSTODIAN_TEST_S3_ENDPOINT") {
        servers.push(S3Server {
            name: "moto",
            endpoint,
            access_key: "custodian-test".into(),
            secret_key: "custodian-test-secret".into(),
            root: None,
        });
    }
    if let (Ok(endpoint), Ok(root)) = (
        std::env::var("CUSTODIAN_TEST_S3FS_ENDPOINT"),
        std::env::var("CUSTODIAN_TEST_S3FS_ROOT"),
    ) {
        servers.push(S3Server {
            name: "s3s-fs",
            endpoint,
            access_key: std::env::var("CUSTODIAN_TEST_S3FS_ACCESS_KEY").unwrap(),
            secret_key: std::env::var("CUSTODIAN_TEST_S3FS_SECRET_KEY").unwrap(),
            root: Some(root.into()),
        });
    }
    if servers.len() < 2 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the S3 tests against moto and s3s-fs: use scripts/test, which starts them"
        );
        eprintln!(
            "note: {} S3 test server(s) configured (scripts/test starts moto and s3s-fs)",
            servers.len()
        );
    }
    servers
}

impl S3Server {
    /// A fresh, empty bucket.
    pub fn bucket(&self) -> String {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let bucket = format!(
            "t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        match &self.root {
            Some(root) => fs::create_dir_all(root.join(&bucket)).unwrap(),
            None => create_bucket(&self.endpoint, &bucket),
        }
        bucket
    }

    /// The environment that points custodian at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_via(&self.endpoint)
    }

    /// The same, through another endpoint (a fault proxy in front of this server).
    pub fn env_via(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Settings for an in-process backend.
    pub fn settings(&self) -> custodian::backend::S3Settings {
        custodian::backend::S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone().into()),
            allow_http: true,
            ..Default::default()
        }
    }
}

/// moto creates a bucket on a plain HTTP PUT of /BUCKET.
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {answer}"
    );
}

/// Debian's Chromium, as scripts/test installs it.
pub fn chromium() -> std::process::Command {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium is not installed: scripts/test installs Debian's chromium package");
    let mut c = std::process::Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]);
    c
}
