//! The daemon's configuration file (TOML; every key is documented in docs/CONFIG.md and
//! config/custodian.toml). Parsing is strict: unknown keys, bad durations, cron expressions or
//! addresses, duplicate source names and missing paths are errors that name the file, the line
//! and the key, before anything runs. Secrets are given by file reference only.

mod source;

pub use crate::located::ConfigError;
pub use crate::schedule::Schedule;
pub use source::{SourceConfig, SourceKind};

use crate::backend::S3Settings;
use serde::Deserialize;
use source::{source, RawSource};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use zeroize::Zeroizing;

/// Where the repository is and how to write to it.
#[derive(Clone, Debug)]
pub struct RepositoryConfig {
    pub url: String,
    pub writer_key_file: PathBuf,
    pub state_dir: PathBuf,
    /// Only for `s3://` URLs.
    pub s3: S3Settings,
    pub connections: Option<usize>,
}

/// How the daemon schedules.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Backups running at once, over all sources.
    pub max_concurrent: usize,
    /// A random delay up to this much before each scheduled run (spreads load across servers).
    pub jitter: Duration,
    /// How often a watched source is walked in full even without events (the safety net).
    pub full_scan_interval: Duration,
    /// First wait before retrying a failed run; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// When sources' retention policies are applied (`forget`).
    pub forget_schedule: Schedule,
    /// When prune runs, with its grace period and tolerated unused space.
    pub prune_schedule: Schedule,
    pub prune: crate::prune::Rules,
}

/// Restore drills the daemon runs on the runbooks' schedules. They need an operator identity
/// on this host, which the writer-only model otherwise keeps off backup servers: configure this
/// on a separate drill host.
#[derive(Clone, Debug)]
pub struct DrillsConfig {
    pub runbooks: Vec<crate::runbook::Runbook>,
    /// Runbooks that could not be parsed: reported in `status` and the metrics, never run.
    pub broken_runbooks: Vec<ConfigError>,
    pub runbooks_dir: PathBuf,
    pub identity_file: PathBuf,
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub repository: RepositoryConfig,
    pub daemon: DaemonConfig,
    /// Loopback address for Prometheus metrics; none when `[metrics]` is absent.
    pub metrics: Option<SocketAddr>,
    /// When a backup is flagged suspicious (ransomware).
    pub anomaly: crate::archiver::changes::AnomalyThresholds,
    /// Scheduled restore drills; none when `[drills]` is absent.
    pub drills: Option<DrillsConfig>,
    pub sources: Vec<SourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    repository: Spanned<RawRepository>,
    #[serde(default)]
    daemon: RawDaemon,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    anomaly: RawAnomaly,
    drills: Option<Spanned<RawDrills>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDrills {
    runbooks: PathBuf,
    identity_file: PathBuf,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAnomaly {
    min_files: Option<u64>,
    changed_share: Option<Spanned<f64>>,
    incompressible_share: Option<Spanned<f64>>,
    deleted_share: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRepository {
    url: Spanned<String>,
    writer_key_file: Spanned<PathBuf>,
    state_dir: Option<PathBuf>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id_file: Option<Spanned<PathBuf>>,
    secret_access_key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    allow_http: bool,
    request_timeout: Option<Spanned<String>>,
    connections: Option<Spanned<usize>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDaemon {
    max_concurrent: Option<Spanned<usize>>,
    jitter: Option<Spanned<String>>,
    full_scan_interval: Option<Spanned<String>>,
    retry_initial: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    forget_schedule: Option<Spanned<String>>,
    prune_schedule: Option<Spanned<String>>,
    prune_grace: Option<Spanned<String>>,
    prune_max_unused: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMetrics {
    listen: Spanned<String>,
}

/// When the daemon applies retention by default: daily at 03:17 (off the hour, when backups
/// scheduled on the hour are not starting).
pub const DEFAULT_FORGET_SCHEDULE: &str = "17 3 * * *";
/// Prune daily after retention: what it marks today it deletes tomorrow.
pub const DEFAULT_PRUNE_SCHEDULE: &str = "47 3 * * *";

/// Default state directory of the daemon (systemd's `StateDirectory=custodian`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/custodian";

/// Turns spans into line numbers and builds located errors.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Off to check an example config's form on a machine without its paths and secrets.
    check_files: bool,
}

impl Locator<'_> {
    fn err(&self, offset: usize, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, offset, key, message)
    }

    fn duration(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.get_ref()).map_err(|e| {
                self.err(
                    v.span().start,
                    key,
                    format!(
                        "'{}' is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"24h\"",
                        v.get_ref()
                    ),
                )
            }),
        }
    }

    fn schedule(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<Schedule, ConfigError> {
        match value {
            None => Schedule::parse(default).map_err(|m| self.err(0, key, m)),
            Some(s) => Schedule::parse(s.get_ref()).map_err(|m| self.err(s.span().start, key, m)),
        }
    }
}

impl Config {
    /// Read, parse and validate a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = read_config_text(file)?;
        Config::parse(file, &text)
    }

    /// Read and check a file's form only (for `status`, which must work while a source is
    /// missing).
    pub fn load_form(file: &Path) -> Result<Config, ConfigError> {
        let text = read_config_text(file)?;
        Config::parse_form(file, &text)
    }

    /// Parse and validate configuration text (`file` is only for messages and relative paths).
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(file, text, true)
    }

    /// The same without touching the file system: source paths are not checked and secret files
    /// not read (for validating shipped examples).
    pub fn parse_form(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(file, text, false)
    }

    fn parse_with(file: &Path, text: &str, check_files: bool) -> Result<Config, ConfigError> {
        let at = Locator {
            file,
            text,
            check_files,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at.err(offset, "(syntax)", e.message().trim().to_string())
        })?;
        let repository = repository(&at, raw.repository.get_ref())?;
        let d = &raw.daemon;
        let daemon = DaemonConfig {
            max_concurrent: match &d.max_concurrent {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(at.err(
                        n.span().start,
                        "daemon.max-concurrent",
                        "must be at least 1",
                    ))
                }
                Some(n) => *n.get_ref(),
                None => 1,
            },
            jitter: at.duration(&d.jitter, "daemon.jitter", Duration::ZERO)?,
            full_scan_interval: at.duration(
                &d.full_scan_interval,
                "daemon.full-scan-interval",
                Duration::from_secs(24 * 3600),
            )?,
            retry_initial: at.duration(
                &d.retry_initial,
                "daemon.retry-initial",
                Duration::from_secs(30),
            )?,
            retry_max: at.duration(&d.retry_max, "daemon.retry-max", Duration::from_secs(3600))?,
            forget_schedule: at.schedule(
                &d.forget_schedule,
                "daemon.forget-schedule",
                DEFAULT_FORGET_SCHEDULE,
            )?,
            prune_schedule: at.schedule(
                &d.prune_schedule,
                "daemon.prune-schedule",
                DEFAULT_PRUNE_SCHEDULE,
            )?,
            prune: crate::prune::Rules {
                grace: at.duration(
                    &d.prune_grace,
                    "daemon.prune-grace",
                    crate::prune::DEFAULT_GRACE,
                )?,
                max_unused: match &d.prune_max_unused {
                    None => crate::prune::DEFAULT_MAX_UNUSED,
                    Some(s) => crate::prune::parse_percent(s.get_ref())
                        .map_err(|m| at.err(s.span().start, "daemon.prune-max-unused", m))?,
                },
            },
        };
        let metrics = match &raw.metrics {
            None => None,
            Some(m) => {
                let addr: SocketAddr = m.listen.get_ref().parse().map_err(|_| {
                    at.err(
                        m.listen.span().start,
                        "metrics.listen",
                        format!(
                            "'{}' is not an address; write e.g. \"127.0.0.1:9184\"",
                            m.listen.get_ref()
                        ),
                    )
                })?;
                if !addr.ip().is_loopback() {
                    return Err(at.err(m.listen.span().start, "metrics.listen", format!("{addr} is not a loopback address; metrics are served without authentication, so bind 127.0.0.1 or ::1 and scrape through a proxy")));
                }
                Some(addr)
            }
        };
        let defaults = crate::archiver::changes::AnomalyThresholds::default();
        let share = |v: &Option<Spanned<f64>>, key: &str, default: f64| match v {
            None => Ok(default),
            Some(s) if (0.0..=1.0).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(at.err(
                s.span().start,
                key,
                "must be a share between 0 and 1, e.g. 0.25",
            )),
        };
        let a = &raw.anomaly;
        let anomaly = crate::archiver::changes::AnomalyThresholds {
            min_files: a.min_files.unwrap_or(defaults.min_files),
            changed_share: share(
                &a.changed_share,
                "anomaly.changed-share",
                defaults.changed_share,
            )?,
            incompressible_share: share(
                &a.incompressible_share,
                "anomaly.incompressible-share",
                defaults.incompressible_share,
            )?,
            deleted_share: share(
                &a.deleted_share,
                "anomaly.deleted-share",
                defaults.deleted_share,
            )?,
        };
        let drills = match &raw.drills {
            None => None,
            Some(d) => {
                let runbooks_dir = resolve_relative(file, &d.get_ref().runbooks);
                let shelf = if check_files {
                    crate::runbook::load_dir(&runbooks_dir)?
                } else {
                    crate::runbook::Shelf::default()
                };
                Some(DrillsConfig {
                    runbooks: shelf.books,
                    broken_runbooks: shelf.broken,
                    runbooks_dir,
                    identity_file: resolve_key_file(file, &d.get_ref().identity_file),
                })
            }
        };
        if raw.source.is_empty() && drills.is_none() {
            return Err(at.err(
                raw.repository.span().start,
                "source",
                "no [[source]] (and no [drills]) is configured; add one with name, path and schedule or watch",
            ));
        }
        let mut sources: Vec<SourceConfig> = Vec::new();
        for (i, s) in raw.source.iter().enumerate() {
            let source = source(&at, i, s.get_ref())?;
            if sources.iter().any(|o| o.name == source.name) {
                return Err(at.err(
                    s.get_ref().name.span().start,
                    &format!("source[{i}].name"),
                    format!(
                        "'{}' is used by an earlier source; names must be unique",
                        source.name
                    ),
                ));
            }
            sources.push(source);
        }
        Ok(Config {
            file: file.to_path_buf(),
            repository,
            daemon,
            metrics,
            anomaly,
            drills,
            sources,
        })
    }
}

fn read_secret(
    at: &Locator,
    file: &Spanned<PathBuf>,
    key: &str,
) -> Result<Zeroizing<String>, ConfigError> {
    if !at.check_files {
        return Ok(Zeroizing::new(String::new()));
    }
    std::fs::read_to_string(file.get_ref())
        .map(|s| Zeroizing::new(s.trim().to_string()))
        .map_err(|e| {
            at.err(
                file.span().start,
                key,
                format!("{} cannot be read: {e}", file.get_ref().display()),
            )
        })
}

fn repository(at: &Locator, r: &RawRepository) -> Result<RepositoryConfig, ConfigError> {
    let url = r.url.get_ref().clone();
    if url.trim().is_empty() {
        return Err(at.err(
            r.url.span().start,
            "repository.url",
            "is empty; write a local path or s3://BUCKET/PREFIX",
        ));
    }
    let is_s3 = url.starts_with("s3://");
    let s3_only = [
        ("endpoint", r.endpoint.is_some()),
        ("region", r.region.is_some()),
        ("access-key-id-file", r.access_key_id_file.is_some()),
        ("secret-access-key-file", r.secret_access_key_file.is_some()),
        ("allow-http", r.allow_http),
    ];
    if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set && !is_s3) {
        return Err(at.err(
            r.url.span().start,
            &format!("repository.{key}"),
            "applies only to s3:// repositories",
        ));
    }
    let mut s3 = S3Settings::from_env().map_err(|m| at.err(0, "(environment)", m))?;
    if let Some(e) = &r.endpoint {
        s3.endpoint = Some(e.clone());
    }
    if let Some(region) = &r.region {
        s3.region = Some(region.clone());
    }
    if let Some(f) = &r.access_key_id_file {
        s3.access_key_id = Some(read_secret(at, f, "repository.access-key-id-file")?.to_string());
    }
    if let Some(f) = &r.secret_access_key_file {
        s3.secret_access_key = Some(read_secret(at, f, "repository.secret-access-key-file")?);
    }
    s3.allow_http |= r.allow_http;
    s3.request_timeout = at.duration(
        &r.request_timeout,
        "repository.request-timeout",
        s3.request_timeout,
    )?;
    let connections = match &r.connections {
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > 64 => {
            return Err(at.err(
                n.span().start,
                "repository.connections",
                "must be between 1 and 64",
            ))
        }
        other => other.as_ref().map(|n| *n.get_ref()),
    };
    Ok(RepositoryConfig {
        url,
        writer_key_file: resolve_key_file(at.file, r.writer_key_file.get_ref()),
        state_dir: r
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        s3,
        connections,
    })
}

fn read_config_text(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.display().to_string(),
        line: 0,
        key: "(file)".into(),
        message: format!("cannot be read: {e}. Pass the right file with --config."),
    })
}

/// A relative path is relative to the config file's directory.
fn resolve_relative(config_file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

/// A relative key path is a systemd credential name when `$CREDENTIALS_DIRECTORY` is set
/// (`LoadCredential=writer.key:…`), else relative to the config file's directory.
fn resolve_key_file(config_file: &Path, key: &Path) -> PathBuf {
    if key.is_absolute() {
        return key.to_path_buf();
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Path::new(&dir).join(key),
        None => config_file.parent().unwrap_or(Path::new(".")).join(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    const GOOD: &str = r#"
[repository]
url = "/srv/backup"
writer-key-file = "/etc/custodian/writer.key"

[[source]]
name = "customers"
path = "/"
schedule = "*/15 * * * *"
"#;

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.sources[0].debounce, Duration::from_secs(30));
        assert_eq!(c.sources[0].max_delay, Duration::from_secs(300));
        assert_eq!(c.daemon.max_concurrent, 1);
        assert_eq!(c.repository.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert!(c.metrics.is_none());
        let mut next = c.sources[0]
            .schedule
            .as_ref()
            .unwrap()
            .cron
            .upcoming(chrono::Utc);
        let (a, b) = (next.next().unwrap(), next.next().unwrap());
        assert_eq!(
            (b - a).num_minutes(),
            15,
            "5-field expressions are minute-based"
        );
    }

    #[test]
    fn every_shipped_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let c = Config::parse_form(&path, &text).unwrap_or_else(|e| panic!("{e}"));
                assert!(!c.sources.is_empty() || c.drills.is_some());
                seen += 1;
            }
        }
        assert!(seen > 0, "no config under {}", dir.display());
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = parse(&GOOD.replace("schedule = \"*/15 * * * *\"", "schedule = \"*/15 * *\""))
            .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (9, "source[0].schedule"), "{e}");
        let e = parse(&format!("{GOOD}colour = \"blue\"\n")).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("colour"), "{e}");
        let e = parse(&GOOD.replace("path = \"/\"", "path = \"/no/such/dir\"")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (8, "source[0].path"), "{e}");
        let e = parse(&format!("{GOOD}[metrics]\nlisten = \"0.0.0.0:9184\"\n")).unwrap_err();
        assert!(e.message.contains("loopback"), "{e}");
        let e = parse(&format!(
            "{GOOD}[[source]]\nname = \"customers\"\npath = \"/\"\nwatch = true\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("unique"), "{e}");
    }
}
