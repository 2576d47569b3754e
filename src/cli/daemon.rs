//! `custodian daemon`, `custodian config check` and `custodian status`.

use super::common;
use anyhow::Result;
use custodian::config::Config;
use custodian::daemon::{self, status, StatusDoc};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

/// Where the packaged service looks for its configuration.
const DEFAULT_CONFIG: &str = "/etc/custodian/custodian.toml";

#[derive(clap::Args)]
pub struct DaemonArgs {
    /// Configuration file (see config/custodian.toml and docs/CONFIG.md).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// `plain` (journald-friendly lines) or `json` (one object per line).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The daemon's configuration (for its state dir).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Read this state dir instead of the config's.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: DaemonArgs) -> Result<u8> {
    daemon::run(&args.config)?;
    Ok(0)
}

/// Erase exclusions per source, from the repository if it can be reached with the config's
/// writer credential (counts only: the patterns are customer paths).
fn print_exclusions(c: &Config) {
    let found = daemon::open_backend(c).and_then(|backend| {
        custodian::repository::Repository::open(
            backend,
            &custodian::repository::Credential::Writer(c.repository.writer_key_file.clone()),
        )?
        .exclusions(None)
    });
    match found {
        Ok(list) => {
            for s in &c.sources {
                let n = list.iter().filter(|(_, e)| e.source == s.name).count();
                if n > 0 {
                    outln!(
                        "source {}: {n} erased path pattern(s) left out of its backups",
                        s.name
                    );
                }
            }
        }
        Err(e) => {
            eprintln!("note: erase exclusions not checked (the repository could not be read: {e})")
        }
    }
}

pub fn config(command: ConfigCommand) -> Result<u8> {
    let ConfigCommand::Check { config } = command;
    let c = Config::load(&config)?;
    let mut warnings = 0;
    for s in &c.sources {
        for w in custodian::source::exclude::lint(&s.exclude, &s.path) {
            eprintln!("warning: source {}: {w}", s.name);
            warnings += 1;
        }
    }
    if let Some(d) = &c.drills {
        for e in &d.broken_runbooks {
            eprintln!("warning: runbook not drilled until fixed (the daemon runs the others): {e}");
            warnings += 1;
        }
    }
    outln!(
        "{}: valid; repository {}; {} source(s): {}",
        config.display(),
        c.repository.url,
        c.sources.len(),
        c.sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_exclusions(&c);
    if warnings > 0 {
        outln!("{warnings} warning(s) above: the daemon would start, but check them");
    }
    Ok(0)
}

/// Exit codes for monitoring checks: 0 all good, 1 degraded, 2 failing or down.
pub fn status(args: StatusArgs) -> Result<u8> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => Config::load_form(&args.config)?.repository.state_dir,
    };
    let doc = status::fetch(&state_dir)?;
    if !doc.live && doc.repository.is_empty() {
        eprintln!(
            "no custodian daemon is running with state dir {}, and none has run there: start it \
             (systemctl start custodian), or point --config or --state-dir at the daemon's own.",
            state_dir.display()
        );
        return Ok(status::Health::Failing as u8);
    }
    let (health, problems) = status::health(&doc);
    if args.json {
        let mut value = serde_json::to_value(&doc)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("health".into(), serde_json::to_value(health)?);
            map.insert("problems".into(), serde_json::to_value(&problems)?);
        }
        common::print_json(&value)?;
    } else {
        print_status(&doc);
        for p in &problems {
            outln!("PROBLEM: {p}");
        }
    }
    Ok(health as u8)
}

fn ago(t: Option<u64>, now: u64) -> String {
    match t {
        Some(t) => format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(t)))
        ),
        None => "never".into(),
    }
}

fn print_status(doc: &StatusDoc) {
    let now = custodian::clock::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match (doc.live, doc.pid) {
        (true, Some(pid)) => outln!("daemon running (pid {pid}), repository {}", doc.repository),
        _ => outln!(
            "daemon NOT RUNNING; what it last recorded (nothing is scheduled), repository {}",
            doc.repository
        ),
    }
    for s in &doc.sources {
        // A stopped daemon runs nothing and watches nothing: say only what it recorded.
        let live = if doc.live {
            let next = match s.next_run {
                Some(t) if t > now => format!(
                    "in {}",
                    humantime::format_duration(std::time::Duration::from_secs(t - now))
                ),
                Some(_) => "due".into(),
                None => "on change".into(),
            };
            format!("; next run {next}; watcher {}", s.watcher)
        } else {
            String::new()
        };
        outln!(
            "{}: last snapshot {} ({}), {}{live}",
            s.name,
            s.last_snapshot
                .as_deref()
                .map_or("none".to_string(), custodian::id::short_text),
            ago(s.last_success, now),
            s.last_result,
        );
        if s.erase_exclusions > 0 {
            outln!(
                "  {} erased path pattern(s) left out of its backups ('custodian exclusions')",
                s.erase_exclusions
            );
        }
        if let Some(e) = &s.last_error {
            outln!("  last error: {e}");
        }
        if s.needs_operator {
            outln!("  NEEDS AN OPERATOR: this failure does not pass by itself; not retried until its next scheduled run, a reload or a restart");
        }
    }
    for b in &doc.broken_runbooks {
        outln!("runbook BROKEN, not drilled until fixed: {b}");
    }
    for d in &doc.drills {
        outln!(
            "drill {}: {} {}; RTO margin {:.0}s, RPO margin {:.0}s",
            d.runbook,
            d.last_result,
            ago(d.last_run, now),
            d.rto_margin_seconds,
            d.rpo_margin_seconds
        );
        if let Some(e) = &d.last_error {
            outln!("  last error: {e}");
        }
    }
    let p = &doc.prune;
    if p.last_run.is_some() {
        outln!(
            "prune: {} {}; reclaimed {} so far, {} marked and waiting",
            p.last_result,
            ago(p.last_run, now),
            super::common::human_bytes(p.reclaimed_bytes_total),
            super::common::human_bytes(p.marked_bytes)
        );
        if let Some(e) = &p.last_error {
            outln!("  last error: {e}");
        }
    }
    if let Some(r) = &doc.access_review {
        outln!(
            "access review: last signed off {} ({} days; due every {})",
            r.last.as_deref().unwrap_or("never"),
            r.age_days(custodian::clock::now()),
            custodian::daemon::status::REVIEW_EVERY_DAYS
        );
    }
}
