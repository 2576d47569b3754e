//! `handover accept`: the new owner checks the signed list against its repository (every
//! snapshot, count, pack and hash, and nothing more than listed), drills a restore, signs a
//! receipt, then takes the repository over: the handover operator goes, and with it the old
//! owner's last way in.

use super::{read_limited, read_signed, short, sign_document, state_of, write_signed, SignedFiles};
use crate::backend::Backend;
use crate::crypto::sign::ObjectSigner;
use crate::error::{Error, Result};
use crate::format::handover::*;
use crate::repository::{Credential, Principal, Repository};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How much of the latest snapshot the drill restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillMode {
    Full,
    /// A few top-level entries, picked at random.
    Sample,
}

/// What `accept` is asked to do.
pub struct AcceptOptions {
    pub dir: PathBuf,
    pub to: Arc<dyn Backend>,
    /// The new owner's identity file.
    pub identity: PathBuf,
    /// The old owner's signing key, confirmed out of band: the list must be signed by it.
    pub from_key: String,
    pub drill: DrillMode,
    pub state_dir: PathBuf,
    /// Where to write a fresh writer credential for the new owner's server.
    pub writer_key_out: Option<PathBuf>,
    pub reason: String,
}

/// What `accept` did.
pub struct Accepted {
    pub manifest: Manifest,
    pub receipt: Receipt,
    pub writer: Option<String>,
}

/// Check, drill, sign the receipt, take over.
pub fn accept(opts: &AcceptOptions) -> Result<Accepted> {
    let files = SignedFiles {
        json: super::LIST_FILE,
        sig: super::LIST_SIG,
    };
    let (doc, manifest, signer) =
        read_signed::<Manifest>(&opts.dir, &files, MANIFEST_KIND, |m| m.id.clone())?;
    let identity = crate::crypto::keys::load_first_identity(&opts.identity)?;
    check_parties(&manifest, &signer, &opts.from_key, &identity)?;
    let pins = opts.state_dir.join("trust");
    crate::repository::trust::confirm(opts.to.as_ref(), &pins, &manifest.trust_fingerprint)?;
    let own_key = hex::encode(ObjectSigner::for_operator(&identity).public());
    let operator = handover_operator(opts, &manifest, &identity)?;
    if let Ok(handover) = Repository::open_pinned(
        opts.to.clone(),
        &Credential::Operator(operator.clone()),
        Some(pins.clone()),
    ) {
        handover.add_operator_key(&identity.to_public().to_string(), &own_key)?;
    }
    let repo = Repository::open_pinned(
        opts.to.clone(),
        &Credential::Operator(opts.identity.clone()),
        Some(pins),
    )?;
    let intent =
        crate::audit::Intent::read("handover accept", &opts.reason).source(Some(&manifest.source));
    let begun = crate::audit::begin(&repo, &intent, None, None)?;
    let result = check_and_take_over(&repo, opts, &manifest, &doc, &own_key, &identity, &operator);
    crate::audit::close(
        &repo,
        &begun,
        if result.is_ok() { "ok" } else { "failed" },
        None,
    );
    let (receipt, writer) = result?;
    Ok(Accepted {
        manifest,
        receipt,
        writer,
    })
}

/// The list must be signed by the key it names as the old owner's (and the one confirmed out of
/// band, when given), and made out to this identity.
fn check_parties(
    m: &Manifest,
    signer: &[u8; 32],
    from_key: &str,
    identity: &age::x25519::Identity,
) -> Result<()> {
    if hex::encode(signer) != m.from.key {
        return Err(Error::Untrusted(format!(
            "the handover list names signing key {} as the old owner's but was signed by {}: \
             it was altered. Do not accept it.",
            m.from.key,
            hex::encode(signer)
        )));
    }
    if !from_key.trim().eq_ignore_ascii_case(&m.from.key) {
        return Err(Error::Untrusted(format!(
            "the handover list was signed by {}, not by the key you confirmed ({from_key}): it \
             does not come from the old owner. Do not accept it.",
            m.from.key
        )));
    }
    if identity.to_public().to_string() != m.to.key {
        return Err(Error::Refused(format!(
            "the handover list is made out to {}, not to this identity ({}); accept it with \
             the identity it names.",
            m.to.key,
            identity.to_public()
        )));
    }
    Ok(())
}

/// Unseal the handover operator (sealed to this identity) into this machine's state dir.
fn handover_operator(
    opts: &AcceptOptions,
    m: &Manifest,
    identity: &age::x25519::Identity,
) -> Result<PathBuf> {
    let dir = state_of(&opts.state_dir, &m.id);
    crate::fsutil::private_dir(&dir)?;
    let path = dir.join("operator.key");
    if !path.exists() {
        let sealed = read_limited(&opts.dir.join(super::OPERATOR_FILE), 64 << 10)?;
        let plain = crate::crypto::open_with(
            &[identity],
            &sealed,
            "the handover operator",
            "It is sealed to the new owner's identity named in the list.",
        )?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| Error::Untrusted("the handover operator is not a key file".into()))?;
        crate::crypto::keys::write_private(&path, &text)?;
    }
    let ids = crate::crypto::keys::load_identity_file(&path)?;
    match ids.as_slice() {
        [one] if one.to_public().to_string() == m.handover_operator => Ok(path),
        _ => Err(Error::Untrusted(format!(
            "{} does not hold exactly the handover operator the list names ({}): it was \
             altered. Do not accept it.",
            super::OPERATOR_FILE,
            m.handover_operator
        ))),
    }
}

fn check_and_take_over(
    repo: &Repository,
    opts: &AcceptOptions,
    m: &Manifest,
    doc: &crate::repository::SignedDocument,
    own_key: &str,
    identity: &age::x25519::Identity,
    operator: &Path,
) -> Result<(Receipt, Option<String>)> {
    let mut checked = Vec::new();
    let mut problems = registry_problems(repo, m, false)?;
    checked.push("operators: the handover operator and this identity only; no auditor".into());
    problems.extend(verify(repo, m, &mut checked)?);
    if !problems.is_empty() {
        return Err(Error::Untrusted(format!(
            "the repository does not hold what handover list {} says; nothing was accepted and \
             no receipt was written. Ask the old owner to run 'custodian handover prepare' \
             again, then accept again. What differs:\n  - {}",
            m.id,
            problems.join("\n  - ")
        )));
    }
    // The page a person signs off is made again from the list just verified.
    super::write_file(
        &opts.dir.join(super::PAGE_FILE),
        super::page::render(m).as_bytes(),
    )?;
    let drill = drill(repo, m, opts)?;
    if !drill.passed {
        return Err(Error::Refused(format!(
            "the restore drill of snapshot {} failed; nothing was accepted. 'custodian drill' \
             on the receiving repository shows the details.",
            drill.snapshot
        )));
    }
    let receipt = Receipt {
        version: HANDOVER_VERSION,
        handover: m.id.clone(),
        manifest_hash: hex::encode(crate::id::content_hash(doc.json.as_bytes())),
        time: crate::when::rfc3339(crate::clock::now()),
        signed_by: own_key.to_string(),
        snapshots: m.snapshots.len() as u64,
        packs: m.packs.len() as u64,
        pack_bytes: m.totals.pack_bytes,
        checked,
        drill,
    };
    let json = serde_json::to_string_pretty(&receipt)
        .map_err(|e| Error::Internal(format!("internal error: the receipt did not encode: {e}")))?;
    let signed = sign_document(
        &ObjectSigner::for_operator(identity),
        RECEIPT_KIND,
        &m.id,
        json,
    );
    let files = SignedFiles {
        json: super::RECEIPT_FILE,
        sig: super::RECEIPT_SIG,
    };
    let writer = take_over(repo, m, opts, operator)?;
    repo.put_handover_document(&m.id, "receipt", &signed)?;
    // Last: a receipt in the directory means the new owner holds everything.
    write_signed(&opts.dir, &files, &signed)?;
    Ok((receipt, writer))
}

/// Every listed snapshot, pack and session is there with its hash and counts, and nothing else
/// is: returns what differs, each item by name.
fn verify(repo: &Repository, m: &Manifest, checked: &mut Vec<String>) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let store = repo.store_for_mirror();
    let present: BTreeMap<String, _> = repo
        .list_snapshots_strict()?
        .into_iter()
        .map(|s| (s.id.to_hex(), s))
        .collect();
    for s in &m.snapshots {
        let Some(info) = present.get(&s.id) else {
            problems.push(format!(
                "snapshot {} ({}) is on the list but not in the repository",
                short(&s.id),
                s.time
            ));
            continue;
        };
        let stored = store.get(&format!("snapshots/{}", s.id))?;
        let st = &info.head.stats;
        if hex::encode(crate::id::content_hash(&stored)) != s.head_hash {
            problems.push(format!(
                "snapshot {} differs from the list: its head hash",
                short(&s.id)
            ));
        } else if (st.files, st.dirs, st.bytes) != (s.files, s.dirs, s.bytes)
            || info.head.time != s.time
            || info.head.source != m.source
        {
            problems.push(format!(
                "snapshot {} differs from the list: its counts",
                short(&s.id)
            ));
        }
    }
    let listed: BTreeSet<&str> = m.snapshots.iter().map(|s| s.id.as_str()).collect();
    for (id, info) in &present {
        if !listed.contains(id.as_str()) {
            problems.push(format!(
                "snapshot {} (source '{}', {}) is in the repository but not on the list",
                short(id),
                info.head.source,
                info.head.time
            ));
        }
    }
    checked.push(format!(
        "{} snapshots: head hashes and counts",
        m.snapshots.len()
    ));
    verify_packs(repo, m, &mut problems)?;
    checked.push(format!(
        "{} packs: present, sizes, content hashes",
        m.packs.len()
    ));
    let sessions: BTreeSet<String> = repo
        .list(crate::format::ObjectKind::Session)?
        .into_iter()
        .filter_map(|o| o.name.rsplit('/').next().map(str::to_string))
        .collect();
    for s in &m.sessions {
        if !sessions.contains(s) {
            problems.push(format!(
                "session key {s} is on the list but not in the repository"
            ));
        }
    }
    let listed: BTreeSet<&String> = m.sessions.iter().collect();
    for s in sessions.iter().filter(|s| !listed.contains(s)) {
        problems.push(format!(
            "session key {} is in the repository but not on the list",
            short(s)
        ));
    }
    problems.extend(records_problems(repo, m)?);
    checked.push("holds and erase exclusions as listed".into());
    checked.push(format!("{} session keys present", m.sessions.len()));
    let sums = (
        m.snapshots.len() as u64,
        m.snapshots.iter().map(|s| s.files).sum::<u64>(),
        m.snapshots.iter().map(|s| s.bytes).sum::<u64>(),
        m.packs.len() as u64,
        m.packs.iter().map(|p| p.size).sum::<u64>(),
    );
    let t = &m.totals;
    if sums != (t.snapshots, t.files, t.bytes, t.packs, t.pack_bytes) {
        problems.push("the list's totals do not add up to its items".into());
    }
    checked.push("totals add up".into());
    let report = crate::check::check(repo, None, &Default::default())?;
    problems.extend(report.errors.iter().map(|e| format!("check: {e}")));
    checked.push("check: index, trees and reference lists complete".into());
    Ok(problems)
}

/// Each listed pack is stored, with its size, and hashes to its name; no other pack is stored.
fn verify_packs(repo: &Repository, m: &Manifest, problems: &mut Vec<String>) -> Result<()> {
    let stored: BTreeMap<String, u64> = repo
        .store_for_mirror()
        .list("packs/")?
        .into_iter()
        .filter_map(|o| Some((o.name.rsplit('/').next()?.to_string(), o.size)))
        .collect();
    for p in &m.packs {
        match stored.get(&p.id) {
            None => problems.push(format!(
                "pack {} ({} bytes) is on the list but not in the repository",
                short(&p.id),
                p.size
            )),
            Some(size) if *size != p.size => problems.push(format!(
                "pack {} is {size} bytes, the list says {}",
                short(&p.id),
                p.size
            )),
            Some(_) => {
                let id = p.id.parse().map_err(|_| {
                    Error::Untrusted(format!(
                        "the list names pack '{}', which is not a pack id",
                        p.id
                    ))
                })?;
                let bytes = repo.get_pack(&id)?;
                if hex::encode(crate::id::content_hash(&bytes)) != p.id {
                    problems.push(format!("pack {} does not match its hash", short(&p.id)));
                }
            }
        }
    }
    let listed: BTreeSet<&str> = m.packs.iter().map(|p| p.id.as_str()).collect();
    for id in stored.keys() {
        if !listed.contains(id.as_str()) {
            problems.push(format!(
                "pack {} is in the repository but not on the list",
                short(id)
            ));
        }
    }
    Ok(())
}

/// Restore the latest handed-over snapshot (all of it, or a sample) and check every file
/// against the snapshot, as a drill does.
fn drill(repo: &Repository, m: &Manifest, opts: &AcceptOptions) -> Result<DrillResult> {
    let started = Instant::now();
    let scope = match opts.drill {
        DrillMode::Full => Vec::new(),
        DrillMode::Sample => sample_scope(repo, m)?,
    };
    let long = std::time::Duration::from_secs(100 * 365 * 86_400);
    let rb = crate::runbook::Runbook {
        file: PathBuf::from("handover"),
        id: format!("handover-{}", short(&m.id)),
        title: format!("Handover {} of {}", m.id, m.source),
        sources: vec![m.source.clone()],
        owner: "new owner".into(),
        rto: long,
        rpo: long,
        rpo_window: long,
        schedule: None,
        select: crate::runbook::Select::Latest,
        scope,
        restore_target: None,
        checks: Default::default(),
        body: String::new(),
    };
    let report = crate::drill::drill(
        repo,
        &rb,
        &crate::drill::DrillOptions {
            scratch_parent: opts.state_dir.clone(),
            now: crate::clock::now(),
        },
    )?;
    let source = report.sources.first();
    let expected = m.snapshots.last();
    let whole = opts.drill == DrillMode::Sample
        || source
            .zip(expected)
            .is_some_and(|(s, e)| s.files == e.files && s.bytes == e.bytes);
    Ok(DrillResult {
        mode: if opts.drill == DrillMode::Full {
            "full"
        } else {
            "sample"
        }
        .into(),
        snapshot: source.map(|s| s.snapshot.clone()).unwrap_or_default(),
        files: source.map_or(0, |s| s.files),
        bytes: source.map_or(0, |s| s.bytes),
        passed: report.passed && whole,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Up to three top-level entries of the latest snapshot, picked at random.
fn sample_scope(repo: &Repository, m: &Manifest) -> Result<Vec<String>> {
    let latest = m
        .snapshots
        .last()
        .ok_or_else(|| Error::Untrusted("the handover list names no snapshot".into()))?;
    let snap = repo.resolve_snapshot(&latest.id, Some(&m.source))?;
    let Some(root) = snap.head.root.subtree else {
        return Ok(Vec::new());
    };
    let index = repo.load_index()?;
    let reader = crate::repository::BlobReader::new(repo, &index);
    let plain = reader.read_many(&[root])?;
    let tree = crate::repository::decode_tree(&root, plain.get(&root).map_or(&[][..], |v| v))?;
    let mut names: Vec<String> = tree
        .nodes
        .iter()
        .filter_map(|n| String::from_utf8(n.name.0.clone()).ok())
        .collect();
    let mut picked = Vec::new();
    while picked.len() < 3 && !names.is_empty() {
        picked.push(names.swap_remove(rand::random::<usize>() % names.len()));
    }
    Ok(picked)
}

/// The new owner takes over: the handover operator (whose identity the old owner made) is
/// removed, which rotates the metadata key and gives the domain an identity the old owner never
/// held; the writer credential made at creation is revoked and a fresh one issued.
fn take_over(
    repo: &Repository,
    m: &Manifest,
    opts: &AcceptOptions,
    operator: &Path,
) -> Result<Option<String>> {
    let handover = crate::crypto::keys::load_first_identity(operator)?;
    let recipient = handover.to_public().to_string();
    let made_by = format!(
        "operator {}",
        crate::crypto::sign::key_id(&ObjectSigner::for_operator(&handover).public())
    );
    let in_office = repo
        .auth()
        .is_some_and(|a| a.list.current_operators().any(|o| o.recipient == recipient));
    if in_office {
        repo.remove_operator(&recipient)?;
    }
    // Each registry change is made on a freshly opened repository (the trust list moved on).
    let reopen = || {
        Repository::open_pinned(
            repo.store_for_mirror(),
            &Credential::Operator(opts.identity.clone()),
            Some(opts.state_dir.join("trust")),
        )
    };
    reopen()?.reseal_for_operators()?;
    let earlier: Vec<String> = reopen()?
        .auth()
        .map(|a| {
            a.list
                .writers
                .iter()
                .filter(|w| w.revoked.is_none() && w.added_by.as_deref() == Some(&made_by))
                .map(|w| w.id.clone())
                .collect()
        })
        .unwrap_or_default();
    for id in earlier {
        reopen()?.revoke_writer(&id)?;
    }
    let after = registry_problems(&reopen()?, m, true)?;
    if !after.is_empty() {
        return Err(Error::Refused(format!(
            "after the take-over, the repository's registry still lists others: {}. Nothing \
             was signed; remove them with 'custodian access' and accept again.",
            after.join("; ")
        )));
    }
    let Some(out) = &opts.writer_key_out else {
        return Ok(None);
    };
    let name = format!("{} server", m.source);
    let issued = reopen()?.issue_writer(
        &Principal {
            name: &name,
            expires: None,
        },
        out,
    )?;
    Ok(Some(issued.id))
}

/// Who may read the repository: before the take-over exactly the handover operator the list
/// names and this owner, afterwards this owner alone; no auditor either way (entries are
/// sealed to auditors). Anyone else was put there by the old side, and would keep its access.
fn registry_problems(repo: &Repository, m: &Manifest, taken_over: bool) -> Result<Vec<String>> {
    let list = &repo
        .auth()
        .ok_or_else(|| Error::Untrusted("the receiving repository has no trust list".into()))?
        .list;
    let allowed: BTreeSet<&str> = if taken_over {
        [m.to.key.as_str()].into()
    } else {
        [m.to.key.as_str(), m.handover_operator.as_str()].into()
    };
    let mut problems: Vec<String> = list
        .current_operators()
        .filter(|o| !allowed.contains(o.recipient.as_str()))
        .map(|o| {
            format!(
                "operator {} is not the new owner nor the handover operator",
                o.recipient
            )
        })
        .collect();
    problems.extend(
        list.auditors
            .iter()
            .map(|a| format!("auditor {} was added before the take-over", a.recipient)),
    );
    Ok(problems)
}

/// The holds and erase exclusions that came along must be the ones listed: they decide what
/// the new owner may forget and what its backups leave out.
fn records_problems(repo: &Repository, m: &Manifest) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let holds: BTreeMap<String, String> = repo
        .holds()?
        .into_iter()
        .map(|(id, h)| (id.to_hex(), h.reason))
        .collect();
    for s in &m.snapshots {
        if holds.get(&s.id).into_iter().collect::<Vec<_>>() != s.holds.iter().collect::<Vec<_>>() {
            problems.push(format!(
                "snapshot {} is held otherwise than listed",
                short(&s.id)
            ));
        }
    }
    let listed: BTreeSet<&str> = m.snapshots.iter().map(|s| s.id.as_str()).collect();
    for id in holds.keys().filter(|id| !listed.contains(id.as_str())) {
        problems.push(format!(
            "a hold on {} is in the repository but not on the list",
            short(id)
        ));
    }
    let exclusions = repo.exclusions(Some(&m.source))?.len() as u64;
    if exclusions != m.exclusions {
        problems.push(format!(
            "the repository holds {exclusions} erase exclusion(s) for the store, the list says {}",
            m.exclusions
        ));
    }
    Ok(problems)
}
