//! zstd before encryption; a chunk that does not shrink is stored raw so incompressible scans
//! cost almost nothing to restore.

use std::cell::RefCell;
use std::io;

/// Tag byte inside the sealed payload: stored as is.
pub const RAW: u8 = 0;
/// Tag byte inside the sealed payload: zstd frame.
pub const ZSTD: u8 = 1;

thread_local! {
    // A zstd context costs megabytes to set up; building one per chunk doubled backup CPU time.
    // Pipeline threads live for a whole run, so one context per thread is reused thousands of times.
    // A sealer alternates between levels (a database's page groups beside ordinary chunks), so it
    // keeps one context per level it has met rather than rebuilding one at every switch.
    static COMPRESSORS: RefCell<Vec<(Setting, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Contexts a thread keeps: the settings in use are the repository's and the page groups'.
const MAX_CONTEXTS: usize = 4;

/// How one blob is compressed: a zstd level and, where measured to pay, a minimum match length.
/// Any setting makes an ordinary zstd frame, so readers never need to know which was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The zstd level.
    pub level: i32,
    /// zstd's `minMatch`, when not the level's own.
    pub min_match: Option<u32>,
}

impl Setting {
    /// The repository's level, as configured.
    pub const fn level(level: i32) -> Self {
        Self {
            level,
            min_match: None,
        }
    }

    /// A database's page group. 64 KiB compressed alone at level 3 loses about 6 % against a
    /// mebibyte chunk; level 7 with matches of at least 5 bytes wins it back at 125 MB/s a core
    /// (level 9: 84 MB/s). Measured on the bench's ledgers (171 MB) in 64 KiB blocks: 1 MiB at
    /// level 3 33.32 MB, this 33.02, level 8 32.86 at 106 MB/s, level 9 32.36. A repository set to
    /// a higher level keeps its own.
    pub const fn page_group(repository_level: i32) -> Self {
        if repository_level > PAGE_GROUP_LEVEL {
            Self::level(repository_level)
        } else {
            Self {
                level: PAGE_GROUP_LEVEL,
                min_match: Some(PAGE_GROUP_MIN_MATCH),
            }
        }
    }

    fn context(self) -> io::Result<zstd::bulk::Compressor<'static>> {
        let mut context = zstd::bulk::Compressor::new(self.level)?;
        if let Some(min_match) = self.min_match {
            context.set_parameter(zstd::stream::raw::CParameter::MinMatch(min_match))?;
        }
        Ok(context)
    }
}

/// See [`Setting::page_group`].
const PAGE_GROUP_LEVEL: i32 = 7;
const PAGE_GROUP_MIN_MATCH: u32 = 5;

fn compress_with_context(data: &[u8], setting: Setting) -> io::Result<Vec<u8>> {
    COMPRESSORS.with(|cell| {
        let mut contexts = cell.borrow_mut();
        let at = match contexts.iter().position(|(s, _)| *s == setting) {
            Some(at) => at,
            None => {
                let context = setting.context()?;
                if contexts.len() >= MAX_CONTEXTS {
                    contexts.remove(0);
                }
                contexts.push((setting, context));
                contexts.len() - 1
            }
        };
        contexts[at].1.compress(data)
    })
}

fn decompress_with_context(data: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(data, capacity),
            None => zstd::bulk::decompress(data, capacity),
        }
    })
}

/// Compress `data`, returning the tag and the bytes to store (borrowed when raw).
pub fn compress(data: &[u8], level: i32) -> (u8, std::borrow::Cow<'_, [u8]>) {
    compress_as(data, Setting::level(level))
}

/// [`compress`] with a chosen [`Setting`].
pub fn compress_as(data: &[u8], setting: Setting) -> (u8, std::borrow::Cow<'_, [u8]>) {
    match compress_with_context(data, setting) {
        Ok(packed) if packed.len() < data.len() => (ZSTD, packed.into()),
        _ => (RAW, data.into()),
    }
}

/// Undo [`compress`]; `expected_max` bounds memory for a damaged length field.
pub fn decompress(tag: u8, payload: Vec<u8>, expected_max: usize) -> io::Result<Vec<u8>> {
    match tag {
        RAW => Ok(payload),
        ZSTD => decompress_with_context(&payload, expected_max),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown compression tag {other}"),
        )),
    }
}

/// JSON of `value`. A value that does not serialise is an error, never an empty object
/// written or sealed in its place.
pub fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        crate::Error::Internal(format!(
            "internal error: an object could not be serialised: {e}"
        ))
    })
}

/// zstd-compressed JSON for bookkeeping objects ([`json_bytes`], compressed).
pub fn pack_json<T: serde::Serialize>(value: &T) -> crate::Result<Vec<u8>> {
    let json = json_bytes(value)?;
    // zstd on an in-memory buffer does not fail; if it did, the JSON is stored as it is.
    Ok(zstd::bulk::compress(&json, 3).unwrap_or(json))
}

/// Inverse of [`pack_json`]'s compression step, refusing more than `limit` bytes of output.
pub fn unpack_json(bytes: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    decompress_bounded(bytes, limit)
}

/// Decompress a zstd frame whose size a hostile writer chose: memory grows with the output
/// actually produced, and output beyond `limit` is refused (a "zstd bomb" costs `limit`).
pub fn decompress_bounded(bytes: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("decompresses to more than {limit} bytes, the limit for its kind"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shrinks_and_noise_stays_raw() {
        let text = b"date,client,amount\n".repeat(1000);
        let (tag, packed) = compress(&text, 3);
        assert_eq!(tag, ZSTD);
        assert!(packed.len() < text.len() / 10);
        assert_eq!(
            decompress(tag, packed.into_owned(), text.len()).unwrap(),
            text
        );
        let mut rng = crate::sample::Rng::new(1);
        let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        let (tag, stored) = compress(&noise, 3);
        assert_eq!((tag, stored.len()), (RAW, noise.len()));
    }

    #[test]
    fn a_page_group_packs_tighter_than_level_three_and_round_trips() {
        // Rows alike but not equal, as in a ledger's table pages.
        let mut rng = crate::sample::Rng::new(7);
        let mut group = Vec::new();
        while group.len() < 64 * 1024 {
            let row = format!(
                "{:08}|client-{:04}|{}.{:02}|paid|",
                group.len(),
                rng.next_u64() % 500,
                rng.next_u64() % 10_000,
                rng.next_u64() % 100
            );
            group.extend_from_slice(row.as_bytes());
        }
        let (tag3, three) = compress(&group, 3);
        let (tag, paged) = compress_as(&group, Setting::page_group(3));
        assert_eq!((tag3, tag), (ZSTD, ZSTD));
        assert!(
            paged.len() < three.len(),
            "{} against {}",
            paged.len(),
            three.len()
        );
        assert_eq!(
            decompress(tag, paged.into_owned(), group.len()).unwrap(),
            group
        );
        assert_eq!(Setting::page_group(12), Setting::level(12));
    }

    #[test]
    fn a_zstd_bomb_is_refused_at_its_limit() {
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let err = decompress_bounded(&bomb, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
        assert_eq!(decompress_bounded(&bomb, 64 << 20).unwrap().len(), 64 << 20);
    }
}
