//! The daemon's scheduling decisions as pure functions of (state, config, now): whether a source
//! is due, and how long a failed one waits. No clock is read here, so each rule is table-tested
//! below with the instants it names.

use super::state::unix;
use std::time::{Duration, Instant, SystemTime};

/// What decides whether a source runs now.
#[derive(Clone, Debug, Default)]
pub(super) struct Facts {
    /// Its next scheduled run.
    pub next_run: Option<SystemTime>,
    /// When a transient failure may be retried.
    pub retry_at: Option<SystemTime>,
    /// The first and the last change seen since its last run (watched sources).
    pub dirty_since: Option<Instant>,
    pub last_event: Option<Instant>,
    pub debounce: Duration,
    pub max_delay: Duration,
    /// A run asked for now (missed while down, a reload).
    pub due_now: bool,
    /// The last failure needs an operator: changes do not start runs.
    pub needs_operator: bool,
    /// Watched and without a schedule: a full scan is its safety net.
    pub watched_only: bool,
    /// Unix seconds of the last success and of the last attempt.
    pub last_success: Option<u64>,
    pub last_attempt: Option<u64>,
    pub full_scan_interval: Duration,
}

/// Whether the source is due at wall-clock `now` and monotonic `at`.
pub(super) fn due(f: &Facts, now: SystemTime, at: Instant) -> bool {
    let scheduled = f.next_run.is_some_and(|t| t <= now);
    let retry = f.retry_at.is_some_and(|t| t <= now);
    // A failure waits out its backoff before changes or a full scan start another run.
    let backing_off = f.retry_at.is_some_and(|t| t > now);
    // Changes settle after `debounce` without another, or `max_delay` after the first.
    let settled = !f.needs_operator
        && !backing_off
        && match (f.dirty_since, f.last_event) {
            (Some(first), Some(last)) => {
                at.saturating_duration_since(last) >= f.debounce
                    || at.saturating_duration_since(first) >= f.max_delay
            }
            _ => false,
        };
    // Counted from the last attempt too: a failing source is scanned once an interval, not
    // again and again because its last success is old.
    let full_scan = f.watched_only
        && !backing_off
        && f.last_success
            .max(f.last_attempt)
            .is_some_and(|t| unix(now).saturating_sub(t) >= f.full_scan_interval.as_secs());
    scheduled || retry || settled || f.due_now || full_scan
}

/// How long a source waits after its `failures`-th transient failure in a row: doubling from
/// `initial`, never beyond `max`.
pub(super) fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    initial
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn due_by_schedule_retry_change_request_or_full_scan_and_not_otherwise() {
        let now = SystemTime::UNIX_EPOCH + 1_000_000 * S;
        let at = Instant::now() + 1000 * S;
        let base = Facts {
            debounce: 5 * S,
            max_delay: 60 * S,
            full_scan_interval: 86_400 * S,
            ..Facts::default()
        };
        let case = |name: &str, f: Facts, want: bool| {
            assert_eq!(due(&f, now, at), want, "{name}");
        };
        case("nothing", base.clone(), false);
        let f = |g: &dyn Fn(&mut Facts)| {
            let mut f = base.clone();
            g(&mut f);
            f
        };
        case("schedule reached", f(&|f| f.next_run = Some(now)), true);
        case("schedule ahead", f(&|f| f.next_run = Some(now + S)), false);
        case("retry reached", f(&|f| f.retry_at = Some(now - S)), true);
        case(
            "retry ahead",
            f(&|f| f.retry_at = Some(now + 10 * S)),
            false,
        );
        case("asked for now", f(&|f| f.due_now = true), true);
        // Debounce: quiet for 5 s after the last change, or 60 s after the first.
        let changes = |first: u32, last: u32| {
            f(&|f| {
                f.dirty_since = Some(at - first * S);
                f.last_event = Some(at - last * S);
            })
        };
        case("changes still coming", changes(10, 1), false);
        case("changes quiet for the debounce", changes(10, 5), true);
        case("changes never quiet, max delay hit", changes(60, 1), true);
        let mut stuck = changes(60, 5);
        stuck.needs_operator = true;
        case("changes while an operator is needed", stuck.clone(), false);
        stuck.next_run = Some(now);
        case("schedule while an operator is needed", stuck, true);
        // The daily full scan of a watched source without a schedule.
        let day_ago = |secs: u64| {
            f(&|f| {
                f.watched_only = true;
                f.last_success = Some(unix(now) - secs);
            })
        };
        case("full scan due", day_ago(86_400), true);
        case("full scan not yet", day_ago(86_399), false);
        let mut scheduled_too = day_ago(90_000);
        scheduled_too.watched_only = false;
        case("a scheduled source has no full scan", scheduled_too, false);
        case(
            "never succeeded: no full scan",
            f(&|f| f.watched_only = true),
            false,
        );
        // A failing source: the full scan counts from its last attempt, and waits its backoff.
        let mut failing = day_ago(200_000);
        failing.last_attempt = Some(unix(now) - 60);
        case(
            "failed a minute ago, success long ago",
            failing.clone(),
            false,
        );
        failing.last_attempt = Some(unix(now) - 86_400);
        failing.retry_at = Some(now + 30 * S);
        case("full scan due but backing off", failing, false);
        let mut busy = changes(10, 5);
        busy.retry_at = Some(now + 30 * S);
        case("changes settled but backing off", busy, false);
    }

    #[test]
    fn backoff_doubles_from_the_first_and_stops_at_the_most() {
        let (initial, max) = (10 * S, 600 * S);
        let got: Vec<u64> = (1..=8)
            .map(|n| backoff(n, initial, max).as_secs())
            .collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(u32::MAX, initial, max), max);
        assert_eq!(backoff(0, initial, max), initial);
    }
}
