//! `check [--read-data [--read-data-subset N%|n/m]]`.

use super::common::{self, human_bytes};
use super::progress::Bar;
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::auditor::AuditorView;
use custodian::check::{check, CheckProgress, Subset};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Download packs and verify every blob (operator identity).
    #[arg(long)]
    read_data: bool,
    /// Only part of the packs: `10%` (random) or `2/5` (part 2 of 5). Implies --read-data.
    #[arg(long)]
    read_data_subset: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: CheckArgs) -> Result<u8> {
    let subset = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => Some(Subset::parse(s)?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let repo = if subset.is_some() {
        common::open_operator(&args.repo, &args.keys, "check --read-data")?
    } else {
        match common::open(&args.repo, &args.keys, "check") {
            Ok(repo) => repo,
            Err(e) => {
                return auditor_check(&args, &super::audit::as_auditor(&args.repo, &args.keys, e)?)
            }
        }
    };
    let audit = match subset {
        Some(_) => Some(common::audit(
            &repo,
            custodian::audit::Intent::read("check --read-data", ""),
        )?),
        None => None,
    };
    let progress = Arc::new(CheckProgress::default());
    let bar = {
        let p = progress.clone();
        Bar::start(common::interactive(args.json), "check", false, move || {
            (
                p.done.load(Ordering::Relaxed),
                p.total.load(Ordering::Relaxed),
            )
        })
    };
    let report = check(&repo, subset, &progress)?;
    drop(bar);
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["requests"] = serde_json::to_value(common::requests())?;
        common::print_json(&value)?;
    } else {
        outln!(
            "checked {} snapshots, {} packs, {} blobs; read {} packs ({})",
            report.snapshots,
            report.packs,
            report.blobs,
            report.packs_read,
            human_bytes(report.bytes_read)
        );
        for w in &report.warnings {
            outln!("warning: {w}");
        }
        for e in &report.errors {
            outln!("error: {e}");
        }
        outln!(
            "{}",
            if report.errors.is_empty() {
                "no errors were found"
            } else {
                "the repository has errors"
            }
        );
    }
    let code = if report.errors.is_empty() { 0 } else { 1 };
    if let Some(audit) = audit {
        let touched = custodian::audit::Touched {
            files: report.packs_read,
            bytes: report.bytes_read,
        };
        audit.exit(code, Some(touched));
    }
    Ok(code)
}

/// `check` by an auditor (an identity on the registry's auditors, not an operator): every
/// object's signature and signer, hash names and pack names; nothing is decrypted.
fn auditor_check(args: &CheckArgs, view: &AuditorView) -> Result<u8> {
    let (checked, bad) =
        custodian::repository::verify_signatures(view.backend.as_ref(), &view.auth)?;
    if args.json {
        let errors: Vec<String> = bad.iter().map(|(o, why)| format!("{o}: {why}")).collect();
        common::print_json(&serde_json::json!({
            "auditor": true, "objects": checked, "errors": errors,
        }))?;
    } else {
        for (object, why) in &bad {
            outln!("error: {object}: {why}");
        }
        outln!(
            "auditor check: {checked} objects' signatures and signers verified against the \
             trust list{}; contents are not read (that needs an operator)",
            if bad.is_empty() { ", no errors" } else { "" }
        );
    }
    Ok(if bad.is_empty() { 0 } else { 1 })
}
