//! Test hook for crash-safety tests: when `CUSTODIAN_TEST_PAUSE_AT` names a point (`pack:3`,
//! `before-index`, `before-snapshot`, …) the process stops itself with SIGSTOP there, so a test
//! can deliver a real SIGKILL at exactly that point. Unset, it costs one cached env lookup.

use std::sync::OnceLock;

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var("CUSTODIAN_TEST_PAUSE_AT").ok())
        .as_deref()
}

/// Stop here if the test asked for `name` (with `count` when it is non-zero, e.g. `pack:3`).
pub fn pause(name: &str, count: u64) {
    let Some(want) = target() else { return };
    let here = if count == 0 {
        name.to_string()
    } else {
        format!("{name}:{count}")
    };
    if want == here {
        // SAFETY: raise() with a valid signal number has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Every object write and delete through the CLI's backend passes here before and after,
/// numbered in order: `CUSTODIAN_TEST_PAUSE_AT=op:N:before` (or `:after`) stops there, and
/// `CUSTODIAN_TEST_OP_LOG=FILE` appends one line per operation. So a crash sweep enumerates every
/// point without a list, and a new write site joins the sweep by itself. Returns the number.
pub fn op_before(kind: &str, name: &str) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    if target().is_none() && op_log().is_none() {
        return 0;
    }
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    if let Some(log) = op_log() {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{n} {kind} {name}");
        }
    }
    pause(&format!("op:{n}:before"), 0);
    n
}

/// The other half of [`op_before`].
pub fn op_after(n: u64) {
    if n > 0 {
        pause(&format!("op:{n}:after"), 0);
    }
}

/// Panic here, once per process, if `CUSTODIAN_TEST_PANIC_AT` names `name`: a test's stand-in
/// for a bug in one worker thread, to show that it fails the run instead of losing its work
/// while the other workers carry on.
pub fn panic_at(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    static FIRED: AtomicBool = AtomicBool::new(false);
    let want = TARGET.get_or_init(|| std::env::var("CUSTODIAN_TEST_PANIC_AT").ok());
    if want.as_deref() == Some(name) && !FIRED.swap(true, Ordering::SeqCst) {
        panic!("test panic at {name}");
    }
}

fn op_log() -> Option<&'static str> {
    static LOG: OnceLock<Option<String>> = OnceLock::new();
    LOG.get_or_init(|| std::env::var("CUSTODIAN_TEST_OP_LOG").ok())
        .as_deref()
}
