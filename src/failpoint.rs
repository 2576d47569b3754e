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
