//! The chain of entries in the store: finding its head, appending after it, and verifying all
//! of it. Needs only the store and the trust list ([`Auth`]): no key that opens anything, so an
//! auditor verifies with the same code as the daemon appends.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::audit::{
    checkpoint_name, entry_name, parse_checkpoint_name, parse_entry_name, Checkpoint, EntryBody,
    AUDIT_VERSION, CHECKPOINT_PREFIX, LOG_PREFIX,
};
use crate::format::{decode_json, ObjectKind};
use crate::repository::trust::Auth;
use std::time::Duration;

/// The last entry: its number (0 for an empty log) and `hex(H(stored bytes))`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Option<String>,
}

/// The store and the trust list that says whose signatures count.
pub struct Store<'a> {
    pub backend: &'a dyn Backend,
    pub auth: &'a Auth,
}

/// A verified entry: its body, the hash of its stored bytes and who signed it.
pub struct Entry {
    pub body: EntryBody,
    pub hash: String,
    pub by: String,
    /// The signer's role, if its key is in force ("operator", "writer", "auditor").
    pub role: Option<&'static str>,
}

impl Store<'_> {
    /// Fetch entry `seq` and check its signature, signer, size and number; `None` if absent.
    pub fn entry(&self, seq: u64) -> Result<Option<Entry>> {
        let name = entry_name(seq);
        let Some(stored) = self.backend.get_if_present(&name)? else {
            return Ok(None);
        };
        self.open_entry(&name, seq, &stored).map(Some)
    }

    fn open_entry(&self, name: &str, seq: u64, stored: &[u8]) -> Result<Entry> {
        if stored.len() as u64 > ObjectKind::AuditEntry.max_stored() {
            return Err(bad(name, "is larger than any audit entry may be"));
        }
        let (body, by) = self.auth.verify(ObjectKind::AuditEntry, name, stored)?;
        let body: EntryBody = decode_json(body, name, AUDIT_VERSION)?;
        if body.seq != seq {
            return Err(bad(name, "holds another entry's number"));
        }
        let hash = hex::encode(crate::id::content_hash(stored));
        let role = self
            .auth
            .signer_role(ObjectKind::AuditEntry, name, stored)
            .map(|r| r.name());
        Ok(Entry {
            body,
            hash,
            by,
            role,
        })
    }

    /// The head, starting from `hint` (a head this process or machine saw before) and walking
    /// forward, or from a listing when there is no hint. A hint whose entry is gone or changed
    /// means the log was truncated or rewritten: refused.
    pub fn head(&self, hint: Option<&Head>) -> Result<Head> {
        match hint.filter(|h| h.seq > 0) {
            Some(h) => self.walk(self.check_hint(h)?, true),
            None => self.walk(self.listed_head()?, false),
        }
    }

    /// Walk forward from `head` to the last entry. `pinned`: `head` is one this machine saw
    /// before. An entry only read may have been the loser of a race that an S3 store let two
    /// writers win (see `Repository::create_exclusive`): if the next entry does not continue
    /// it, it is read again once, and the winner continues. A local disk's create is atomic,
    /// so there a mismatch is always damage.
    fn walk(&self, mut head: Head, mut pinned: bool) -> Result<Head> {
        loop {
            let Some(next) = self.entry(head.seq + 1)? else {
                return Ok(head);
            };
            if next.body.prev != head.hash && !pinned && !self.backend.atomic_create() {
                head = self.reread(head.seq)?;
            }
            if next.body.prev != head.hash {
                return Err(bad(
                    &entry_name(head.seq + 1),
                    "does not continue the chain before it",
                ));
            }
            head = Head {
                seq: head.seq + 1,
                hash: Some(next.hash),
            };
            pinned = false;
        }
    }

    /// Entry `seq` as the store holds it now, which must continue the entry before it: a
    /// store serving two signed entries under one number cannot splice the chain this way.
    fn reread(&self, seq: u64) -> Result<Head> {
        let name = entry_name(seq);
        let entry = self
            .entry(seq)?
            .ok_or_else(|| bad(&name, "vanished while it was read"))?;
        let before = match seq {
            0 | 1 => None,
            n => Some(
                self.entry(n - 1)?
                    .ok_or_else(|| bad(&entry_name(n - 1), "vanished while it was read"))?
                    .hash,
            ),
        };
        if entry.body.prev != before {
            return Err(bad(&name, "does not continue the chain before it"));
        }
        Ok(Head {
            seq,
            hash: Some(entry.hash),
        })
    }

    /// On a store whose create-if-absent may let two writers win, an entry just read may be a
    /// loser about to be overwritten, and chaining to it would fork the log. Such a loser is
    /// visible for at most one request's gap, so wait `settle` and read the entry again until it
    /// holds still. (Even a head this machine remembers may have been only read, by `audit
    /// verify`, so every head waits.)
    fn settled(&self, mut head: Head, settle: Duration) -> Result<Head> {
        for _ in 0..8 {
            if head.seq == 0 {
                return Ok(head);
            }
            std::thread::sleep(settle);
            let now = self.reread(head.seq)?;
            if now == head {
                return Ok(head);
            }
            head = self.walk(now, false)?;
        }
        Err(bad(
            &entry_name(head.seq),
            "kept changing while it was read (a store does not do that on its own)",
        ))
    }

    fn check_hint(&self, hint: &Head) -> Result<Head> {
        match self.entry(hint.seq)? {
            Some(e) if Some(&e.hash) == hint.hash.as_ref() => Ok(hint.clone()),
            Some(_) => Err(truncated(format!(
                "entry {} is not the one this machine saw: the log was rewritten",
                hint.seq
            ))),
            None => Err(truncated(format!(
                "entry {} is gone, though this machine saw it: the log was truncated",
                hint.seq
            ))),
        }
    }

    fn listed_head(&self) -> Result<Head> {
        let last = self
            .backend
            .list(LOG_PREFIX)?
            .iter()
            .filter_map(|o| parse_entry_name(&o.name))
            .max();
        let Some(seq) = last else {
            return Ok(Head::default());
        };
        let entry = self
            .entry(seq)?
            .ok_or_else(|| bad(&entry_name(seq), "vanished while it was read"))?;
        Ok(Head {
            seq,
            hash: Some(entry.hash),
        })
    }

    /// Append `make(head)` (the signed bytes of the next entry) after the head, retrying when
    /// another process took the number first. Returns the new head.
    /// `put_new` creates a name only if absent, and must be reliable on this store (see
    /// `Repository::create_exclusive`): two entries under one number would fork the chain.
    /// `settle`: on a store whose create-if-absent is not atomic, how long a racing loser's
    /// entry may stay visible (see [`Store::settled`]); `None` on a local disk.
    /// `steady`: a head known to have held still for a settle time already (this machine saw
    /// it that long ago, or wrote and verified it); if the log still ends there, no wait.
    pub fn append(
        &self,
        hint: Option<&Head>,
        settle: Option<Duration>,
        steady: Option<&Head>,
        make: impl Fn(&Head) -> Result<Vec<u8>>,
        put_new: impl Fn(&str, &[u8]) -> Result<bool>,
    ) -> Result<Head> {
        let mut head = self.head(hint)?;
        for _ in 0..64 {
            if let Some(settle) = settle {
                if steady != Some(&head) {
                    head = self.settled(head, settle)?;
                }
            }
            let stored = make(&head)?;
            let seq = head.seq + 1;
            if put_new(&entry_name(seq), &stored)? {
                let hash = hex::encode(crate::id::content_hash(&stored));
                return Ok(Head {
                    seq,
                    hash: Some(hash),
                });
            }
            // Another process took the number: walk on from what was read (not pinned: it
            // may itself have been a race's loser).
            head = self.walk(head, false)?;
        }
        Err(Error::Conflict(
            "the audit log grew under this command 64 times in a row; run it again".into(),
        ))
    }

    /// Store a checkpoint of `head`, closing entry `closes` (0: a periodic one).
    pub fn checkpoint(&self, head: &Head, body: &Checkpoint, closes: u64) -> Result<()> {
        let name = checkpoint_name(head.seq, closes);
        let json = crate::compress::json_bytes(body)?;
        let stored = self.auth.sign(ObjectKind::AuditCheckpoint, &name, json)?;
        self.backend.put_new(&name, &stored)?;
        Ok(())
    }

    /// Every checkpoint by name, verified (with who signed it) or with what is wrong with it
    /// (vanished ones left out).
    #[allow(clippy::type_complexity)]
    pub fn checkpoints(
        &self,
    ) -> Result<Vec<(String, std::result::Result<(Checkpoint, String), String>)>> {
        let mut out = Vec::new();
        for object in self.backend.list(CHECKPOINT_PREFIX)? {
            let opened = match parse_checkpoint_name(&object.name) {
                None => Err("is not a checkpoint name".to_string()),
                Some((count, _)) => match self.open_checkpoint(&object, count) {
                    Ok(None) => continue,
                    Ok(Some(c)) => Ok(c),
                    Err(e) => Err(e.to_string()),
                },
            };
            out.push((object.name, opened));
        }
        Ok(out)
    }

    fn open_checkpoint(
        &self,
        object: &crate::backend::ObjectInfo,
        count: u64,
    ) -> Result<Option<(Checkpoint, String)>> {
        if object.size > ObjectKind::AuditCheckpoint.max_stored() {
            return Err(bad(&object.name, "is larger than any checkpoint may be"));
        }
        let Some(stored) = self.backend.get_if_present(&object.name)? else {
            return Ok(None);
        };
        let (body, by) = self
            .auth
            .verify(ObjectKind::AuditCheckpoint, &object.name, &stored)?;
        let checkpoint: Checkpoint = decode_json(body, &object.name, AUDIT_VERSION)?;
        if checkpoint.count != count {
            return Err(bad(&object.name, "holds another checkpoint's count"));
        }
        Ok(Some((checkpoint, by)))
    }
}

/// Fetch and check entries `seqs` on `workers` threads, in order: `f` turns each outcome into
/// what the caller keeps.
pub fn each_entry<T: Send>(
    store: &Store,
    seqs: &[u64],
    workers: usize,
    f: impl Fn(u64, Result<Option<Entry>>) -> T + Sync,
) -> Vec<T> {
    let chunk = seqs.len().div_ceil(workers.max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = seqs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| f(*s, store.entry(*s))).collect()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h: std::thread::ScopedJoinHandle<'_, Vec<T>>| {
                // A panicking checker is a bug; its part is reported as unreadable below.
                h.join().unwrap_or_default()
            })
            .collect()
    })
}

/// An audit object that fails a check.
pub fn bad(object: &str, why: &str) -> Error {
    Error::Damaged(format!(
        "{object} {why}. The audit log was tampered with or damaged; run 'custodian audit \
         verify' and compare with a copy or a checkpoint kept elsewhere."
    ))
}

fn truncated(why: String) -> Error {
    Error::Untrusted(format!(
        "the repository's audit log does not match what this machine recorded: {why}. Nothing \
         was read or written. Run 'custodian audit verify', and keep the repository as it is for \
         the investigation."
    ))
}
