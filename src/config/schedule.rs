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
            5 => format!("0 {text}"),
            6 | 7 => text.to_string(),
            n => {
                return Err(format!(
                    "'{text}' has {n} fields; write a standard 5-field cron expression such as \
                     \"0 * * * *\" (minute hour day-of-month month day-of-week)"
                ))
            }
        };
        let cron = cron::Schedule::from_str(&full)
            .map_err(|e| format!("'{text}' is not a valid cron expression: {e}"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }

    /// The first time the schedule fires after `after` (local time, as cron).
    pub fn next_after(&self, after: std::time::SystemTime) -> Option<std::time::SystemTime> {
        let local = chrono::DateTime::<chrono::Local>::from(after);
        self.cron.after(&local).next().map(Into::into)
    }
}
