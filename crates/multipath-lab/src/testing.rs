//! Helpers for tests that need a lab.

use std::io::Write;

use crate::lab::is_root;

/// Whether a test that needs root can run. Without root it prints a loud
/// SKIPPED line and returns false, so the test can return early; when the
/// `CI` environment variable is `true`, a skip is a failure (CI runs as
/// root, so a skip there means the test proved nothing).
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let msg = format!("SKIPPED {test}: needs root (network namespaces); run the tests as root");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}, and CI=true forbids skips");
    }
    // Straight to stderr: the test harness captures eprintln! of passing
    // tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {msg} !!!!!!!!\n");
    false
}
