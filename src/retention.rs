//! Retention: which snapshots to keep. A pure function of the snapshot list, the policy and
//! `now`, so every decision can be shown (`forget --dry-run`) and tested by table.
//!
//! Order of precedence: a hold keeps; past `max-age` (the legal maximum) removes; younger than
//! `min-age` keeps; then restic's rules (`keep-last`, `keep-hourly` … `keep-yearly`,
//! `keep-within`) keep; anything no rule keeps is removed. With no keep rule at all, everything
//! within `max-age` is kept. Buckets (hour, day, ISO week, month, year) are in UTC, so a decision
//! does not depend on the machine's time zone; `keep-within` counts back from the newest
//! snapshot, as in restic.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// The calendar bucket (hour, day, ISO week, month, year) a time falls in, in UTC.
type BucketOf = fn(DateTime<Utc>) -> (i32, u32);

/// A retention policy. `None` means the rule is not used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    /// Destroy anything older, whatever else would keep it (holds excepted).
    pub max_age: Option<Duration>,
    /// Never forget anything younger.
    pub min_age: Option<Duration>,
}

impl Policy {
    /// Whether any keep rule is set (without one, only `max-age` removes).
    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
    }

    /// `min-age` above `max-age` would make a snapshot both kept and destroyed.
    pub fn validate(&self) -> Result<(), String> {
        if let (Some(min), Some(max)) = (self.min_age, self.max_age) {
            if min > max {
                return Err(format!(
                    "min-age ({}) is longer than max-age ({}); nothing could satisfy both",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ));
            }
        }
        Ok(())
    }

    /// Nothing set: `forget` refuses to run without a policy, as restic does.
    pub fn is_empty(&self) -> bool {
        !self.has_keep_rules() && self.max_age.is_none()
    }
}

/// One snapshot as retention sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    /// Its own time: buckets and ages count from it.
    pub time: SystemTime,
    /// Its place, oldest first, in lineage order (`repository::lineage_times`), which decides
    /// "newest": a backup made after a clock stepped back is newer than its parent although
    /// its time says otherwise. Equal places fall back to the time.
    pub order: usize,
    /// The hold's reason, if the snapshot is held.
    pub hold: Option<String>,
}

/// The decision for one snapshot, with every rule that decided it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Decide for every candidate; the result is in the candidates' order.
pub fn decide(policy: &Policy, candidates: &[Candidate], now: SystemTime) -> Vec<Decision> {
    // Newest first, for "the newest in each bucket".
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let key = |c: &Candidate| (c.order, c.time);
    order.sort_by(|&a, &b| key(&candidates[b]).cmp(&key(&candidates[a])));
    let mut kept_by: Vec<Vec<String>> = vec![Vec::new(); candidates.len()];
    if let Some(n) = policy.keep_last {
        for &i in order.iter().take(n as usize) {
            kept_by[i].push(format!("keep-last {n}"));
        }
    }
    let buckets: [(&str, Option<u32>, BucketOf); 5] = [
        ("keep-hourly", policy.keep_hourly, |t| {
            (t.year(), t.ordinal() * 24 + t.hour())
        }),
        ("keep-daily", policy.keep_daily, |t| (t.year(), t.ordinal())),
        ("keep-weekly", policy.keep_weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        ("keep-monthly", policy.keep_monthly, |t| {
            (t.year(), t.month())
        }),
        ("keep-yearly", policy.keep_yearly, |t| (t.year(), 0)),
    ];
    for (rule, count, bucket_of) in buckets {
        let Some(n) = count else { continue };
        let mut seen = HashSet::new();
        for &i in &order {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket_of(DateTime::<Utc>::from(candidates[i].time))) {
                kept_by[i].push(format!("{rule} {n}"));
            }
        }
    }
    if let (Some(within), Some(&newest)) = (policy.keep_within, order.first()) {
        let since = candidates[newest].time.checked_sub(within);
        for (i, c) in candidates.iter().enumerate() {
            if since.is_none_or(|s| c.time >= s) {
                kept_by[i].push(format!(
                    "keep-within {}",
                    humantime::format_duration(within)
                ));
            }
        }
    }
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    candidates
        .iter()
        .zip(kept_by)
        .map(|(c, rules)| {
            let (keep, reasons) = if let Some(reason) = &c.hold {
                (true, vec![format!("held: {reason}")])
            } else if let Some(max) = policy.max_age.filter(|m| age(c.time) > *m) {
                (
                    false,
                    vec![format!(
                        "older than max-age {}",
                        humantime::format_duration(max)
                    )],
                )
            } else if let Some(min) = policy.min_age.filter(|m| age(c.time) < *m) {
                (
                    true,
                    vec![format!(
                        "younger than min-age {}",
                        humantime::format_duration(min)
                    )],
                )
            } else if !policy.has_keep_rules() {
                (true, vec!["within max-age".to_string()])
            } else if rules.is_empty() {
                (false, vec!["no keep rule matched".to_string()])
            } else {
                (true, rules)
            };
            Decision {
                id: c.id.clone(),
                keep,
                reasons,
            }
        })
        .collect()
}

/// Snapshots grouped as retention judges them: by source and host, as restic groups by host
/// and paths, so a source backed up from an old and a new server keeps the newest of each.
/// Order within a group stays that of `snapshots` (lineage order).
pub fn groups<'a>(
    snapshots: impl IntoIterator<Item = &'a crate::repository::SnapshotInfo>,
) -> std::collections::BTreeMap<(String, String), Vec<&'a crate::repository::SnapshotInfo>> {
    let mut out: std::collections::BTreeMap<(String, String), Vec<_>> = Default::default();
    for s in snapshots {
        out.entry((s.head.source.clone(), s.head.host.clone()))
            .or_default()
            .push(s);
    }
    out
}

/// Decide for one source's snapshots (with their holds), given oldest first in lineage order as
/// `Repository::list_snapshots` lists them: every decision, and the snapshots to forget as a
/// destruction record will list them.
pub fn plan(
    snapshots: &[&crate::repository::SnapshotInfo],
    holds: &std::collections::HashMap<crate::id::SnapshotId, crate::repository::Hold>,
    policy: &Policy,
    now: SystemTime,
) -> (
    Vec<Decision>,
    Vec<(crate::id::SnapshotId, crate::repository::DestroyedSnapshot)>,
) {
    let candidates: Vec<Candidate> = snapshots
        .iter()
        .enumerate()
        .map(|(order, s)| Candidate {
            id: s.id.to_hex(),
            time: s.time,
            order,
            hold: holds.get(&s.id).map(|h| h.reason.clone()),
        })
        .collect();
    let decisions = decide(policy, &candidates, now);
    let doomed = snapshots
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !d.keep)
        .map(|(s, d)| {
            (
                s.id,
                crate::repository::DestroyedSnapshot {
                    id: s.id.to_hex(),
                    source: s.head.source.clone(),
                    time: s.head.time.clone(),
                    reason: d.reasons.join("; "),
                },
            )
        })
        .collect();
    (decisions, doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    /// 2026-11-23T12:00:00Z.
    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-23T12:00:00Z").unwrap()
    }

    /// Snapshots `ago` seconds before now, named s0, s1, …; `held` lists held indexes.
    fn snaps(ago: &[u64], held: &[usize]) -> Vec<Candidate> {
        ago.iter()
            .enumerate()
            .map(|(i, a)| Candidate {
                id: format!("s{i}"),
                time: now() - Duration::from_secs(*a),
                order: 0,
                hold: held.contains(&i).then(|| "legal".to_string()),
            })
            .collect()
    }

    fn kept(policy: &Policy, c: &[Candidate]) -> Vec<String> {
        decide(policy, c, now())
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    }

    #[test]
    fn table() {
        // Hourly snapshots over three days, newest first: s0 is now, s1 an hour ago, …
        let hourly: Vec<u64> = (0..72).map(|h| h * HOUR).collect();
        let c = snaps(&hourly, &[]);
        let d = |f: fn(&mut Policy)| {
            let mut p = Policy::default();
            f(&mut p);
            p
        };
        let cases: Vec<(&str, Policy, Vec<&str>)> = vec![
            (
                "keep-last 3",
                d(|p| p.keep_last = Some(3)),
                vec!["s0", "s1", "s2"],
            ),
            // Days in UTC: s0..s12 are today (12:00 back to 00:00), s13 yesterday 23:00, …
            (
                "keep-daily 3",
                d(|p| p.keep_daily = Some(3)),
                vec!["s0", "s13", "s37"],
            ),
            (
                "keep-hourly 2",
                d(|p| p.keep_hourly = Some(2)),
                vec!["s0", "s1"],
            ),
            (
                "keep-within 2h",
                d(|p| p.keep_within = Some(Duration::from_secs(2 * HOUR))),
                vec!["s0", "s1", "s2"],
            ),
            (
                "keep-last 1 + keep-daily 2",
                d(|p| {
                    p.keep_last = Some(1);
                    p.keep_daily = Some(2);
                }),
                vec!["s0", "s13"],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(&policy, &c), want, "{name}");
        }
    }

    #[test]
    fn max_age_destroys_even_what_rules_keep_and_holds_still_win() {
        let c = snaps(&[0, 10 * DAY, 400 * DAY, 800 * DAY], &[3]);
        let policy = Policy {
            keep_yearly: Some(10),
            max_age: Some(Duration::from_secs(365 * DAY)),
            ..Default::default()
        };
        let decisions = decide(&policy, &c, now());
        let by_id = |id: &str| decisions.iter().find(|d| d.id == id).unwrap();
        assert!(by_id("s0").keep);
        assert!(!by_id("s2").keep, "kept by keep-yearly, but past max-age");
        assert!(by_id("s2").reasons[0].contains("max-age"));
        assert!(by_id("s3").keep, "a hold is the only exception");
        assert!(by_id("s3").reasons[0].starts_with("held"));
    }

    #[test]
    fn min_age_protects_the_young_and_no_rule_means_remove() {
        let c = snaps(&[0, HOUR, 2 * DAY, 3 * DAY], &[]);
        let policy = Policy {
            keep_last: Some(1),
            min_age: Some(Duration::from_secs(DAY)),
            ..Default::default()
        };
        assert_eq!(kept(&policy, &c), vec!["s0", "s1"]);
        let d = decide(&policy, &c, now());
        assert_eq!(d[3].reasons, vec!["no keep rule matched".to_string()]);
        assert!(Policy {
            min_age: Some(Duration::from_secs(2 * DAY)),
            max_age: Some(Duration::from_secs(DAY)),
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn max_age_alone_keeps_everything_younger() {
        let c = snaps(&[0, 5 * DAY, 50 * DAY], &[]);
        let policy = Policy {
            max_age: Some(Duration::from_secs(30 * DAY)),
            ..Default::default()
        };
        assert_eq!(kept(&policy, &c), vec!["s0", "s1"]);
    }
}
