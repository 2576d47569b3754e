//! The access registry as the trust list states it: which keys may sign in which role (writers,
//! operators, auditors), who each one is called in entries and messages, revocations and their
//! inventories, expiry, and the checks a caller must pass to act in its role.

use super::trust::{parse_key, read_vouched_list, Anchor};
use crate::backend::Backend;
use crate::crypto::sign::key_id;
use crate::error::{Error, Result};
use crate::format::config::RepoConfig;
use crate::format::trust::{Migration, TrustList, TrustedWriter};
use std::collections::HashMap;

/// What the access registry lets a key do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Operator,
    Writer,
    Auditor,
}

impl Role {
    /// The role's name in entries and listings.
    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Writer => "writer",
            Role::Auditor => "auditor",
        }
    }
}

/// A key that may sign: who it is, in which role, and its name in the registry.
#[derive(Clone, Debug)]
pub struct Signer {
    pub who: String,
    pub role: Role,
    pub name: Option<String>,
}

pub(super) fn not_operator(list: &TrustList, recipient: &str) -> Error {
    if list.auditors.iter().any(|a| a.recipient == recipient) {
        return Error::NotListed {
            role: "operator",
            message: format!(
                "your identity ({recipient}) is an auditor of this repository: auditors verify \
                 the audit log and the repository's structure ('custodian audit verify', 'audit \
                 log', 'access list', 'check'), and never read records or file names."
            ),
        };
    }
    let operators: Vec<&str> = list
        .current_operators()
        .map(|o| o.recipient.as_str())
        .collect();
    Error::NotListed {
        role: "operator",
        message: format!(
            "your identity (public key {recipient}) is not one of this repository's operators \
             ({}). Use an operator identity that was given to 'custodian init'.",
            operators.join(", ")
        ),
    }
}

/// The caller must be on the newest list in its role, and not expired: a removed operator or
/// auditor stops here, whatever it pinned before.
pub(super) fn check_member(list: &TrustList, anchor: &Anchor) -> Result<()> {
    let now = crate::clock::now();
    let (expires, who) = match anchor {
        Anchor::Writer { .. } => return Ok(()),
        Anchor::Operator { recipient, .. } => {
            let Some(o) = list.operators.iter().find(|o| o.recipient == *recipient) else {
                return Err(not_operator(list, recipient));
            };
            if let Some(r) = &o.removed {
                return Err(Error::NotListed {
                    role: "operator",
                    message: format!(
                        "your identity ({recipient}) was removed from this repository's \
                         operators at {} by {}: nothing was read. Keys made since are sealed \
                         only to the operators in office; ask one of them if you still need \
                         access.",
                        r.time, r.by
                    ),
                });
            }
            (
                o.registry.as_ref().and_then(|r| r.expires.clone()),
                "operator",
            )
        }
        Anchor::Auditor { recipient, .. } => {
            let Some(a) = list.auditors.iter().find(|a| a.recipient == *recipient) else {
                return Err(Error::NotListed {
                    role: "auditor",
                    message: format!(
                        "your identity ({recipient}) is not one of this repository's auditors. \
                         An operator adds auditors with 'custodian access add-auditor'."
                    ),
                });
            };
            (a.registry.expires.clone(), "auditor")
        }
    };
    match expires {
        Some(t) if expired(&t, now) => Err(Error::Refused(format!(
            "your {who} access to repository {} expired at {t}. Ask an operator to extend it \
             ('custodian access add-{who} … --expires DATE').",
            list.repo_id.short()
        ))),
        _ => Ok(()),
    }
}

/// Whether an expiry time has passed; a time that does not parse counts as passed (fail closed).
pub fn expired(expires: &str, now: std::time::SystemTime) -> bool {
    humantime::parse_rfc3339_weak(expires).map_or(true, |t| t <= now)
}

pub(super) fn check_writer(
    list: &TrustList,
    config: &RepoConfig,
    digest: Option<&str>,
    credential_id: &str,
    own: [u8; 32],
) -> Result<()> {
    let current = config.digest()?;
    if digest.is_some_and(|d| d != current) {
        return Err(Error::Untrusted(format!(
            "writer credential {credential_id} was issued for another version of this \
             repository's config (its digest differs): the config was changed. Nothing was \
             written; ask an operator to check the repository."
        )));
    }
    let now = crate::clock::now();
    match list.writers.iter().find(|w| parse_key(&w.key) == Some(own)) {
        Some(w) if w.revoked.is_some() => {
            let r = w.revoked.as_ref().map(|r| (r.time.as_str(), r.by.as_str()));
            let (time, by) = r.unwrap_or_default();
            return Err(Error::Refused(format!(
                "writer credential {credential_id} ('{}') was revoked at {time} by {by}: \
                 nothing was written. If this server should still back up, an operator issues \
                 it a new credential with 'custodian access issue-writer --name NAME --out FILE'.",
                w.name
            )));
        }
        Some(w) if w.expires.as_deref().is_some_and(|t| expired(t, now)) => {
            return Err(Error::Refused(format!(
                "writer credential {credential_id} ('{}') expired at {}: nothing was written. \
                 An operator issues a new one with 'custodian access issue-writer'.",
                w.name,
                w.expires.as_deref().unwrap_or_default()
            )));
        }
        Some(_) => return Ok(()),
        None => {}
    }
    Err(Error::Refused(format!(
        "writer credential {credential_id} is not on this repository's list of writers: it \
         belongs to someone else, or the list was changed. Nothing was written; ask an operator \
         for a valid credential."
    )))
}

/// How entries, listings and messages name a writer credential.
pub fn writer_who(w: &TrustedWriter) -> String {
    format!("writer credential {} ({})", short(&w.id), w.name)
}

/// How they name an operator's or an auditor's signing key.
pub fn key_who(role: Role, key: &[u8; 32]) -> String {
    format!("{} {}", role.name(), key_id(key))
}

/// [`key_who`] of a hex key as the trust list stores it (`None` if it is not one).
pub fn key_who_hex(role: Role, hex_key: &str) -> Option<String> {
    parse_key(hex_key).map(|k| key_who(role, &k))
}

/// Every key that may sign now (revoked writers are left out), with who it is.
pub(super) fn trusted_keys(list: &TrustList) -> HashMap<[u8; 32], Signer> {
    let mut out = HashMap::new();
    let mut add = |key: Option<[u8; 32]>, role: Role, who: Option<String>, name| {
        if let Some(k) = key {
            let who = who.unwrap_or_else(|| key_who(role, &k));
            out.insert(k, Signer { who, role, name });
        }
    };
    for w in list.writers.iter().filter(|w| w.revoked.is_none()) {
        let who = Some(writer_who(w));
        add(parse_key(&w.key), Role::Writer, who, Some(w.name.clone()));
    }
    for o in list.current_operators() {
        let key = o.signing_key.as_deref().and_then(parse_key);
        add(
            key,
            Role::Operator,
            None,
            o.registry.as_ref().map(|r| r.name.clone()),
        );
    }
    for a in &list.auditors {
        let name = Some(a.registry.name.clone());
        add(parse_key(&a.signing_key), Role::Auditor, None, name);
    }
    out
}

/// For each revoked writer, the list of what it had signed by then (`keys/revoked-<id>`),
/// checked against the hash the trust list names and signed by an operator.
pub(super) fn read_revocations(
    backend: &dyn Backend,
    list: &TrustList,
) -> Result<HashMap<[u8; 32], (String, Migration)>> {
    let mut out = HashMap::new();
    for w in &list.writers {
        let (Some(revocation), Some(key)) = (&w.revoked, parse_key(&w.key)) else {
            continue;
        };
        let name = crate::format::trust::revoked_name(&w.id);
        let vouched = read_vouched_list(backend, list, &name, &revocation.vouched)?;
        out.insert(key, (writer_who(w), vouched));
    }
    for o in &list.operators {
        let (Some(removal), Some(key)) = (&o.removed, o.signing_key.as_deref().and_then(parse_key))
        else {
            continue;
        };
        let name = crate::format::trust::revoked_name(&operator_revocation_id(&key));
        let vouched = read_vouched_list(backend, list, &name, &removal.vouched)?;
        out.insert(key, (key_who(Role::Operator, &key), vouched));
    }
    Ok(out)
}

pub(super) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The id a removed operator's inventory is stored under (`keys/revoked-operator-<key>`).
pub fn operator_revocation_id(key: &[u8; 32]) -> String {
    format!("operator-{}", hex::encode(&key[..8]))
}
