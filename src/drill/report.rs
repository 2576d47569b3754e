//! Drill reports: JSON for machines and a page for people (pass/fail header, timeline, RTO and
//! RPO bars against their targets, each check with its evidence). Stored locally and, sealed to
//! the operators (evidence can name customer files), in the repository's `drills/`.

use super::checks::CheckResult;
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::repository::Repository;
use crate::runbook::Runbook;
use serde::{Deserialize, Serialize};
use std::time::{Instant, SystemTime};

/// Version of stored reports.
pub const REPORT_VERSION: u32 = 1;

/// One timed step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

impl Step {
    pub fn new(name: String, started: Instant) -> Step {
        Step {
            name,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// What was restored for one source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceResult {
    pub source: String,
    /// The key domain its snapshot is sealed to: the report is sealed to operators granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub snapshot: String,
    pub snapshot_time: String,
    pub selected_by: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RtoResult {
    pub target_seconds: f64,
    /// Restore plus checks, wall time.
    pub achieved_seconds: f64,
    pub passed: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RpoResult {
    pub target_seconds: u64,
    /// Age of the newest snapshot at drill time: the data a loss now would cost.
    pub newest_age_seconds: u64,
    pub selected_age_seconds: u64,
    /// Worst gap between consecutive snapshots within the window.
    pub worst_gap_seconds: u64,
    pub window_seconds: u64,
    pub passed: bool,
}

impl RpoResult {
    /// Combine sources: the worst of each.
    pub fn merge(&mut self, other: RpoResult) {
        let first = self.target_seconds == 0 && self.window_seconds == 0;
        self.target_seconds = other.target_seconds;
        self.window_seconds = other.window_seconds;
        self.newest_age_seconds = self.newest_age_seconds.max(other.newest_age_seconds);
        self.selected_age_seconds = self.selected_age_seconds.max(other.selected_age_seconds);
        self.worst_gap_seconds = self.worst_gap_seconds.max(other.worst_gap_seconds);
        self.passed = (first || self.passed) && other.passed;
    }
}

/// A drill's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillReport {
    pub version: u32,
    pub runbook: String,
    pub title: String,
    pub owner: String,
    /// RFC 3339.
    pub time: String,
    pub passed: bool,
    /// Why it failed, one line each.
    pub reasons: Vec<String>,
    pub steps: Vec<Step>,
    pub sources: Vec<SourceResult>,
    pub rto: RtoResult,
    pub rpo: RpoResult,
    pub checks: Vec<CheckResult>,
}

impl DrillReport {
    pub fn new(rb: &Runbook, now: SystemTime) -> DrillReport {
        DrillReport {
            version: REPORT_VERSION,
            runbook: rb.id.clone(),
            title: rb.title.clone(),
            owner: rb.owner.clone(),
            time: humantime::format_rfc3339_seconds(now).to_string(),
            passed: true,
            reasons: Vec::new(),
            steps: Vec::new(),
            sources: Vec::new(),
            rto: RtoResult {
                target_seconds: rb.rto.as_secs_f64(),
                ..Default::default()
            },
            rpo: RpoResult::default(),
            checks: Vec::new(),
        }
    }

    pub fn fail(&mut self, reason: String) {
        self.passed = false;
        self.reasons.push(reason);
    }

    /// Write the report as `<time>-<runbook>.json` and `.txt` into `dir` (made mode 0700: the
    /// evidence can name customer files). Returns the path without extension.
    pub fn save_local(&self, dir: &std::path::Path) -> Result<std::path::PathBuf> {
        crate::fsutil::private_dir(dir)?;
        let stem = dir.join(format!("{}-{}", self.time.replace(':', ""), self.runbook));
        let json = crate::compress::json_bytes(self)?;
        for (ext, bytes) in [("json", json), ("txt", self.render().into_bytes())] {
            let file = stem.with_extension(ext);
            std::fs::write(&file, bytes).map_err(|e| Error::io(&file, e))?;
        }
        Ok(stem)
    }

    /// The page a person reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        out.push_str(&format!(
            "{verdict}  drill '{}': {}\n",
            self.runbook, self.title
        ));
        out.push_str(&format!(
            "run {} · owner {}\n",
            crate::when::show_stored(&self.time),
            self.owner
        ));
        for r in &self.reasons {
            out.push_str(&format!("  ✗ {r}\n"));
        }
        out.push_str("\nsnapshots\n");
        for s in &self.sources {
            out.push_str(&format!(
                "  {:<16} {} ({}), {}: {} files, {}\n",
                s.source,
                crate::id::short_text(&s.snapshot),
                crate::when::show_stored(&s.snapshot_time),
                s.selected_by,
                s.files,
                crate::human::bytes(s.bytes)
            ));
        }
        out.push_str("\ntimeline\n");
        let mut at = 0.0;
        for s in &self.steps {
            out.push_str(&format!(
                "  +{at:>8.2}s  {:<32} {:>8.2}s\n",
                s.name, s.seconds
            ));
            at += s.seconds;
        }
        out.push_str("\ntargets\n");
        out.push_str(&format!(
            "  RTO {} {:.1}s of {:.1}s\n",
            bar(self.rto.achieved_seconds, self.rto.target_seconds),
            self.rto.achieved_seconds,
            self.rto.target_seconds
        ));
        let rpo_used = self.rpo.newest_age_seconds.max(self.rpo.worst_gap_seconds) as f64;
        out.push_str(&format!(
            "  RPO {} newest {} old, worst gap {}, of {}\n",
            bar(rpo_used, self.rpo.target_seconds as f64),
            crate::human::seconds(self.rpo.newest_age_seconds as f64),
            crate::human::seconds(self.rpo.worst_gap_seconds as f64),
            crate::human::seconds(self.rpo.target_seconds as f64)
        ));
        out.push_str("\nchecks\n");
        for c in &self.checks {
            let mark = if c.passed { "✓" } else { "✗" };
            out.push_str(&format!(
                "  {mark} {:<28} {:>6.2}s  {}\n",
                c.name, c.seconds, c.evidence
            ));
        }
        out
    }
}

/// `[#####-----]` for `used` of `target`, overflowing with `!` past it.
fn bar(used: f64, target: f64) -> String {
    const WIDTH: usize = 20;
    let share = if target > 0.0 {
        used / target
    } else {
        f64::INFINITY
    };
    let filled = ((share * WIDTH as f64).round() as usize).min(WIDTH);
    let mut s = format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled));
    if share > 1.0 {
        s.push('!');
    }
    s
}

impl DrillReport {
    /// The figures the audit log keeps of this drill (durations, no names).
    pub fn figures(&self) -> crate::audit::DrillFigures {
        crate::audit::DrillFigures {
            passed: self.passed,
            rto_target: self.rto.target_seconds,
            rto_achieved: self.rto.achieved_seconds,
            rpo_target: self.rpo.target_seconds,
            rpo_achieved: self.rpo.newest_age_seconds,
        }
    }
}

impl Repository {
    /// Store a report in `drills/`, sealed to the operators; returns its object name.
    pub fn store_drill_report(&self, report: &DrillReport) -> Result<String> {
        // Sealed to the operators in office now, not those of an older trust list.
        self.require_current_trust()?;
        let plain = crate::compress::pack_json(report)?;
        let sealed = self.seal_drill_report(&plain)?;
        Ok(self.put_hash_named(ObjectKind::DrillReport, sealed)?.0)
    }

    /// Every stored report, oldest first (operators only).
    pub fn drill_reports(&self) -> Result<Vec<DrillReport>> {
        let mut out = Vec::new();
        for o in self.list(ObjectKind::DrillReport)? {
            match self.read_drill_report(&o) {
                Ok(report) => out.push(report),
                // A report on a source this operator is not granted is sealed to others.
                Err(crate::Error::Crypto(crate::error::CryptoError::NoMatchingKey { .. })) => {
                    tracing::debug!(object = %o.name, "a drill report not sealed to this identity")
                }
                Err(e) if e.is_damage() => {
                    tracing::warn!(object = %o.name, "skipped a damaged or forged drill report: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(out)
    }

    fn read_drill_report(&self, object: &crate::backend::ObjectInfo) -> Result<DrillReport> {
        let name = &object.name;
        let Some(stored) = self.get_listed(ObjectKind::DrillReport, object)? else {
            return Err(Error::Damaged(format!("{name} vanished while it was read")));
        };
        let (sealed, _) = self.verify(ObjectKind::DrillReport, name, &stored)?;
        let plain = self.open_for_operators(sealed, "drill report")?;
        Ok(crate::format::decode_packed(
            &plain,
            "drill report",
            REPORT_VERSION,
            crate::format::kind::REPORT_MAX_PLAIN,
        )?)
    }
}
