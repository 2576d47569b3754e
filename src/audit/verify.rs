//! `audit verify`: every entry's signature and number, the chain of hashes, gaps, every
//! checkpoint against the entries, and the checkpoint this machine kept. Entries are fetched
//! and checked on every core; the chain is then walked once in order.

use super::chain::{Head, Store};
use crate::error::Result;
use crate::format::audit::{entry_name, parse_entry_name, LOG_PREFIX};
use serde::Serialize;

/// The outcome: what was checked, and the problems found, first one first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verified {
    pub entries: u64,
    pub head: Option<String>,
    pub checkpoints: u64,
    /// The newest checkpoint in the store: count and time.
    pub latest_checkpoint: Option<(u64, String)>,
    /// Entries kept offline and uploaded later (`--audit-offline`).
    pub offline_entries: u64,
    pub problems: Vec<Problem>,
}

/// One finding: the object and what is wrong with it.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub object: String,
    pub what: String,
}

/// Verify the whole log; `kept` is a head recorded outside the repository (this machine's
/// anchor), which the log must still contain.
pub fn verify(store: &Store, kept: Option<&Head>, workers: usize) -> Result<Verified> {
    let mut out = Verified::default();
    let mut seqs: Vec<u64> = Vec::new();
    for object in store.backend.list(LOG_PREFIX)? {
        match parse_entry_name(&object.name) {
            Some(seq) => seqs.push(seq),
            None => out.problem(
                &object.name,
                "is not an entry name: something else was put in the log",
            ),
        }
    }
    seqs.sort_unstable();
    let checked = fetch_all(store, &seqs, workers.max(1));
    let mut hashes: Vec<String> = Vec::with_capacity(seqs.len());
    for (expected, (seq, result)) in (1u64..).zip(seqs.iter().zip(checked)) {
        if *seq != expected {
            out.problem(&entry_name(expected), &gap(expected, *seq));
            break;
        }
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                out.problem(&entry_name(*seq), &e);
                break;
            }
        };
        if entry.prev.as_ref() != hashes.last() {
            out.problem(
                &entry_name(*seq),
                "does not continue the chain: its link to the entry before does not match (an \
                 entry was edited, swapped or reordered)",
            );
            break;
        }
        out.offline_entries += u64::from(entry.offline);
        hashes.push(entry.hash);
    }
    out.entries = hashes.len() as u64;
    out.head = hashes.last().cloned();
    check_points(store, &hashes, &mut out)?;
    if let Some(kept) = kept {
        check_head(
            &hashes,
            kept,
            "this machine's anchor (kept outside the repository)",
            &mut out,
        );
    }
    Ok(out)
}

impl Verified {
    fn problem(&mut self, object: &str, what: &str) {
        self.problems.push(Problem {
            object: object.to_string(),
            what: what.to_string(),
        });
    }
}

fn gap(expected: u64, found: u64) -> String {
    format!(
        "is missing (the log goes from entry {} to entry {found}): entries were deleted",
        expected - 1
    )
}

/// What the parallel pass learns of one entry.
struct Checked {
    prev: Option<String>,
    hash: String,
    offline: bool,
}

fn fetch_all(store: &Store, seqs: &[u64], workers: usize) -> Vec<Result<Checked, String>> {
    let mut out = super::chain::each_entry(store, seqs, workers, |_, found| match found {
        Ok(Some(e)) => Ok(Checked {
            prev: e.body.prev,
            hash: e.hash,
            offline: e.body.offline,
        }),
        Ok(None) => Err("vanished while the log was read".into()),
        Err(e) => Err(e.to_string()),
    });
    // A worker that panicked returned nothing: its entries count as unreadable.
    out.resize_with(seqs.len(), || Err("could not be checked".into()));
    out
}

fn check_points(store: &Store, hashes: &[String], out: &mut Verified) -> Result<()> {
    for (name, checkpoint) in store.checkpoints()? {
        let checkpoint = match checkpoint {
            Ok((c, _)) => c,
            Err(e) => {
                out.problem(&name, &e);
                continue;
            }
        };
        out.checkpoints += 1;
        let head = Head {
            seq: checkpoint.count,
            hash: Some(checkpoint.head.clone()),
        };
        check_head(hashes, &head, &format!("checkpoint {name}"), out);
        if out
            .latest_checkpoint
            .as_ref()
            .is_none_or(|(c, _)| *c < checkpoint.count)
        {
            out.latest_checkpoint = Some((checkpoint.count, checkpoint.time));
        }
    }
    Ok(())
}

/// A head recorded elsewhere must be in the log: entry `seq` present with that hash.
fn check_head(hashes: &[String], head: &Head, what: &str, out: &mut Verified) {
    if head.seq == 0 {
        return;
    }
    let found = usize::try_from(head.seq - 1)
        .ok()
        .and_then(|i| hashes.get(i));
    match found {
        Some(h) if Some(h) == head.hash.as_ref() => {}
        Some(_) => out.problem(
            &entry_name(head.seq),
            &format!("is not the entry {what} recorded: the log was rewritten from here"),
        ),
        None => out.problem(
            &entry_name(head.seq),
            &format!(
                "is missing: {what} saw {} entries, the log has {} verified: it was truncated",
                head.seq,
                hashes.len()
            ),
        ),
    }
}
