//! File system calls that cannot leave the restore target, whatever a listing says. Every path is
//! resolved relative to an open handle of the target with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (a component walk with `O_NOFOLLOW` where the kernel lacks it), and the
//! last component is acted on with the `*at` calls, never followed. So neither a symlink restore
//! created nor one already in the target is ever written through, and `..` cannot climb out.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The kernel's `struct open_how` (libc's is non-exhaustive, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// An open restore target.
pub struct Beneath {
    root: OwnedFd,
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn openat(
    dir: BorrowedFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and NUL-terminated name; the returned fd is owned by us alone.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Split `rel` into its directory components and last name, refusing anything but plain names.
fn split(rel: &Path) -> io::Result<(Vec<&OsStr>, Option<&OsStr>)> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "path leaves the restore target",
                ))
            }
        }
    }
    let last = parts.pop();
    Ok((parts, last))
}

impl Beneath {
    /// Open the target directory (which the user named, so it may itself be reached through a
    /// symlink).
    pub fn open(target: &Path) -> io::Result<Beneath> {
        let path = cstr(target.as_os_str().as_bytes())?;
        // SAFETY: NUL-terminated path; the fd is owned by the returned value.
        let fd = check(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by open.
        Ok(Beneath {
            root: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// A handle of directory `rel` beneath the target, following no symlink on the way.
    fn dir(&self, parts: &[&OsStr]) -> io::Result<OwnedFd> {
        let rel: Vec<u8> = parts.join(OsStr::new("/")).as_bytes().to_vec();
        let rel = if rel.is_empty() { b".".to_vec() } else { rel };
        let name = cstr(&rel)?;
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: valid fd, NUL-terminated path and a properly sized open_how.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: ret is a new fd returned by openat2.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => self.walk(parts),
            _ => Err(err),
        }
    }

    /// The same as [`Self::dir`] for kernels without `openat2`: one `O_NOFOLLOW` step per
    /// component.
    fn walk(&self, parts: &[&OsStr]) -> io::Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let mut fd = openat(self.root.as_fd(), c".", flags, 0)?;
        for part in parts {
            fd = openat(fd.as_fd(), &cstr(part.as_bytes())?, flags, 0)?;
        }
        Ok(fd)
    }

    /// The parent directory's handle and the last name of `rel`.
    fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, CString)> {
        let (parts, last) = split(rel)?;
        let last = last.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target itself is not an entry",
            )
        })?;
        Ok((self.dir(&parts)?, cstr(last.as_bytes())?))
    }

    /// Create directory `rel` (private until its metadata is applied); an existing directory
    /// is reused.
    pub fn mkdir(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        // SAFETY: valid fd and NUL-terminated name.
        match check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) }) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => openat(
                dir.as_fd(),
                &name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map(drop),
            other => other.map(drop),
        }
    }

    /// Open file `rel` for writing, creating it (exclusively when `new`), never through a
    /// symlink.
    pub fn open_file(&self, rel: &Path, new: bool) -> io::Result<File> {
        let (dir, name) = self.parent(rel)?;
        let excl = if new { libc::O_EXCL } else { 0 };
        let fd = openat(
            dir.as_fd(),
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | excl,
            0o600,
        )?;
        Ok(File::from(fd))
    }

    /// Create symlink `rel` pointing at `target`; the link is never followed by restore.
    pub fn symlink(&self, target: &OsStr, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let target = cstr(target.as_bytes())?;
        // SAFETY: valid fd and NUL-terminated strings.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
    }

    /// Create FIFO `rel`. Device nodes are never created: the format has no kind for them.
    pub fn mkfifo(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        // SAFETY: valid fd and NUL-terminated name; S_IFIFO makes no device.
        check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFIFO | 0o600, 0) })
            .map(drop)
    }

    /// Hard-link `to` to the existing file `from` (both beneath the target; no link followed).
    pub fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        // SAFETY: valid fds and NUL-terminated names; flags 0 does not follow a symlink.
        check(unsafe {
            libc::linkat(
                from_dir.as_raw_fd(),
                from_name.as_ptr(),
                to_dir.as_raw_fd(),
                to_name.as_ptr(),
                0,
            )
        })
        .map(drop)
    }

    /// Remove whatever is at `rel` unless it is a directory and `keep_dir`; a directory goes
    /// with everything in it. Nothing outside the target is touched: a symlink is removed as
    /// a link.
    pub fn remove(&self, rel: &Path, keep_dir: bool) -> io::Result<()> {
        let (dir, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match lstat_is_dir(dir.as_fd(), &name) {
            Ok(true) if keep_dir => Ok(()),
            Ok(true) => remove_tree(dir.as_fd(), &name),
            Ok(false) => unlink(dir.as_fd(), &name, 0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Set owner (when `owner` is given), mode and mtime of `rel` (the target itself when
    /// empty) without following a symlink. A symlink's mode is left alone.
    pub fn set_metadata(&self, rel: &Path, meta: &Meta) -> io::Result<()> {
        let (parts, last) = split(rel)?;
        let (dir, name) = match last {
            Some(last) => (self.dir(&parts)?, cstr(last.as_bytes())?),
            None => (
                openat(self.root.as_fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0)?,
                CString::from(c"."),
            ),
        };
        let (fd, name) = (dir.as_raw_fd(), name.as_ptr());
        if let Some((uid, gid)) = meta.owner {
            // SAFETY: valid fd and NUL-terminated name.
            check(unsafe { libc::fchownat(fd, name, uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
        }
        if let Some(mode) = meta.mode {
            chmod_nofollow(fd, name, mode)?;
        }
        let time = libc::timespec {
            tv_sec: meta.mtime as libc::time_t,
            tv_nsec: libc::c_long::from(meta.mtime_ns as i32),
        };
        let times = [time, time];
        // SAFETY: valid fd, name and a two-element timespec array.
        check(unsafe { libc::utimensat(fd, name, times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map(drop)
    }
}

/// Change the mode of `name` in `dir` without following a symlink: if the name was swapped for
/// a symlink since restore made it, this fails instead of changing the link's target. Linux 6.6+
/// does it in one call (`fchmodat2`); older kernels go through glibc, which checks via an
/// `O_PATH` handle and `/proc`.
fn chmod_nofollow(dir: libc::c_int, name: *const libc::c_char, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name owned by the caller for the call's duration.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir,
            name,
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // ENOSYS: an older kernel; EPERM: a seccomp filter that does not know the call yet.
    if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
        return Err(err);
    }
    // SAFETY: as above.
    check(unsafe { libc::fchmodat(dir, name, mode as libc::mode_t, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

/// Metadata to apply to one entry.
pub struct Meta {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
    pub mtime: i64,
    pub mtime_ns: u32,
}

fn lstat_is_dir(dir: BorrowedFd, name: &CStr) -> io::Result<bool> {
    // SAFETY: stat is plain data; zeroed is a valid value for it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name and a writable stat buffer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn unlink(dir: BorrowedFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// Remove directory `name` in `parent` and everything below it, by handle, following no link.
fn remove_tree(parent: BorrowedFd, name: &CStr) -> io::Result<()> {
    let dir = openat(
        parent,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    // The fd's /proc entry lists exactly this directory, however it was reached.
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let entry = entry?;
        let child = cstr(entry.file_name().as_bytes())?;
        if lstat_is_dir(dir.as_fd(), &child)? {
            remove_tree(dir.as_fd(), &child)?;
        } else {
            unlink(dir.as_fd(), &child, 0)?;
        }
    }
    unlink(parent, name, libc::AT_REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reached_through_a_symlink_or_dot_dot() {
        let outside = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("escape")).unwrap();
        let b = Beneath::open(target.path()).unwrap();
        assert!(b.open_file(Path::new("escape/x"), true).is_err());
        assert!(b.open_file(Path::new("../x"), true).is_err());
        assert!(b.mkdir(Path::new("escape/d")).is_err());
        // The final component is never followed either.
        std::os::unix::fs::symlink(outside.path().join("f"), target.path().join("f")).unwrap();
        assert!(b.open_file(Path::new("f"), false).is_err());
        // Removing a symlink to a directory removes the link, not what it points at.
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        b.remove(Path::new("escape"), false).unwrap();
        assert!(outside.path().join("keep").exists());
        assert!(!target.path().join("escape").exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn remove_takes_a_whole_tree_and_mkdir_reuses() {
        let target = tempfile::tempdir().unwrap();
        let b = Beneath::open(target.path()).unwrap();
        b.mkdir(Path::new("a")).unwrap();
        b.mkdir(Path::new("a")).unwrap();
        b.mkdir(Path::new("a/b")).unwrap();
        b.open_file(Path::new("a/b/f"), true).unwrap();
        assert!(b.open_file(Path::new("a/b/f"), true).is_err(), "O_EXCL");
        b.remove(Path::new("a"), false).unwrap();
        assert!(!target.path().join("a").exists());
    }
}
