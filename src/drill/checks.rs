//! The checks a drill runs on a restored snapshot. Each returns pass/fail with its evidence;
//! evidence may name restored files, which is why reports are sealed to operators.

use crate::crypto::DomainKeys;
use crate::format::tree::NodeKind;
use crate::restorer::RestorePlan;
use crate::runbook::{CommandCheck, CompareLiveCheck, FilesCheck, SqliteCheck};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One check's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub evidence: String,
    pub seconds: f64,
}

/// Time `f` and wrap its (passed, evidence).
pub fn timed(name: String, f: impl FnOnce() -> (bool, String)) -> CheckResult {
    let started = Instant::now();
    let (passed, evidence) = f();
    CheckResult {
        name,
        passed,
        evidence,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Every restored regular file has the size and the chunk ids the snapshot records.
pub fn manifest(root: &Path, plan: &RestorePlan, domain: &DomainKeys) -> (bool, String) {
    let (mut files, mut bytes, mut bad) = (0u64, 0u64, Vec::new());
    for entry in &plan.entries {
        if entry.node.kind != NodeKind::File || entry.link_to.is_some() {
            continue;
        }
        let path = root.join(&entry.rel);
        match verify_file(&path, &entry.node.content, entry.node.size, domain) {
            Ok(()) => {
                files += 1;
                bytes += entry.node.size;
            }
            Err(why) => bad.push(format!("{}: {why}", entry.rel.display())),
        }
    }
    if bad.is_empty() {
        (
            true,
            format!("{files} files, {bytes} bytes: content hashes and sizes equal the snapshot's record"),
        )
    } else {
        let shown: Vec<_> = bad.iter().take(5).cloned().collect();
        (
            false,
            format!(
                "{} of {} files differ from the snapshot's record: {}",
                bad.len(),
                files as usize + bad.len(),
                shown.join("; ")
            ),
        )
    }
}

fn verify_file(
    path: &Path,
    chunks: &[crate::format::tree::ChunkRef],
    size: u64,
    domain: &DomainKeys,
) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("missing ({e})"))?;
    let actual = file.metadata().map_err(|e| e.to_string())?.len();
    if actual != size {
        return Err(format!("{actual} bytes, the snapshot says {size}"));
    }
    let mut buf = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        buf.resize(chunk.1 as usize, 0);
        file.read_exact(&mut buf)
            .map_err(|e| format!("short read ({e})"))?;
        if domain.blob_id(&buf) != chunk.0 {
            return Err(format!("chunk {i} has another content hash"));
        }
    }
    Ok(())
}

/// Paths exist; file count and bytes reach their minimums.
pub fn files(root: &Path, plan: &RestorePlan, check: &FilesCheck) -> (bool, String) {
    let missing: Vec<&String> = check
        .paths
        .iter()
        .filter(|p| std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_err())
        .collect();
    let file_entries = plan
        .entries
        .iter()
        .filter(|e| e.node.kind == NodeKind::File);
    let (count, bytes) = file_entries.fold((0u64, 0u64), |(c, b), e| (c + 1, b + e.node.size));
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "missing: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if count < check.min_files {
        problems.push(format!("{count} files, fewer than {}", check.min_files));
    }
    if bytes < check.min_bytes {
        problems.push(format!("{bytes} bytes, fewer than {}", check.min_bytes));
    }
    let facts = format!(
        "{} required paths present, {count} files, {bytes} bytes",
        check.paths.len() - missing.len()
    );
    if problems.is_empty() {
        (true, facts)
    } else {
        (false, format!("{}; {facts}", problems.join("; ")))
    }
}

/// `PRAGMA integrity_check` passes and each query's number is within its bounds.
pub fn sqlite(root: &Path, check: &SqliteCheck) -> (bool, String) {
    let path = root.join(check.path.trim_start_matches('/'));
    let conn = match rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) {
        Ok(c) => c,
        Err(e) => return (false, format!("{}: cannot be opened: {e}", check.path)),
    };
    let integrity: Result<String, _> = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0));
    match integrity {
        Ok(ok) if ok == "ok" => {}
        Ok(other) => {
            return (
                false,
                format!("{}: integrity_check says: {other}", check.path),
            )
        }
        Err(e) => {
            return (
                false,
                format!("{}: not a readable database: {e}", check.path),
            )
        }
    }
    let mut facts = vec![format!("{}: integrity_check ok", check.path)];
    for q in &check.queries {
        let n: Result<i64, _> = conn.query_row(&q.sql, [], |r| r.get(0));
        match n {
            Ok(n) if n >= q.min && n <= q.max => facts.push(format!("'{}' = {n}", q.sql)),
            Ok(n) => {
                return (
                    false,
                    format!(
                        "{}; '{}' = {n}, outside {}..={}",
                        facts.join("; "),
                        q.sql,
                        q.min,
                        q.max
                    ),
                )
            }
            Err(e) => {
                return (
                    false,
                    format!("{}; '{}' failed: {e}", facts.join("; "), q.sql),
                )
            }
        }
    }
    (true, facts.join("; "))
}

/// Run an operator's script in the restore; it passes on exit 0 within its timeout.
/// Its output goes to `log` (in the drill's private scratch directory).
pub fn command(
    root: &Path,
    check: &CommandCheck,
    env: &[(&str, String)],
    log: &Path,
) -> (bool, String) {
    let timeout = humantime::parse_duration(&check.timeout).unwrap_or(Duration::from_secs(300));
    let out_file = match std::fs::File::create(log) {
        Ok(f) => f,
        Err(e) => return (false, format!("cannot capture output: {e}")),
    };
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(&check.run)
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().map_or(Stdio::null(), Stdio::from))
        .stderr(out_file.try_clone().map_or(Stdio::null(), Stdio::from))
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (false, format!("'{}' could not start: {e}", check.run)),
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    // Evidence, not data: an unreadable log is said so rather than shown as empty.
    let output = std::fs::read_to_string(log)
        .unwrap_or_else(|e| format!("(the command's output could not be read: {e})"));
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    match status {
        Some(s) if s.success() => (true, format!("'{}' exited 0: {last}", check.run)),
        Some(s) => (
            false,
            format!(
                "'{}' exited {}: {last}",
                check.run,
                s.code().map_or("by a signal".into(), |c| c.to_string())
            ),
        ),
        None => (
            false,
            format!("'{}' did not finish within {}", check.run, check.timeout),
        ),
    }
}

/// A sample of restored files equals the live store, within the tolerance.
pub fn compare_live(
    root: &Path,
    live: &Path,
    plan: &RestorePlan,
    check: &CompareLiveCheck,
) -> (bool, String) {
    let files: Vec<_> = plan
        .entries
        .iter()
        .filter(|e| e.node.kind == NodeKind::File && e.link_to.is_none())
        .collect();
    if files.is_empty() {
        return (true, "no files to compare".into());
    }
    let step = (files.len() / check.sample.max(1)).max(1);
    let sampled: Vec<_> = files.iter().step_by(step).take(check.sample).collect();
    let differing = sampled
        .iter()
        .filter(|e| std::fs::read(root.join(&e.rel)).ok() != std::fs::read(live.join(&e.rel)).ok())
        .count();
    let share = differing as f64 / sampled.len() as f64;
    (
        share <= check.tolerance,
        format!(
            "{differing} of {} sampled files differ from the live store ({:.1}%, tolerance {:.1}%)",
            sampled.len(),
            share * 100.0,
            check.tolerance * 100.0
        ),
    )
}
