//! `handover complete`: the old owner checks the new owner's signed receipt against its own
//! list, releases the handover's holds, and either crypto-shreds the store's key domain at once
//! or keeps it, readable only by the operators granted it, until a date; the daemon's retention
//! run destroys it then.

use super::{read_signed, SignedFiles};
use crate::error::{Error, Result};
use crate::format::handover::*;
use crate::repository::{DomainDestroyed, Repository};
use std::path::PathBuf;

/// What happens to the old copy.
pub enum Disposal {
    Destroy,
    /// Kept until this time (RFC 3339), then destroyed by the daemon's retention run.
    RetainUntil(String),
}

/// What `complete` is asked to do.
pub struct CompleteOptions {
    pub dir: PathBuf,
    /// The new owner's signing key, confirmed out of band: the receipt must be signed by it.
    pub to_key: String,
    pub disposal: Disposal,
    pub local_dir: PathBuf,
    /// This operator's identity: the list must be its own.
    pub identity: age::x25519::Identity,
}

/// What `complete` did.
pub struct Completed {
    pub manifest: Manifest,
    pub receipt: Receipt,
    pub holds_released: usize,
    pub destroyed: Option<crate::repository::DestructionRecord>,
}

/// Check the receipt, release this handover's holds, and dispose of the old copy.
pub fn complete(repo: &Repository, opts: &CompleteOptions) -> Result<Completed> {
    let (list, manifest, signer) = read_signed::<Manifest>(
        &opts.dir,
        &SignedFiles {
            json: super::LIST_FILE,
            sig: super::LIST_SIG,
        },
        MANIFEST_KIND,
        |m| m.id.clone(),
    )?;
    let own = crate::crypto::sign::ObjectSigner::for_operator(&opts.identity).public();
    let stored = repo.handover_document(&manifest.id, "list")?;
    if signer != own || stored.as_ref().map(|d| &d.json) != Some(&list.json) {
        return Err(Error::Untrusted(format!(
            "the handover list in {} is not the one this repository keeps for handover {} (or \
             was not signed by this identity): complete the handover with the directory \
             'prepare' wrote, as the operator who ran it.",
            opts.dir.display(),
            manifest.id
        )));
    }
    let receipt = check_receipt(opts, &manifest, &list)?;
    refuse_unlisted(repo, &manifest)?;
    record_accept(repo, &manifest, &receipt.0)?;
    repo.put_handover_document(&manifest.id, "receipt", &receipt.1)?;
    let receipt = receipt.0;
    let holds_released = release_own_holds(repo, &manifest)?;
    let (state, until, plan, destroyed) = match &opts.disposal {
        Disposal::Destroy => {
            let record = match repo.destroy_domain(&manifest.domain, false, &opts.local_dir)? {
                DomainDestroyed::Now(r) | DomainDestroyed::Earlier(r) => Some(r),
                DomainDestroyed::WouldDestroy { .. } => None,
            };
            ("destroyed", None, None, record)
        }
        Disposal::RetainUntil(t) => {
            let plan = repo.retention_plan(&manifest.domain)?;
            ("retained", Some(t.clone()), Some(plan), None)
        }
    };
    repo.mark_handed_over(&HandedOver {
        version: HANDOVER_VERSION,
        handover: manifest.id.clone(),
        domain: manifest.domain.clone(),
        to: manifest.to.repository.clone(),
        time: manifest.created.clone(),
        state: state.into(),
        until,
        plan,
    })?;
    Ok(Completed {
        manifest,
        receipt,
        holds_released,
        destroyed,
    })
}

/// The receipt must be signed by the key it names (and the one confirmed out of band, when
/// given), cover exactly this list, and report a passed drill.
fn check_receipt(
    opts: &CompleteOptions,
    m: &Manifest,
    list: &crate::repository::SignedDocument,
) -> Result<(Receipt, crate::repository::SignedDocument)> {
    let (doc, receipt, signer) = read_signed::<Receipt>(
        &opts.dir,
        &SignedFiles {
            json: super::RECEIPT_FILE,
            sig: super::RECEIPT_SIG,
        },
        RECEIPT_KIND,
        |r| r.handover.clone(),
    )?;
    let refuse = |why: String| {
        Err(Error::Untrusted(format!(
            "the receipt for handover {} is refused: {why}. Nothing was released or destroyed; \
             ask the new owner to run 'custodian handover accept' again.",
            m.id
        )))
    };
    if hex::encode(signer) != receipt.signed_by {
        return refuse("it was not signed by the key it names".into());
    }
    let k = &opts.to_key;
    if !k.trim().eq_ignore_ascii_case(&receipt.signed_by) {
        return refuse(format!(
            "it was signed by {}, not by the new owner's key you confirmed ({k})",
            receipt.signed_by
        ));
    }
    if receipt.handover != m.id
        || receipt.manifest_hash != hex::encode(crate::id::content_hash(list.json.as_bytes()))
    {
        return refuse("it covers another handover list".into());
    }
    if !receipt.drill.passed || receipt.snapshots != m.snapshots.len() as u64 {
        return refuse("it does not confirm every snapshot with a passed drill".into());
    }
    Ok((receipt, doc))
}

/// Release the holds this handover placed (their reason names it); any other hold stays.
fn release_own_holds(repo: &Repository, m: &Manifest) -> Result<usize> {
    let prefix = format!("handover {}:", m.id);
    let mut released = 0;
    for (id, hold) in repo.holds()? {
        let ours =
            hold.reason.starts_with(&prefix) && m.snapshots.iter().any(|s| s.old_id == id.to_hex());
        if ours && repo.release(&id)? {
            released += 1;
        }
    }
    Ok(released)
}

/// Every snapshot of the store must be on the list: one that is not (a backup that finished
/// after the list was made, or one past `--snapshot`) never reached the new owner, and
/// destroying the store would lose it for both sides.
fn refuse_unlisted(repo: &Repository, m: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<&str> =
        m.snapshots.iter().map(|s| s.old_id.as_str()).collect();
    let unlisted: Vec<String> = repo
        .list_snapshots_strict()?
        .into_iter()
        .filter(|s| s.head.domain == m.domain && !listed.contains(s.id.to_hex().as_str()))
        .map(|s| format!("{} ({})", s.id.short(), s.head.time))
        .collect();
    if unlisted.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "store '{}' holds snapshot(s) the handover list does not: {}. They never reached the \
         new owner, and completing would destroy them; nothing was changed. Forget them \
         ('custodian forget') if they are not needed, or hand them over first.",
        m.domain,
        unlisted.join(", ")
    )))
}

/// The new owner's accept, in this repository's log too (it cannot write here itself): who
/// signed the receipt, when, and what its drill found.
fn record_accept(repo: &Repository, m: &Manifest, r: &Receipt) -> Result<()> {
    let reason = format!(
        "receipt of handover {} signed by {} at {}: {} snapshot(s), {} packs checked; {} drill of \
         {} files passed",
        m.id, r.signed_by, r.time, r.snapshots, r.packs, r.drill.mode, r.drill.files
    );
    let intent = crate::audit::Intent::write("handover accept", &reason).source(Some(&m.source));
    let begun = crate::audit::begin(repo, &intent, None, None)?;
    crate::audit::close(repo, &begun, "ok", None);
    Ok(())
}
