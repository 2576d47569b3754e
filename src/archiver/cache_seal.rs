//! The incremental cache file's sealing: the record stream is cut into blocks of 64 KiB, each
//! sealed with ChaCha20-Poly1305 under a key for this file alone (keyed BLAKE3 of the cache
//! sealing key and a random 32-byte salt in the header), a nonce that counts blocks, and
//! associated data naming the repository and source and whether the block is the last. The
//! cache holds the paths of customer files, so nothing of it is readable without the writer's
//! metadata key; a changed, reordered, planted or moved block fails to open, and so does a file
//! cut short (its last block is missing). Readers stop at the first failure: the blocks before
//! it were authenticated, and a missing record costs one re-read.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"CUSTCAS1";
const BLOCK: usize = 64 * 1024;
const TAG: usize = 16;
/// The top bit of a block's length word: this is the last block.
const LAST: u32 = 1 << 31;

/// The AEAD for one cache file.
fn cipher(cache_key: &[u8; 32], salt: &[u8; 32]) -> ChaCha20Poly1305 {
    let file_key = blake3::keyed_hash(cache_key, salt);
    ChaCha20Poly1305::new(Key::from_slice(file_key.as_bytes()))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    *Nonce::from_slice(&n)
}

/// Associated data of a block: magic, what the file belongs to, and whether it is the last.
fn aad(context: &[u8], last: bool) -> Vec<u8> {
    [MAGIC.as_slice(), context, &[u8::from(last)]].concat()
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Seals everything written through it; `finish` seals the last block.
pub struct SealWriter<W: Write> {
    out: W,
    cipher: ChaCha20Poly1305,
    counter: u64,
    buf: Vec<u8>,
    context: Vec<u8>,
}

impl<W: Write> SealWriter<W> {
    /// Write the header (magic, fresh salt) and start sealing under `cache_key`, bound to
    /// `context`.
    pub fn new(mut out: W, cache_key: &[u8; 32], context: &[u8]) -> io::Result<Self> {
        let salt: [u8; 32] = rand::random();
        out.write_all(MAGIC)?;
        out.write_all(&salt)?;
        Ok(SealWriter {
            out,
            cipher: cipher(cache_key, &salt),
            counter: 0,
            buf: Vec::with_capacity(BLOCK),
            context: context.to_vec(),
        })
    }

    fn seal_block(&mut self, last: bool) -> io::Result<()> {
        let sealed = self
            .cipher
            .encrypt(
                &nonce(self.counter),
                Payload {
                    msg: &self.buf,
                    aad: &aad(&self.context, last),
                },
            )
            .map_err(|_| invalid("cache block could not be sealed"))?;
        self.counter += 1;
        self.buf.clear();
        let len = u32::try_from(sealed.len()).map_err(|_| invalid("cache block too large"))?;
        let word = if last { len | LAST } else { len };
        self.out.write_all(&word.to_le_bytes())?;
        self.out.write_all(&sealed)
    }

    /// Seal what is buffered as the last block (possibly empty) and return the inner writer,
    /// flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_block(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == BLOCK {
            self.seal_block(false)?;
        }
        Ok(take)
    }

    /// Blocks are sealed whole; a flush only reaches what is already sealed.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Opens a sealed cache file block by block.
pub struct OpenReader<R: Read> {
    input: R,
    cipher: ChaCha20Poly1305,
    counter: u64,
    block: Vec<u8>,
    pos: usize,
    context: Vec<u8>,
    /// The last block has been opened: only the end of the file may follow.
    ended: bool,
}

impl<R: Read> OpenReader<R> {
    /// Check the header and get ready to open blocks sealed under `cache_key` for `context`.
    pub fn new(mut input: R, cache_key: &[u8; 32], context: &[u8]) -> io::Result<Self> {
        let mut header = [0u8; 40];
        input.read_exact(&mut header)?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a sealed custodian cache"));
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&header[8..]);
        Ok(OpenReader {
            input,
            cipher: cipher(cache_key, &salt),
            counter: 0,
            block: Vec::new(),
            pos: 0,
            context: context.to_vec(),
            ended: false,
        })
    }

    /// The next block, or `false` at a clean end of the file.
    fn next_block(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut len[got..])? {
                0 if got == 0 && self.ended => return Ok(false),
                0 => return Err(invalid("cache cut short")),
                n => got += n,
            }
        }
        if self.ended {
            return Err(invalid("data after the cache's last block"));
        }
        let word = u32::from_le_bytes(len);
        let last = word & LAST != 0;
        let len = (word & !LAST) as usize;
        if !(TAG..=BLOCK + TAG).contains(&len) {
            return Err(invalid("cache block length out of range"));
        }
        let mut sealed = vec![0u8; len];
        self.input.read_exact(&mut sealed)?;
        self.block = self
            .cipher
            .decrypt(
                &nonce(self.counter),
                Payload {
                    msg: &sealed,
                    aad: &aad(&self.context, last),
                },
            )
            .map_err(|_| invalid("cache block fails authentication"))?;
        self.counter += 1;
        self.ended = last;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(data: &[u8], key: &[u8; 32]) -> Vec<u8> {
        let mut w = SealWriter::new(Vec::new(), key, b"repo/source").unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(file: &[u8], key: &[u8; 32]) -> io::Result<Vec<u8>> {
        open_for(file, key, b"repo/source")
    }

    fn open_for(file: &[u8], key: &[u8; 32], context: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpenReader::new(file, key, context)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_sealed_cache_opens_only_whole_and_with_its_key() {
        let key = [7u8; 32];
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let file = sealed(&data, &key);
        assert_eq!(open(&file, &key).unwrap(), data);
        // No plaintext in the file: a run of the data does not appear.
        assert!(!file.windows(16).any(|w| w == &data[4000..4016]));
        assert!(
            open(&file, &[8u8; 32]).is_err(),
            "another key opens nothing"
        );
        let mut flipped = file.clone();
        flipped[100] ^= 1;
        assert!(open(&flipped, &key).is_err(), "a changed byte is refused");
        // Blocks swapped: both are authentic, the order is not.
        let block = 4 + BLOCK + TAG;
        let mut swapped = file.clone();
        let (a, b) = (40, 40 + block);
        let first = swapped[a..a + block].to_vec();
        swapped.copy_within(b..b + block, a);
        swapped[b..b + block].copy_from_slice(&first);
        assert!(
            open(&swapped, &key).is_err(),
            "reordered blocks are refused"
        );
        // Cut anywhere, even between blocks: refused (the last block is missing).
        for cut in [40, 40 + block, 40 + block + 10, file.len() - 1] {
            assert!(open(&file[..cut], &key).is_err(), "cut at {cut}");
        }
        let mut longer = file.clone();
        longer.extend_from_slice(&file[40..40 + block]);
        assert!(
            open(&longer, &key).is_err(),
            "a block after the last is refused"
        );
        assert!(
            open_for(&file, &key, b"repo/other-source").is_err(),
            "a cache moved to another source's name does not open"
        );
        // Data of exactly whole blocks still ends with a (then empty) last block.
        let whole = sealed(&data[..2 * BLOCK], &key);
        assert_eq!(open(&whole, &key).unwrap(), data[..2 * BLOCK]);
        assert!(open(&sealed(b"", &key), &key).unwrap().is_empty());
    }
}
