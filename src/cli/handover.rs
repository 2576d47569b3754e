//! `custodian handover prepare|accept|complete`: hand one record store to a new owner with a
//! handover list both sides sign (交接清单).

use super::common::{self, human_bytes};
use super::{KeyArgs, RepoArg};
use anyhow::{bail, Result};
use custodian::audit::Intent;
use custodian::format::handover::AuditPoint;
use custodian::handover::accept::{accept, AcceptOptions, DrillMode};
use custodian::handover::complete::{complete, CompleteOptions, Disposal};
use custodian::handover::{prepare, PrepareOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum HandoverCommand {
    /// Old owner: copy one store into the new owner's repository (created if the location is
    /// empty) without decrypting its data, and write the signed handover list to --out.
    Prepare(PrepareArgs),
    /// New owner: check the list against the repository, drill a restore, sign a receipt and
    /// take the repository over.
    Accept(AcceptArgs),
    /// Old owner, once the receipt is back: release the handover's holds and destroy the old
    /// copy now (--destroy) or keep it until a date (--retain-until).
    Complete(CompleteArgs),
}

#[derive(clap::Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// The record store handed over (every snapshot of it, up to --snapshot).
    #[arg(long)]
    source: String,
    /// The last snapshot handed over (default: the latest). Take a final backup first.
    #[arg(long)]
    snapshot: Option<String>,
    /// The new owner's repository: an empty location (created there with the new owner as
    /// operator), or one an interrupted prepare of this handover created.
    #[arg(long)]
    to_repo: String,
    /// The new owner's age recipient (age1…): the new repository is sealed to it.
    #[arg(long)]
    to_recipient: String,
    /// Classification of the records, for the list (free text).
    #[arg(long, default_value = "customer records, confidential")]
    classification: String,
    /// Purpose of the handover, for the list (free text).
    #[arg(long, default_value = "")]
    purpose: String,
    /// Directory for the handover list, its page and signature (created, mode 0700).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct AcceptArgs {
    /// The handover directory received from the old owner.
    dir: PathBuf,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Restore the latest snapshot whole (full) or a random sample of it.
    #[arg(long, default_value = "full", value_parser = ["full", "sample"])]
    drill: String,
    /// The old owner's signing key, as they told you over another channel (`prepare` and
    /// `custodian key show` print it): the list must be signed by it.
    #[arg(long)]
    from_key: String,
    /// Write a fresh writer credential for your server here (the one made at creation is
    /// revoked).
    #[arg(long)]
    writer_key_out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CompleteArgs {
    /// The handover directory, with the new owner's receipt in it.
    dir: PathBuf,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Keep the old copy until this time (the law's retention), then the daemon destroys it.
    #[arg(long, conflicts_with = "destroy", required_unless_present = "destroy")]
    retain_until: Option<String>,
    /// Crypto-shred the old copy now.
    #[arg(long)]
    destroy: bool,
    /// The new owner's signing key, as they told you over another channel (`accept` prints
    /// it): the receipt must be signed by it.
    #[arg(long)]
    to_key: String,
    #[arg(long)]
    json: bool,
}

pub fn handover(c: HandoverCommand) -> Result<u8> {
    match c {
        HandoverCommand::Prepare(a) => run_prepare(a),
        HandoverCommand::Accept(a) => run_accept(a),
        HandoverCommand::Complete(a) => run_complete(a),
    }
}

fn identity_of(keys: &KeyArgs) -> Result<age::x25519::Identity> {
    let Some(path) = &keys.identity else {
        bail!("a handover needs the operator identity (--identity)");
    };
    Ok(custodian::crypto::keys::load_first_identity(path)?)
}

fn run_prepare(a: PrepareArgs) -> Result<u8> {
    let Some(reason) = common::reason() else {
        bail!("a handover needs --reason (the contract or decision behind it): it goes into the list and both audit logs");
    };
    let identity = identity_of(&a.keys)?;
    let repo = common::open_operator(&a.repo, &a.keys, "handing a store over")?;
    let intent = Intent::write("handover prepare", "").source(Some(&a.source));
    let audit = common::audit(&repo, intent)?;
    let (entries, head) = audit.head().unwrap_or_default();
    let opts = PrepareOptions {
        source: a.source,
        snapshot: a.snapshot,
        to: Arc::new(custodian::backend::Counting::new(custodian::backend::open(
            &a.to_repo,
        )?)),
        to_recipient: a.to_recipient,
        reason,
        classification: a.classification,
        purpose: a.purpose,
        out: a.out.clone(),
        state_dir: common::state_dir(),
        identity,
        audit: AuditPoint { entries, head },
    };
    let done = prepare(&repo, &opts)?;
    audit.done("ok", None);
    let m = &done.manifest;
    if a.json {
        common::print_json(m)?;
        return Ok(0);
    }
    outln!(
        "handover {} prepared: {} snapshot(s), {} files ({}), {} packs ({}); {} blobs copied ({}) without decrypting",
        m.id,
        m.totals.snapshots,
        m.totals.files,
        human_bytes(m.totals.bytes),
        m.totals.packs,
        human_bytes(m.totals.pack_bytes),
        done.copied_blobs,
        human_bytes(done.copied_bytes)
    );
    outln!(
        "send {} to the new owner; they run 'custodian handover accept {} --repo {} --identity THEIR.key --from-key {}'",
        a.out.display(),
        a.out.display(),
        m.to.repository,
        m.from.key
    );
    outln!(
        "source '{}' is no longer backed up into this repository",
        m.source
    );
    Ok(0)
}

fn run_accept(a: AcceptArgs) -> Result<u8> {
    let Some(identity) = a.keys.identity.clone() else {
        bail!("accepting a handover needs your operator identity (--identity)");
    };
    let opts = AcceptOptions {
        dir: a.dir.clone(),
        to: common::backend(&a.repo)?,
        identity,
        from_key: a.from_key,
        drill: if a.drill == "sample" {
            DrillMode::Sample
        } else {
            DrillMode::Full
        },
        state_dir: common::state_dir(),
        writer_key_out: a.writer_key_out,
        reason: common::reason().unwrap_or_default(),
    };
    let done = accept(&opts)?;
    if a.json {
        common::print_json(&done.receipt)?;
        return Ok(0);
    }
    let r = &done.receipt;
    outln!(
        "handover {} accepted: {} snapshot(s) and {} packs ({}) checked; drill ({}) of snapshot {}: {} files, {} restored and verified in {:.1}s",
        r.handover,
        r.snapshots,
        r.packs,
        human_bytes(r.pack_bytes),
        r.drill.mode,
        custodian::id::short_text(&r.drill.snapshot),
        r.drill.files,
        human_bytes(r.drill.bytes),
        r.drill.seconds
    );
    outln!(
        "receipt signed by {} in {}; send it back to the old owner",
        r.signed_by,
        a.dir.display()
    );
    if let Some(id) = done.writer {
        outln!("writer credential {id} for your server; the one made at creation is revoked");
    }
    Ok(0)
}

fn run_complete(a: CompleteArgs) -> Result<u8> {
    let identity = identity_of(&a.keys)?;
    let repo = common::open_operator(&a.repo, &a.keys, "completing a handover")?;
    let disposal = match a.retain_until {
        Some(text) => {
            let moment = custodian::when::parse(&text).map_err(anyhow::Error::msg)?;
            Disposal::RetainUntil(custodian::when::rfc3339(moment.time))
        }
        None => Disposal::Destroy,
    };
    let audit = common::audit(&repo, Intent::write("handover complete", ""))?;
    let done = complete(
        &repo,
        &CompleteOptions {
            dir: a.dir,
            to_key: a.to_key,
            disposal,
            local_dir: common::state_dir().join("destruction"),
            identity,
        },
    )?;
    audit.done("ok", None);
    if a.json {
        common::print_json(&serde_json::json!({
            "handover": done.manifest.id,
            "receipt": done.receipt,
            "holds-released": done.holds_released,
            "destroyed": done.destroyed,
        }))?;
        return Ok(0);
    }
    outln!(
        "handover {} complete: receipt of {} signed by {} checked; {} hold(s) released",
        done.manifest.id,
        done.receipt.time,
        done.receipt.signed_by,
        done.holds_released
    );
    match &done.destroyed {
        Some(r) => outln!(
            "key domain '{}' destroyed: {} snapshot(s) forgotten, {} object(s) deleted; destruction record written",
            done.manifest.domain,
            r.snapshots.len(),
            r.objects_deleted
        ),
        None => outln!(
            "key domain '{}' kept for retention; the daemon's retention run destroys it when due",
            done.manifest.domain
        ),
    }
    Ok(0)
}
