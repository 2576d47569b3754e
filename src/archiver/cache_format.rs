//! The incremental cache's file: a zstd stream of fixed binary records, written one record at a
//! time as a backup goes and read one record at a time, so neither side ever holds the whole
//! file (JSON of a million files was a quarter of a gigabyte, twice, at the peak of a backup).
//!
//! `CUSTCAC2`, then per file: keyed path hash (32 bytes), size, mtime s, mtime ns, ctime s,
//! ctime ns, inode (8 bytes each, little-endian), flags (1 byte: bit 0 incompressible), chunk
//! count (4 bytes), then per chunk its blob id (32 bytes) and length (4 bytes). The file lives in
//! the private state dir, but is still read as untrusted: anything malformed or truncated makes
//! the whole cache empty (the next backup reads every file; dedup uploads nothing again).

use super::cache::{CacheEntry, PathKey};
use crate::format::tree::ChunkRef;
use crate::id::BlobId;
use crate::source::FileStat;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"CUSTCAC2";
/// More chunks than any file the chunker cut (16 TiB at its smallest chunk) means damage.
const MAX_CHUNKS: u32 = 1 << 25;

/// Write the header.
pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(MAGIC)
}

/// Append one record.
pub fn write_record(out: &mut impl Write, key: &PathKey, entry: &CacheEntry) -> io::Result<()> {
    let s = &entry.stat;
    out.write_all(key)?;
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

/// Read every record, or `None` if the stream is not a whole, well-formed cache.
pub fn read_all(mut input: impl Read, mut each: impl FnMut(PathKey, CacheEntry)) -> Option<()> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    loop {
        let mut key = [0u8; 32];
        match read_full(&mut input, &mut key)? {
            0 => return Some(()),
            32 => {}
            _ => return None,
        }
        each(key, read_entry(&mut input)?);
    }
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

    fn written(entries: &[(PathKey, CacheEntry)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        for (k, e) in entries {
            write_record(&mut out, k, e).unwrap();
        }
        out
    }

    #[test]
    fn records_round_trip() {
        let entries = vec![([1u8; 32], entry(0)), ([2u8; 32], entry(3))];
        let mut back = Vec::new();
        read_all(&written(&entries)[..], |k, e| back.push((k, e))).unwrap();
        assert_eq!(back.len(), 2);
        for ((k, e), (k2, e2)) in entries.iter().zip(&back) {
            assert_eq!(k, k2);
            assert_eq!(e.stat, e2.stat);
            assert_eq!(e.content, e2.content);
            assert_eq!(e.incompressible, e2.incompressible);
        }
    }

    #[test]
    fn a_truncated_or_foreign_cache_is_no_cache() {
        let bytes = written(&[([1u8; 32], entry(2)), ([2u8; 32], entry(1))]);
        for cut in [0, 5, 8 + 10, bytes.len() - 1] {
            assert!(read_all(&bytes[..cut], |_, _| {}).is_none(), "cut at {cut}");
        }
        let mut huge = written(&[([1u8; 32], entry(0))]);
        let count_at = huge.len() - 4;
        huge[count_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_all(&huge[..], |_, _| {}).is_none());
        assert!(read_all(&b"{\"version\":1}"[..], |_, _| {}).is_none());
    }
}
