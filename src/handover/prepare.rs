//! `handover prepare`: the old owner copies one store into the new owner's repository and signs
//! the handover list. Every step can be repeated: a killed run, run again with the same output
//! directory, continues the same handover and duplicates nothing.

use super::{sign_document, state_of, write_signed, SignedFiles, ID_FILE, OPERATOR_FILE};
use crate::archiver::commit::{write_head, CommitSession};
use crate::backend::Backend;
use crate::crypto::sign::ObjectSigner;
use crate::error::{Error, Result};
use crate::format::handover::*;
use crate::format::refs::{self, RefKey};
use crate::format::snapshot::SnapshotHead;
use crate::format::PackEntry;
use crate::id::{PackId, SessionId, SnapshotId};
use crate::repository::{
    BlobReader, Credential, FrameCopier, InitOptions, MasterIndex, PackUploader, Repository,
    SnapshotInfo,
};
use age::x25519;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `prepare` is asked to do.
pub struct PrepareOptions {
    pub source: String,
    /// The last snapshot handed over (`latest` when `None`); every earlier one goes too.
    pub snapshot: Option<String>,
    pub to: Arc<dyn Backend>,
    pub to_recipient: String,
    pub reason: String,
    pub classification: String,
    pub purpose: String,
    pub out: PathBuf,
    pub state_dir: PathBuf,
    /// The old owner's identity, which signs the list.
    pub identity: x25519::Identity,
    /// The old repository's audit log at the moment of handover (this command's entry).
    pub audit: AuditPoint,
}

/// What `prepare` did.
pub struct Prepared {
    pub manifest: Manifest,
    pub copied_blobs: u64,
    pub copied_bytes: u64,
}

/// Copy the store into the new owner's repository and write the signed list to `opts.out`.
pub fn prepare(from: &Repository, opts: &PrepareOptions) -> Result<Prepared> {
    let chosen = choose(from, opts)?;
    let domain = chosen
        .first()
        .map(|s| s.head.domain.clone())
        .ok_or_else(|| Error::SnapshotNotFound(opts.source.clone()))?;
    // Everything that can refuse does so before anything is written. Handing a store over is
    // a registry change (the trust list notes it), so it takes an operator of every source.
    from.require_full_operator()?;
    from.domain_for_read(&domain)?;
    let id = handover_id(&opts.out)?;
    let marks = from.handover_marks()?;
    if let Some(m) = marks
        .iter()
        .find(|m| (m.domain == domain) != (m.handover == id))
    {
        return Err(Error::Refused(format!(
            "handover {} already holds store '{}': {} belongs to that handover, not to a new \
             one of '{}'. Use a new, empty output directory, or finish that handover.",
            m.handover,
            m.domain,
            opts.out.display(),
            opts.source
        )));
    }
    if let Some(doc) = from.handover_document(&id, "list")? {
        return finish_stored(from, opts, &id, doc);
    }
    let reason = format!("handover {id}: {}", opts.reason);
    // Holds that go along are the store's own, never a handover's.
    let holds: HashMap<SnapshotId, crate::repository::Hold> = from
        .holds()?
        .into_iter()
        .filter(|(_, h)| !h.reason.starts_with("handover "))
        .collect();
    let operator = handover_operator(opts, &id)?;
    let to = Arc::new(open_target(from, opts, &operator)?);
    // From here no writer backs the store up into this repository again.
    from.mark_handed_over(&HandedOver {
        version: HANDOVER_VERSION,
        handover: id.clone(),
        domain: domain.clone(),
        to: opts.to.location(),
        time: now(),
        state: "prepared".into(),
        until: None,
        plan: None,
    })?;
    for snap in &chosen {
        from.hold(&snap.id, &reason)?;
    }
    let intent =
        crate::audit::Intent::write("handover prepare", &opts.reason).source(Some(&opts.source));
    let begun = crate::audit::begin(&to, &intent, None, None)?;
    let result = copy_store(from, &to, opts, &chosen, &domain, &holds);
    crate::audit::close(
        &to,
        &begun,
        if result.is_ok() { "ok" } else { "failed" },
        None,
    );
    let (snapshots, copied) = result?;
    let handover = operator_recipient(&operator)?;
    let names = Names {
        id: &id,
        domain: &domain,
        operator: &handover,
    };
    let manifest = manifest(from, &to, opts, &names, snapshots, &holds)?;
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("internal error: the list did not encode: {e}")))?;
    let doc = sign_document(
        &ObjectSigner::for_operator(&opts.identity),
        MANIFEST_KIND,
        &id,
        json,
    );
    from.put_handover_document(&id, "list", &doc)?;
    to.put_handover_document(&id, "list", &doc)?;
    // Last write here: the trust list changes, so this process's view of it is then stale.
    from.note_handover()?;
    write_out(opts, &doc, &manifest)?;
    Ok(Prepared {
        manifest,
        copied_blobs: copied.0,
        copied_bytes: copied.1,
    })
}

/// The list, its signature and its page into the output directory.
fn write_out(
    opts: &PrepareOptions,
    doc: &crate::repository::SignedDocument,
    m: &Manifest,
) -> Result<()> {
    let files = SignedFiles {
        json: super::LIST_FILE,
        sig: super::LIST_SIG,
    };
    write_signed(&opts.out, &files, doc)?;
    super::write_file(
        &opts.out.join(super::PAGE_FILE),
        super::page::render(m).as_bytes(),
    )
}

/// A run killed after the list was stored: the new repository gets its copy, the directory its
/// files, and the list stays the one already signed.
fn finish_stored(
    from: &Repository,
    opts: &PrepareOptions,
    id: &str,
    doc: crate::repository::SignedDocument,
) -> Result<Prepared> {
    let manifest: Manifest =
        crate::format::decode_json(doc.json.as_bytes(), "handover list", HANDOVER_VERSION)?;
    let operator = handover_operator(opts, id)?;
    let to = open_target(from, opts, &operator)?;
    to.put_handover_document(id, "list", &doc)?;
    write_out(opts, &doc, &manifest)?;
    from.note_handover()?;
    Ok(Prepared {
        manifest,
        copied_blobs: 0,
        copied_bytes: 0,
    })
}

/// The handover operator's age recipient (named in the list, so accept can check the sealed
/// identity it receives is that one).
fn operator_recipient(path: &Path) -> Result<String> {
    Ok(crate::crypto::keys::load_first_identity(path)?
        .to_public()
        .to_string())
}

/// The source's snapshots up to the chosen one, oldest first; refused when the key domain is
/// shared with another source (handing it over would hand over that source too).
fn choose(from: &Repository, opts: &PrepareOptions) -> Result<Vec<SnapshotInfo>> {
    let last = from.resolve_snapshot(
        opts.snapshot.as_deref().unwrap_or("latest"),
        Some(&opts.source),
    )?;
    let all = from.list_snapshots_strict()?;
    let domain = &last.head.domain;
    if let Some(other) = all
        .iter()
        .find(|s| &s.head.domain == domain && s.head.source != opts.source)
    {
        return Err(Error::Refused(format!(
            "source '{}' shares key domain '{domain}' with source '{}': handing it over would \
             hand over that store's records too. Only a store with a key domain of its own can \
             change hands.",
            opts.source, other.head.source
        )));
    }
    Ok(all
        .into_iter()
        .filter(|s| s.head.source == opts.source && s.head.domain == *domain)
        .filter(|s| (s.time, s.id) <= (last.time, last.id))
        .collect())
}

/// This handover's id: the one a killed run wrote into the output directory, or a new one.
fn handover_id(out: &Path) -> Result<String> {
    crate::fsutil::private_dir(out)?;
    let file = out.join(ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let id = text.trim().to_string();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(id);
        }
    }
    if out.join(super::LIST_FILE).exists() {
        return Err(Error::Usage(format!(
            "{} holds a handover list but no handover id; give 'prepare' an empty directory",
            out.display()
        )));
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    std::fs::write(&file, &id).map_err(|e| Error::io(&file, e))?;
    Ok(id)
}

/// The handover operator: a fresh identity that creates the new repository and signs what
/// prepare writes there. It stays on this machine (and sealed to the new owner in the output
/// directory); `accept` removes it from the new repository.
fn handover_operator(opts: &PrepareOptions, id: &str) -> Result<PathBuf> {
    let dir = state_of(&opts.state_dir, id);
    crate::fsutil::private_dir(&dir)?;
    let path = dir.join("operator.key");
    if !path.exists() {
        let identity = x25519::Identity::generate();
        let text = crate::crypto::keys::identity_file_text(&identity, &now());
        crate::crypto::keys::write_private(&path, &text)?;
    }
    let sealed_path = opts.out.join(OPERATOR_FILE);
    if !sealed_path.exists() {
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let recipient =
            crate::crypto::keys::parse_recipient(&opts.to_recipient, "the new owner's recipient")?;
        let sealed = crate::crypto::seal_to(&[recipient], &text, "handover operator")?;
        std::fs::write(&sealed_path, sealed).map_err(|e| Error::io(&sealed_path, e))?;
    }
    Ok(path)
}

/// Create the new owner's repository (same chunker, level and pack size, so its later backups
/// deduplicate against what is handed over), or reopen the one an earlier run created.
fn open_target(from: &Repository, opts: &PrepareOptions, operator: &Path) -> Result<Repository> {
    let credential = Credential::Operator(operator.to_path_buf());
    let pins = Some(opts.state_dir.join("trust"));
    if opts.to.get_if_present("config")?.is_none() {
        let identity = crate::crypto::keys::load_first_identity(operator)?;
        let writer = operator.with_file_name("init-writer.key");
        let _ = std::fs::remove_file(&writer);
        crate::repository::init(
            opts.to.clone(),
            InitOptions {
                operator: identity,
                recipients: vec![opts.to_recipient.clone()],
                chunker: from.config.chunker,
                zstd_level: from.config.zstd_level,
                pack_target: from.config.pack_target,
                created: now(),
            },
            |text| crate::crypto::keys::write_private(&writer, text),
        )?;
    }
    Repository::open_pinned(opts.to.clone(), &credential, pins).map_err(|e| {
        Error::Refused(format!(
            "{} holds a repository this handover did not create ({e}). Hand over into an empty \
             location; the new owner can then copy into its own repository.",
            opts.to.location()
        ))
    })
}

/// Each handed-over snapshot with its id in the receiving repository.
type Handed = Vec<(SnapshotInfo, SnapshotId)>;

/// Copy frames, session keys, reference lists and heads; returns (old, new id, stored head
/// hash) per snapshot and the (blobs, bytes) copied.
fn copy_store(
    from: &Repository,
    to: &Arc<Repository>,
    opts: &PrepareOptions,
    chosen: &[SnapshotInfo],
    domain: &str,
    holds: &std::collections::HashMap<SnapshotId, crate::repository::Hold>,
) -> Result<(Handed, (u64, u64))> {
    let keys = from.domain_for_read(domain)?;
    let target_keys = to.import_domain(domain, &keys.dedup_key, keys.chunker_seed)?;
    for (_, e) in from.exclusions(Some(&opts.source))? {
        to.add_exclusion(&opts.source, &e.pattern)?;
    }
    let from_index = from.load_index()?;
    let reader = BlobReader::new(from, &from_index);
    let needed = needed_keys(chosen, &reader)?;
    let mut index = to.load_index()?;
    let recovered = to.unindexed_packs(&index)?;
    index.add_packs(&recovered);
    let mut sessions = sessions_in(to, &recovered, domain)?;
    let uploader = Arc::new(PackUploader::start(to.clone(), recovered, to.connections()));
    let mut commit = CommitSession::new(to, &index, uploader);
    let copied = {
        let mut copier = FrameCopier::between(from, to, commit.uploader());
        for (pack, entries) in wanted_frames(&from_index, domain, &needed, &index)? {
            copier.copy(&pack, domain, &entries)?;
        }
        sessions.extend(copier.sessions.iter().copied());
        let copied = (copier.blobs, copier.bytes);
        copier.flush()?;
        copied
    };
    // Session keys before the index names any frame sealed under them.
    for id in &sessions {
        let key = from.session_key(*id, Some(&keys))?;
        to.import_session(&key, &target_keys)?;
    }
    let present = to.list_snapshots_strict()?;
    let mut heads = Vec::new();
    for snap in chosen {
        // No parent to order by: the previous list is not indexed until this commit ends.
        let written = commit.write_refs(None, reader_keys(snap, &reader)?)?;
        let mut head: SnapshotHead = snap.head.clone();
        head.refs = written.ids;
        heads.push((snap.clone(), head));
    }
    commit.finish()?;
    let mut out = Vec::new();
    let mut previous: Option<SnapshotId> = None;
    for (snap, mut head) in heads {
        head.parent = previous;
        let id = match present
            .iter()
            .find(|p| p.head.time == head.time && p.head.source == head.source)
        {
            Some(p) => p.id,
            None => write_head(to, &head)?,
        };
        if let Some(h) = holds.get(&snap.id) {
            to.hold(&id, &h.reason)?;
        }
        previous = Some(id);
        out.push((snap, id));
    }
    Ok((out, copied))
}

/// Every blob the chosen snapshots need, as reference keys.
fn needed_keys(chosen: &[SnapshotInfo], reader: &BlobReader) -> Result<HashSet<RefKey>> {
    let mut needed = HashSet::new();
    for snap in chosen {
        needed.extend(reader_keys(snap, reader)?);
    }
    Ok(needed)
}

/// The reference keys one snapshot's lists name.
fn reader_keys(snap: &SnapshotInfo, reader: &BlobReader) -> Result<Vec<RefKey>> {
    let what = format!("reference list of snapshot {}", snap.id.short());
    let mut keys = Vec::new();
    for plain in reader.read_many(&snap.head.refs)?.values() {
        keys.extend(refs::decode(plain, &what)?);
    }
    Ok(keys)
}

/// The frames to copy, by source pack: needed blobs of the domain the target lacks. Only frames
/// a handed-over snapshot names go along, never whole packs: forgotten or erased records
/// waiting for a prune stay behind.
fn wanted_frames(
    index: &MasterIndex,
    domain: &str,
    needed: &HashSet<RefKey>,
    target: &MasterIndex,
) -> Result<BTreeMap<PackId, Vec<PackEntry>>> {
    let mut out: BTreeMap<PackId, Vec<PackEntry>> = BTreeMap::new();
    let mut found = HashSet::new();
    for (pack, blobs) in index.blobs_by_pack() {
        let Some(info) = index.pack_info(&pack) else {
            continue;
        };
        if *info.domain != *domain {
            continue;
        }
        for (id, loc) in blobs {
            let key = RefKey::from(&id);
            if !needed.contains(&key) || !found.insert(key) || target.contains(&id) {
                continue;
            }
            out.entry(pack).or_default().push(PackEntry {
                id,
                kind: loc.kind,
                offset: loc.offset,
                length: loc.length,
            });
        }
    }
    let missing = needed.len() - found.len();
    if missing > 0 {
        return Err(Error::Damaged(format!(
            "{missing} blob(s) the handed-over snapshots need are in no pack of their key domain \
             '{domain}'; nothing was handed over. Run 'custodian check' on the old repository."
        )));
    }
    Ok(out)
}

/// Sessions of the domain's frames in packs an interrupted run left behind (now adopted). Its
/// reference-list packs are sealed under this repository's own metadata sessions: not these.
fn sessions_in(
    to: &Repository,
    packs: &[crate::format::index::IndexPack],
    domain: &str,
) -> Result<BTreeSet<SessionId>> {
    let mut out = BTreeSet::new();
    for pack in packs.iter().filter(|p| p.domain == domain) {
        let bytes = to.get_pack(&pack.id)?;
        for b in &pack.blobs {
            let start = b.offset as usize;
            if let Some(frame) = bytes.get(start..start + b.length as usize) {
                out.extend(crate::crypto::blob_seal::frame_session(frame));
            }
        }
    }
    Ok(out)
}

/// What names a handover in its list.
struct Names<'a> {
    id: &'a str,
    domain: &'a str,
    /// The handover operator's recipient.
    operator: &'a str,
}

fn manifest(
    from: &Repository,
    to: &Repository,
    opts: &PrepareOptions,
    names: &Names,
    snapshots: Handed,
    holds: &HashMap<SnapshotId, crate::repository::Hold>,
) -> Result<Manifest> {
    let Names {
        id,
        domain,
        operator: handover_operator,
    } = *names;
    let store = to.store_for_mirror();
    let mut listed = Vec::new();
    let mut totals = Totals::default();
    let mut previous: Option<String> = None;
    for (snap, new) in &snapshots {
        let stored = store.get(&format!("snapshots/{new}"))?;
        let s = &snap.head.stats;
        totals.snapshots += 1;
        totals.files += s.files;
        totals.bytes += s.bytes;
        listed.push(HandedSnapshot {
            id: new.to_hex(),
            old_id: snap.id.to_hex(),
            time: snap.head.time.clone(),
            host: snap.head.host.clone(),
            files: s.files,
            dirs: s.dirs,
            bytes: s.bytes,
            head_hash: hex::encode(crate::id::content_hash(&stored)),
            parent: previous.replace(new.to_hex()),
            holds: holds
                .get(&snap.id)
                .map(|h| h.reason.clone())
                .into_iter()
                .collect(),
        });
    }
    let index = to.load_index()?;
    let packs: Vec<HandedPack> = index
        .packs
        .iter()
        .map(|p| HandedPack {
            id: p.id.to_hex(),
            size: p.size,
        })
        .collect();
    totals.packs = packs.len() as u64;
    totals.pack_bytes = packs.iter().map(|p| p.size).sum();
    totals.blobs = index.blob_count() as u64;
    let sessions: Vec<String> = to
        .list(crate::format::ObjectKind::Session)?
        .into_iter()
        .filter_map(|o| o.name.rsplit('/').next().map(str::to_string))
        .collect();
    totals.sessions = sessions.len() as u64;
    let fingerprint = to.auth().map(|a| a.fingerprint.clone()).unwrap_or_default();
    Ok(Manifest {
        version: HANDOVER_VERSION,
        id: id.to_string(),
        created: now(),
        reason: opts.reason.clone(),
        classification: opts.classification.clone(),
        purpose: opts.purpose.clone(),
        source: opts.source.clone(),
        domain: domain.to_string(),
        from: Party {
            repository: from.location(),
            repository_id: from.config.repo_id.to_hex(),
            key: hex::encode(ObjectSigner::for_operator(&opts.identity).public()),
        },
        to: Party {
            repository: to.location(),
            repository_id: to.config.repo_id.to_hex(),
            key: opts.to_recipient.clone(),
        },
        trust_fingerprint: fingerprint,
        handover_operator: handover_operator.to_string(),
        snapshots: listed,
        packs,
        sessions,
        totals,
        retention: retention_text(holds, &snapshots),
        exclusions: from.exclusions(Some(&opts.source))?.len() as u64,
        destruction: past_destruction(from, domain, &opts.source)?,
        audit: opts.audit.clone(),
    })
}

/// The retention that goes along: the holds on handed-over snapshots other than this
/// handover's own (retention policies live in the daemon's config, not in the repository).
fn retention_text(
    holds: &std::collections::HashMap<SnapshotId, crate::repository::Hold>,
    snapshots: &[(SnapshotInfo, SnapshotId)],
) -> String {
    let held = snapshots
        .iter()
        .filter(|(s, _)| holds.contains_key(&s.id))
        .count();
    format!(
        "{held} of {} snapshots under hold, carried over to the new repository with their \
         reasons; retention policies are the receiving daemon's config.",
        snapshots.len()
    )
}

fn past_destruction(from: &Repository, domain: &str, source: &str) -> Result<Vec<PastDestruction>> {
    Ok(from
        .destruction_records()?
        .into_iter()
        .filter(|r| {
            r.domain.as_deref() == Some(domain) || r.snapshots.iter().any(|s| s.source == source)
        })
        .map(|r| PastDestruction {
            action: r.action,
            time: r.time,
            by: r.by,
            snapshots: r.snapshots.len() as u64,
            note: r.note,
        })
        .collect())
}

fn now() -> String {
    crate::when::rfc3339(crate::clock::now())
}
