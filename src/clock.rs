//! The wall clock, in one place, so tests can step it: `CUSTODIAN_TEST_CLOCK_OFFSET` (`-1h`,
//! `+1d`, a humantime duration with a sign) shifts every time custodian reads, the way a clock
//! stepped by NTP or by hand would. What a step does to retention, prune and schedules is in
//! docs/DESIGN.md ("Clock steps"). Unset, it is `SystemTime::now()` and one cached env lookup.
//! Release builds ignore the variable: a forgotten export must never make a production prune
//! believe its grace period has passed.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The offset the test asked for: (ahead?, by how much).
fn offset() -> Option<(bool, Duration)> {
    static OFFSET: OnceLock<Option<(bool, Duration)>> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        let text = std::env::var("CUSTODIAN_TEST_CLOCK_OFFSET").ok()?;
        tracing::warn!("CUSTODIAN_TEST_CLOCK_OFFSET={text}: the clock is shifted (a test hook)");
        let (ahead, rest) = match text.strip_prefix('-') {
            Some(rest) => (false, rest),
            None => (true, text.strip_prefix('+').unwrap_or(&text)),
        };
        humantime::parse_duration(rest).ok().map(|d| (ahead, d))
    })
}

/// Now, as custodian's wall clock says.
pub fn now() -> SystemTime {
    let now = SystemTime::now();
    match offset() {
        None => now,
        Some((true, d)) => now.checked_add(d).unwrap_or(now),
        Some((false, d)) => now.checked_sub(d).unwrap_or(now),
    }
}
