//! A forger who holds only the writer credential: it cannot read a snapshot, but it can seal
//! new listings and data to a domain's public recipient and commit a head of its own. Tests use
//! it to check that restore, drill and check treat every listing as hostile input.

use custodian::backend;
use custodian::compress;
use custodian::crypto::seal_blob;
use custodian::format::tree::{ChunkRef, Name, Node, NodeKind, Tree};
use custodian::format::BlobKind;
use custodian::id::{BlobId, SnapshotId};
use custodian::repository::{Credential, PackUploader, PackWriter, Repository};
use std::path::Path;
use std::sync::Arc;

/// A node of kind `kind` named `name` (bytes), mode 0644, owned by root.
pub fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: Name(name.to_vec()),
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_ns: 0,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        link_group: None,
    }
}

/// What the forger writes: blobs sealed under one fresh session of `source`'s domain.
pub struct Forger {
    pub repo: Arc<Repository>,
    domain: custodian::crypto::DomainKeys,
    session: Arc<custodian::crypto::SessionKey>,
    blobs: Vec<(BlobId, BlobKind, Vec<u8>)>,
}

impl Forger {
    /// Open `repo` with the writer credential for `source`'s key domain.
    pub fn new(repo: &str, writer: &Path, source: &str) -> Forger {
        let backend = backend::open(repo).unwrap();
        let repo = Arc::new(Repository::open(backend, &Credential::Writer(writer.into())).unwrap());
        let domain = repo.domain_for_write(source).unwrap();
        let session = repo.start_session(&domain.recipient).unwrap();
        Forger {
            repo,
            domain,
            session,
            blobs: Vec::new(),
        }
    }

    /// A file node whose content is `data`.
    pub fn file(&mut self, name: &[u8], data: &[u8]) -> Node {
        let id = self.domain.blob_id(data);
        self.blobs.push((id, BlobKind::Data, data.to_vec()));
        let mut n = node(name, NodeKind::File);
        n.size = data.len() as u64;
        n.content = vec![ChunkRef(id, data.len() as u32)];
        n
    }

    /// A directory node listing `nodes` exactly as given (unsorted, duplicated: whatever).
    pub fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let json = serde_json::to_vec(&Tree { version: 1, nodes }).unwrap();
        let id = self.domain.blob_id(&json);
        self.blobs.push((id, BlobKind::Tree, json));
        let mut n = node(name, NodeKind::Dir);
        n.subtree = Some(id);
        n
    }

    /// A tree blob holding `raw` bytes as its plaintext (for bombs and garbage).
    pub fn raw_tree(&mut self, raw: Vec<u8>) -> BlobId {
        let id = self.domain.blob_id(&raw);
        self.blobs.push((id, BlobKind::Tree, raw));
        id
    }

    /// Upload every blob, then commit a head that copies `source`'s latest one with `root`.
    pub fn commit(self, source: &str, root: Node, compress_trees: bool) -> SnapshotId {
        let repo = self.repo;
        let uploader = PackUploader::start(repo.clone(), Vec::new(), 1);
        let mut writer = PackWriter::new(&self.domain.name, repo.config.pack_target);
        for (id, kind, plain) in &self.blobs {
            let (tag, payload) = if compress_trees || kind == &BlobKind::Data {
                compress::compress(plain, 3)
            } else {
                (compress::RAW, plain.as_slice().into())
            };
            let frame = seal_blob(&self.session, id, kind.code(), tag, &payload);
            writer.add(*id, *kind, &frame);
        }
        uploader.submit_pack(&mut writer, &repo).unwrap();
        uploader.finish().unwrap();
        let latest = repo
            .list_snapshots()
            .unwrap()
            .into_iter()
            .rev()
            .find(|s| s.head.source == source)
            .expect("a real snapshot to imitate");
        let mut head = latest.head.clone();
        head.root = root;
        head.parent = Some(latest.id);
        head.time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        repo.write_snapshot(&head).unwrap()
    }
}
