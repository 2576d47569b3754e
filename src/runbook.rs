//! Emergency-plan runbooks: Markdown that people read during an incident, with a TOML front
//! matter (between `+++` lines) that `custodian drill` runs. The format is in docs/RUNBOOKS.md.
//! Parsing is strict, like the config: unknown keys, bad durations, cron expressions and
//! selections are errors that name the file and the line.

use crate::located::ConfigError;
use crate::schedule::Schedule;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use toml::Spanned;

/// How a drill picks the snapshot to restore.
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    Latest,
    /// The newest snapshot taken before this time.
    LatestBefore(SystemTime),
    /// The newest snapshot before the first one flagged suspicious (ransomware).
    LatestBeforeSuspicious,
    /// A random snapshot from the last this many days.
    RandomWithin(u32),
}

impl std::fmt::Display for Select {
    /// As a runbook writes it, so messages quote the operator's own words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Select::Latest => write!(f, "latest"),
            Select::LatestBefore(t) => {
                write!(f, "latest-before {}", crate::when::rfc3339(*t))
            }
            Select::LatestBeforeSuspicious => write!(f, "latest-before-suspicious"),
            Select::RandomWithin(days) => write!(f, "random-within {days}"),
        }
    }
}

impl Select {
    /// `latest`, `latest-before 2026-11-01T00:00:00Z`, `latest-before-suspicious`,
    /// `random-within 30`.
    pub fn parse(text: &str) -> Result<Select, String> {
        let text = text.trim();
        if text == "latest" {
            return Ok(Select::Latest);
        }
        if text == "latest-before-suspicious" {
            return Ok(Select::LatestBeforeSuspicious);
        }
        if let Some(t) = text.strip_prefix("latest-before ") {
            return crate::when::parse(t)
                .map(|m| Select::LatestBefore(m.time))
                .map_err(|e| format!("{e} (a time without a zone is this host's local time)"));
        }
        if let Some(days) = text.strip_prefix("random-within ") {
            return days
                .trim()
                .parse()
                .ok()
                .filter(|d| *d > 0)
                .map(Select::RandomWithin)
                .ok_or_else(|| format!("'{days}' is not a number of days"));
        }
        Err(format!(
            "'{text}' is not a selection; write latest, latest-before TIME, \
             latest-before-suspicious or random-within DAYS"
        ))
    }
}

/// `files` check: paths that must exist, and lower bounds.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilesCheck {
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub min_files: u64,
    #[serde(default)]
    pub min_bytes: u64,
}

/// One query of a `sqlite` check and the row count it must return.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqliteQuery {
    /// A query whose first column of the first row is a number (e.g. `SELECT count(*) …`).
    pub sql: String,
    #[serde(default)]
    pub min: i64,
    #[serde(default = "i64_max")]
    pub max: i64,
}

fn i64_max() -> i64 {
    i64::MAX
}

/// `sqlite` check: a database in the restore passes `PRAGMA integrity_check` and its queries.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqliteCheck {
    /// Path of the database inside the restored snapshot.
    pub path: String,
    #[serde(default)]
    pub queries: Vec<SqliteQuery>,
}

/// `command` check: an operator's script; passes on exit 0 within the timeout.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandCheck {
    /// Run with `sh -c`, in the restore directory.
    pub run: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5m".into()
}

/// `compare-live` check: a sample of restored files compared with the live store.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CompareLiveCheck {
    /// Files to sample.
    #[serde(default = "default_sample")]
    pub sample: usize,
    /// Share of sampled files allowed to differ or be gone (the store moved on since).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_sample() -> usize {
    50
}

fn default_tolerance() -> f64 {
    0.1
}

/// The checks a drill runs besides the manifest (which always runs).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Checks {
    pub files: Option<FilesCheck>,
    #[serde(default)]
    pub sqlite: Vec<SqliteCheck>,
    #[serde(default)]
    pub command: Vec<CommandCheck>,
    pub compare_live: Option<CompareLiveCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FrontMatter {
    id: Spanned<String>,
    title: String,
    sources: Spanned<Vec<String>>,
    owner: String,
    rto: Spanned<String>,
    rpo: Spanned<String>,
    schedule: Option<Spanned<String>>,
    #[serde(default = "default_select")]
    select: Spanned<String>,
    #[serde(default)]
    scope: Vec<String>,
    /// Where the runbook's own steps restore to; `runbook show` prints it in its commands.
    restore_target: Option<String>,
    /// How far back the worst gap between snapshots is measured. Default 30 days.
    rpo_window: Option<Spanned<String>>,
    #[serde(default)]
    checks: Checks,
}

fn default_select() -> Spanned<String> {
    Spanned::new(0..0, "latest".into())
}

/// A parsed runbook.
#[derive(Clone, Debug)]
pub struct Runbook {
    pub file: PathBuf,
    pub id: String,
    pub title: String,
    pub sources: Vec<String>,
    pub owner: String,
    pub rto: Duration,
    pub rpo: Duration,
    pub rpo_window: Duration,
    pub schedule: Option<Schedule>,
    pub select: Select,
    /// Paths inside the snapshot; empty means all of it.
    pub scope: Vec<String>,
    /// Where the steps restore to (`restore-target`), if the runbook says.
    pub restore_target: Option<String>,
    pub checks: Checks,
    /// The human steps.
    pub body: String,
}

impl Runbook {
    pub fn load(file: &Path) -> Result<Runbook, ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::at(file, "", 0, "(file)", format!("cannot be read: {e}")))?;
        Runbook::parse(file, &text)
    }

    /// Parse a runbook; the front matter's line numbers are counted from the file's start.
    pub fn parse(file: &Path, text: &str) -> Result<Runbook, ConfigError> {
        let err = |offset: usize, key: &str, message: String| {
            ConfigError::at(file, text, offset, key, message)
        };
        let rest = text.strip_prefix("+++\n").ok_or_else(|| {
            err(
                0,
                "(front matter)",
                "a runbook starts with a '+++' line, then TOML, then '+++'".into(),
            )
        })?;
        let end = rest.find("\n+++").ok_or_else(|| {
            err(
                0,
                "(front matter)",
                "the front matter has no closing '+++' line".into(),
            )
        })?;
        let (front, body) = (&rest[..end + 1], &rest[end + 4..]);
        let base = 4; // the opening "+++\n"
        let fm: FrontMatter = toml::from_str(front).map_err(|e| {
            err(
                base + e.span().map_or(0, |s| s.start),
                "(front matter)",
                e.message().trim().to_string(),
            )
        })?;
        let at = |s: &std::ops::Range<usize>| base + s.start;
        let duration = |v: &Spanned<String>, key: &str| {
            humantime::parse_duration(v.get_ref()).map_err(|e| {
                err(
                    at(&v.span()),
                    key,
                    format!(
                        "'{}' is not a duration ({e}); write e.g. \"15m\"",
                        v.get_ref()
                    ),
                )
            })
        };
        let id = fm.id.get_ref().trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                at(&fm.id.span()),
                "id",
                "use letters, digits, '-' and '_' only".into(),
            ));
        }
        if fm.sources.get_ref().is_empty() {
            return Err(err(
                at(&fm.sources.span()),
                "sources",
                "name at least one source".into(),
            ));
        }
        let schedule = match &fm.schedule {
            None => None,
            Some(s) => {
                Some(Schedule::parse(s.get_ref()).map_err(|m| err(at(&s.span()), "schedule", m))?)
            }
        };
        let select = Select::parse(fm.select.get_ref())
            .map_err(|m| err(at(&fm.select.span()), "select", m))?;
        for c in &fm.checks.command {
            humantime::parse_duration(&c.timeout).map_err(|e| {
                err(
                    base,
                    "checks.command.timeout",
                    format!("'{}' is not a duration ({e})", c.timeout),
                )
            })?;
        }
        if let Some(c) = &fm.checks.compare_live {
            if !(0.0..=1.0).contains(&c.tolerance) {
                return Err(err(
                    base,
                    "checks.compare-live.tolerance",
                    "must be between 0 and 1".into(),
                ));
            }
        }
        Ok(Runbook {
            file: file.to_path_buf(),
            id,
            title: fm.title,
            sources: fm.sources.into_inner(),
            owner: fm.owner,
            rto: duration(&fm.rto, "rto")?,
            rpo: duration(&fm.rpo, "rpo")?,
            rpo_window: match &fm.rpo_window {
                Some(w) => duration(w, "rpo-window")?,
                None => Duration::from_secs(30 * 24 * 3600),
            },
            schedule,
            select,
            scope: fm.scope,
            restore_target: fm.restore_target,
            checks: fm.checks,
            body: body.trim_start_matches('\n').to_string(),
        })
    }
}

/// The runbooks of a directory. Each stands alone: one with a typo is reported in `broken` and
/// the others are served, because `runbook show` is the main incident tool and an incident is
/// no time to be blocked by a mistake in another plan.
#[derive(Clone, Debug, Default)]
pub struct Shelf {
    pub books: Vec<Runbook>,
    /// Runbooks that could not be read or parsed, with the file and line of the fault.
    pub broken: Vec<ConfigError>,
}

impl Shelf {
    /// The runbook `name` (an id), or the error of a broken one whose file is `name.md`.
    pub fn find(&self, name: &str) -> Option<Result<&Runbook, &ConfigError>> {
        if let Some(rb) = self.books.iter().find(|r| r.id == name) {
            return Some(Ok(rb));
        }
        self.broken
            .iter()
            .find(|e| Path::new(&e.file).file_stem().is_some_and(|s| s == name))
            .map(Err)
    }
}

/// Every `*.md` runbook in `dir`, sorted by file name (files without front matter, such as a
/// README, are skipped). Only a directory that cannot be read at all is an error. A second
/// runbook with an id already taken is broken: a drill must never run the wrong plan.
pub fn load_dir(dir: &Path) -> Result<Shelf, ConfigError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            ConfigError::at(
                dir,
                "",
                0,
                "(runbooks directory)",
                format!(
                    "cannot be read ({e}); give the directory that holds the runbooks (the \
                     CLI's --runbooks DIR, the config's [drills] runbooks)"
                ),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut shelf = Shelf::default();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                let e = ConfigError::at(&file, "", 0, "(file)", format!("cannot be read: {e}"));
                shelf.broken.push(e);
                continue;
            }
        };
        if !text.starts_with("+++\n") {
            continue;
        }
        match Runbook::parse(&file, &text) {
            Ok(rb) if shelf.books.iter().any(|b| b.id == rb.id) => {
                let first = shelf
                    .books
                    .iter()
                    .find(|b| b.id == rb.id)
                    .map(|b| b.file.display().to_string());
                shelf.broken.push(ConfigError::at(
                    &file,
                    "",
                    0,
                    "id",
                    format!(
                        "'{}' is already the id of {}; give each runbook its own id",
                        rb.id,
                        first.unwrap_or_default()
                    ),
                ));
            }
            Ok(rb) => shelf.books.push(rb),
            Err(e) => shelf.broken.push(e),
        }
    }
    Ok(shelf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_runbook_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
        let shelf = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(shelf.broken.is_empty(), "{:?}", shelf.broken);
        let books = shelf.books;
        assert!(books.len() >= 4, "{} runbooks", books.len());
        for b in &books {
            assert!(
                b.body.contains('#'),
                "{}: the human steps are missing",
                b.id
            );
            assert!(b.rto > Duration::ZERO && b.rpo > Duration::ZERO);
        }
    }

    #[test]
    fn selections_parse() {
        assert_eq!(Select::parse("latest").unwrap(), Select::Latest);
        assert_eq!(
            Select::parse("random-within 30").unwrap(),
            Select::RandomWithin(30)
        );
        assert!(matches!(
            Select::parse("latest-before 2026-11-01T00:00:00Z").unwrap(),
            Select::LatestBefore(_)
        ));
        assert!(Select::parse("latest-before yesterday").is_err());
        let old = Select::parse("latest-before 1960-01-01T00:00:00Z").unwrap();
        assert_eq!(old.to_string(), "latest-before 1960-01-01T00:00:00Z");
        assert!(Select::parse("random-within 0").is_err());
    }
}
