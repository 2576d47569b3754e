//! `[[source]]`: one record store, its schedule, watching and retention.

use super::{ConfigError, Locator, Schedule};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// What kind of record store a source is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Directory,
    /// One SQLite database file, captured with SQLite's online backup API.
    Sqlite,
}

/// One record store.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub path: PathBuf,
    pub exclude: Vec<String>,
    pub one_file_system: bool,
    pub domain: Option<String>,
    pub schedule: Option<Schedule>,
    pub watch: bool,
    pub debounce: Duration,
    pub max_delay: Duration,
    pub kind: SourceKind,
    /// Retention; empty means keep everything.
    pub retention: crate::retention::Policy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSource {
    pub(super) name: Spanned<String>,
    path: Spanned<PathBuf>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    one_file_system: bool,
    domain: Option<String>,
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    watch: bool,
    debounce: Option<Spanned<String>>,
    max_delay: Option<Spanned<String>>,
    #[serde(default)]
    kind: SourceKind,
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    min_age: Option<Spanned<String>>,
}

pub(super) fn source(at: &Locator, i: usize, s: &RawSource) -> Result<SourceConfig, ConfigError> {
    let key = |k: &str| format!("source[{i}].{k}");
    let name = s.name.get_ref().trim().to_string();
    if let Err(why) = crate::archiver::source_name_ok(&name) {
        return Err(at.err(s.name.span().start, &key("name"), why));
    }
    let path = s.path.get_ref().clone();
    if at.check_files {
        check_source_path(at, s, &key("path"))?;
    }
    crate::source::Excludes::new(&s.exclude)
        .map_err(|e| at.err(s.name.span().start, &key("exclude"), e.to_string()))?;
    let schedule = match &s.schedule {
        None => None,
        Some(text) => Some(
            Schedule::parse(text.get_ref())
                .map_err(|m| at.err(text.span().start, &key("schedule"), m))?,
        ),
    };
    if schedule.is_none() && !s.watch {
        return Err(at.err(
            s.name.span().start,
            &key("schedule"),
            "the source has neither a schedule nor watch = true, so it would never be backed up",
        ));
    }
    let debounce = at.duration(&s.debounce, &key("debounce"), Duration::from_secs(30))?;
    let max_delay = at.duration(&s.max_delay, &key("max-delay"), Duration::from_secs(300))?;
    if max_delay < debounce {
        let span = s
            .max_delay
            .as_ref()
            .map_or(s.name.span().start, |m| m.span().start);
        return Err(at.err(
            span,
            &key("max-delay"),
            format!(
                "{} is shorter than debounce ({})",
                humantime::format_duration(max_delay),
                humantime::format_duration(debounce)
            ),
        ));
    }
    Ok(SourceConfig {
        name,
        path,
        exclude: s.exclude.clone(),
        one_file_system: s.one_file_system,
        domain: s.domain.clone(),
        schedule,
        watch: s.watch,
        debounce,
        max_delay,
        kind: s.kind,
        retention: retention(at, s, &key)?,
    })
}

fn retention(
    at: &Locator,
    s: &RawSource,
    key: &dyn Fn(&str) -> String,
) -> Result<crate::retention::Policy, ConfigError> {
    let optional =
        |v: &Option<Spanned<String>>, k: &str| -> Result<Option<Duration>, ConfigError> {
            match v {
                None => Ok(None),
                Some(_) => at.duration(v, &key(k), Duration::ZERO).map(Some),
            }
        };
    let policy = crate::retention::Policy {
        keep_last: s.keep_last,
        keep_hourly: s.keep_hourly,
        keep_daily: s.keep_daily,
        keep_weekly: s.keep_weekly,
        keep_monthly: s.keep_monthly,
        keep_yearly: s.keep_yearly,
        keep_within: optional(&s.keep_within, "keep-within")?,
        max_age: optional(&s.max_age, "max-age")?,
        min_age: optional(&s.min_age, "min-age")?,
    };
    policy.validate().map_err(|m| {
        let span = s
            .min_age
            .as_ref()
            .map_or(s.name.span().start, |m| m.span().start);
        at.err(span, &key("min-age"), m)
    })?;
    Ok(policy)
}

/// The source path exists and is what its kind needs.
fn check_source_path(at: &Locator, s: &RawSource, key: &str) -> Result<(), ConfigError> {
    let path = s.path.get_ref();
    let meta = std::fs::metadata(path).map_err(|e| {
        at.err(
            s.path.span().start,
            key,
            format!("{} cannot be read: {e}", path.display()),
        )
    })?;
    match s.kind {
        SourceKind::Directory if !meta.is_dir() => {
            return Err(at.err(
                s.path.span().start,
                key,
                format!(
                    "{} is not a directory (for one SQLite file, set kind = \"sqlite\")",
                    path.display()
                ),
            ))
        }
        SourceKind::Sqlite if !meta.is_file() => {
            return Err(at.err(
                s.path.span().start,
                key,
                format!(
                    "{} is not a file; a sqlite source names the database file",
                    path.display()
                ),
            ))
        }
        _ => {}
    }
    Ok(())
}
