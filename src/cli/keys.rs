//! `key generate` and `init`.

use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::audit::Intent;
use custodian::chunker::ChunkerParams;
use custodian::constants::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, PACK_TARGET, ZSTD_LEVEL};
use custodian::crypto::keys::{identity_file_text, write_private};
use custodian::repository::{init as init_repo, InitOptions};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create an operator age identity (mode 0600) and print its public recipient.
    Generate {
        /// Where to write the identity; refuses to overwrite.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Crypto-shred a key domain: nothing of it can be decrypted by anyone afterwards. Its
    /// snapshots are forgotten; a destruction record is written (operator identity).
    DestroyDomain {
        /// The key domain (by default a source's name).
        domain: String,
        /// Type the domain name again: there is no undo (not needed with --dry-run).
        #[arg(long, required_unless_present = "dry_run")]
        confirm: Option<String>,
        /// Say what would be destroyed, and which hold would block it; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Print an operator identity's public recipient and its signing key (the key another
    /// operator adds with `key add-operator`).
    Show {
        /// The operator's identity file.
        #[arg(long, env = "CUSTODIAN_IDENTITY")]
        identity: PathBuf,
    },
    /// Put an operator's signing key on the trust list (operator identity already on it), so
    /// what that operator writes (erase, drill reports, holds) verifies.
    AddOperator {
        /// The operator's age recipient, as listed in the repository.
        #[arg(long)]
        recipient: String,
        /// Its signing key, from `custodian key show` on the operator's machine.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Trust a repository another operator created, on this machine: after comparing the
    /// fingerprint it prints (and `init` printed) with that operator, out of band.
    Trust {
        /// The fingerprint the creating operator read out (32 hex characters).
        #[arg(long)]
        fingerprint: String,
        #[command(flatten)]
        repo: RepoArg,
    },
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The identity of the operator creating the repository (from `key generate`): it signs
    /// the repository's trust list, and its public key becomes the first operator.
    #[arg(long, env = "CUSTODIAN_IDENTITY")]
    identity: PathBuf,
    /// Further operators' public keys (age1…); repeat for several operators.
    #[arg(long = "recipient")]
    recipients: Vec<String>,
    /// Where to write the writer credential for the backing-up server (mode 0600).
    #[arg(long)]
    writer_key_out: PathBuf,
    /// zstd level, fixed for the repository's life.
    #[arg(long, default_value_t = ZSTD_LEVEL)]
    zstd_level: i32,
    /// Pack target size in bytes.
    #[arg(long, default_value_t = PACK_TARGET)]
    pack_size: u64,
    /// Chunk sizes min,avg,max in bytes, fixed for the repository's life.
    #[arg(long, value_delimiter = ',', default_values_t = [CHUNK_MIN, CHUNK_AVG, CHUNK_MAX])]
    chunk_sizes: Vec<u32>,
}

pub fn key(cmd: KeyCommand) -> Result<u8> {
    match cmd {
        KeyCommand::Generate { output } => {
            let identity = age::x25519::Identity::generate();
            let now = humantime::format_rfc3339_seconds(custodian::clock::now()).to_string();
            write_private(&output, &identity_file_text(&identity, &now))?;
            eprintln!(
                "wrote operator identity to {} (mode 0600); keep it offline. Its public recipient:",
                output.display()
            );
            outln!("{}", identity.to_public());
            Ok(0)
        }
        KeyCommand::Show { identity } => {
            let identity = operator_identity(&identity)?;
            let signer = custodian::crypto::sign::ObjectSigner::for_operator(&identity);
            outln!("recipient:   {}", identity.to_public());
            outln!("signing key: {}", hex::encode(signer.public()));
            Ok(0)
        }
        KeyCommand::AddOperator {
            recipient,
            key,
            repo,
            keys,
        } => {
            let repo = common::open_operator(&repo, &keys, "changing the trust list")?;
            let audit = common::audit(&repo, Intent::write("key add-operator", ""))?;
            let seq = repo.add_operator_key(&recipient, &key)?;
            audit.done("ok", None);
            outln!("trust list version {seq}: operator {recipient} may now sign");
            Ok(0)
        }
        KeyCommand::Trust { fingerprint, repo } => {
            let by = custodian::repository::trust::confirm(
                common::backend(&repo)?.as_ref(),
                &common::state_dir().join("trust"),
                &fingerprint,
            )?;
            outln!(
                "repository at {} trusted on this machine (its trust list was signed by {by})",
                common::repo_text(&repo)
            );
            Ok(0)
        }
        KeyCommand::DestroyDomain {
            domain,
            confirm,
            dry_run,
            repo,
            keys,
        } => {
            if !dry_run && confirm.as_deref() != Some(domain.as_str()) {
                anyhow::bail!("--confirm must repeat the domain name exactly ('{domain}'): destroying a key domain cannot be undone");
            }
            let repo = common::open_operator(&repo, &keys, "destroying a key domain")?;
            use custodian::repository::DomainDestroyed;
            let local = common::state_dir().join("destruction");
            let op = if dry_run {
                "key destroy-domain --dry-run"
            } else {
                "key destroy-domain"
            };
            let audit = common::audit(&repo, Intent::write(op, "").source(Some(&domain)))?;
            let destroyed = repo.destroy_domain(&domain, dry_run, &local)?;
            audit.done("ok", None);
            match destroyed {
                DomainDestroyed::WouldDestroy { snapshots, objects } => outln!(
                    "dry run: key domain '{domain}' would be destroyed: {} snapshot(s) forgotten, \
                     {objects} object(s) deleted; no snapshot of it is held. Nothing was changed.",
                    snapshots.len()
                ),
                DomainDestroyed::Now(record) => outln!(
                    "key domain '{domain}' destroyed: {} snapshot(s) forgotten, {} object(s) deleted; destruction record written",
                    record.snapshots.len(),
                    record.objects_deleted
                ),
                DomainDestroyed::Earlier(record) => outln!(
                    "key domain '{domain}' was already destroyed at {} by {}; nothing left to do",
                    record.time, record.by
                ),
            }
            Ok(0)
        }
    }
}

pub fn init(args: InitArgs) -> Result<u8> {
    let backend = common::backend(&args.repo)?;
    let mut set_aside = false;
    if args.writer_key_out.exists() {
        match earlier_run(&backend, &args.writer_key_out)? {
            EarlierRun::Finished => {
                outln!(
                    "repository at {} already exists and {} is its writer credential: an \
                     earlier init finished; nothing to do",
                    common::repo_text(&args.repo),
                    args.writer_key_out.display()
                );
                return Ok(0);
            }
            EarlierRun::Interrupted => set_aside = true,
            EarlierRun::Unrelated => anyhow::bail!(
                "{} already exists; custodian never overwrites a key. Choose another \
                 --writer-key-out.",
                args.writer_key_out.display()
            ),
        }
    }
    let [min, avg, max] = <[u32; 3]>::try_from(args.chunk_sizes)
        .map_err(|_| anyhow::anyhow!("--chunk-sizes takes three numbers: min,avg,max"))?;
    let initialized = init_repo(
        backend,
        InitOptions {
            operator: operator_identity(&args.identity)?,
            recipients: args.recipients,
            chunker: ChunkerParams { min, avg, max },
            zstd_level: args.zstd_level,
            pack_target: args.pack_size,
            created: humantime::format_rfc3339_seconds(custodian::clock::now()).to_string(),
        },
        |text| keep_credential(&args.writer_key_out, text, set_aside.then_some("init")),
    )?;
    // Pin the new repository on this machine at once, so a later swap or downgrade is caught.
    // The repository exists by now: a state dir that cannot be written only costs the pin.
    // Its audit log starts with the init (written after it: before, there was no trust list to
    // sign against).
    match custodian::repository::Repository::open_pinned(
        common::backend(&args.repo)?,
        &custodian::repository::Credential::Operator(args.identity.clone()),
        Some(common::state_dir().join("trust")),
    ) {
        Ok(repo) => common::audit(&repo, Intent::write("init", ""))?.done("ok", None),
        Err(e) => eprintln!("warning: the new repository could not be pinned on this machine ({e}); the first command with --identity pins it"),
    }
    if let Some(auth) = initialized.repo.auth() {
        outln!(
            "trust fingerprint: {} (other operators compare it before 'custodian key trust')",
            auth.fingerprint
        );
    }
    outln!(
        "created repository {} at {}\nwriter credential: {} (give this to the backing-up server; it cannot read backups)",
        initialized.repo.config.repo_id.short(),
        common::repo_text(&args.repo),
        args.writer_key_out.display()
    );
    Ok(0)
}

/// What an existing `--writer-key-out` file is to this `init` or `migrate`.
enum EarlierRun {
    /// The credential of the repository already at this location: init is done.
    Finished,
    /// Issued here by an init or migrate killed before `config` switched: worthless, replaced.
    Interrupted,
    /// Anything else, which is never overwritten.
    Unrelated,
}

/// Tell whether `path` was left by an earlier init or migrate at this location (a rerun after a
/// kill): a signing credential whose operators' copy is here while `config` is absent or still
/// format 1, so no repository ever accepted it.
fn earlier_run(
    backend: &std::sync::Arc<dyn custodian::backend::Backend>,
    path: &std::path::Path,
) -> Result<EarlierRun> {
    let Ok(text) = custodian::crypto::keys::read_private(path) else {
        return Ok(EarlierRun::Unrelated);
    };
    let Ok(credential) = serde_json::from_str::<custodian::format::keys::WriterCredential>(&text)
    else {
        return Ok(EarlierRun::Unrelated);
    };
    use custodian::error::Error;
    let config = match custodian::repository::Repository::read_config(backend.as_ref()) {
        Ok(config) => Some(config),
        Err(Error::NotARepository(_)) => None,
        Err(e @ Error::Backend(_)) => return Err(e.into()),
        Err(_) => return Ok(EarlierRun::Unrelated),
    };
    if config.as_ref().is_some_and(|c| c.signed()) {
        let opened = custodian::repository::Repository::open(
            backend.clone(),
            &custodian::repository::Credential::Writer(path.to_path_buf()),
        );
        return Ok(match opened {
            Ok(repo) if repo.config.repo_id == credential.repo_id => EarlierRun::Finished,
            _ => EarlierRun::Unrelated,
        });
    }
    let copy = format!("keys/writer-{}", credential.credential_id);
    let issued_here =
        credential.signing_key.is_some() && backend.list("keys/")?.iter().any(|o| o.name == copy);
    Ok(if issued_here {
        EarlierRun::Interrupted
    } else {
        EarlierRun::Unrelated
    })
}

/// Write the new credential; first, when `interrupted` names the command, move the file an
/// interrupted run of it left aside (never deleted: if the guess was wrong, nothing is lost).
/// Called by init and migrate only once every check passed, just before `config` is written.
fn keep_credential(
    path: &std::path::Path,
    text: &str,
    interrupted: Option<&str>,
) -> custodian::error::Result<()> {
    if let Some(what) = interrupted {
        let secs = custodian::clock::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut aside = path.as_os_str().to_os_string();
        aside.push(format!(".interrupted-{what}-{secs}"));
        std::fs::rename(path, &aside).map_err(|e| custodian::error::Error::io(path, e))?;
        eprintln!(
            "note: {} was the credential of a {what} interrupted before the repository accepted \
             it; moved aside to {}",
            path.display(),
            std::path::Path::new(&aside).display()
        );
    }
    write_private(path, text)
}

/// The one identity in an operator's identity file (init signs with it).
fn operator_identity(path: &std::path::Path) -> Result<age::x25519::Identity> {
    Ok(custodian::crypto::keys::load_first_identity(path)?)
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Where to write the new writer credential (mode 0600); the old one stops working.
    #[arg(long)]
    writer_key_out: PathBuf,
    #[arg(long)]
    json: bool,
}

/// `migrate`: format 1 to format 2, then hand over the new writer credential.
pub fn migrate(args: MigrateArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "migrate")?;
    if repo.config.signed() {
        outln!(
            "repository {} is already format version {}: nothing to migrate",
            repo.config.repo_id.short(),
            repo.config.version
        );
        return Ok(0);
    }
    let mut set_aside = false;
    if args.writer_key_out.exists() {
        match earlier_run(&common::backend(&args.repo)?, &args.writer_key_out)? {
            EarlierRun::Interrupted => set_aside = true,
            _ => anyhow::bail!(
                "{} already exists; custodian never overwrites a key. Choose another \
                 --writer-key-out.",
                args.writer_key_out.display()
            ),
        }
    }
    let identity = match &args.keys.identity {
        Some(path) => operator_identity(path)?,
        None => anyhow::bail!("migrate needs --identity"),
    };
    let now = humantime::format_rfc3339_seconds(custodian::clock::now()).to_string();
    let done = custodian::repository::migrate::migrate(&repo, &identity, &now, |text| {
        keep_credential(&args.writer_key_out, text, set_aside.then_some("migrate"))
    })?;
    if args.json {
        common::print_json(&done)?;
    } else {
        outln!(
            "repository {} is now format version 2: {} objects and {} packs vouched for, signed \
             by your operator key.\nnew writer credential: {} (give it to the backing-up server; \
             the old one is refused from now on)",
            repo.config.repo_id.short(),
            done.objects,
            done.packs,
            args.writer_key_out.display()
        );
    }
    for (name, why) in &done.refused {
        eprintln!("not vouched for (did not open as its kind): {name}: {why}");
    }
    // A format-1 repository could not sign an entry; the signed one starts its audit log.
    let signed = common::open_operator(&args.repo, &args.keys, "migrate")?;
    let code = if done.refused.is_empty() { 0 } else { 1 };
    common::audit(&signed, Intent::write("migrate", ""))?.exit(code, None);
    Ok(if done.refused.is_empty() { 0 } else { 1 })
}
