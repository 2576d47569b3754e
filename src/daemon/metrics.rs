//! Prometheus metrics on a loopback address, through `metrics` and its Prometheus exporter.
//! One gauge family per fact, labelled by source; names follow Prometheus conventions.

use super::state::{DrillResult, RunResult, SourceStatus, WatcherState};
use crate::error::{Error, Result};
use std::net::SocketAddr;

/// Every gauge, with its `# HELP` text. One list, so a metric cannot be exported undescribed
/// (a test scrapes the endpoint and checks that every sample has HELP and TYPE).
const GAUGES: &[(&str, &str)] = &[
    ("custodian_source_last_success_timestamp_seconds", "Unix time of the source's newest snapshot (read from the repository at start-up)."),
    ("custodian_source_rpo_age_seconds", "Seconds since the source's newest snapshot: the data that a loss now would cost."),
    ("custodian_source_last_result", "Last backup of the source: 1 ok, 0 failed or cancelled, -1 not run yet."),
    ("custodian_source_last_duration_seconds", "How long the source's last backup took."),
    ("custodian_source_files", "Files in the source's last snapshot."),
    ("custodian_source_bytes", "Bytes in the source's last snapshot."),
    ("custodian_source_read_bytes", "Bytes the last backup read (changed files only)."),
    ("custodian_source_new_bytes", "Bytes the last backup added to the repository after deduplication and compression."),
    ("custodian_source_snapshots", "Snapshots of the source in the repository."),
    ("custodian_source_suspicious", "1 when the source's last snapshot was flagged as looking like ransomware."),
    ("custodian_source_forgotten_snapshots", "Snapshots this daemon forgot by the source's retention policy."),
    ("custodian_source_last_forget_timestamp_seconds", "Unix time retention last ran for the source."),
    ("custodian_source_consecutive_failures", "Failed backups of the source in a row (0 after a success)."),
    ("custodian_source_needs_operator", "1 when the source's last failure cannot pass by itself (wrong key, damaged repository, refused store): not retried until someone acts."),
    ("custodian_source_watcher_state", "The source's file watcher: 1 healthy, 0 off, -1 failed (full scans only)."),
    ("custodian_drill_last_result", "Last drill of the runbook: 1 pass, 0 fail, -2 could not run, -1 not run yet."),
    ("custodian_drill_last_run_timestamp_seconds", "Unix time the runbook was last drilled."),
    ("custodian_drill_duration_seconds", "How long the runbook's last drill took."),
    ("custodian_drill_rto_margin_seconds", "RTO target minus the time the last drill's restore took; negative means the promise was missed."),
    ("custodian_drill_rpo_margin_seconds", "RPO target minus the worst gap between snapshots; negative means the promise was missed."),
    ("custodian_prune_last_result", "Last prune: 1 ok, 0 failed, -1 not run yet."),
    ("custodian_prune_last_run_timestamp_seconds", "Unix time of the last prune."),
    ("custodian_prune_last_reclaimed_bytes", "Bytes the last prune deleted."),
    ("custodian_prune_marked_bytes", "Bytes of unused packs marked and waiting for their grace period."),
    ("custodian_runbooks_broken", "Runbooks that could not be parsed; they are not drilled until fixed."),
    ("custodian_access_review_age_days", "Days since access was last reviewed and signed off ('custodian access review --approve'); since the repository's creation if never."),
    ("custodian_audit_entries", "Length of the repository's audit log as this daemon last saw it; compare with a later count to catch truncation."),
];

/// Every counter, with its `# HELP` text.
const COUNTERS: &[(&str, &str)] = &[
    (
        "custodian_backup_runs_total",
        "Backups finished since the daemon started, by source and result.",
    ),
    (
        "custodian_prune_reclaimed_bytes_total",
        "Bytes prunes deleted, over every run the status file remembers.",
    ),
    (
        "custodian_audit_failures_total",
        "Runs whose audit entry could not be written to the repository.",
    ),
    (
        "custodian_prune_deleted_packs_total",
        "Packs prunes deleted, over every run the status file remembers.",
    ),
];

/// Start the exporter (its own small runtime thread), install the global recorder and describe
/// every metric.
pub fn install(listen: SocketAddr) -> Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|e| {
            Error::Usage(format!(
                "metrics endpoint {listen} could not start: {e}. Choose a free loopback port in \
                 [metrics] listen."
            ))
        })?;
    for (name, help) in GAUGES {
        metrics::describe_gauge!(*name, *help);
    }
    for (name, help) in COUNTERS {
        metrics::describe_counter!(*name, *help);
    }
    Ok(())
}

/// Publish a source's status; `now` (Unix seconds) gives the RPO age.
pub fn publish(s: &SourceStatus, now: u64) {
    let g = |name: &'static str, value: f64| {
        metrics::gauge!(name, "source" => s.name.clone()).set(value);
    };
    if let Some(t) = s.last_success {
        g("custodian_source_last_success_timestamp_seconds", t as f64);
        g(
            "custodian_source_rpo_age_seconds",
            now.saturating_sub(t) as f64,
        );
    }
    let result = match s.last_result {
        RunResult::Ok => 1.0,
        RunResult::Never => -1.0,
        RunResult::Failed | RunResult::Cancelled | RunResult::Unknown => 0.0,
    };
    g("custodian_source_last_result", result);
    g(
        "custodian_source_last_duration_seconds",
        s.last_duration_ms as f64 / 1000.0,
    );
    g("custodian_source_files", s.files as f64);
    g("custodian_source_bytes", s.bytes as f64);
    g("custodian_source_read_bytes", s.bytes_read as f64);
    g("custodian_source_new_bytes", s.bytes_added as f64);
    g("custodian_source_snapshots", s.snapshots as f64);
    g(
        "custodian_source_suspicious",
        if s.suspicious { 1.0 } else { 0.0 },
    );
    g("custodian_source_forgotten_snapshots", s.forgotten as f64);
    if let Some(t) = s.last_forget {
        g("custodian_source_last_forget_timestamp_seconds", t as f64);
    }
    g(
        "custodian_source_consecutive_failures",
        f64::from(s.consecutive_failures),
    );
    g(
        "custodian_source_needs_operator",
        if s.needs_operator { 1.0 } else { 0.0 },
    );
    let watcher = match s.watcher {
        WatcherState::Healthy => 1.0,
        WatcherState::Failed => -1.0,
        WatcherState::Off => 0.0,
    };
    g("custodian_source_watcher_state", watcher);
}

/// Publish a scheduled drill's last result.
pub fn publish_drill(d: &super::state::DrillStatus) {
    let g = |name: &'static str, value: f64| {
        metrics::gauge!(name, "runbook" => d.runbook.clone()).set(value);
    };
    let result = match d.last_result {
        DrillResult::Pass => 1.0,
        DrillResult::Fail => 0.0,
        DrillResult::Error => -2.0,
        DrillResult::Never => -1.0,
        DrillResult::Unknown => 0.0,
    };
    g("custodian_drill_last_result", result);
    if let Some(t) = d.last_run {
        g("custodian_drill_last_run_timestamp_seconds", t as f64);
        g("custodian_drill_duration_seconds", d.duration_seconds);
        g("custodian_drill_rto_margin_seconds", d.rto_margin_seconds);
        g("custodian_drill_rpo_margin_seconds", d.rpo_margin_seconds);
    }
}

/// Publish the daemon's prune results (repository-wide, no labels).
pub fn publish_prune(p: &super::state::PruneStatus) {
    let g = |name: &'static str, value: f64| metrics::gauge!(name).set(value);
    let result = match p.last_result {
        RunResult::Ok => 1.0,
        RunResult::Failed | RunResult::Cancelled | RunResult::Unknown => 0.0,
        RunResult::Never => -1.0,
    };
    g("custodian_prune_last_result", result);
    if let Some(t) = p.last_run {
        g("custodian_prune_last_run_timestamp_seconds", t as f64);
    }
    g(
        "custodian_prune_last_reclaimed_bytes",
        p.last_reclaimed_bytes as f64,
    );
    // Totals the status file carries across restarts: counters set to their absolute value.
    metrics::counter!("custodian_prune_reclaimed_bytes_total").absolute(p.reclaimed_bytes_total);
    metrics::counter!("custodian_prune_deleted_packs_total").absolute(p.packs_deleted_total);
    g("custodian_prune_marked_bytes", p.marked_bytes as f64);
}

/// How many runbooks could not be parsed (and are not drilled until fixed).
pub fn publish_broken_runbooks(count: usize) {
    metrics::gauge!("custodian_runbooks_broken").set(count as f64);
}

/// Count a finished run by result (`ok`, `failed`, `cancelled`).
pub fn count_run(source: &str, result: &'static str) {
    metrics::counter!("custodian_backup_runs_total", "source" => source.to_string(), "result" => result)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        GAUGES.iter().chain(COUNTERS).any(|(n, _)| *n == name)
    }

    /// The shipped alert rules parse, have what Alertmanager routes on, cover what an operator
    /// must hear about, and name only metrics the daemon exports.
    #[test]
    fn shipped_alert_rules_are_valid_and_use_real_metrics() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus-alerts.yml");
        let text = std::fs::read_to_string(path).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let rules = doc["groups"][0]["rules"].as_sequence().unwrap();
        let mut names = Vec::new();
        for rule in rules {
            let name = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{name}"
            );
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
            if let Some(f) = rule["for"].as_str() {
                assert!(humantime::parse_duration(f).is_ok(), "{name}: for {f}");
            }
            let mut rest = expr;
            while let Some(at) = rest.find("custodian_") {
                let metric: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    known(&metric),
                    "{name} uses {metric}, which is not exported"
                );
                rest = &rest[at + metric.len()..];
            }
            assert!(!names.contains(&name), "{name} twice");
            names.push(name);
        }
        for needed in [
            "CustodianDaemonDown",
            "CustodianSourceFailing",
            "CustodianRpoBreached",
            "CustodianDrillFailed",
            "CustodianDrillOverdue",
            "CustodianPruneFailing",
        ] {
            assert!(names.contains(&needed), "no {needed}");
        }
        // promtool checks the PromQL too, where it is installed (Debian: prometheus).
        if let Ok(out) = std::process::Command::new("promtool")
            .args(["check", "rules", path])
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn every_metric_has_help_text_once() {
        let all: Vec<&str> = GAUGES.iter().chain(COUNTERS).map(|(n, _)| *n).collect();
        for (i, name) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(name), "{name} twice");
            assert!(name.starts_with("custodian_"));
        }
        for (name, _) in COUNTERS {
            assert!(name.ends_with("_total"), "{name}: counters end in _total");
        }
        for (name, _) in GAUGES {
            assert!(
                !name.ends_with("_total"),
                "{name}: a gauge named like a counter"
            );
        }
    }
}
