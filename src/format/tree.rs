//! Directory listings. Names are bytes (Unix allows any but `/` and NUL), shown as JSON strings
//! when they are UTF-8 and as `{"hex": …}` otherwise, so non-UTF-8 names survive exactly.

use crate::id::BlobId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Version of tree blobs.
pub const TREE_VERSION: u32 = 1;

/// A file name or symlink target, byte-exact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub Vec<u8>);

impl Name {
    /// From an OS string, keeping every byte.
    pub fn from_os(s: &OsStr) -> Self {
        Name(s.as_bytes().to_vec())
    }

    /// As an OS string for file system calls.
    pub fn as_os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// For people: lossy UTF-8.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex::encode(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Bytes { hex: String },
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(Name(t.into_bytes())),
            Repr::Bytes { hex } => hex::decode(hex).map(Name).map_err(serde::de::Error::custom),
        }
    }
}

/// One chunk of a file: its blob and plaintext length (so restore knows offsets without
/// decrypting earlier chunks). Serialised as `[id, length]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef(pub BlobId, pub u32);

/// What kind of file system object a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
}

/// One entry of a directory, with everything restore needs to recreate it exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: Name,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Data blobs in order; their concatenation is the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ChunkRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Name>,
    /// Files sharing a group number within one snapshot were hard links to one inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_group: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A directory listing, nodes sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub version: u32,
    pub nodes: Vec<Node>,
}

/// One file the backup could not read, and why; stored domain-encrypted like a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedEntry {
    pub path: Name,
    pub error: String,
}

/// The skipped-file list blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedList {
    pub version: u32,
    pub entries: Vec<SkippedEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_json_whatever_their_bytes() {
        for raw in [
            b"plain.csv".to_vec(),
            "Zoë ledger €.csv".as_bytes().to_vec(),
            b"new\nline".to_vec(),
            vec![0xff, 0xfe, b'a'],
        ] {
            let name = Name(raw.clone());
            let json = serde_json::to_string(&name).unwrap();
            assert_eq!(serde_json::from_str::<Name>(&json).unwrap().0, raw);
        }
        assert_eq!(
            serde_json::to_string(&Name(vec![0xff])).unwrap(),
            r#"{"hex":"ff"}"#
        );
    }
}
