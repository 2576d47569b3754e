//! Keys and sealing. age wraps keys and bookkeeping to public recipients; blobs use a per-run
//! session key with XChaCha20-Poly1305, so a stolen writer can seal new data but open none.

pub mod age_wrap;
pub mod blob_seal;
pub mod keys;
pub mod sign;

pub use age_wrap::{open_with, seal_to};
pub use blob_seal::{open_blob, seal_blob, SessionKey, FRAME_HEADER_LEN, FRAME_OVERHEAD};
pub use keys::{DomainKeys, MetadataKeys};
