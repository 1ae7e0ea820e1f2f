//! Every command fails the same way, whatever the user's environment:
//! one `error: ...` line, no backtrace (even with RUST_BACKTRACE=1), and no
//! colour codes in logs that go to a file or a pipe.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

fn mptcp(args: &[&str]) -> Command {
    let mut c = Command::new(MPTCP);
    c.args(args).env("RUST_BACKTRACE", "1").env_remove("RUST_LOG");
    c
}

fn assert_one_clean_error(args: &[&str], o: &Output, says: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} failed");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line: {err}");
    assert!(!err.contains("backtrace") && !err.contains("  0: "), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
}

#[test]
fn every_command_fails_with_one_line_and_no_backtrace() {
    let cases: [(&[&str], &str); 5] = [
        (&["demo", "--scenario", "/nonexistent/scenario.toml"], "reading /nonexistent/scenario.toml"),
        (&["demo", "--path", "wifi:fast:20ms"], "wifi:fast:20ms"),
        (&["lab", "up", "--path", "wifi"], "NAME:RATE:RTT"),
        (&["pmd", "--config", "/nonexistent/pmd.toml"], "/nonexistent/pmd.toml"),
        (&["serve", "--threads", "0"], "--threads"),
    ];
    for (args, says) in cases {
        let o = mptcp(args).output().expect("mptcp runs");
        assert_one_clean_error(args, &o, says);
    }
}

/// Without root (as `nobody`, when the tests run as root): a clear
/// refusal, not a trace.
#[test]
fn commands_that_need_root_say_so_plainly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        for args in [&["demo", "--quick"][..], &["monitor"][..], &["lab", "up"][..]] {
            let o = mptcp(args).output().expect("mptcp runs");
            assert_one_clean_error(args, &o, "");
        }
        return;
    }
    let o = mptcp(&["demo", "--quick"]).uid(65534).gid(65534).output().expect("mptcp runs as nobody");
    assert_one_clean_error(&["demo"], &o, "needs root");
    for args in [&["monitor"][..], &["lab", "up"][..], &["pmd"][..]] {
        let o = mptcp(args).uid(65534).gid(65534).output().expect("mptcp runs as nobody");
        assert_one_clean_error(args, &o, "");
    }
}

/// Debug logs into a pipe carry no ANSI escape codes.
#[test]
fn logs_into_a_pipe_have_no_colour_codes() {
    let o = mptcp(&["-vv", "get", "--connect-timeout", "2", "http://127.0.0.1:1/"]).output().expect("mptcp runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().count() > 1, "some debug logging to look at: {err}");
    assert!(!err.contains('\x1b'), "no escape codes: {err:?}");
}
