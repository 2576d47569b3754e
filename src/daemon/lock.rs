//! One daemon per state dir. Two daemons on one state dir would race on the status socket (the
//! second takes it over, and `status` then calls the first one "not running"), on the status
//! file and on the file cache. An exclusive `flock` on `daemon.lock` settles it; the kernel
//! drops the lock when the process dies, however it dies, so a killed daemon never blocks the
//! next one. The lock file holds the holder's pid, for the refusal message.

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Lock file name in the state dir.
const LOCK: &str = "daemon.lock";

/// Held for the daemon's lifetime: dropping it (or dying) releases the state dir.
pub struct StateDirLock {
    _file: File,
}

/// Take the state dir, or refuse with the running daemon's pid.
pub fn take(state_dir: &Path) -> Result<StateDirLock> {
    let path = state_dir.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .at(&path)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let (who, stop) = match holder.parse::<u32>() {
            Ok(pid) => (
                format!("pid {pid}"),
                format!("systemctl stop custodian, or kill {pid}"),
            ),
            Err(_) => (
                "a process whose pid is not recorded".to_string(),
                format!(
                    "systemctl stop custodian, or find it with 'fuser {}'",
                    path.display()
                ),
            ),
        };
        return Err(Error::Conflict(format!(
            "another custodian daemon ({who}) is already running with state dir {}. Stop it \
             first ({stop}), or give this daemon its own state-dir in [repository]; two daemons \
             on one state dir would fight over its status socket and cache.",
            state_dir.display()
        )));
    }
    file.set_len(0).at(&path)?;
    file.rewind().at(&path)?;
    writeln!(file, "{}", std::process::id()).at(&path)?;
    file.sync_all().at(&path)?;
    Ok(StateDirLock { _file: file })
}
