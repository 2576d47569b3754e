//! Index at scale (issue #15): fills a repository's index with synthetic entries and measures
//! what opening it costs. Run by `bench/index.sh`; not a test.
//!
//!   index_scale fill REPO WRITER_KEY BLOBS   # write BLOBS synthetic index entries
//!   index_scale open REPO WRITER_KEY         # load the index: time, RSS, bytes per blob, lookups
//!
//! Entries name packs that do not exist: the index is all that is measured, and a backup into
//! the repository afterwards dedups against it (and stores its own blobs) as it would at scale.

use custodian::format::index::IndexPack;
use custodian::format::{BlobKind, PackEntry};
use custodian::id::{BlobId, PackId};
use custodian::repository::{Credential, Repository};
use std::time::Instant;

/// Blobs per synthetic pack: small chunks, as a store of millions of notes makes.
const PER_PACK: usize = 4096;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_scale fill REPO WRITER_KEY BLOBS | open REPO WRITER_KEY";
    let (mode, repo, key) = match args.as_slice() {
        [_, mode, repo, key, ..] => (mode.as_str(), repo, key),
        _ => anyhow::bail!(usage),
    };
    let backend = custodian::backend::open(repo)?;
    let repo = Repository::open(backend, &Credential::Writer(key.into()))?;
    match mode {
        "fill" => {
            let blobs: usize = args
                .get(4)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!(usage))?;
            fill(&repo, blobs)
        }
        "open" => open(&repo),
        _ => anyhow::bail!(usage),
    }
}

fn fill(repo: &Repository, blobs: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let per_object = custodian::constants::BLOBS_PER_INDEX;
    let mut written = 0;
    while written < blobs {
        let n = per_object.min(blobs - written);
        let packs = (0..n.div_ceil(PER_PACK))
            .map(|p| {
                let count = PER_PACK.min(n - p * PER_PACK);
                IndexPack {
                    id: PackId::random(),
                    domain: "synthetic".into(),
                    size: (count as u64) * 2048 + 4096,
                    blobs: (0..count)
                        .map(|i| PackEntry {
                            id: BlobId(rand::random()),
                            kind: BlobKind::Data,
                            offset: i as u64 * 2048,
                            length: 2048,
                        })
                        .collect(),
                }
            })
            .collect();
        repo.write_index(packs)?;
        written += n;
    }
    println!(
        "{{\"filled\": {blobs}, \"objects\": {}, \"seconds\": {:.1}}}",
        blobs.div_ceil(per_object),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn open(repo: &Repository) -> anyhow::Result<()> {
    let before = rss_kib("VmRSS:");
    let started = Instant::now();
    let index = repo.load_index()?;
    let load = started.elapsed().as_secs_f64();
    let after = rss_kib("VmRSS:");
    let peak = rss_kib("VmHWM:");
    let count = index.blob_count().max(1);
    // Lookups: every hundredth stored id, and as many ids that are not stored.
    let probes: Vec<BlobId> = index.blob_ids().step_by(100).collect();
    let started = Instant::now();
    let mut hits = 0;
    for id in &probes {
        hits += usize::from(index.dedupable(id));
        hits += usize::from(index.dedupable(&BlobId(rand::random())));
    }
    let per_second = (2 * probes.len()) as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        hits == probes.len(),
        "lookups found {hits} of {}",
        probes.len()
    );
    println!(
        "{{\"blobs\": {count}, \"load_seconds\": {load:.2}, \"rss_mib\": {:.1}, \"peak_rss_mib\": {:.1}, \
         \"index_bytes_per_blob\": {:.1}, \"lookups_per_second\": {per_second:.0}}}",
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        (after.saturating_sub(before) * 1024) as f64 / count as f64,
    );
    Ok(())
}
