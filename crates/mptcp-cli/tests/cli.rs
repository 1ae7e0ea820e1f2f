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

#[test]
fn mptcp_run_without_a_daemon_says_what_to_do() {
    // A daemon nobody runs, whatever this host has.
    let none = format!("@multipath-test-none-{}", std::process::id());
    let args: &[&str] = &["run", "--service", "handover", "--", "true"];
    let o = mptcp(args).env("MULTIPATH_PMD_SOCKET", &none).output().unwrap();
    assert_one_clean_error(args, &o, "no path-manager daemon");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-daemon"));
    for (args, says) in [
        (&["run", "--service", "handover", "--", "no-such-program-here"][..], "no such program"),
        (&["run", "--service", "aggregate", "--no-daemon", "--", "/etc/passwd"][..], "no such program"),
    ] {
        let o = mptcp(args).env("MULTIPATH_PMD_SOCKET", &none).output().unwrap();
        assert_one_clean_error(args, &o, says);
    }
    let o = mptcp(&["run", "--service", "sideways", "--", "true"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("sideways"));
}

/// `--no-daemon`: the program's TCP sockets are MPTCP (where the kernel
/// allows it), other sockets untouched, children too; the user is told that
/// no service type is enforced. No root needed.
#[test]
fn mptcp_run_no_daemon_makes_tcp_sockets_mptcp_in_the_program_and_its_children() {
    let script = "import socket, subprocess, sys\n\
                  tcp = socket.socket().getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)\n\
                  udp = socket.socket(type=socket.SOCK_DGRAM).getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)\n\
                  child = subprocess.run([sys.executable, '-c', 'import socket; \
                  print(socket.socket().getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))'], \
                  capture_output=True, text=True).stdout.strip()\n\
                  print(tcp, udp, child)";
    let o = mptcp(&["run", "--service", "handover", "--no-daemon", "--", "python3", "-c", script]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("service type handover is not enforced"), "{err}");
    let mptcp_enabled = std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|v| v.trim() == "1");
    if mptcp_enabled {
        assert_eq!(out.trim(), "262 17 262", "{err}");
    } else {
        assert_eq!(out.trim(), "6 17 6", "{err}");
        assert!(err.contains("the kernel refuses MPTCP sockets"), "{err}");
    }
}
