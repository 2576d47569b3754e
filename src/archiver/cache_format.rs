//! The incremental cache's records: a zstd stream (inside the sealed file of `cache_seal`) of
//! binary records, written one at a time in walk order as a backup goes, and read one at a time
//! by the next backup as it walks, so neither side ever holds the whole cache.
//!
//! `CUSTCAC3`, then per file: path length (4 bytes) and the path relative to the source root,
//! size, inode, mtime s, mtime ns, ctime s, ctime ns (8 bytes each, little-endian), flags
//! (1 byte: bit 0 incompressible), chunk count (4 bytes), then per chunk its blob id (32 bytes)
//! and length (4 bytes). The file is read as untrusted all the same: the first malformed record
//! ends it (the files after it are read again; dedup uploads nothing twice).

use super::cache::CacheEntry;
use crate::format::tree::ChunkRef;
use crate::id::BlobId;
use crate::source::FileStat;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"CUSTCAC3";
/// Longer relative paths than any file system hands out mean damage.
const MAX_PATH: u32 = 1 << 20;
/// More chunks than any file the chunker cut (16 TiB at its smallest chunk) means damage.
const MAX_CHUNKS: u32 = 1 << 25;

/// Write the header.
pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(MAGIC)
}

/// Append one record.
pub fn write_record(out: &mut impl Write, path: &[u8], entry: &CacheEntry) -> io::Result<()> {
    let s = &entry.stat;
    let len = u32::try_from(path.len())
        .ok()
        .filter(|&l| l <= MAX_PATH)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "path too long for the cache")
        })?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(path)?;
    for n in [s.size, s.ino] {
        out.write_all(&n.to_le_bytes())?;
    }
    for n in [s.mtime, s.mtime_ns, s.ctime, s.ctime_ns] {
        out.write_all(&n.to_le_bytes())?;
    }
    out.write_all(&[u8::from(entry.incompressible)])?;
    let count = u32::try_from(entry.content.len()).unwrap_or(u32::MAX);
    out.write_all(&count.to_le_bytes())?;
    for chunk in &entry.content {
        out.write_all(&chunk.0 .0)?;
        out.write_all(&chunk.1.to_le_bytes())?;
    }
    Ok(())
}

/// Check the header; `None` if the stream is not a cache of this version.
pub fn read_header(input: &mut impl Read) -> Option<()> {
    (&array::<8>(input)? == MAGIC).then_some(())
}

/// The next record, or `None` at the end or at the first malformed byte.
pub fn read_record(input: &mut impl Read) -> Option<(Vec<u8>, CacheEntry)> {
    let mut len = [0u8; 4];
    if read_full(input, &mut len)? != 4 {
        return None;
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_PATH {
        return None;
    }
    let mut path = vec![0u8; len as usize];
    input.read_exact(&mut path).ok()?;
    Some((path, read_entry(input)?))
}

fn read_entry(input: &mut impl Read) -> Option<CacheEntry> {
    let (size, ino) = (u64_of(input)?, u64_of(input)?);
    let (mtime, mtime_ns) = (i64_of(input)?, i64_of(input)?);
    let (ctime, ctime_ns) = (i64_of(input)?, i64_of(input)?);
    let mut flags = [0u8; 1];
    input.read_exact(&mut flags).ok()?;
    let count = u32::from_le_bytes(array(input)?);
    if count > MAX_CHUNKS || flags[0] > 1 {
        return None;
    }
    let mut content = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let id = BlobId(array(input)?);
        content.push(ChunkRef(id, u32::from_le_bytes(array(input)?)));
    }
    Some(CacheEntry {
        stat: FileStat {
            size,
            mtime,
            mtime_ns,
            ctime,
            ctime_ns,
            ino,
        },
        content,
        incompressible: flags[0] == 1,
    })
}

/// Fill `buf` as far as the stream goes: its length, less at the end, 0 at a clean end.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(got)
}

fn array<const N: usize>(input: &mut impl Read) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    input.read_exact(&mut out).ok()?;
    Some(out)
}

fn u64_of(input: &mut impl Read) -> Option<u64> {
    array(input).map(u64::from_le_bytes)
}

fn i64_of(input: &mut impl Read) -> Option<i64> {
    array(input).map(i64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(chunks: u32) -> CacheEntry {
        CacheEntry {
            stat: FileStat {
                size: 9,
                mtime: -3,
                mtime_ns: 7,
                ctime: 1_700_000_000,
                ctime_ns: 999_999_999,
                ino: u64::MAX,
            },
            content: (0..chunks)
                .map(|i| ChunkRef(BlobId([i as u8; 32]), i))
                .collect(),
            incompressible: chunks % 2 == 1,
        }
    }

    fn written(entries: &[(&[u8], CacheEntry)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        for (k, e) in entries {
            write_record(&mut out, k, e).unwrap();
        }
        out
    }

    fn read_all(mut bytes: &[u8]) -> Vec<(Vec<u8>, CacheEntry)> {
        let mut back = Vec::new();
        if read_header(&mut bytes).is_some() {
            while let Some(r) = read_record(&mut bytes) {
                back.push(r);
            }
        }
        back
    }

    #[test]
    fn records_round_trip() {
        let entries: Vec<(&[u8], _)> = vec![(b"a/b.txt", entry(0)), (b"c", entry(3))];
        let back = read_all(&written(&entries));
        assert_eq!(back.len(), 2);
        for ((k, e), (k2, e2)) in entries.iter().zip(&back) {
            assert_eq!(k, k2);
            assert_eq!(e.stat, e2.stat);
            assert_eq!(e.content, e2.content);
            assert_eq!(e.incompressible, e2.incompressible);
        }
    }

    #[test]
    fn a_truncated_or_foreign_cache_ends_at_the_damage() {
        let bytes = written(&[(b"one", entry(2)), (b"two", entry(1))]);
        let first = written(&[(b"one", entry(2))]).len();
        for cut in [0, 5, 8 + 10, first - 1] {
            assert!(read_all(&bytes[..cut]).is_empty(), "cut at {cut}");
        }
        assert_eq!(read_all(&bytes[..bytes.len() - 1]).len(), 1);
        let mut huge = written(&[(b"x", entry(0))]);
        let count_at = huge.len() - 4;
        huge[count_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_all(&huge).is_empty());
        let mut long = written(&[(b"x", entry(0))]);
        long[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_all(&long).is_empty());
        assert!(read_all(b"{\"version\":1}").is_empty());
    }
}
