//! Typed identifiers. One macro makes every id type so the compiler refuses a pack id where a blob
//! id is expected; all are fixed-size byte arrays shown as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Why an id string was refused: wrong length or not hex.
#[derive(Debug, thiserror::Error)]
#[error("'{text}' is not a valid {what} id: expected {len} hex characters")]
pub struct ParseIdError {
    text: String,
    what: &'static str,
    len: usize,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Byte length of this id.
            pub const LEN: usize = $len;

            /// A fresh random id, for objects named at random rather than by content.
            pub fn random() -> Self {
                let mut bytes = [0u8; $len];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
                Self(bytes)
            }

            /// Lowercase hex, the form used in object names and JSON.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first eight hex characters, for people.
            pub fn short(&self) -> String {
                self.to_hex()[..8].to_string()
            }

            /// Build from a slice that must be exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let err = || ParseIdError { text: text.to_string(), what: $what, len: $len * 2 };
                let mut bytes = [0u8; $len];
                decode_hex(text.as_bytes(), &mut bytes).then_some(Self(bytes)).ok_or_else(err)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            /// Decoded from the string in place (no copy of it): index objects hold millions.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Hex;
                impl serde::de::Visitor<'_> for Hex {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} id of {} hex characters", $what, $len * 2)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Hex)
            }
        }
    };
}

/// Hex digit values, 0xff for anything else.
const HEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decode hex into `out`, which it must fill exactly. A table lookup per digit: index objects
/// hold millions of ids, and this is most of what opening a large index costs.
fn decode_hex(text: &[u8], out: &mut [u8]) -> bool {
    if text.len() != out.len() * 2 {
        return false;
    }
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    bad & 0xf0 == 0
}

typed_id!(
    /// Keyed BLAKE3 of a blob's plaintext: equal content in one key domain has one id.
    BlobId, 32, "blob"
);
typed_id!(
    /// BLAKE3 of a pack file's bytes, so a pack can be verified without any key.
    PackId, 32, "pack"
);
typed_id!(
    /// BLAKE3 of an index object's bytes.
    IndexId, 32, "index"
);
typed_id!(
    /// BLAKE3 of a snapshot head object's bytes.
    SnapshotId, 32, "snapshot"
);
typed_id!(
    /// Random id of one backup run's session key.
    SessionId, 16, "session"
);
typed_id!(
    /// Random id of the repository, fixed at init.
    RepoId, 32, "repository"
);

/// Unkeyed BLAKE3 of bytes, for naming objects by their content.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The short form (eight characters) of an id held as text, for people; any text, however
/// short or odd, is shown whole rather than cut mid-character.
pub fn short_text(id: &str) -> String {
    id.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let id = BlobId::random();
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("abc".parse::<BlobId>().is_err());
        assert!("zz".repeat(32).parse::<BlobId>().is_err());
        // Every byte value that is not a hex digit is refused, in either place of a pair.
        let good = id.to_hex();
        for bad in (0u8..=255).filter(|b| !b.is_ascii_hexdigit()) {
            for at in [0, 1, 63] {
                let mut text = good.clone().into_bytes();
                text[at] = bad;
                let text = String::from_utf8_lossy(&text).into_owned();
                assert!(text.parse::<BlobId>().is_err(), "{bad} at {at}");
            }
        }
        assert_eq!(good.to_uppercase().parse::<BlobId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
