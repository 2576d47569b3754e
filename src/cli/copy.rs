//! `custodian copy`: mirror snapshots into another repository of the same key set.

use super::common::{self, human_bytes};
use super::KeyArgs;
use anyhow::Result;
use custodian::backend::Counting;
use custodian::copy::{copy, CopyOptions};
use custodian::repository::Repository;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct CopyArgs {
    /// Repository to copy from (a local path or s3://BUCKET/PREFIX).
    #[arg(long)]
    from: String,
    /// Repository to copy to: an empty location (the mirror is created there, with the same
    /// keys) or a mirror made by an earlier copy.
    #[arg(long)]
    to: String,
    /// Only snapshots of this source.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    keys: KeyArgs,
    /// Print the completeness summary as JSON.
    #[arg(long)]
    json: bool,
    /// Snapshots to copy (`latest` or id prefixes); all of them when none is given.
    snapshots: Vec<String>,
}

pub fn run(args: CopyArgs) -> Result<u8> {
    let credential = common::credential(&args.keys, "copy")?;
    let from_backend = Arc::new(Counting::new(custodian::backend::open(&args.from)?));
    let to_backend = Arc::new(Counting::new(custodian::backend::open(&args.to)?));
    let pin_dir = Some(common::state_dir().join("trust"));
    let from = Repository::open_pinned(from_backend.clone(), &credential, pin_dir.clone())?;
    let intent = custodian::audit::Intent::write("copy", "").source(args.source.as_deref());
    let audit = common::audit(&from, intent.clone())?;
    let mut dest_intent = intent;
    dest_intent.reason = common::reason().unwrap_or_default();
    let opts = CopyOptions {
        source: args.source,
        snapshots: args.snapshots,
        pin_dir,
        audit: Some((dest_intent, Some(common::audit_local()))),
    };
    let report = copy(&from, to_backend.clone(), &credential, &opts)?;
    audit.done("ok", None);
    if args.json {
        common::print_json(&serde_json::json!({
            "from": {"repository": args.from, "objects": report.from.objects,
                     "bytes": report.from.bytes, "requests": from_backend.counts()},
            "to": {"repository": args.to, "objects": report.to.objects,
                   "bytes": report.to.bytes, "requests": to_backend.counts()},
            "objects_copied": report.objects_copied,
            "bytes_copied": report.bytes_copied,
            "objects_skipped": report.objects_skipped,
            "objects_verified": report.objects_verified,
            "snapshots": report.snapshots,
        }))?;
        return Ok(0);
    }
    for s in &report.snapshots {
        outln!(
            "snapshot {} ({}, {}): {}, {} packs present and whole",
            custodian::id::short_text(&s.id),
            s.source,
            s.time,
            s.status,
            s.packs
        );
    }
    outln!(
        "copied {} objects ({}), {} already there; {} read back and verified",
        report.objects_copied,
        human_bytes(report.bytes_copied),
        report.objects_skipped,
        report.objects_verified
    );
    outln!(
        "{}: {} objects, {}\n{}: {} objects, {}",
        args.from,
        report.from.objects,
        human_bytes(report.from.bytes),
        args.to,
        report.to.objects,
        human_bytes(report.to.bytes)
    );
    Ok(0)
}
