//! Reading the log for people: each entry's sealed details opened with the caller's key (the
//! metadata key, or an auditor's identity), joined with the result its closing checkpoint gives.

use super::chain::{each_entry, Store};
use crate::error::{Error, Result};
use crate::format::audit::{
    parse_entry_name, Checkpoint, Closing, Details, AUDIT_VERSION, LOG_PREFIX, REVIEW_OP,
};
use serde::Serialize;
use std::collections::HashMap;

/// Largest sealed details an entry may carry.
const DETAILS_MAX: usize = 64 * 1024;

/// One entry as people read it.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    /// The key that signed the entry, as the trust list names it.
    pub signed_by: String,
    /// The signer's role as the trust list in force says (`None`: revoked or removed since).
    pub role: Option<&'static str>,
    /// Kept on an operator's machine and uploaded later (`--audit-offline`): the entry's
    /// plain flag, which no one can remove without breaking its signature.
    pub flagged_offline: bool,
    /// What the entry says; `None` when it was not sealed to the reader's key (an auditor
    /// added after it was written): its chain fields and signer are still shown and verified.
    #[serde(flatten)]
    pub details: Option<Details>,
    /// The command's result from its closing checkpoint (`None`: no checkpoint closed it, so
    /// the command ended before it could say).
    pub closed: Option<Closing>,
}

impl Record {
    /// "ok", "failed", … or "unknown (no closing checkpoint)".
    pub fn result(&self) -> &str {
        match (
            self.details.as_ref().and_then(|d| d.result.as_ref()),
            &self.closed,
        ) {
            (Some(r), _) => r,
            (None, Some(c)) => &c.result,
            (None, None) => "unknown",
        }
    }
}

/// Every entry in order, opened with `open` (sealed bytes to zstd JSON). An entry that fails
/// its checks stops the reading: `audit verify` says why.
pub fn read(
    store: &Store,
    open: &(dyn Fn(&[u8]) -> Result<Vec<u8>> + Sync),
    workers: usize,
) -> Result<Vec<Record>> {
    let mut seqs: Vec<u64> = store
        .backend
        .list(LOG_PREFIX)?
        .iter()
        .filter_map(|o| parse_entry_name(&o.name))
        .collect();
    seqs.sort_unstable();
    let closings = closings(store)?;
    let records = each_entry(store, &seqs, workers, |seq, found| {
        let entry = found?.ok_or_else(|| super::chain::bad(&format!("entry {seq}"), "vanished"))?;
        let closed = closing_by(&closings, seq, &entry.by);
        record(seq, entry, open, closed)
    });
    records.into_iter().collect()
}

/// Entry `seq` as people read it: its sealed details opened with `open` (`None` when they
/// were not sealed to the reader), and the result `closed` gives.
fn record(
    seq: u64,
    entry: super::chain::Entry,
    open: &(dyn Fn(&[u8]) -> Result<Vec<u8>> + Sync),
    closed: Option<Closing>,
) -> Result<Record> {
    let what = format!("audit entry {seq}");
    let sealed = hex::decode(&entry.body.sealed)
        .map_err(|_| super::chain::bad(&what, "holds details that are not hex"))?;
    let details: Option<Details> = match open(&sealed) {
        Ok(plain) => Some(crate::format::decode_packed(
            &plain,
            &what,
            AUDIT_VERSION,
            DETAILS_MAX,
        )?),
        Err(Error::Crypto(crate::error::CryptoError::NoMatchingKey { .. })) => None,
        Err(e) => return Err(e),
    };
    Ok(Record {
        seq,
        time: entry.body.time,
        signed_by: entry.by,
        role: entry.role,
        flagged_offline: entry.body.offline,
        details,
        closed,
    })
}

/// The sign-off of an access review, as the log holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Review {
    pub seq: u64,
    pub time: String,
    /// The trust list version approved.
    pub trust_seq: u64,
}

impl Review {
    /// The sign-off `r` is, if it is one: an access review entry signed by an operator in
    /// office, naming the trust list version approved.
    pub fn of(r: &Record) -> Option<Review> {
        let d = r.details.as_ref()?;
        (d.op == REVIEW_OP && r.role == Some("operator")).then_some(Review {
            seq: r.seq,
            time: r.time.clone(),
            trust_seq: d.reviewed?,
        })
    }
}

/// The newest access review signed off in entries `after+1 ..= head`, walking back from the
/// head (so a daemon that remembers `after` reads only what is new). Entries it cannot open
/// are skipped; a damaged one is an error.
pub fn last_review(
    store: &Store,
    open: &(dyn Fn(&[u8]) -> Result<Vec<u8>> + Sync),
    head: u64,
    after: u64,
) -> Result<Option<Review>> {
    for seq in (after + 1..=head).rev() {
        let Some(entry) = store.entry(seq)? else {
            continue;
        };
        if let Some(review) = Review::of(&record(seq, entry, open, None)?) {
            return Ok(Some(review));
        }
    }
    Ok(None)
}

/// Closings by entry, in checkpoint order, with their signers (bad checkpoints are left to
/// verify).
fn closings(store: &Store) -> Result<HashMap<u64, Vec<(Closing, String)>>> {
    let mut out: HashMap<u64, Vec<(Closing, String)>> = HashMap::new();
    for (_, checkpoint) in store.checkpoints()? {
        if let Ok((
            Checkpoint {
                closes: Some(c), ..
            },
            by,
        )) = checkpoint
        {
            out.entry(c.seq).or_default().push((c, by));
        }
    }
    Ok(out)
}

/// Entry `seq`'s result: the first closing signed by the key that signed the entry. Another
/// key's closing (a writer closing an operator's unclosed entry) does not count, and a later
/// one cannot rewrite a command's result.
fn closing_by(
    closings: &HashMap<u64, Vec<(Closing, String)>>,
    seq: u64,
    by: &str,
) -> Option<Closing> {
    let key = |who: &str| who.trim_end_matches(" (before its revocation)").to_string();
    closings
        .get(&seq)?
        .iter()
        .find(|(_, signer)| key(signer) == key(by))
        .map(|(c, _)| c.clone())
}

/// Filters of `audit log` (restic style: all must match).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub source: Option<String>,
    pub since: Option<std::time::SystemTime>,
    /// A credential or operator id, or a registry name (substring, any case).
    pub actor: Option<String>,
}

impl Query {
    /// Whether `r` passes every filter.
    pub fn matches(&self, r: &Record) -> bool {
        let d = r.details.as_ref();
        let source = self
            .source
            .as_ref()
            .is_none_or(|s| d.and_then(|d| d.source.as_deref()) == Some(s.as_str()));
        let since = self
            .since
            .is_none_or(|since| humantime::parse_rfc3339_weak(&r.time).is_ok_and(|t| t >= since));
        let actor = self.actor.as_ref().is_none_or(|a| {
            let a = a.to_lowercase();
            r.signed_by.to_lowercase().contains(&a)
                || d.and_then(|d| d.name.as_ref())
                    .is_some_and(|n| n.to_lowercase().contains(&a))
        });
        source && since && actor
    }
}
