//! `custodian report`: the evidence an auditor asks for, in one command, from the audit log
//! alone (an auditor's identity is enough): `report.html` (charts as inline SVG, no script)
//! and the same facts in `report.json`.

use super::audit::{since, Reader};
use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::{Context, Result};
use custodian::audit::report::{facts, Window};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The period: a time, or a duration ago.
    #[arg(long, default_value = "90d")]
    since: String,
    /// Only this source's backups, drills, reads and destruction.
    #[arg(long)]
    source: Option<String>,
    /// The loss window promised for backups: a day whose longest gap between good backups
    /// is longer misses it.
    #[arg(long, default_value = "24h")]
    rpo: humantime::Duration,
    /// The folder to write report.html and report.json into (created if needed).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

/// Run `report`: exit 0, or 1 when the audit log did not verify (the page says so too).
pub fn report(args: ReportArgs) -> Result<u8> {
    let reader = Reader::open(&args.repo, &args.keys)?;
    let (location, repo_id) = reader.anchor_key();
    let kept = common::audit_local().anchor(&location, repo_id)?;
    let store = reader.store()?;
    let verified = custodian::audit::verify::verify(&store, kept.as_ref(), 2)?;
    let records = reader.records()?;
    let window = Window {
        since: since(&args.since)?,
        now: custodian::clock::now(),
        source: args.source.clone(),
        rpo: args.rpo.into(),
    };
    let facts = facts(&location, &records, &verified, &window);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let html = args.out.join("report.html");
    let json = args.out.join("report.json");
    std::fs::write(&html, custodian::audit::html::render(&facts))
        .with_context(|| format!("cannot write {}", html.display()))?;
    std::fs::write(&json, serde_json::to_vec_pretty(&facts)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    outln!(
        "wrote {} and {}: {} source(s), {} drill(s), {} read(s), audit log {}",
        html.display(),
        json.display(),
        facts.sources.len(),
        facts.drills.len(),
        facts.reads.len(),
        if facts.audit.verified {
            "verified"
        } else {
            "FAILED verification"
        }
    );
    Ok(if facts.audit.verified { 0 } else { 1 })
}
