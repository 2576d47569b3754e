//! A repository on a local (or mounted) file system. An object counts as written only after its
//! bytes and its directory entry are fsynced: a power cut must not leave an index that names a
//! pack the disk forgot. Create-if-absent uses link(2), which fails atomically if the name exists.

use super::{Backend, BackendError, ErrorKind, ObjectInfo};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Prefix of in-progress files; listings skip them, prune may delete old ones.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Objects as files under a root directory.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn err(&self, operation: &'static str, name: &str, e: io::Error) -> BackendError {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Permanent,
        };
        BackendError {
            kind,
            operation,
            object: name.to_string(),
            location: self.location(),
            message: crate::error::io_reason(&e),
        }
    }

    /// Create `dir` and its missing parents, fsyncing each new entry into its parent.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        // An empty path is the current directory (a relative root's parent).
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => dir.parent().map_or(Ok(()), sync_dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Write `bytes` durably to a fresh temporary name beside `name`, then let `publish`
    /// give it its final name (link or rename). The temporary name is removed afterwards; if
    /// that fails it only leaves litter, never referenced.
    fn write_via_temp<T>(
        &self,
        name: &str,
        bytes: &[u8],
        publish: impl FnOnce(&Path, &Path) -> io::Result<T>,
    ) -> io::Result<T> {
        let path = self.path(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir)?;
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = (|| {
            let file = write_temp(&tmp, bytes)?;
            file.sync_all()?;
            drop(file);
            let published = publish(&tmp, &path)?;
            sync_dir(&dir)?;
            Ok(published)
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Create-if-absent: a hard link fails when the name exists.
    fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        self.write_via_temp(name, bytes, |tmp, path| match fs::hard_link(tmp, path) {
            Ok(()) => Ok(true),
            // NFS may answer a retried link "exists" when the first try made it: the temporary
            // file then has two links, and the name is this writer's.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(linked_twice(tmp)),
            Err(e) => Err(e),
        })
    }

    /// Replace: a rename over the name is atomic on POSIX.
    fn write_replacing(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_via_temp(name, bytes, |tmp, path| fs::rename(tmp, path))
    }

    /// Every object under `dir`: files with UTF-8 names, temporary files left out.
    fn walk(&self, dir: &Path, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
        each_file(dir, 0, &mut |path, name, meta| {
            if let (false, Ok(rel)) = (name.starts_with(TEMP_PREFIX), path.strip_prefix(&self.root))
            {
                out.push(ObjectInfo {
                    name: rel.to_string_lossy().into_owned(),
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
            Ok(())
        })
    }
}

/// Directories below the root that listings and sweeps enter: custodian's own layout is three
/// deep (`packs/ab/<id>`), and a store's planted tree of thousands must not exhaust the stack.
const MAX_DEPTH: usize = 8;

/// Call `f` with the path, UTF-8 name and metadata of every file under `dir`, `depth` levels below
/// the root. Symbolic links are never followed (the metadata is the link's own), nor are
/// temporary names or directories past [`MAX_DEPTH`] entered; what vanishes while listed (a
/// concurrent prune) is skipped.
fn each_file(
    dir: &Path,
    depth: usize,
    f: &mut dyn FnMut(&Path, &str, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_dir() {
            f(&entry.path(), name, &meta)?;
        } else if depth < MAX_DEPTH && !name.starts_with(TEMP_PREFIX) {
            each_file(&entry.path(), depth + 1, f)?;
        }
    }
    Ok(())
}

/// Remove `.tmp-` files last written before `cutoff` under `dir`. A write in progress touches its
/// file until it is published, so only a killed writer's file is that old.
fn sweep_dir(dir: &Path, cutoff: std::time::SystemTime) -> io::Result<u64> {
    let mut removed = 0;
    each_file(dir, 0, &mut |path, name, meta| {
        let old = meta.modified().is_ok_and(|at| at < cutoff);
        if meta.is_file() && name.starts_with(TEMP_PREFIX) && old {
            match fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    })?;
    Ok(removed)
}

/// Write `bytes` to the temporary file `tmp`: a pack past the page cache where the file system
/// allows it (`direct`), anything else the usual way.
fn write_temp(tmp: &Path, bytes: &[u8]) -> io::Result<fs::File> {
    let large = bytes.len() >= super::direct::DIRECT_FROM;
    if large {
        if let Some(file) = super::direct::create(tmp, bytes)? {
            return Ok(file);
        }
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(bytes)?;
    Ok(file)
}

fn linked_twice(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).is_ok_and(|meta| meta.nlink() == 2)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn atomic_create(&self) -> bool {
        true
    }

    fn sweep_leftovers(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        sweep_dir(&self.root, cutoff).map_err(|e| self.err("removing leftovers under", "", e))
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, BackendError> {
        self.write_new(name, bytes)
            .map_err(|e| self.err("writing", name, e))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), BackendError> {
        self.write_replacing(name, bytes)
            .map_err(|e| self.err("replacing", name, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        fs::read(self.path(name)).map_err(|e| self.err("reading", name, e))
    }

    fn get_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let read = || -> io::Result<Vec<u8>> {
            let mut file = fs::File::open(self.path(name))?;
            file.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::with_capacity(len as usize);
            file.take(len).read_to_end(&mut buf)?;
            if (buf.len() as u64) < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("object ends before byte {}", start + len),
                ));
            }
            Ok(buf)
        };
        read().map_err(|e| self.err("reading", name, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut out = Vec::new();
        self.walk(&self.path(prefix), &mut out)
            .map_err(|e| self.err("listing", prefix, e))?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("deleting", name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_only_old_temporary_files_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("repo"), dir.path().join("outside"));
        let hour_ago =
            filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 3600, 0);
        let old = |path: &Path| {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
            filetime::set_symlink_file_times(path, hour_ago, hour_ago).unwrap();
        };
        old(&root.join("packs/ab/.tmp-killed"));
        old(&root.join("packs/ab/kept-object"));
        fs::write(root.join("packs/.tmp-in-progress"), b"x").unwrap();
        // A hostile store's planted links: to a directory and to a file outside the repository,
        // and a tree deeper than any custodian writes.
        old(&outside.join(".tmp-victim"));
        std::os::unix::fs::symlink(&outside, root.join("packs/evil")).unwrap();
        std::os::unix::fs::symlink(outside.join(".tmp-victim"), root.join(".tmp-link")).unwrap();
        filetime::set_symlink_file_times(root.join(".tmp-link"), hour_ago, hour_ago).unwrap();
        let deep: PathBuf = (0..40).map(|_| "d").collect();
        old(&root.join(&deep).join(".tmp-deep"));

        let b = LocalBackend::new(&root);
        let removed = b
            .sweep_leftovers(std::time::Duration::from_secs(600))
            .unwrap();
        assert_eq!(removed, 1);
        assert!(!root.join("packs/ab/.tmp-killed").exists());
        assert!(root.join("packs/ab/kept-object").exists());
        assert!(
            root.join("packs/.tmp-in-progress").exists(),
            "younger than the cutoff"
        );
        assert!(
            outside.join(".tmp-victim").exists(),
            "links are never followed"
        );
        assert!(
            root.join(".tmp-link").symlink_metadata().is_ok(),
            "only regular files go"
        );
        assert!(
            root.join(&deep).join(".tmp-deep").exists(),
            "deeper than custodian writes"
        );
        let listed: Vec<String> = b.list("").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(listed, ["packs/ab/kept-object", "packs/evil"]);
    }

    #[test]
    fn a_temp_file_linked_to_its_name_is_told_from_one_that_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, name) = (dir.path().join(".tmp-x"), dir.path().join("x"));
        fs::write(&tmp, b"mine").unwrap();
        assert!(!linked_twice(&tmp), "not linked yet: another writer's name");
        fs::hard_link(&tmp, &name).unwrap();
        assert!(linked_twice(&tmp), "an earlier try made the link");
    }

    #[test]
    fn create_only_durable_objects() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        assert!(b.put_new("packs/ab/x", b"one").unwrap());
        assert!(
            !b.put_new("packs/ab/x", b"two").unwrap(),
            "an existing object must not be replaced"
        );
        assert_eq!(b.get("packs/ab/x").unwrap(), b"one");
        assert_eq!(b.get_range("packs/ab/x", 1, 2).unwrap(), b"ne");
        assert!(b.get_range("packs/ab/x", 2, 5).is_err());
        let listed = b.list("packs/").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("packs/ab/x", 3));
        assert!(listed[0].modified.is_some(), "local listings carry mtimes");
        assert_eq!(b.get("nothing").unwrap_err().kind, ErrorKind::NotFound);
        b.delete("packs/ab/x").unwrap();
        b.delete("packs/ab/x").unwrap();
        assert!(b.list("packs/").unwrap().is_empty());
    }
}
