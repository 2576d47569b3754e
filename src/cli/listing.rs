//! `snapshots` and `ls`.

use super::common::{self, human_bytes};
use super::{FilterArgs, KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::Intent;
use custodian::format::tree::{Name, Node, NodeKind};
use custodian::repository::BlobReader;
use custodian::restorer::plan::descend;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only the newest N of each source and host.
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
    /// Only snapshots taken before this time: RFC 3339 (2026-11-20T08:00:00Z, or with an
    /// offset), or a local time without a zone (2026-11-20 09:00).
    #[arg(long, value_parser = custodian::when::parse)]
    before: Option<custodian::when::Moment>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Snapshot id prefix, or `latest`.
    snapshot: String,
    /// Directory inside the snapshot to list (default: everything).
    path: Option<PathBuf>,
    /// Source, for `latest`.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn snapshots(args: SnapshotsArgs) -> Result<u8> {
    if let Some(reading) = args.before.and_then(|m| m.reading("--before")) {
        eprintln!("{reading}");
    }
    let repo = common::open(&args.repo, &args.keys, "listing snapshots")?;
    let holds = repo.holds()?;
    let scan = repo.scan_snapshots()?;
    for (name, reason) in &scan.damaged {
        eprintln!("skipped {name}: it is damaged or forged ({reason}). Run 'custodian check'.");
    }
    common::known_source(&scan.good, args.filter.source.as_deref())?;
    let filter = args.filter.filter();
    let mut list: Vec<_> = scan
        .good
        .iter()
        .filter(|s| filter.matches(s))
        .filter(|s| args.before.is_none_or(|t| s.time < t.time))
        .collect();
    if let Some(n) = args.latest {
        // Lineage order is oldest first within each source and host: keep each group's tail.
        let keep: std::collections::HashSet<_> = custodian::retention::groups(list.iter().copied())
            .into_values()
            .flat_map(|g| g.into_iter().rev().take(n).map(|s| s.id))
            .collect();
        list.retain(|s| keep.contains(&s.id));
    }
    if args.json {
        let out: Vec<_> = list
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id.to_hex(), "short_id": s.id.short(), "time": s.head.time, "source": s.head.source,
                    "domain": s.head.domain, "host": s.head.host, "path": s.head.root_path, "tags": s.head.tags,
                    "parent": s.head.parent.map(|p| p.to_hex()), "stats": s.head.stats, "skipped": s.head.skipped,
                    "suspicious": s.head.changes.as_ref().is_some_and(|c| c.suspicious), "changes": s.head.changes,
                    "held": holds.get(&s.id).map(|h| &h.reason), "writer": s.writer,
                    "rewritten": s.head.rewritten.is_some(), "rewritten_from": s.head.rewritten.as_ref().map(|r| r.from.to_hex()),
                })
            })
            .collect();
        common::print_json(&out)?;
        return Ok(0);
    }
    outln!(
        "{:<10} {:<26} {:<14} {:<12} {:>8} {:>10} {:>7}  tags / flags",
        "id",
        format!("time ({})", custodian::when::zone_label()),
        "source",
        "host",
        "files",
        "size",
        "skipped"
    );
    for s in &list {
        let time = custodian::when::show(s.time);
        let mut flag = match &s.head.changes {
            Some(c) if c.suspicious => format!("  SUSPICIOUS ({})", c.reasons.join("; ")),
            _ => String::new(),
        };
        if let Some(h) = holds.get(&s.id) {
            flag.push_str(&format!("  HELD ({})", h.reason));
        }
        if let Some(w) = &s.writer {
            flag.push_str(&format!("  by {w}"));
        }
        if let Some(r) = &s.head.rewritten {
            flag.push_str(&format!(
                "  REWRITTEN ({} {})",
                r.reason,
                &r.time[..10.min(r.time.len())]
            ));
        }
        outln!(
            "{:<10} {:<26} {:<14} {:<12} {:>8} {:>10} {:>7}  {}{flag}",
            s.id.short(),
            time,
            s.head.source,
            s.head.host,
            s.head.stats.files,
            human_bytes(s.head.stats.bytes),
            s.head.skipped,
            s.head.tags.join(",")
        );
    }
    outln!("{} snapshot(s)", list.len());
    // Counted, never named: the patterns are customer paths ('custodian exclusions' shows them).
    let mut excluded: std::collections::BTreeMap<String, usize> = Default::default();
    // A damaged or forged exclusion stops backups (they must not store erased files again),
    // but the listing still answers, and says so.
    match repo.exclusions(args.filter.source.as_deref()) {
        Ok(list) => {
            for (_, e) in list {
                *excluded.entry(e.source).or_default() += 1;
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    for (source, n) in excluded {
        outln!("source {source}: {n} erased path pattern(s) left out of later backups ('custodian exclusions')");
    }
    Ok(0)
}

pub fn ls(args: LsArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "ls (listing file names)")?;
    let snap = repo.resolve_snapshot(&args.snapshot, args.source.as_deref())?;
    let audit = common::audit(
        &repo,
        Intent::read("ls", "")
            .source(Some(&snap.head.source))
            .snapshots([snap.id.to_hex()]),
    )?;
    let index = repo.load_index()?;
    let reader = BlobReader::new(&repo, &index);
    reader.limit_walk(snap.walk_allowance());
    let start = args.path.clone().unwrap_or_default();
    let root = descend(&reader, &snap.head.root, &start)?;
    if let Some(subtree) = root.subtree {
        // Best effort: on a damaged tree, the walk below reads it alone and reports the error.
        let _ = reader.prefetch_trees(&subtree);
    }
    let mut rows = Vec::new();
    let base = Path::new("/").join(&start);
    if root.kind == NodeKind::Dir {
        walk(&reader, &root, &base, &mut rows)?;
    } else {
        rows.push((base, root));
    }
    if args.json {
        let out: Vec<_> = rows.iter().map(|(p, n)| entry_json(p, n)).collect();
        common::print_json(&out)?;
    } else {
        for (path, node) in &rows {
            let suffix = match (&node.kind, &node.target) {
                (NodeKind::Symlink, Some(t)) => format!(" -> {}", t.display()),
                (NodeKind::Dir, _) => "/".into(),
                _ => String::new(),
            };
            outln!("{}{suffix}", path.display());
        }
    }
    audit.done(
        "ok",
        Some(custodian::audit::Touched {
            files: rows.len() as u64,
            bytes: 0,
        }),
    );
    Ok(0)
}

fn walk(
    reader: &BlobReader,
    dir: &Node,
    path: &Path,
    rows: &mut Vec<(PathBuf, Node)>,
) -> Result<()> {
    let Some(tree_id) = dir.subtree else {
        return Ok(());
    };
    custodian::format::tree::check_depth(path)?;
    for node in reader.tree(&tree_id)?.nodes {
        let child = path.join(node.name.as_os());
        rows.push((child.clone(), node.clone()));
        if node.kind == NodeKind::Dir {
            walk(reader, &node, &child, rows)?;
        }
    }
    Ok(())
}

fn entry_json(path: &Path, node: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": Name::from_os(path.as_os_str()),
        "type": node.kind,
        "size": node.size,
        "mode": format!("{:04o}", node.mode),
        "uid": node.uid,
        "gid": node.gid,
        "mtime": mtime_text(node),
        "target": node.target,
        "chunks": node.content.iter().map(|c| c.0.to_hex()).collect::<Vec<_>>(),
    })
}

/// A node's mtime as RFC 3339 with nanoseconds, as every other time in JSON output (chrono:
/// a hostile listing may carry any mtime, before 1970 or far beyond 9999).
fn mtime_text(node: &Node) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(node.mtime, node.mtime_ns)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| format!("{}.{:09}", node.mtime, node.mtime_ns))
}
