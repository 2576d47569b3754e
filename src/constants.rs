//! Tuning numbers in one place, each with the reason for its value.

/// Chunk sizes (min/avg/max) fixed at init: 1 MiB average keeps the index small for GiB-sized
/// stores while still deduplicating edits inside large ledgers.
pub const CHUNK_MIN: u32 = 512 * 1024;
pub const CHUNK_AVG: u32 = 1024 * 1024;
pub const CHUNK_MAX: u32 = 8 * 1024 * 1024;

/// Default zstd level: 3 is zstd's own default and the best speed/size trade-off measured here.
pub const ZSTD_LEVEL: i32 = 3;

/// Pack target size: 16 MiB makes a 1.5 GiB backup about a hundred objects, not thousands.
pub const PACK_TARGET: u64 = 16 * 1024 * 1024;
/// Bounds for `init --pack-size`: small packs waste requests; each in-flight pack is held in
/// memory once per upload connection.
pub const PACK_TARGET_MIN: u64 = 64 * 1024;
pub const PACK_TARGET_MAX: u64 = 512 * 1024 * 1024;

/// Write an index object after this many packs so a crash loses little bookkeeping.
pub const PACKS_PER_INDEX: usize = 64;

/// …or after packs naming this many blobs: a reader decodes one index object whole, so this
/// bounds what loading the index holds at once (about 11 MB), whatever the file count.
pub const BLOBS_PER_INDEX: usize = 65_536;

/// Chunks in flight between readers and sealers; with 8 MiB maximum chunks this bounds memory.
pub const SEAL_QUEUE: usize = 4;

/// Sealed blobs waiting for the packer.
pub const PACK_QUEUE: usize = 8;

/// Finished packs waiting for upload beyond those being written: 0 is a hand-over, so at most
/// one pack being filled plus one per upload thread is in memory (each ~17 MiB).
pub const UPLOAD_QUEUE: usize = 0;

/// Restore reads whole packs when it needs more than this share of them, ranges otherwise.
pub const RESTORE_WHOLE_PACK_SHARE: f64 = 0.5;

/// Gaps between needed blobs below this are read through rather than split into two requests.
pub const RESTORE_RANGE_GAP: u64 = 1024 * 1024;

/// Reference lists are split after an id whose last two bytes are 0 modulo this: about 512 ids
/// (16 KiB) per blob, at boundaries that depend on content so consecutive snapshots share blobs.
pub const REFS_SPLIT_MODULUS: u16 = 512;

/// Hard upper bound on ids per reference blob.
pub const REFS_MAX_IDS: usize = 4096;
