//! `mptcp get`, `mptcp check` and `mptcp serve` as a user runs them, on
//! loopback (no root needed): output files, JSON, exit codes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

fn mptcp(args: &[&str]) -> Output {
    Command::new(MPTCP).args(args).output().expect("mptcp runs")
}

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mptcp-get-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mptcp serve` on a free loopback port, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(MPTCP)
            .args(["serve", "--http", &addr.to_string(), "--threads", "1"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says "serving" once it listens.
        let mut child = child;
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("serving") {
            assert!(Instant::now() < deadline, "mptcp serve did not start: {}", String::from_utf8_lossy(&seen));
            match err.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => panic!("mptcp serve exited: {}", String::from_utf8_lossy(&seen)),
            }
        }
        // Keep draining: a closed pipe would fail the server's next write.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that promises 1000 bytes, sends 10 and closes.
/// A server answering every request with `response`, then closing.
fn canned_server(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let _ = sock.write_all(response);
        }
    });
    addr
}

/// Promises 1000 bytes and sends 10.
fn cut_short_server() -> SocketAddr {
    canned_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn output_files_appear_only_when_complete() {
    let server = Server::start();
    let scratch = Scratch::new("output");
    let target = scratch.0.join("ten.bin");
    let o = mptcp(&["get", "-s", "-o", target.to_str().unwrap(), &format!("http://{}/files/10M", server.addr)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 10_000_000);
    assert!(String::from_utf8_lossy(&o.stderr).contains("content hash verified"));

    let cut = cut_short_server();
    let partial = scratch.0.join("partial.bin");
    let o = mptcp(&["get", "-s", "-o", partial.to_str().unwrap(), &format!("http://{cut}/")]);
    assert_eq!(code(&o), 8, "a protocol error: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new(&partial).exists(), "no partial file under the final name");
    assert_eq!(scratch.entries(), ["ten.bin"], "no temporary file left behind");
}

/// `-o` naming a pipe or a device writes into it, as curl does: renaming a
/// finished file over it (as for a regular file) would replace the pipe,
/// or, for `-o /dev/null` as root, the host's `/dev/null`.
#[test]
fn output_to_a_pipe_writes_into_it() {
    use std::os::unix::fs::FileTypeExt;
    let server = Server::start();
    let scratch = Scratch::new("fifo");
    let fifo = scratch.0.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(fifo).unwrap().read_to_end(&mut got).unwrap();
            got.len()
        })
    };
    let o = mptcp(&["get", "-s", "-o", fifo.to_str().unwrap(), &format!("http://{}/files/1M", server.addr)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // Checked first: were the pipe replaced, the reader would wait forever.
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a pipe");
    assert_eq!(reader.join().unwrap(), 1_000_000, "the body went through the pipe");
    assert_eq!(scratch.entries(), ["pipe"], "no temporary file left behind");
}

/// The progress bar is drawn on a terminal (a pty, from util-linux's
/// `script`) and never into a pipe.
#[test]
fn a_progress_bar_on_a_terminal_only() {
    let server = Server::start();
    let scratch = Scratch::new("progress");
    let url = format!("http://{}/files/1M", server.addr);
    let on_tty = scratch.0.join("tty.bin");
    let command = format!("'{MPTCP}' get -o '{}' '{url}'", on_tty.display());
    // `script` runs the command with $SHELL; the quoting above is sh's.
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .output()
        .expect("util-linux's `script` (package bsdutils) runs");
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(tty.contains(&format!("[{}] 100.0% 1.00 MB", "#".repeat(30))), "a full bar: {tty:?}");
    assert!(tty.contains("content hash verified"), "{tty:?}");

    let piped = mptcp(&["get", "-o", scratch.0.join("piped.bin").to_str().unwrap(), &url]);
    assert_eq!(code(&piped), 0);
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains('\r') && !err.contains('#'), "no bar into a pipe: {err:?}");
    assert!(err.contains("content hash verified"), "{err:?}");
}

#[test]
fn a_body_that_fails_its_hash_is_not_kept() {
    let liar = canned_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-content-sha256: 00000000\r\nconnection: close\r\n\r\n0123456789",
    );
    let scratch = Scratch::new("integrity");
    let target = scratch.0.join("bad.bin");
    let o = mptcp(&["get", "-s", "-o", target.to_str().unwrap(), &format!("http://{liar}/")]);
    assert_eq!(code(&o), 11, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not match"));
    assert_eq!(scratch.entries(), Vec::<String>::new(), "neither the target nor a temporary file");
}

#[test]
fn json_summary_and_check_agree_with_the_server() {
    let server = Server::start();
    let o = mptcp(&["get", "--json", &format!("http://{}/files/1M", server.addr)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 1_000_000);
    assert_eq!(v["verified"], true);
    assert_eq!(v["metrics"]["is_multipath"], true);
    assert_eq!(v["metrics"]["status"]["requested"], "handover");
    let received: u64 = v["metrics"]["subflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tcp"]["bytes_received"].as_u64().unwrap_or(0))
        .sum();
    assert!(received >= 1_000_000, "per-subflow bytes: {received}");
    assert!(v["throughput_mbit_s"].as_f64().unwrap() > 0.0);

    for (service, mptcp_expected) in [("handover", true), ("none", false)] {
        let o = mptcp(&["check", "--json", "--service", service, &format!("http://{}/", server.addr)]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (v["server_mptcp"].clone(), v["local_mptcp"].clone()),
            (mptcp_expected.into(), mptcp_expected.into())
        );
        assert_eq!(v["agree"], true);
    }
}

#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let refused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cases: [(&[&str], i32); 4] = [
        (&["get", "ftp://example.com/"], 3),
        (&["get", "http://exa mple/"], 3),
        (&["get", "-H", "no colon", "http://127.0.0.1/"], 1),
        (&["get", "--connect-timeout", "5", &format!("http://{refused}/")], 5),
    ];
    for (args, expected) in cases {
        let o = mptcp(args);
        assert_eq!(code(&o), expected, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!o.stderr.is_empty(), "{args:?}: an error message");
    }
    let server = Server::start();
    let o = mptcp(&["get", "-f", "-s", &format!("http://{}/nothing-here", server.addr)]);
    assert_eq!(code(&o), 22, "--fail on 404");
}
