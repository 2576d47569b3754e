//! `custodian drill`, `custodian drill reports` and `custodian runbook lint|show`.

use super::common;
use super::{KeyArgs, RepoArg};
use anyhow::Result;
use custodian::drill::{drill, DrillOptions, DrillReport};
use custodian::runbook::{self, Runbook};
use std::path::{Path, PathBuf};

/// Exit code of a drill that could not run (no snapshot, no key, bad runbook).
pub const EXIT_COULD_NOT_RUN: u8 = 2;

#[derive(clap::Args)]
pub struct DrillArgs {
    /// A runbook file or id (in --runbooks), or `reports` to list past results.
    runbook: Option<String>,
    /// Drill every runbook in --runbooks.
    #[arg(long)]
    all: bool,
    /// Directory of runbooks.
    #[arg(long, default_value = "runbooks")]
    runbooks: PathBuf,
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeyArgs,
    /// Where the human-readable and JSON reports are written (mode 0700).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum RunbookCommand {
    /// Show a runbook's human steps with live facts: the newest snapshots of its sources and
    /// the exact restore commands (writer credential or operator identity).
    Show {
        /// Runbook id (in --runbooks) or file.
        runbook: String,
        #[arg(long, default_value = "runbooks")]
        runbooks: PathBuf,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Validate every runbook: unknown keys, bad durations or cron, unknown sources.
    Lint {
        #[arg(long, default_value = "runbooks")]
        runbooks: PathBuf,
        /// The daemon's config, to check that every runbook source exists.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The runbooks in `dir`, each standing alone: broken ones are reported on stderr and the
/// others served.
fn shelf(dir: &Path) -> Result<runbook::Shelf> {
    let shelf = runbook::load_dir(dir)?;
    for e in &shelf.broken {
        eprintln!("warning: runbook skipped until fixed (the others are served): {e}");
    }
    Ok(shelf)
}

fn find(runbooks: &Path, name: &str) -> Result<Runbook> {
    let path = Path::new(name);
    if path.is_file() {
        return Ok(Runbook::load(path)?);
    }
    let shelf = shelf(runbooks)?;
    match shelf.find(name) {
        Some(Ok(rb)) => Ok(rb.clone()),
        Some(Err(e)) => anyhow::bail!("runbook '{name}' cannot be used until it is fixed: {e}"),
        None => anyhow::bail!(
            "no runbook '{name}' in {}: its runbooks are {}. Give a file, an id, or --runbooks DIR.",
            runbooks.display(),
            shelf
                .books
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn run(args: DrillArgs) -> Result<u8> {
    if args.runbook.as_deref() == Some("reports") {
        return reports(&args);
    }
    // Anything that stops the drill from running at all is exit 2, not 1.
    match run_drills(&args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(EXIT_COULD_NOT_RUN)
        }
    }
}

fn run_drills(args: &DrillArgs) -> Result<u8> {
    let mut broken = 0;
    let books = match (&args.runbook, args.all) {
        (Some(name), false) => vec![find(&args.runbooks, name)?],
        (None, true) => {
            let shelf = shelf(&args.runbooks)?;
            broken = shelf.broken.len();
            shelf.books
        }
        _ => anyhow::bail!("name one runbook (file or id), or pass --all"),
    };
    let repo = common::open_operator(&args.repo, &args.keys, "a restore drill")?;
    let ids: Vec<&str> = books.iter().map(|b| b.id.as_str()).collect();
    let sources: Vec<&str> = books
        .iter()
        .flat_map(|b| b.sources.iter())
        .map(String::as_str)
        .collect();
    let audit = common::audit(
        &repo,
        custodian::audit::Intent::read(
            "drill",
            &format!("restore drill of runbook {}", ids.join(", ")),
        )
        .source((sources.len() == 1).then(|| sources[0])),
    )?;
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| common::state_dir().join("drills"));
    let mut reports = Vec::new();
    for rb in &books {
        let opts = DrillOptions {
            scratch_parent: common::state_dir().join("scratch"),
            now: custodian::clock::now(),
        };
        let report = drill(&repo, rb, &opts)?;
        let stored = repo.store_drill_report(&report)?;
        let stem = report.save_local(&report_dir)?;
        if !args.json {
            out!("{}", report.render());
            outln!(
                "report: {}.txt (and .json); in the repository as {stored}\n",
                stem.display()
            );
        }
        reports.push(report);
    }
    if args.json {
        common::print_json(&reports)?;
    }
    let figures = reports.iter().map(|r| r.figures()).collect();
    if !reports.iter().all(|r| r.passed) {
        audit.done_drills("failed", figures);
        return Ok(1);
    }
    audit.done_drills("ok", figures);
    if broken > 0 {
        eprintln!("{broken} runbook(s) could not be drilled: fix them (custodian runbook lint)");
        return Ok(EXIT_COULD_NOT_RUN);
    }
    Ok(0)
}

fn reports(args: &DrillArgs) -> Result<u8> {
    let repo = common::open_operator(&args.repo, &args.keys, "reading drill reports")?;
    let all: Vec<DrillReport> = repo.drill_reports()?;
    if args.json {
        common::print_json(&all)?;
        return Ok(0);
    }
    for r in &all {
        outln!(
            "{}  {}  {:<24} RTO {} of {}  RPO {} of {}  {}",
            custodian::when::show_stored(&r.time),
            if r.passed { "PASS" } else { "FAIL" },
            r.runbook,
            custodian::human::seconds(r.rto.achieved_seconds),
            custodian::human::seconds(r.rto.target_seconds),
            custodian::human::seconds(r.rpo.newest_age_seconds as f64),
            custodian::human::seconds(r.rpo.target_seconds as f64),
            r.reasons.first().map_or("", |s| s.as_str())
        );
    }
    Ok(0)
}

pub fn runbook(command: RunbookCommand) -> Result<u8> {
    match command {
        RunbookCommand::Lint { runbooks, config } => lint(&runbooks, config.as_deref()),
        RunbookCommand::Show {
            runbook,
            runbooks,
            repo,
            keys,
        } => show(&find(&runbooks, &runbook)?, &repo, &keys),
    }
}

fn show(rb: &Runbook, repo_arg: &RepoArg, keys: &KeyArgs) -> Result<u8> {
    let repo = common::open(repo_arg, keys, "runbook show")?;
    let now = custodian::clock::now();
    let all = repo.list_snapshots()?;
    let age = |t: std::time::SystemTime| {
        humantime::format_duration(std::time::Duration::from_secs(
            now.duration_since(t).unwrap_or_default().as_secs(),
        ))
        .to_string()
    };
    outln!("{} ({})", rb.title, rb.id);
    outln!(
        "owner {} · RTO {} · RPO {}\n",
        rb.owner,
        humantime::format_duration(rb.rto),
        humantime::format_duration(rb.rpo)
    );
    outln!("LIVE FACTS at {}", custodian::when::show(now));
    let mut commands = Vec::new();
    for source in &rb.sources {
        let of: Vec<_> = all.iter().filter(|s| &s.head.source == source).collect();
        let Some(newest) = of.last() else {
            outln!("  {source}: NO SNAPSHOT in {}", repo.location());
            continue;
        };
        let rpo_note = if now.duration_since(newest.time).unwrap_or_default() > rb.rpo {
            "  <- older than the RPO"
        } else {
            ""
        };
        let flag = match &newest.head.changes {
            Some(c) if c.suspicious => format!("  SUSPICIOUS ({})", c.reasons.join("; ")),
            _ => String::new(),
        };
        outln!(
            "  {source}: newest snapshot {} taken {} ago ({}){rpo_note}; {} snapshots{flag}",
            newest.id.short(),
            age(newest.time),
            custodian::when::show(newest.time),
            of.len()
        );
        for s in of.iter().rev().take(5).skip(1) {
            outln!("      earlier {} {} ago", s.id.short(), age(s.time));
        }
        match custodian::drill::select(&of, &rb.select, now) {
            Some((chosen, how)) => {
                if chosen.head.changes.as_ref().is_some_and(|c| c.suspicious) {
                    outln!("      WARNING: {} is flagged suspicious", chosen.id.short());
                }
                outln!("      this runbook restores {} ({how})", chosen.id.short());
                let paths: Vec<String> = if rb.scope.is_empty() {
                    vec![chosen.id.short()]
                } else {
                    rb.scope
                        .iter()
                        .map(|p| format!("{}:{p}", chosen.id.short()))
                        .collect()
                };
                let target = rb.restore_target.as_deref().unwrap_or("RESTORE-DIR");
                let warning = match &chosen.head.changes {
                    Some(c) if c.suspicious => "   # SUSPICIOUS snapshot: check before use",
                    _ => "",
                };
                for p in paths {
                    commands.push(format!(
                        "custodian restore {p} --source {source} {} --identity OPERATOR.key --target {target}{warning}",
                        common::repo_text(repo_arg)
                    ));
                }
            }
            None => outln!("      no snapshot matches select = \"{}\"", rb.select),
        }
    }
    outln!("\nRESTORE COMMANDS");
    for c in &commands {
        outln!("  {c}");
    }
    outln!("\n{}", rb.body);
    Ok(0)
}

fn lint(runbooks: &Path, config: Option<&Path>) -> Result<u8> {
    let sources: Option<Vec<String>> = match config {
        Some(c) => Some(
            custodian::config::Config::load_form(c)?
                .sources
                .into_iter()
                .map(|s| s.name)
                .collect(),
        ),
        None => None,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(runbooks)
        .map_err(|e| anyhow::anyhow!("{}: {e}", runbooks.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let (mut ok, mut bad) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        if !text.starts_with("+++\n") {
            continue;
        }
        match Runbook::parse(&file, &text) {
            Ok(rb) => {
                let unknown: Vec<&String> = sources
                    .as_ref()
                    .map(|known| rb.sources.iter().filter(|s| !known.contains(s)).collect())
                    .unwrap_or_default();
                if unknown.is_empty() {
                    ok += 1;
                } else {
                    bad += 1;
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("sources"))
                        .map_or(1, |i| i + 1);
                    eprintln!(
                        "{}:{line}: sources: {} not in {}",
                        file.display(),
                        unknown
                            .iter()
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        config.map_or(String::new(), |c| c.display().to_string())
                    );
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    outln!("{ok} runbook(s) valid, {bad} with errors");
    Ok(if bad == 0 { 0 } else { 1 })
}
