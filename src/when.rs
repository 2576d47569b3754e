//! Times people type and read. An operator in an incident thinks in local time (cron schedules
//! are local too), so a time without a zone is local time, and every such reading is echoed
//! back; RFC 3339 with `Z` or an offset is taken as written. Listings show local time with its
//! offset, or UTC after `--utc`; JSON always carries RFC 3339 UTC.

use chrono::{DateTime, Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// A time as typed, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    pub time: SystemTime,
    /// Typed without a zone, so read as local time: worth telling the operator.
    pub local: bool,
}

impl Moment {
    /// How a zoneless time was read, e.g. "2026-12-01T14:49:00 read as local time
    /// 2026-12-01 14:49:00 +01:00 (13:49:00 UTC)"; `None` when the zone was given.
    pub fn reading(&self, typed: &str) -> Option<String> {
        self.local.then(|| {
            format!(
                "{typed}: read as local time {} ({}); give a zone (Z or +01:00) to mean another",
                local_text(self.time),
                rfc3339(self.time)
            )
        })
    }
}

const FORMS: &str = "write RFC 3339 (2026-11-20T08:00:00Z, 2026-11-20T09:00:00+01:00), or a \
                     local time (2026-11-20T09:00, 2026-11-20 09:00:00, 2026-11-20)";

/// Parse what an operator typed for a time.
pub fn parse(text: &str) -> Result<Moment, String> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Moment {
            time: dt.with_timezone(&Utc).into(),
            local: false,
        });
    }
    let naive = naive(t).ok_or_else(|| format!("'{text}' is not a time: {FORMS}"))?;
    match Local.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(Moment {
            time: dt.with_timezone(&Utc).into(),
            local: true,
        }),
        LocalResult::Ambiguous(a, b) => Err(format!(
            "'{text}' happens twice in local time (the clocks went back): it is {} or {}; \
             write the one you mean with its offset",
            a.to_rfc3339(),
            b.to_rfc3339()
        )),
        LocalResult::None => Err(format!(
            "'{text}' does not exist in local time (the clocks went forward over it); write \
             the time with an offset, e.g. {}Z",
            naive.format("%Y-%m-%dT%H:%M:%S")
        )),
    }
}

/// The zoneless forms people type: with `T` or a space, with or without seconds, or a date.
fn naive(t: &str) -> Option<NaiveDateTime> {
    const WITH_TIME: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    WITH_TIME
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// `--utc` was given: show times in UTC.
static SHOW_UTC: AtomicBool = AtomicBool::new(false);

/// Show times in UTC from now on (the CLI's `--utc`).
pub fn show_utc(utc: bool) {
    SHOW_UTC.store(utc, Ordering::Relaxed);
}

/// A time for people: local with its offset, or UTC after `--utc`.
pub fn show(t: SystemTime) -> String {
    if SHOW_UTC.load(Ordering::Relaxed) {
        utc(t).map_or_else(
            || out_of_range(t),
            |u| u.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    } else {
        local_text(t)
    }
}

/// A stored RFC 3339 time for people; text that is not one is shown as it is.
pub fn show_stored(text: &str) -> String {
    humantime::parse_rfc3339_weak(text)
        .map(show)
        .unwrap_or_else(|_| text.to_string())
}

/// RFC 3339 in UTC to the second, for any time (humantime's formatter panics before 1970 and
/// after 9999, and a runbook, a listing or a marker may name such a time).
pub fn rfc3339(t: SystemTime) -> String {
    match utc(t) {
        Some(utc) => utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => out_of_range(t),
    }
}

/// `t` as a chrono time, or `None` beyond chrono's range (its `From<SystemTime>` would panic).
fn utc(t: SystemTime) -> Option<DateTime<Utc>> {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            DateTime::from_timestamp(-secs, 0)?
                .checked_sub_signed(chrono::TimeDelta::nanoseconds(i64::from(d.subsec_nanos())))
        }
    }
}

/// A time no calendar here can show, as seconds from 1970.
fn out_of_range(t: SystemTime) -> String {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => format!("{}s after 1970", d.as_secs()),
        Err(e) => format!("{}s before 1970", e.duration().as_secs()),
    }
}

/// Which zone listings use, for their header.
pub fn zone_label() -> &'static str {
    if SHOW_UTC.load(Ordering::Relaxed) {
        "UTC"
    } else {
        "local"
    }
}

fn local_text(t: SystemTime) -> String {
    utc(t).map_or_else(
        || out_of_range(t),
        |u| {
            u.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn offsets_and_zulu_are_taken_as_written() {
        let m = parse("2026-12-01T14:49:00+01:00").unwrap();
        assert_eq!(m.time, at("2026-12-01T13:49:00Z"));
        assert!(!m.local && m.reading("x").is_none());
        assert_eq!(parse("2026-12-01T13:49:00Z").unwrap().time, m.time);
        assert_eq!(
            parse("2026-12-01T13:49:00.5Z").unwrap().time,
            at("2026-12-01T13:49:00.5Z")
        );
    }

    #[test]
    fn zoneless_forms_are_local_and_say_so() {
        for t in [
            "2026-12-01T14:49:00",
            "2026-12-01 14:49:00",
            "2026-12-01T14:49",
            "2026-12-01 14:49",
        ] {
            let m = parse(t).unwrap();
            assert!(m.local, "{t}");
            let expect = Local
                .from_local_datetime(&naive("2026-12-01T14:49:00").unwrap())
                .unwrap();
            assert_eq!(m.time, SystemTime::from(expect.with_timezone(&Utc)), "{t}");
            assert!(m.reading(t).unwrap().contains("read as local time"));
        }
        assert!(parse("2026-12-01").unwrap().local);
    }

    #[test]
    fn times_beyond_any_calendar_are_shown_not_panicked_on() {
        let far = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::MAX / 4);
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_secs(10 * 365 * 86400);
        for t in [far, before] {
            assert!(!rfc3339(t).is_empty());
            assert!(!show(t).is_empty());
        }
        assert_eq!(rfc3339(before), "1960-01-04T00:00:00Z");
        let y10k = parse("+10000-01-01T00:00:00Z").map(|m| rfc3339(m.time));
        assert!(y10k.is_err() || y10k.is_ok_and(|s| s.contains("10000")));
    }

    #[test]
    fn nonsense_names_the_forms() {
        for bad in ["yesterday", "2026-13-01", "2026-12-01T25:00", "", "1e9"] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains("is not a time") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
    }
}
