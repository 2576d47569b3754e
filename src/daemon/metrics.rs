//! Prometheus metrics on a loopback address, through `metrics` and its Prometheus exporter.
//! One gauge family per fact, labelled by source; names follow Prometheus conventions.

use super::state::SourceStatus;
use crate::error::{Error, Result};
use std::net::SocketAddr;

/// Start the exporter (its own small runtime thread) and install the global recorder.
pub fn install(listen: SocketAddr) -> Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|e| {
            Error::Invalid(format!(
                "metrics endpoint {listen} could not start: {e}. Choose a free loopback port in \
                 [metrics] listen."
            ))
        })
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
    let result = match s.last_result.as_str() {
        "ok" => 1.0,
        "never" | "" => -1.0,
        _ => 0.0,
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
    let watcher = match s.watcher.as_str() {
        "healthy" => 1.0,
        "failed" => -1.0,
        _ => 0.0,
    };
    g("custodian_source_watcher_state", watcher);
}

/// Publish a scheduled drill's last result.
pub fn publish_drill(d: &super::state::DrillStatus) {
    let g = |name: &'static str, value: f64| {
        metrics::gauge!(name, "runbook" => d.runbook.clone()).set(value);
    };
    let result = match d.last_result.as_str() {
        "pass" => 1.0,
        "fail" => 0.0,
        "error" => -2.0,
        _ => -1.0,
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
    let result = match p.last_result.as_str() {
        "ok" => 1.0,
        "failed" => 0.0,
        _ => -1.0,
    };
    g("custodian_prune_last_result", result);
    if let Some(t) = p.last_run {
        g("custodian_prune_last_run_timestamp_seconds", t as f64);
    }
    g(
        "custodian_prune_last_reclaimed_bytes",
        p.last_reclaimed_bytes as f64,
    );
    g(
        "custodian_prune_reclaimed_bytes_total",
        p.reclaimed_bytes_total as f64,
    );
    g(
        "custodian_prune_deleted_packs_total",
        p.packs_deleted_total as f64,
    );
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
