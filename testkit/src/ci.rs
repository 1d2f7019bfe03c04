//! Tests that need a program the machine may not have (a browser,
//! PostgreSQL): outside CI they say they were skipped and pass; under CI,
//! where every test must run, they fail.

use std::io::Write;

/// `CI` set to anything but empty, `0` or `false`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Called by `test` when it cannot run because `why`: outside CI says so
/// on stderr with `remedy` and returns (the test then returns and passes);
/// under CI panics.
pub fn skip_unless_ci(test: &str, why: &str, remedy: &str) {
    if under_ci() {
        panic!("{test}: {why}; CI is set, so this test must run ({remedy})");
    }
    // Straight to stderr, past the test harness's capture, so a plain
    // `cargo test` shows it.
    let _ = writeln!(std::io::stderr(), "{test} SKIPPED: {why} ({remedy})");
}
