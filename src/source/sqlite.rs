//! Live SQLite databases: copied with SQLite's online backup API into a private staging
//! directory, so the snapshot holds a transactionally consistent database while the application
//! keeps writing. The copy is taken in one backup step, under one read transaction: a busy writer
//! cannot make it restart forever, and with WAL it does not even block the writer.

use crate::error::{Error, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for a writer's lock before giving up on this run.
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// Copy `db` into `staging/<its file name>`; `staging` is created (mode 0700) and emptied first.
/// Returns the copy's path.
pub fn capture(db: &Path, staging: &Path) -> Result<PathBuf> {
    let name = db
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} does not name a database file", db.display())))?;
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    }
    crate::fsutil::private_dir(staging)?;
    let copy = staging.join(name);
    let failed = |e: rusqlite::Error| {
        let message = format!(
            "SQLite database {} could not be copied: {e}. Check that it is a SQLite database and \
             readable by the daemon.",
            db.display()
        );
        // Busy, locked or not there (an unmounted share): it may pass by itself.
        let passing = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
            )
        );
        if passing {
            Error::Conflict(message)
        } else {
            Error::Usage(message)
        }
    };
    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    source.busy_timeout(BUSY_WAIT).map_err(failed)?;
    let mut target = Connection::open(&copy).map_err(failed)?;
    {
        let backup = Backup::new(&source, &mut target).map_err(failed)?;
        let started = Instant::now();
        loop {
            match backup.step(-1).map_err(failed)? {
                StepResult::Done => break,
                _ if started.elapsed() > BUSY_WAIT => {
                    return Err(Error::Conflict(format!(
                        "SQLite database {} stayed locked for {}s; the copy was abandoned for \
                         this run",
                        db.display(),
                        BUSY_WAIT.as_secs()
                    )))
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    target.close().map_err(|(_, e)| failed(e))?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_has_every_committed_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER);
             INSERT INTO t VALUES (1),(2),(3);",
        )
        .unwrap();
        let copy = capture(&db, &dir.path().join("staging")).unwrap();
        let copied = Connection::open(&copy).unwrap();
        let n: i64 = copied
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        let ok: String = copied
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}
