//! Content-defined chunking with a secret per-domain seed, so chunk boundaries (and so chunk
//! sizes) do not fingerprint content across repositories. Boundaries depend only on the bytes
//! since the previous boundary, so the result equals chunking the whole input at once.
//!
//! A SQLite database (known by its header, not its name) is cut instead into fixed groups of
//! whole pages ([`PAGE_GROUP`]): SQLite rewrites pages in place, so a day's few changed pages
//! cost their groups, not whole content-defined chunks of up to a mebibyte each.

use fastcdc::v2020::{FastCDC, Normalization};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// Chunk size limits, fixed at init and stored in the repository config.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkerParams {
    /// Whether fastcdc accepts these limits; checked at init and when opening.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min < avg
            && avg < max
            && [min, avg, max].iter().all(|v| v % 2 == 0);
        if ok {
            Ok(())
        } else {
            Err(format!("chunker sizes min {min} / avg {avg} / max {max} are outside fastcdc's limits (even numbers, min<avg<max, max ≤ 16 MiB)"))
        }
    }
}

/// Bytes per chunk of a SQLite database at its usual 4 KiB page: 16 pages. Smaller groups
/// upload less per changed page but add index entries; a page larger than this is one chunk.
pub const PAGE_GROUP: usize = 64 * 1024;

/// A SQLite database's chunk size from its first bytes (the 100-byte header: "SQLite format
/// 3\0", then the page size big-endian at offset 16, where 1 means 65536), or `None` for any
/// other file.
pub fn sqlite_group(head: &[u8]) -> Option<usize> {
    if head.len() < 100 || &head[..16] != b"SQLite format 3\0" {
        return None;
    }
    let page = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => usize::from(n),
    };
    (page.is_power_of_two() && (512..=65536).contains(&page)).then(|| PAGE_GROUP.max(page))
}

/// Bytes beyond one maximum chunk the buffer holds: any size above zero guarantees progress
/// (the first chunk always ends before the buffer does); larger means fewer carry-over copies.
pub const READ_AHEAD: usize = 2 * 1024 * 1024;

/// A reusable chunker: one per reader thread, so its buffer (the maximum chunk plus
/// [`READ_AHEAD`]) is allocated once, not once per file, and only touched as far as files reach.
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
}

impl Chunker {
    /// A chunker for one domain's seed.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        Chunker {
            params,
            seed,
            buf: Vec::new(),
        }
    }

    /// Split everything `reader` yields into chunks, calling `emit` for each in order, with
    /// whether it is a database's page group (worth a stronger compression: it is small, and
    /// compressed alone). Returns the number of bytes read.
    pub fn chunk<R: Read, E: From<io::Error>>(
        &mut self,
        mut reader: R,
        mut emit: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<u64, E> {
        let max = self.params.max as usize;
        if self.buf.len() < max + READ_AHEAD {
            // vec! of zeros is calloc'd: pages cost memory only once a large file touches them.
            self.buf = vec![0u8; max + READ_AHEAD];
        }
        let (mut len, mut total, mut eof) = (0usize, 0u64, false);
        let mut pages: Option<Option<usize>> = None;
        loop {
            while !eof && len < self.buf.len() {
                match reader.read(&mut self.buf[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            total += len as u64;
            if len == 0 {
                return Ok(total);
            }
            // The first fill holds the header, when there is one.
            let group = *pages.get_or_insert_with(|| sqlite_group(&self.buf[..len]));
            let consumed = match group {
                Some(group) => emit_groups(&self.buf[..len], group, eof, &mut |c| emit(c, true))?,
                None => self.emit_defined(len, eof, &mut |c| emit(c, false))?,
            };
            self.buf.copy_within(consumed..len, 0);
            len -= consumed;
            total -= len as u64;
            if eof && len == 0 {
                return Ok(total);
            }
        }
    }

    /// Content-defined chunks of the first `len` buffered bytes; returns how many were cut.
    fn emit_defined<E>(
        &self,
        len: usize,
        eof: bool,
        emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let cdc = FastCDC::with_level_and_seed(
            &self.buf[..len],
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            Normalization::Level1,
            self.seed,
        );
        let mut consumed = 0;
        for chunk in cdc {
            let end = chunk.offset + chunk.length;
            // A chunk that touches the end of a full buffer may have been cut short by the
            // buffer, not by content: carry it over and cut it again with more data.
            if end == len && !eof {
                break;
            }
            emit(&self.buf[chunk.offset..end])?;
            consumed = end;
        }
        Ok(consumed)
    }
}

/// Fixed `group`-byte chunks of `data` (the last one shorter at the end of the file); a partial
/// group before the end is carried over. Returns how many bytes were cut.
fn emit_groups<E>(
    data: &[u8],
    group: usize,
    eof: bool,
    emit: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<usize, E> {
    let mut consumed = 0;
    for chunk in data.chunks(group) {
        if chunk.len() < group && !eof {
            break;
        }
        emit(chunk)?;
        consumed += chunk.len();
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
        }
    }

    fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn lengths(data: &[u8], seed: u64) -> Vec<usize> {
        let mut out = Vec::new();
        Chunker::new(small(), seed)
            .chunk::<_, io::Error>(data, |c, _| {
                out.push(c.len());
                Ok(())
            })
            .unwrap();
        out
    }

    /// A file SQLite would write: its header with `page` as the page size, then noise.
    fn database(len: usize, page: u16) -> Vec<u8> {
        let mut db = pseudo_random(len, 5);
        db[..16].copy_from_slice(b"SQLite format 3\0");
        db[16..18].copy_from_slice(&page.to_be_bytes());
        db
    }

    fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        Chunker::new(small(), 7)
            .chunk::<_, io::Error>(data, |c, _| {
                out.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_database_is_cut_into_page_groups_and_one_changed_page_changes_one_chunk() {
        // Larger than the read buffer, so groups are carried across fills.
        let len = 3 * 1024 * 1024 + 777;
        let db = database(len, 4096);
        let before = chunks(&db);
        assert_eq!(before.len(), len.div_ceil(PAGE_GROUP));
        assert!(before[..before.len() - 1]
            .iter()
            .all(|c| c.len() == PAGE_GROUP));
        assert_eq!(before.concat(), db);
        let mut changed = db.clone();
        changed[40 * 4096 + 10] ^= 0xff; // one byte of page 41, in the third group
        let after = chunks(&changed);
        let differ: Vec<usize> = (0..before.len())
            .filter(|i| before[*i] != after[*i])
            .collect();
        assert_eq!(differ, [40 * 4096 / PAGE_GROUP]);
    }

    #[test]
    fn only_a_real_sqlite_header_selects_page_groups() {
        assert_eq!(sqlite_group(&database(200, 4096)), Some(PAGE_GROUP));
        assert_eq!(sqlite_group(&database(200, 1)), Some(65536));
        assert_eq!(
            sqlite_group(&database(200, 3000)),
            None,
            "not a power of two"
        );
        assert_eq!(
            sqlite_group(&database(200, 256)),
            None,
            "below SQLite's smallest"
        );
        assert_eq!(
            sqlite_group(&database(99, 4096)),
            None,
            "shorter than a header"
        );
        let mut other = database(200, 4096);
        other[0] = b's';
        assert_eq!(sqlite_group(&other), None);
        // Any other file keeps content-defined chunks.
        assert_eq!(lengths(&pseudo_random(20_000, 42), 7), PINNED_SEED_7);
    }

    #[test]
    fn pinned_boundaries_on_seeded_data() {
        // A silent change in chunking destroys deduplication against existing repositories.
        let data = pseudo_random(20_000, 42);
        assert_eq!(lengths(&data, 7), PINNED_SEED_7);
        assert_ne!(
            lengths(&data, 7),
            lengths(&data, 8),
            "the seed must move boundaries"
        );
    }
    const PINNED_SEED_7: &[usize] = &[
        1454, 1899, 2112, 1699, 1153, 1146, 1238, 1073, 1205, 1654, 994, 1447, 1127, 1034, 765,
    ];

    #[test]
    fn streaming_matches_whole_input_chunking() {
        let params = small();
        let data = pseudo_random(50_000, 9);
        let whole: Vec<usize> =
            FastCDC::with_level_and_seed(&data, 256, 1024, 4096, Normalization::Level1, 3)
                .map(|c| c.length)
                .collect();
        assert_eq!(lengths(&data, 3), whole);
        assert!(params.validate().is_ok());
    }

    proptest! {
        #[test]
        fn concatenated_chunks_equal_input(data in proptest::collection::vec(any::<u8>(), 0..30_000), seed in any::<u64>()) {
            let mut joined = Vec::new();
            let read = Chunker::new(small(), seed)
                .chunk::<_, io::Error>(&data[..], |c, _| { assert!(c.len() <= 4096); joined.extend_from_slice(c); Ok(()) })
                .unwrap();
            prop_assert_eq!(read as usize, data.len());
            prop_assert_eq!(joined, data);
        }
    }
}
