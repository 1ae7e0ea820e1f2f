//! The daemon's TOML configuration and the lab's path specifications, as a
//! user (or a file in a shared directory) may write them.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parsers live in the `mptcp` binary; compiled here from their source.
#[allow(dead_code)]
#[path = "../../crates/mptcp-cli/src/pathspec.rs"]
mod pathspec;
#[allow(dead_code)]
#[path = "../../crates/mptcp-cli/src/pmd_config.rs"]
mod pmd_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = pmd_config::parse(text);
    for spec in text.lines().take(16) {
        let _ = pathspec::parse(spec);
    }
});
