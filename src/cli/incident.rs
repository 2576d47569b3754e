//! `custodian diff`, `find` and `dump`: the incident responder's tools (operator identity).

use super::common::{self, human_bytes};
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::Intent;
use custodian::incident;
use custodian::pattern::Pattern;
use custodian::repository::BlobReader;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The earlier snapshot (id prefix or `latest`).
    from: String,
    /// The later snapshot.
    to: String,
    /// Which source `latest` means.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    read: super::ReadArgs,
}

#[derive(clap::Args)]
pub struct FindArgs {
    /// A glob: without '/' it matches a name anywhere (`'*.sqlite'`), with '/' a path from the
    /// snapshot root (`'branch-01/clients/CUST-0004*'`).
    pattern: String,
    /// Only snapshots of this source.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    read: super::ReadArgs,
}

#[derive(clap::Args)]
pub struct DumpArgs {
    /// SNAPSHOT:PATH, e.g. latest:branch-01/ledger.sqlite
    target: String,
    /// Which source `latest` means.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
}

pub fn diff(args: DiffArgs) -> Result<u8> {
    let repo = common::open_operator(&args.read.repo, &args.read.keys, "diff")?;
    let source = args.source.as_deref();
    let a = repo.resolve_snapshot(&args.from, source)?;
    let b = repo.resolve_snapshot(&args.to, source)?;
    let audit = common::audit(
        &repo,
        Intent::read("diff", "")
            .source(Some(&b.head.source))
            .snapshots([a.id.to_hex(), b.id.to_hex()]),
    )?;
    let index = repo.load_index()?;
    let reader = BlobReader::new(&repo, &index);
    let changes = incident::diff(&reader, &a, &b)?;
    audit.done("ok", Some(touched(changes.len())));
    if args.read.json {
        common::print_json(&changes)?;
        return Ok(0);
    }
    for c in &changes {
        let size = match (c.size_before, c.size_after) {
            (Some(x), Some(y)) if x != y => format!("{} → {}", human_bytes(x), human_bytes(y)),
            (_, Some(y)) => human_bytes(y),
            (Some(x), None) => human_bytes(x),
            (None, None) => String::new(),
        };
        let mark = match c.change {
            "added" => "+",
            "removed" => "-",
            "modified" => "M",
            _ => "U",
        };
        outln!("{mark} {:<60} {size}", c.path);
    }
    let count = |k: &str| changes.iter().filter(|c| c.change == k).count();
    outln!(
        "{} → {}: {} added, {} removed, {} modified, {} metadata only",
        a.id.short(),
        b.id.short(),
        count("added"),
        count("removed"),
        count("modified"),
        count("metadata")
    );
    Ok(0)
}

pub fn find(args: FindArgs) -> Result<u8> {
    let repo = common::open_operator(&args.read.repo, &args.read.keys, "find")?;
    let pattern = Pattern::new(&args.pattern)?;
    let snaps: Vec<_> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|s| args.source.as_ref().is_none_or(|src| &s.head.source == src))
        .collect();
    let audit = common::audit(
        &repo,
        Intent::read("find", "")
            .source(args.source.as_deref())
            .snapshots(snaps.iter().map(|s| s.id.to_hex())),
    )?;
    let index = repo.load_index()?;
    let reader = BlobReader::new(&repo, &index);
    let found = incident::find(&reader, &snaps, &pattern)?;
    audit.done("ok", Some(touched(found.len())));
    if args.read.json {
        common::print_json(&found)?;
        return Ok(0);
    }
    for f in &found {
        // A listing's mtime is whatever its writer put there: any i64.
        let mtime = if f.mtime >= 0 {
            std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::from_secs(f.mtime.unsigned_abs()))
        } else {
            std::time::UNIX_EPOCH
                .checked_sub(std::time::Duration::from_secs(f.mtime.unsigned_abs()))
        };
        outln!(
            "{}  {}  {:<12} {:>10}  mtime {}  {}",
            custodian::id::short_text(&f.snapshot),
            custodian::when::show_stored(&f.time),
            f.source,
            human_bytes(f.size),
            mtime.map_or_else(|| f.mtime.to_string(), custodian::when::rfc3339),
            f.path
        );
    }
    let snapshots: std::collections::BTreeSet<&str> =
        found.iter().map(|f| f.snapshot.as_str()).collect();
    eprintln!(
        "{} match(es) in {} of {} snapshot(s)",
        found.len(),
        snapshots.len(),
        snaps.len()
    );
    Ok(if found.is_empty() { 1 } else { 0 })
}

pub fn dump(args: DumpArgs) -> Result<u8> {
    let (spec, path) = args.target.split_once(':').ok_or_else(|| {
        anyhow::anyhow!("write SNAPSHOT:PATH, e.g. latest:branch-01/ledger.sqlite")
    })?;
    let repo = common::open_operator(&args.repo, &args.keys, "dump")?;
    let snap = repo.resolve_snapshot(spec, args.source.as_deref())?;
    let audit = common::audit(
        &repo,
        Intent::read("dump", "")
            .source(Some(&snap.head.source))
            .snapshots([snap.id.to_hex()]),
    )?;
    let index = repo.load_index()?;
    let reader = BlobReader::new(&repo, &index);
    let path = PathBuf::from(path.trim_start_matches('/'));
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        let node = custodian::restorer::plan::descend(&reader, &snap.head.root, &path)?;
        if node.kind == custodian::format::tree::NodeKind::Dir {
            anyhow::bail!(
                "'{}' is a directory: dump writes it as a tar archive, which a terminal cannot \
                 show. Redirect it (> records.tar), pipe it (| tar -x), or use 'custodian \
                 restore {spec}:{}' to get the files back.",
                path.display(),
                path.display()
            );
        }
    }
    let mut out = std::io::BufWriter::new(stdout.lock());
    let dumped = custodian::dump::dump(&reader, &snap, &path, &mut out);
    audit.done(if dumped.is_ok() { "ok" } else { "failed" }, None);
    match dumped {
        Ok(_) => Ok(0),
        Err(custodian::Error::Io { cause, .. })
            if cause.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a listing command touched: how many entries it showed (never their names).
fn touched(shown: usize) -> custodian::audit::Touched {
    custodian::audit::Touched {
        files: shown as u64,
        bytes: 0,
    }
}
