//! Cron schedules: standard 5-field expressions, or 6 and 7 fields starting with seconds.

use std::str::FromStr;

/// A cron schedule with the text it came from.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub text: String,
    pub cron: cron::Schedule,
}

impl Schedule {
    /// Standard 5-field expressions (minute hour day month weekday) and 6/7-field ones that
    /// start with seconds (as the `cron` crate reads them).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {}", standard_weekdays(text, 4)),
            6 | 7 => standard_weekdays(text, 5),
            n => {
                return Err(format!(
                    "'{text}' has {n} fields; write a standard 5-field cron expression such as \
                     \"0 * * * *\" (minute hour day-of-month month day-of-week)"
                ))
            }
        };
        check_ranges(text, fields)?;
        // The crate's own message quotes the expression with the seconds field we added and
        // says "less than 59" where 59 is allowed: name the field ourselves where we can.
        let cron = cron::Schedule::from_str(&full).map_err(|e| {
            let why = e.to_string();
            let last = why.lines().last().unwrap_or_default().trim();
            format!(
                "'{text}' is not a valid cron expression ({}); write minute hour day-of-month \
                 month day-of-week, e.g. \"30 2 * * *\" for 02:30 every day",
                last.split(" must be").next().unwrap_or(last)
            )
        })?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

/// Each field's name and allowed numbers, for the 5-field form (6 and 7 fields add seconds in
/// front and a year at the end).
const FIELDS: [(&str, u32, u32); 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
    ("year", 1970, 2099),
];

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Rewrite the day-of-week field (at `index`) from standard cron numbers (0 or 7 Sunday, 1
/// Monday … 6 Saturday) to names. The `cron` crate counts Quartz-style (1 Sunday … 7
/// Saturday), so "0 4 * * 1", meant as Monday, would otherwise run on Sunday. Ranges and
/// stepped ranges are spelled out; names, `*` and `*/N` (the same days either way) stay.
fn standard_weekdays(text: &str, index: usize) -> String {
    let mut fields: Vec<String> = text.split_whitespace().map(String::from).collect();
    let Some(dow) = fields.get_mut(index) else {
        return text.to_string();
    };
    let name = |n: u32| DAYS[(n % 7) as usize];
    let items: Vec<String> = dow
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, s.parse::<u32>().ok()),
                None => (item, Some(1)),
            };
            let bounds = match range.split_once('-') {
                Some((a, b)) => a.parse::<u32>().ok().zip(b.parse::<u32>().ok()),
                None => range.parse::<u32>().ok().map(|n| (n, n)),
            };
            match (bounds, step) {
                (Some((a, b)), Some(step)) if a <= b && b <= 7 && step > 0 => (a..=b)
                    .step_by(step as usize)
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => item.to_string(),
            }
        })
        .collect();
    *dow = items.join(",");
    fields.join(" ")
}

/// Every number in every field within its range, or an error naming the field and the range.
fn check_ranges(text: &str, fields: usize) -> Result<(), String> {
    let skip = if fields == 5 { 1 } else { 0 };
    for (value, (name, low, high)) in text.split_whitespace().zip(FIELDS.iter().skip(skip)) {
        for (i, part) in value.split([',', '-', '/']).enumerate() {
            let Ok(n) = part.parse::<u32>() else {
                continue;
            };
            // After '/', a number is a step, not a value.
            let step = value.contains('/')
                && value.split('/').nth(1) == Some(part)
                && i == value.split([',', '-', '/']).count() - 1;
            if !step && !(*low..=*high).contains(&n) {
                return Err(format!(
                    "'{text}': {n} is outside the {name} field's range {low}-{high}"
                ));
            }
        }
    }
    Ok(())
}

impl Schedule {
    /// The first time the schedule fires after `after` (local time, as cron).
    pub fn next_after(&self, after: std::time::SystemTime) -> Option<std::time::SystemTime> {
        let local = chrono::DateTime::<chrono::Local>::from(after);
        self.cron.after(&local).next().map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_fields_are_named_with_their_range() {
        for (text, field) in [
            ("61 * * * *", "minute field's range 0-59"),
            ("0 25 * * *", "hour field's range 0-23"),
            ("0 2 * 13 *", "month field's range 1-12"),
            ("0 2 * * 8", "day-of-week field's range 0-7"),
            ("0 2 0 * *", "day-of-month field's range 1-31"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
            assert!(!e.contains("less than"), "{e}");
        }
        for good in [
            "59 23 31 12 7",
            "*/15 * * * *",
            "0 2 * * mon-fri",
            "0 0-23/2 * * *",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
        let e = Schedule::parse("0 2 * * funday").unwrap_err();
        assert!(
            e.contains("is not a valid cron expression") && !e.contains('\n'),
            "{e}"
        );
    }

    /// Standard cron numbers its weekdays 0 (or 7) Sunday to 6 Saturday; a runbook's
    /// "0 4 * * 1" is Monday 04:00 local time.
    #[test]
    fn weekdays_are_numbered_as_in_standard_cron() {
        use chrono::{Datelike, Local, TimeZone, Timelike, Weekday};
        let start: std::time::SystemTime = Local
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0) // a Saturday
            .unwrap()
            .into();
        for (text, want) in [
            ("0 4 * * 1", Weekday::Mon),
            ("0 4 * * 0", Weekday::Sun),
            ("0 4 * * 7", Weekday::Sun),
            ("0 4 * * 6", Weekday::Sat),
            ("0 4 * * 2-3", Weekday::Tue),
            ("0 4 * * mon", Weekday::Mon),
            ("0 0 4 * * 5", Weekday::Fri),
        ] {
            let next = Schedule::parse(text).unwrap().next_after(start).unwrap();
            let local = chrono::DateTime::<Local>::from(next);
            assert_eq!(local.weekday(), want, "{text}: {local}");
            assert_eq!(local.hour(), 4, "{text}");
        }
        let weekdays = Schedule::parse("0 4 * * 1-5").unwrap();
        let mut t = start;
        for want in [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Mon,
        ] {
            t = weekdays.next_after(t).unwrap();
            assert_eq!(chrono::DateTime::<Local>::from(t).weekday(), want);
        }
    }
}
