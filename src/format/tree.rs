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

impl NodeKind {
    /// The word for people ("a directory", not `Dir`).
    pub fn noun(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "directory",
            NodeKind::Symlink => "symbolic link",
            NodeKind::Fifo => "named pipe",
        }
    }
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

/// No chunker setting makes chunks larger (fastcdc's maximum); a listing that says otherwise
/// would make readers allocate what it claims.
pub const MAX_CHUNK: usize = fastcdc::v2020::MAXIMUM_MAX;

/// Deepest directory nesting a reader follows: far beyond any real store (Linux paths stop at
/// 4096 bytes), shallow enough that recursion over a forged chain of listings cannot exhaust
/// the stack.
pub const MAX_TREE_DEPTH: usize = 1024;

/// Refuse a path nested deeper than [`MAX_TREE_DEPTH`].
pub fn check_depth(rel: &std::path::Path) -> Result<(), TreeError> {
    if rel.components().count() > MAX_TREE_DEPTH {
        return Err(TreeError {
            entry: rel.display().to_string(),
            reason: format!("is nested more than {MAX_TREE_DEPTH} directories deep"),
        });
    }
    Ok(())
}

/// Highest permission bits a node may carry (`07777`: setuid, setgid, sticky and rwx).
pub const MODE_BITS: u32 = 0o7777;

/// Why a listing read from a repository was refused: the entry (lossy UTF-8) and the rule it
/// breaks. A listing is hostile input, since anyone holding the writer credential can make one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry '{entry}' {reason}")]
pub struct TreeError {
    pub entry: String,
    pub reason: String,
}

impl Name {
    /// Whether this is one path component restore may create: not empty, not `.` or `..`, no
    /// `/` and no NUL. Anything else could reach outside the directory it is listed in.
    pub fn check_component(&self) -> Result<(), &'static str> {
        match self.0.as_slice() {
            [] => Err("has an empty name"),
            b"." | b".." => Err("is named '.' or '..'"),
            n if n.contains(&b'/') => Err("has a '/' in its name"),
            n if n.contains(&0) => Err("has a NUL byte in its name"),
            _ => Ok(()),
        }
    }
}

impl Node {
    /// Check the fields restore and the incident tools rely on. The name is checked by
    /// [`Tree::validate`] (a snapshot's root node has an empty name).
    pub fn validate_fields(&self) -> Result<(), String> {
        if self.mode & !MODE_BITS != 0 {
            return Err(format!(
                "has mode {:o}, beyond the permission bits",
                self.mode
            ));
        }
        let no_content = self.content.is_empty() && self.size == 0;
        match self.kind {
            NodeKind::File => {
                if self.subtree.is_some() || self.target.is_some() {
                    return Err("is a file with a subtree or link target".into());
                }
                let mut sum: u64 = 0;
                for chunk in &self.content {
                    if chunk.1 == 0 || chunk.1 as usize > MAX_CHUNK {
                        return Err(format!("has a chunk of {} bytes", chunk.1));
                    }
                    sum = sum.saturating_add(u64::from(chunk.1));
                }
                if !self.content.is_empty() && sum != self.size {
                    return Err(format!(
                        "says {} bytes but its chunks hold {sum}",
                        self.size
                    ));
                }
            }
            NodeKind::Dir if !no_content || self.target.is_some() => {
                return Err("is a directory with file content or a link target".into())
            }
            NodeKind::Symlink => match &self.target {
                Some(t) if !t.0.is_empty() && !t.0.contains(&0) && self.content.is_empty() => {}
                _ => return Err("is a symlink without a valid target".into()),
            },
            NodeKind::Fifo if !self.content.is_empty() || self.target.is_some() => {
                return Err("is a FIFO with content or a link target".into())
            }
            _ => {}
        }
        if self.kind != NodeKind::Dir && self.subtree.is_some() {
            return Err("has a subtree but is not a directory".into());
        }
        if self.kind != NodeKind::File && self.link_group.is_some() {
            return Err("is in a hard-link group but is not a file".into());
        }
        Ok(())
    }
}

impl Tree {
    /// Refuse a listing that restore could be tricked by: every name one safe component,
    /// names strictly ascending by bytes (so no duplicates, hence no symlink `x` followed by a
    /// directory `x`), and every node's fields within the format.
    pub fn validate(&self) -> Result<(), TreeError> {
        let mut previous: Option<&Name> = None;
        for node in &self.nodes {
            let refuse = |reason: String| TreeError {
                entry: node.name.display(),
                reason,
            };
            node.name.check_component().map_err(|r| refuse(r.into()))?;
            if previous.is_some_and(|p| p.0 >= node.name.0) {
                return Err(refuse("is out of order or listed twice".into()));
            }
            node.validate_fields().map_err(refuse)?;
            previous = Some(&node.name);
        }
        Ok(())
    }
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

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: Name(name.to_vec()),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: (kind == NodeKind::Symlink).then(|| Name(b"/etc".to_vec())),
            link_group: None,
        }
    }

    fn refused(nodes: Vec<Node>) -> String {
        let tree = Tree { version: 1, nodes };
        tree.validate().expect_err("must be refused").to_string()
    }

    #[test]
    fn hostile_listings_are_refused_by_entry() {
        for bad in [&b""[..], b".", b"..", b"/etc/x", b"a/b", b"a\0b"] {
            let err = refused(vec![node(bad, NodeKind::File)]);
            assert!(err.starts_with("entry '"), "{err}");
        }
        let dup = refused(vec![
            node(b"x", NodeKind::Symlink),
            node(b"x", NodeKind::Dir),
        ]);
        assert!(dup.contains("listed twice"), "{dup}");
        assert!(
            refused(vec![node(b"b", NodeKind::File), node(b"a", NodeKind::File)])
                .contains("out of order")
        );
        let mut big = node(b"f", NodeKind::File);
        big.mode = 0o104755;
        assert!(refused(vec![big]).contains("mode"));
        let mut short = node(b"f", NodeKind::File);
        short.size = 10;
        short.content = vec![ChunkRef(BlobId([1; 32]), 4)];
        assert!(refused(vec![short]).contains("says 10 bytes but its chunks hold 4"));
        let mut linked_dir = node(b"d", NodeKind::Dir);
        linked_dir.link_group = Some(1);
        assert!(refused(vec![linked_dir]).contains("hard-link"));
        let mut no_target = node(b"l", NodeKind::Symlink);
        no_target.target = None;
        assert!(refused(vec![no_target]).contains("symlink"));
    }

    #[test]
    fn ordinary_listings_pass() {
        let mut file = node(b"ledger.csv", NodeKind::File);
        file.mode = 0o4755; // setuid is representable; restore decides whether to keep it
        file.size = 7;
        file.content = vec![ChunkRef(BlobId([1; 32]), 3), ChunkRef(BlobId([2; 32]), 4)];
        let tree = Tree {
            version: 1,
            nodes: vec![
                node(b"a", NodeKind::Dir),
                file,
                node(b"link", NodeKind::Symlink),
                node(&[0xff, 0xfe], NodeKind::Fifo),
            ],
        };
        assert_eq!(tree.validate(), Ok(()));
    }

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
