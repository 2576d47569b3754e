//! Key domains that a crash left half-made. A writer creates a domain with two records, the
//! operators' (`.operator`, holding the identity) first and its own (`.writer`, naming the hash of
//! the `.operator` object) second. A first backup killed between the two leaves `.operator`
//! alone; two creators racing can leave a `.writer` whose hash names another `.operator`.
//! Neither is ever used: no data can have been sealed to such a domain, because a writer seals
//! only after reading a matching pair. So rolling it back (deleting exactly the bytes seen)
//! destroys nothing, and the next backup creates the domain afresh. A creator still between its
//! two writes would be rolled back too, so the state must stay unchanged for [`settle_time`]
//! first: creation takes seconds, the settle time is 30.

use super::Repository;
use crate::crypto::DomainKeys;
use crate::error::{Error, Result};
use crate::format::keys::DomainWriterRecord;
use crate::format::ObjectKind;
use std::time::{Duration, Instant};

/// How long a half-made domain must stay unchanged before a writer rolls it back
/// (`CUSTODIAN_TEST_DOMAIN_SETTLE` shortens it for tests).
pub fn settle_time() -> Duration {
    std::env::var("CUSTODIAN_TEST_DOMAIN_SETTLE")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(30))
}

/// What a domain's two records say.
pub enum DomainState {
    Absent,
    Usable(DomainKeys),
    /// `.operator` without `.writer`.
    HalfCreated {
        operator: Vec<u8>,
    },
    /// A `.writer` whose `.operator` is missing or other than the one it was made with.
    Mismatched {
        writer: Vec<u8>,
        operator: Option<Vec<u8>>,
    },
}

/// Whether a half-made state has stayed exactly the same for a while (this process's clock).
#[derive(Default)]
pub struct Stuck {
    seen: Option<([u8; 32], Instant)>,
}

impl Stuck {
    /// True once `state` has been seen unchanged for `settle`.
    pub fn unchanged_for(&mut self, state: &DomainState, settle: Duration) -> bool {
        let mut h = blake3::Hasher::new();
        match state {
            DomainState::HalfCreated { operator } => h.update(operator),
            DomainState::Mismatched { writer, operator } => h
                .update(writer)
                .update(operator.as_deref().unwrap_or_default()),
            _ => return false,
        };
        let now = *h.finalize().as_bytes();
        match self.seen {
            Some((was, since)) if was == now => since.elapsed() >= settle,
            _ => {
                self.seen = Some((now, Instant::now()));
                false
            }
        }
    }
}

impl Repository {
    /// Read a domain's records (`base` is its object name without suffix).
    pub(super) fn domain_state(&self, base: &str, name: &str) -> Result<DomainState> {
        let (writer_name, operator_name) = (format!("{base}.writer"), format!("{base}.operator"));
        let Some(writer) = self.backend.get_if_present(&writer_name)? else {
            return Ok(match self.backend.get_if_present(&operator_name)? {
                Some(operator) => DomainState::HalfCreated { operator },
                None => DomainState::Absent,
            });
        };
        let rec: DomainWriterRecord =
            self.open_meta(ObjectKind::DomainWriter, &writer_name, &writer)?;
        if rec.name != name {
            // Records of two domains swapped: backing up into the other domain's keys would mix
            // two owners' data.
            return Err(Error::Damaged(format!(
                "{writer_name} holds the keys of another key domain, not of '{name}': the \
                 repository's key records were swapped or forged. Nothing was backed up; ask an \
                 operator to run 'custodian check'."
            )));
        }
        if let Some(hash) = &rec.operator_hash {
            let operator = self.backend.get_if_present(&operator_name)?;
            let matches = operator
                .as_deref()
                .is_some_and(|o| hex::encode(crate::id::content_hash(o)) == *hash);
            if !matches {
                return Ok(DomainState::Mismatched { writer, operator });
            }
            self.refuse_planted(
                name,
                &operator_name,
                operator.as_deref().unwrap_or_default(),
            )?;
        }
        Ok(DomainState::Usable(DomainKeys {
            name: rec.name,
            dedup_key: super::keyring::decode_hex_key(&rec.dedup_key, "domain record")?,
            chunker_seed: rec.chunker_seed,
            recipient: crate::crypto::keys::parse_recipient(&rec.recipient, "domain recipient")?,
            identity: None,
            older: Vec::new(),
        }))
    }

    /// After an operator change, an existing domain's new pair must come from an operator:
    /// one a writer signed was planted (by a stolen credential) to choose the keys of every
    /// later backup.
    fn refuse_planted(&self, name: &str, object: &str, operator: &[u8]) -> Result<()> {
        if self.auth().is_none() {
            return Ok(());
        }
        if self.key_generation() == 0
            || self.signed_by_granted(object, operator, name)
            || self.earlier_domain_keys(name)?.is_none()
        {
            return Ok(());
        }
        Err(Error::Damaged(format!(
            "{object}, the new key generation of domain '{name}', was written by a writer or by \
             an operator not granted it, not by the operator who changed the operators: a \
             planted key. Nothing was backed up; an operator granted every source reruns the \
             'custodian access' command that made the change, which replaces it."
        )))
    }

    /// Delete exactly the half-made records seen (never bytes someone wrote since).
    pub(super) fn roll_back_domain(
        &self,
        base: &str,
        name: &str,
        state: &DomainState,
    ) -> Result<()> {
        let (writer_name, operator_name) = (format!("{base}.writer"), format!("{base}.operator"));
        match state {
            DomainState::HalfCreated { operator } => {
                self.delete_if_unchanged(&operator_name, operator)?;
            }
            DomainState::Mismatched { writer, operator } => {
                self.delete_if_unchanged(&writer_name, writer)?;
                if let Some(operator) = operator {
                    self.delete_if_unchanged(&operator_name, operator)?;
                }
            }
            _ => return Ok(()),
        }
        tracing::warn!(
            domain = %name,
            "rolled back a half-created key domain (an interrupted first backup); creating it afresh"
        );
        Ok(())
    }

    /// Half-made domains, by object name, for `check` (harmless: never used, and the next
    /// backup of the source rolls them back).
    pub fn half_made_domains(&self) -> Result<Vec<String>> {
        let names = self.domain_record_names()?;
        let mut out = Vec::new();
        for name in &names {
            let Some(base) = name.strip_suffix(".operator") else {
                continue;
            };
            if !names.contains(&format!("{base}.writer")) {
                out.push(format!(
                    "{base}: key domain half-created by an interrupted first backup (harmless: \
                     never used; the next backup of its source rolls it back and creates it)"
                ));
            }
        }
        Ok(out)
    }
}
