//! The command line: clap definitions, one module per verb, `--json` output, progress bars and
//! exit codes. The only place that uses `anyhow`.

/// `println!` for command output. A reader that went away (`custodian ls | head`) ends the
/// command quietly, as it does for restic, instead of a panic with a backtrace.
macro_rules! outln {
    () => { $crate::cli::emit(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::emit(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` for command output (see `outln!`).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*)) };
}

mod access;
mod audit;
mod backup;
mod check;
mod common;
mod copy;
mod daemon;
mod demo;
mod drill;
mod handover;
mod incident;
mod keys;
mod listing;
mod progress;
mod prune;
mod report;
mod restore;
mod retention;
mod review;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when a backup committed but skipped some files.
pub const EXIT_PARTIAL: u8 = 3;

/// Exit code when a backup committed a snapshot flagged suspicious (ransomware-like change).
pub const EXIT_SUSPICIOUS: u8 = 4;

const EXIT_HELP: &str = "Exit codes: 0 success; 1 error (a drill: it failed); 2 a drill could not run; 3 backup committed but some files were skipped (they are listed);
4 backup committed a snapshot flagged suspicious (ransomware-like change). `status`: 0 all good, 1 degraded, 2 failing or down.
Environment: CUSTODIAN_REPO, CUSTODIAN_WRITER_KEY, CUSTODIAN_IDENTITY stand in for --repo, --writer-key,
--identity; CUSTODIAN_STATE_DIR sets the state dir (default ~/.local/state/custodian); RUST_LOG sets log detail.";

#[derive(Parser)]
#[command(name = "custodian", version, about = "Encrypted, deduplicated backups of customer records that the backing-up server cannot read.", after_help = EXIT_HELP)]
pub struct Cli {
    /// Show times in UTC instead of local time (JSON is always UTC).
    #[arg(long, global = true)]
    utc: bool,
    /// More log detail on stderr: -v info, -vv debug (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bars and only errors in the log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Why this command runs (a ticket, an incident, a request): kept in the repository's
    /// audit log with who ran it.
    #[arg(long, global = true, value_name = "TEXT")]
    reason: Option<String>,
    /// Break glass: when the repository's audit log cannot be written (read-only storage in an
    /// incident), keep this command's entry on this machine and go on. It is uploaded at the
    /// next contact and flagged in every report.
    #[arg(long, global = true, value_name = "WHY")]
    audit_offline: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// A repository, a key to open it with, and `--json`: verbs that only read and report.
#[derive(clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    #[arg(long)]
    json: bool,
}

/// Repository location, shared by every verb that opens one: a URL, or the daemon's config
/// (borgmatic style), which also supplies the writer credential and the S3 settings.
#[derive(clap::Args, Clone)]
pub struct RepoArg {
    /// Repository: a local path, or s3://BUCKET/PREFIX (credentials and endpoint from the
    /// usual AWS_* environment variables).
    #[arg(long, env = "CUSTODIAN_REPO")]
    repo: Option<String>,
    /// The daemon's config file: its repository, S3 settings and writer credential (unless
    /// --identity or --writer-key is given).
    #[arg(long, conflicts_with = "repo")]
    config: Option<PathBuf>,
}

/// restic's snapshot filters, shared by `snapshots`, `forget` and `restore` (for `latest`).
#[derive(clap::Args, Clone)]
pub struct FilterArgs {
    /// Only this record store (and, for `latest`, the one it means).
    #[arg(long)]
    source: Option<String>,
    /// Only snapshots taken on this host.
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeat: all of them).
    #[arg(long)]
    tag: Vec<String>,
}

impl FilterArgs {
    /// The library's filter over these flags.
    pub fn filter(&self) -> custodian::repository::Filter<'_> {
        custodian::repository::Filter {
            source: self.source.as_deref(),
            host: self.host.as_deref(),
            tags: &self.tag,
        }
    }
}

/// Which key to open the repository with.
#[derive(clap::Args, Clone)]
pub struct KeyArgs {
    /// Writer credential (made by `init --writer-key-out`): write and list, never read content.
    #[arg(long, env = "CUSTODIAN_WRITER_KEY")]
    writer_key: Option<PathBuf>,
    /// Operator age identity: needed to read content (restore, ls, check --read-data).
    #[arg(long, env = "CUSTODIAN_IDENTITY")]
    identity: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage keys.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// The access registry: who may read, write or audit; issue and revoke credentials.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// The audit log: who read or changed what, when and why; verify it, export it.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Evidence for auditors: backups and RPO, drills with RTO and RPO, checks, access changes
    /// and review, every read, destruction, the audit log's verification (HTML and JSON).
    Report(report::ReportArgs),
    /// Create a repository and its writer credential.
    Init(keys::InitArgs),
    /// Upgrade a format-1 repository to format 2 (signed) in place, and issue a new writer
    /// credential (operator identity).
    Migrate(keys::MigrateArgs),
    /// Back up a record store (needs only the writer credential).
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(listing::SnapshotsArgs),
    /// List the files in a snapshot (operator identity).
    Ls(listing::LsArgs),
    /// Restore a snapshot or part of it (operator identity).
    Restore(restore::RestoreArgs),
    /// Verify the repository: structure with any key, contents with --read-data.
    Check(check::CheckArgs),
    /// Copy snapshots to another repository of the same key set (local <-> S3), verified.
    Copy(copy::CopyArgs),
    /// Hand one record store to a new owner, with a handover list both sides sign.
    #[command(subcommand)]
    Handover(handover::HandoverCommand),
    /// Run as a service: scheduled and change-triggered snapshots of the configured sources.
    Daemon(daemon::DaemonArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(daemon::ConfigCommand),
    /// Each source's last snapshot, its age, the next run and the last error.
    Status(daemon::StatusArgs),
    /// Apply a retention policy: keep or remove each snapshot, and say which rule decided.
    Forget(retention::ForgetArgs),
    /// Delete data no snapshot references, in two phases safe beside running backups.
    Prune(prune::PruneArgs),
    /// Rewrite every snapshot of a source without the matching paths (operator identity).
    Erase(prune::EraseArgs),
    /// Paths erases keep out of later backups; `--remove ID` lifts one (operator identity).
    Exclusions(prune::ExclusionsArgs),
    /// Put a snapshot on hold (legal hold, incident): never forgotten or pruned.
    Hold(retention::HoldArgs),
    /// Release a hold (operator identity).
    Release(retention::HoldArgs),
    /// List destruction records: what was destroyed, when, why and by whom.
    DestructionRecords(ReadArgs),
    /// What changed between two snapshots (operator identity).
    Diff(incident::DiffArgs),
    /// Which snapshots hold a path, with size and mtime of each version (operator identity).
    Find(incident::FindArgs),
    /// Write one file of a snapshot to standard output (operator identity).
    Dump(incident::DumpArgs),
    /// Run a restore drill from a runbook (operator identity); `drill reports` lists results.
    Drill(drill::DrillArgs),
    /// Emergency-plan runbooks.
    #[command(subcommand)]
    Runbook(drill::RunbookCommand),
    /// Run the whole job on sample records: backup, change, backup, restore, verify, drill, report.
    Demo(demo::DemoArgs),
    /// Generate a deterministic sample record store (for benchmarks and trials).
    #[command(hide = true)]
    Sample(demo::SampleArgs),
}

/// Write command output. A closed pipe ends the process with 0 and no message (the reader has
/// all it wanted); any other failure to write (a full disk behind `>`) is an error, exit 1.
pub(crate) fn emit(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        stdout_failed(e)
    }
}

/// The end of a command whose output cannot be written.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: the output could not be written ({e}); check where stdout goes");
    std::process::exit(1)
}

/// Parse arguments, run, and turn the outcome into an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    custodian::when::show_utc(cli.utc);
    common::set_quiet(cli.quiet);
    common::set_audit(cli.reason.clone(), cli.audit_offline.clone());
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    match &cli.command {
        Command::Daemon(a) => common::init_logging("info", a.log_format == "json"),
        _ => common::init_logging(level, false),
    }
    let result = match cli.command {
        Command::Key(c) => keys::key(c),
        Command::Audit(c) => audit::audit(c),
        Command::Access(c) => access::access(c),
        Command::Report(a) => report::report(a),
        Command::Init(a) => keys::init(a),
        Command::Migrate(a) => keys::migrate(a),
        Command::Backup(a) => backup::run(a),
        Command::Snapshots(a) => listing::snapshots(a),
        Command::Ls(a) => listing::ls(a),
        Command::Restore(a) => restore::run(a),
        Command::Check(a) => check::run(a),
        Command::Copy(a) => copy::run(a),
        Command::Handover(c) => handover::handover(c),
        Command::Daemon(a) => daemon::run(a),
        Command::Config(c) => daemon::config(c),
        Command::Status(a) => daemon::status(a),
        Command::Drill(a) => drill::run(a),
        Command::Diff(a) => incident::diff(a),
        Command::Forget(a) => retention::forget(a),
        Command::Prune(a) => prune::prune(a),
        Command::Erase(a) => prune::erase(a),
        Command::Exclusions(a) => prune::exclusions(a),
        Command::Hold(a) => retention::hold(a),
        Command::Release(a) => retention::release(a),
        Command::DestructionRecords(a) => retention::records(a),
        Command::Find(a) => incident::find(a),
        Command::Dump(a) => incident::dump(a),
        Command::Runbook(c) => drill::runbook(c),
        Command::Demo(a) => demo::run(a),
        Command::Sample(a) => demo::sample(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
