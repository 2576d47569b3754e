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
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress_with_context(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(data),
            None => zstd::bulk::compress(data, level),
        }
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
    match compress_with_context(data, level) {
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
    fn a_zstd_bomb_is_refused_at_its_limit() {
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let err = decompress_bounded(&bomb, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
        assert_eq!(decompress_bounded(&bomb, 64 << 20).unwrap().len(), 64 << 20);
    }
}
