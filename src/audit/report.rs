//! The facts of `custodian report`, taken from the audit log alone (so an auditor's identity
//! is enough): backups per source and the RPO met or missed day by day, drills with their RTO
//! and RPO against target, checks, access changes and the last review, every read, what was
//! destroyed, and the log's own verification. `html.rs` renders them for people.

use super::log::{Record, Review};
use super::verify::Verified;
use crate::format::audit::{Access, DrillFigures, REVIEW_OP};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

/// What the report covers.
pub struct Window {
    pub since: SystemTime,
    pub now: SystemTime,
    pub source: Option<String>,
    /// The loss window promised for backups (a gap longer than this misses it).
    pub rpo: Duration,
}

/// Everything the report says, as `report.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    pub repository: String,
    pub generated: String,
    pub since: String,
    pub source: Option<String>,
    pub rpo_target_seconds: u64,
    pub sources: Vec<SourceFacts>,
    pub drills: Vec<DrillRun>,
    pub checks: Vec<Event>,
    pub access_changes: Vec<Event>,
    pub last_review: Option<Review>,
    pub reads: Vec<Event>,
    pub destruction: Vec<Event>,
    /// Stores handed to or received from another owner: prepare, accept, complete.
    pub handovers: Vec<Event>,
    pub audit: AuditState,
    /// Entries in the window not sealed to the reader's key (shown by signer only).
    pub unreadable_entries: usize,
}

/// Backups of one source.
#[derive(Clone, Debug, Serialize)]
pub struct SourceFacts {
    pub name: String,
    pub backups: usize,
    pub failed: usize,
    pub days: Vec<Day>,
}

/// One day of a source: its backups and the longest time without a good one.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    pub date: String,
    pub backups: usize,
    pub worst_gap_seconds: u64,
    pub met: bool,
}

/// One drill command and what each of its runbooks measured.
#[derive(Clone, Debug, Serialize)]
pub struct DrillRun {
    pub time: String,
    pub source: Option<String>,
    pub by: String,
    pub result: String,
    pub figures: Vec<DrillFigures>,
}

/// One entry as a line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub seq: u64,
    pub time: String,
    pub op: String,
    pub by: String,
    pub source: Option<String>,
    pub snapshots: usize,
    pub reason: String,
    pub result: String,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
}

/// The audit log's verification at the time of the report.
#[derive(Clone, Debug, Serialize)]
pub struct AuditState {
    pub verified: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub latest_checkpoint: Option<(u64, String)>,
    pub offline_entries: u64,
    pub problems: Vec<String>,
}

/// Gather the facts of `records` (the whole log, oldest first) for `window`.
pub fn facts(repository: &str, records: &[Record], verified: &Verified, window: &Window) -> Facts {
    let in_window = |r: &&Record| time_of(r).is_some_and(|t| t >= window.since);
    let of_source = |r: &Record| {
        window
            .source
            .as_deref()
            .is_none_or(|s| r.details.as_ref().and_then(|d| d.source.as_deref()) == Some(s))
    };
    let shown: Vec<&Record> = records.iter().filter(in_window).collect();
    let pick = |keep: &dyn Fn(&Record) -> bool, by_source: bool| -> Vec<Event> {
        shown
            .iter()
            .filter(|r| !by_source || of_source(r))
            .filter(|r| keep(r))
            .map(|r| event(r))
            .collect()
    };
    let op_is = |r: &Record, f: &dyn Fn(&str) -> bool| r.details.as_ref().is_some_and(|d| f(&d.op));
    Facts {
        repository: repository.to_string(),
        generated: crate::when::rfc3339(window.now),
        since: crate::when::rfc3339(window.since),
        source: window.source.clone(),
        rpo_target_seconds: window.rpo.as_secs(),
        sources: sources(records, window),
        drills: shown
            .iter()
            .filter(|r| of_source(r) && op_is(r, &|op| op == "drill"))
            .map(|r| drill_run(r))
            .collect(),
        checks: pick(&|r| op_is(r, &|op| op.starts_with("check")), false),
        access_changes: pick(&|r| op_is(r, &registry_op), false),
        last_review: records.iter().rev().find_map(Review::of),
        reads: pick(
            &|r| r.details.as_ref().is_some_and(|d| d.access == Access::Read),
            true,
        ),
        destruction: pick(&|r| op_is(r, &destructive_op), true),
        handovers: pick(&|r| op_is(r, &|op| op.starts_with("handover ")), true),
        audit: AuditState {
            verified: verified.problems.is_empty(),
            entries: verified.entries,
            checkpoints: verified.checkpoints,
            latest_checkpoint: verified.latest_checkpoint.clone(),
            offline_entries: verified.offline_entries,
            problems: verified
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.object, p.what))
                .collect(),
        },
        unreadable_entries: shown.iter().filter(|r| r.details.is_none()).count(),
    }
}

fn registry_op(op: &str) -> bool {
    (op.starts_with("access ") && op != REVIEW_OP) || op.starts_with("key ") || op == "init"
}

fn destructive_op(op: &str) -> bool {
    matches!(
        op,
        "erase"
            | "key destroy-domain"
            | "forget"
            | "prune"
            | "exclusions --remove"
            | "handover complete"
            | "handover retention expired"
    )
}

fn time_of(r: &Record) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(&r.time).ok()
}

/// The result an entry ended with: the daemon writes it inside, commands in their closing.
fn result_of(r: &Record) -> String {
    r.details
        .as_ref()
        .and_then(|d| d.result.clone())
        .or_else(|| r.closed.as_ref().map(|c| c.result.clone()))
        .unwrap_or_else(|| "unfinished".into())
}

fn who(r: &Record) -> String {
    match r.details.as_ref().and_then(|d| d.name.as_ref()) {
        Some(name) => format!("{name} ({})", r.signed_by),
        None => r.signed_by.clone(),
    }
}

fn event(r: &Record) -> Event {
    let d = r.details.as_ref();
    let touched = d
        .and_then(|d| d.touched)
        .or_else(|| r.closed.as_ref().and_then(|c| c.touched));
    Event {
        seq: r.seq,
        time: r.time.clone(),
        op: d.map_or_else(|| "(sealed)".into(), |d| d.op.clone()),
        by: who(r),
        source: d.and_then(|d| d.source.clone()),
        snapshots: d.map_or(0, |d| d.snapshots.len()),
        reason: d.map(|d| d.reason.clone()).unwrap_or_default(),
        result: result_of(r),
        files: touched.map(|t| t.files),
        bytes: touched.map(|t| t.bytes),
    }
}

fn drill_run(r: &Record) -> DrillRun {
    DrillRun {
        time: r.time.clone(),
        source: r.details.as_ref().and_then(|d| d.source.clone()),
        by: who(r),
        result: result_of(r),
        figures: r
            .closed
            .as_ref()
            .map(|c| c.drills.clone())
            .unwrap_or_default(),
    }
}

/// Per source: the times of good backups (the whole log, so the first day's gap is right).
fn sources(records: &[Record], window: &Window) -> Vec<SourceFacts> {
    let mut good: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        // Entries dated after the report's time are not believed (a skewed or forged clock).
        let (Some(d), Some(t)) = (r.details.as_ref(), time_of(r).filter(|t| *t <= window.now))
        else {
            continue;
        };
        let Some(source) = d.source.clone().filter(|_| d.op == "backup") else {
            continue;
        };
        if window.source.as_ref().is_some_and(|s| *s != source) {
            continue;
        }
        match result_of(r).as_str() {
            "ok" | "partial" => good.entry(source).or_default().push(unix(t)),
            // Still running, or its process died before it could say: neither.
            "unfinished" => {}
            _ if t >= window.since => *failed.entry(source).or_default() += 1,
            _ => {}
        }
    }
    let names: std::collections::BTreeSet<String> =
        good.keys().chain(failed.keys()).cloned().collect();
    names
        .into_iter()
        .map(|name| {
            let times = good.get(&name).cloned().unwrap_or_default();
            let days = days(&times, window);
            SourceFacts {
                backups: days.iter().map(|d| d.backups).sum(),
                failed: failed.get(&name).copied().unwrap_or(0),
                name,
                days,
            }
        })
        .collect()
}

/// Day by day (UTC) from the window's start: backups that day and the longest stretch without
/// one that the day saw. Days before the first backup ever are left out.
fn days(times: &[u64], window: &Window) -> Vec<Day> {
    let mut times = times.to_vec();
    times.sort_unstable();
    let (start, now) = (unix(window.since) / DAY * DAY, unix(window.now));
    let rpo = window.rpo.as_secs();
    let mut out = Vec::new();
    let mut day = start;
    while day <= now {
        let end = (day + DAY).min(now);
        let before = times.partition_point(|&t| t < day);
        let upto = times.partition_point(|&t| t < day + DAY);
        if before == 0 && upto == 0 {
            day += DAY;
            continue;
        }
        // The stretch open at the start of the day, each one closed during it, and the one
        // still open at its end.
        let mut last = before.checked_sub(1).map(|i| times[i]);
        let mut worst = 0;
        for &t in &times[before..upto] {
            if let Some(l) = last {
                worst = worst.max(t - l);
            }
            last = Some(t);
        }
        if let Some(l) = last {
            worst = worst.max(end.saturating_sub(l));
        }
        out.push(Day {
            date: crate::when::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(day))
                .chars()
                .take(10)
                .collect(),
            backups: upto - before,
            worst_gap_seconds: worst,
            met: worst <= rpo,
        });
        day += DAY;
    }
    out
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days_back: u64, rpo_hours: u64) -> Window {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * DAY + 12 * 3600);
        Window {
            since: now - Duration::from_secs(days_back * DAY),
            now,
            source: None,
            rpo: Duration::from_secs(rpo_hours * 3600),
        }
    }

    #[test]
    fn a_day_without_a_backup_misses_the_rpo_and_a_day_with_two_meets_it() {
        let w = window(2, 24);
        // Backups on day 98 at 06:00 and 18:00, then none until now (day 100, 12:00).
        let times = [98 * DAY + 6 * 3600, 98 * DAY + 18 * 3600];
        let d = days(&times, &w);
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].backups, d[0].met), (2, true));
        assert_eq!(d[0].worst_gap_seconds, 12 * 3600);
        // Day 99 ends 30 h after the last backup; day 100 at noon, 42 h.
        assert_eq!((d[1].backups, d[1].met), (0, false));
        assert_eq!(d[1].worst_gap_seconds, 30 * 3600);
        assert_eq!(d[2].worst_gap_seconds, 42 * 3600);
    }

    #[test]
    fn days_before_the_first_backup_are_left_out() {
        let w = window(5, 24);
        let d = days(&[99 * DAY + 3600], &w);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].backups, 1);
    }
}
