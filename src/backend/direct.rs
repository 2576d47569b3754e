//! Packs written past the page cache (`O_DIRECT`). A buffered write copies every byte into
//! freshly allocated cache pages: on the bench's 1.5 GiB initial backup that copy was a tenth of
//! the CPU (0.8–1.7 s of system time, swinging with the kernel's memory state), and the pages it
//! filled pushed the source's out of the cache. Direct writes go from a small aligned buffer to
//! the disk. Borg drops its segments from the cache after writing them for the same reason.
//!
//! Only on a local disk: on NFS, SMB or FUSE every direct write would be a synchronous round
//! trip, so those keep the usual write. A file system that refuses `O_DIRECT` anyway (EINVAL or
//! EOPNOTSUPP; tmpfs before Linux 6.6) gets the usual write too. Durability is unchanged: the
//! caller still fsyncs the file (for its size and extents, and the device's cache) before
//! publishing its name.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Objects from this size go past the cache: packs, not the small metadata objects.
pub const DIRECT_FROM: usize = 1 << 20;
/// Offsets, lengths and buffer addresses of direct I/O are multiples of the device's logical
/// block size; 4 KiB covers 512-byte and 4 KiB devices.
const ALIGN: usize = 4096;
/// Bytes per write: enough to stream, small enough that the bounce buffer costs nothing.
const STEP: usize = 1 << 20;

/// Create `path` (which must not exist) holding `bytes`, written with `O_DIRECT`. `Ok(None)`
/// when this file system is remote or refuses direct I/O: nothing is left at `path`, so the
/// caller can create it the usual way.
pub fn create(path: &Path, bytes: &[u8]) -> io::Result<Option<fs::File>> {
    if !on_local_disk(path.parent().unwrap_or(Path::new("."))) {
        return Ok(None);
    }
    let file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if unsupported(&e) => {
            // Linux creates the file before it checks the flag.
            remove_if_present(path)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    match write_aligned(&file, bytes) {
        Ok(()) => Ok(Some(file)),
        Err(e) if unsupported(&e) => {
            drop(file);
            remove_if_present(path)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

/// The caller creates `path` afresh next, so a file that cannot be removed is an error.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `dir` is on a disk of this machine: not NFS, SMB/CIFS or FUSE (whose daemons may be
/// remote too). Unknown answers count as remote.
fn on_local_disk(dir: &Path) -> bool {
    const NFS: i64 = 0x6969;
    const SMB: i64 = 0x517b;
    const CIFS: i64 = 0xff53_4d42;
    const SMB2: i64 = 0xfe53_4d42;
    const FUSE: i64 = 0x6573_5546;
    let Ok(c_dir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: c_dir is a NUL-terminated path and stat points to writable memory of the size
    // statfs fills; it is read only when the call succeeded. (f_type's width differs between C
    // libraries and architectures, hence the cast.)
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe {
        if libc::statfs(c_dir.as_ptr(), stat.as_mut_ptr()) != 0 {
            return false;
        }
        stat.assume_init().f_type as i64
    };
    ![NFS, SMB, CIFS, SMB2, FUSE].contains(&kind)
}

/// Copy `bytes` through an aligned buffer in steps; the last step is padded with zeros to a
/// whole block, which `set_len` then cuts off.
fn write_aligned(file: &fs::File, bytes: &[u8]) -> io::Result<()> {
    let mut bounce = vec![0u8; STEP + ALIGN];
    let start = bounce.as_ptr().align_offset(ALIGN);
    if start >= ALIGN {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let buffer = &mut bounce[start..start + STEP];
    for (n, piece) in bytes.chunks(STEP).enumerate() {
        let padded = piece.len().div_ceil(ALIGN) * ALIGN;
        buffer[..piece.len()].copy_from_slice(piece);
        buffer[piece.len()..padded].fill(0);
        file.write_all_at(&buffer[..padded], (n * STEP) as u64)?;
    }
    file.set_len(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_odd_sized_object_reads_back_exactly_or_is_left_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        let bytes: Vec<u8> = (0..(3 * STEP + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        match create(&path, &bytes).unwrap() {
            Some(file) => {
                file.sync_all().unwrap();
                assert_eq!(fs::read(&path).unwrap(), bytes);
            }
            // A file system without O_DIRECT: nothing may be left behind.
            None => assert!(!path.exists()),
        }
        // The name exists now (or was never made): a second create must not overwrite it.
        if path.exists() {
            assert_eq!(
                create(&path, b"other").unwrap_err().kind(),
                io::ErrorKind::AlreadyExists
            );
        }
    }
}
