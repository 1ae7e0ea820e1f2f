//! `mptcp get`, `mptcp check` and `mptcp serve` as a user runs them, on
//! loopback (no root needed): output files, JSON, exit codes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::Scratch;

const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

fn mptcp(args: &[&str]) -> Output {
    Command::new(MPTCP).args(args).output().expect("mptcp runs")
}

/// `mptcp serve` on a free loopback port, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        Server::start_with("--http", &[])
    }

    /// `mptcp serve LISTEN ADDR` (`--http` or `--https`) with `extra` flags.
    fn start_with(listen: &str, extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(MPTCP)
            .args(["serve", listen, &addr.to_string(), "--threads", "1"])
            .args(extra)
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
    let cases: [(&[&str], i32); 5] = [
        (&["get", "ftp://example.com/"], 3),
        (&["get", "http://exa mple/"], 3),
        (&["get", "-H", "no colon", "http://127.0.0.1/"], 3),
        (&["get", "-X", "G E T", "http://127.0.0.1/"], 3),
        (&["get", "--connect-timeout", "5", &format!("http://{refused}/")], 5),
    ];
    for (args, expected) in cases {
        let o = mptcp(args);
        assert_eq!(code(&o), expected, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{args:?}: one error message: {err}");
        assert!(!err.contains("backtrace") && !err.contains("Stack"), "{args:?}: no backtrace: {err}");
    }
    let server = Server::start();
    let o = mptcp(&["get", "-f", "-s", &format!("http://{}/nothing-here", server.addr)]);
    assert_eq!(code(&o), 22, "--fail on 404");
}

/// A loopback server at `ip`, handing each connection to `handle` on a
/// thread of its own.
fn scripted_server(ip: &str, handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let handle = handle.clone();
            std::thread::spawn(move || handle(sock));
        }
    });
    addr
}

/// Reads a request head (up to the blank line).
fn read_head(sock: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Credentials given for one host never follow a redirect to another
/// (nor to another port or scheme); on the same host they do.
#[test]
fn credentials_stay_with_the_host_they_were_given_for() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let other = scripted_server("127.0.0.2", move |mut sock| {
        record.lock().unwrap().push(read_head(&mut sock));
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    });
    let first = scripted_server("127.0.0.1", move |mut sock| {
        let head = read_head(&mut sock);
        let to = if head.starts_with("GET /same") {
            "/landing".to_owned()
        } else if head.starts_with("GET /landing") {
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            assert!(head.contains("authorization: Bearer X") && head.contains("cookie: s=1"), "same host: {head}");
            return;
        } else {
            format!("http://{other}/elsewhere")
        };
        let _ = sock.write_all(format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n").as_bytes());
    });
    for path in ["same", "away"] {
        let url = format!("http://{first}/{path}");
        let o = mptcp(&["get", "-s", "-H", "Authorization: Bearer X", "-H", "Cookie: s=1", &url]);
        assert_eq!(code(&o), 0, "{path}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = seen[0].to_ascii_lowercase();
    assert!(head.starts_with("get /elsewhere"), "{head}");
    assert!(!head.contains("authorization") && !head.contains("cookie"), "credentials followed: {head}");
}

/// `-f -o FILE` on an error status leaves FILE as it was.
#[test]
fn a_failed_status_leaves_the_output_file_alone() {
    let server = Server::start();
    let scratch = Scratch::new("fail-keep");
    let target = scratch.0.join("keep.txt");
    std::fs::write(&target, "precious").unwrap();
    let url = format!("http://{}/nothing-here", server.addr);
    let o = mptcp(&["get", "-f", "-s", "-o", target.to_str().unwrap(), &url]);
    assert_eq!(code(&o), 22, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(scratch.entries(), ["keep.txt"]);
}

/// A server that accepts and then says nothing: `--connect-timeout` covers
/// the TLS handshake, as documented.
#[test]
fn the_connect_timeout_covers_the_tls_handshake() {
    let silent = scripted_server("127.0.0.1", |sock| {
        std::thread::sleep(Duration::from_secs(30));
        drop(sock);
    });
    let started = Instant::now();
    let o = mptcp(&["get", "--connect-timeout", "1", "--timeout", "20", &format!("https://{silent}/")]);
    assert_eq!(code(&o), 7, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// A body that never ends, or stalls: --max-time and --read-timeout end
/// the transfer, and nothing is left under the output's name.
#[test]
fn endless_and_stalled_bodies_meet_their_time_limits() {
    let endless = scripted_server("127.0.0.1", |mut sock| {
        read_head(&mut sock);
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        while sock.write_all(b"400\r\n").is_ok()
            && sock.write_all(&[b'x'; 1024]).is_ok()
            && sock.write_all(b"\r\n").is_ok()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let stalled = scripted_server("127.0.0.1", |mut sock| {
        read_head(&mut sock);
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf");
        std::thread::sleep(Duration::from_secs(30));
    });
    let scratch = Scratch::new("time-limits");
    let out = scratch.0.join("out");
    for (args, addr) in [(["--max-time", "1"], endless), (["--read-timeout", "1"], stalled)] {
        let started = Instant::now();
        let url = format!("http://{addr}/");
        let o = mptcp(&["get", "-s", args[0], args[1], "-o", out.to_str().unwrap(), &url]);
        assert_eq!(code(&o), 7, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(started.elapsed() < Duration::from_secs(8), "{args:?} took {:?}", started.elapsed());
        assert!(scratch.entries().is_empty(), "{args:?}: {:?}", scratch.entries());
    }
}

/// A redirect loop against a server that closes each connection without
/// saying so ends as a redirect loop, every time, not a broken pipe.
#[test]
fn a_redirect_loop_is_reported_as_one_whatever_the_server_does_with_connections() {
    let looping = scripted_server("127.0.0.1", |mut sock| {
        read_head(&mut sock);
        let _ = sock.write_all(b"HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 5\r\n\r\nagain");
        // Closed without `connection: close`.
    });
    for run in 0..30 {
        let o = mptcp(&["get", "-s", &format!("http://{looping}/")]);
        assert_eq!(code(&o), 12, "run {run}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A gzip bomb (64 MiB of zeros in ~64 KiB) is stopped by the ratio limit,
/// and by a size limit when one is given; a normal compressed body is not.
#[test]
fn a_decompression_bomb_is_stopped() {
    let zeros = Command::new("sh")
        .args(["-c", "head -c 67108864 /dev/zero | gzip -c"])
        .output()
        .expect("gzip (Debian's gzip package) runs")
        .stdout;
    assert!(zeros.len() < 1 << 20, "{} bytes", zeros.len());
    let bomb: &'static [u8] = Box::leak(
        [
            format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                zeros.len()
            )
            .into_bytes(),
            zeros,
        ]
        .concat()
        .into_boxed_slice(),
    );
    let addr = canned_server(bomb);
    let scratch = Scratch::new("bomb");
    let out = scratch.0.join("out");
    let url = format!("http://{addr}/");
    let o = mptcp(&["get", "-s", "--compressed", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(code(&o), 63, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("to 1"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
    let o = mptcp(&[
        "get",
        "-s",
        "--compressed",
        "--max-decoded-ratio",
        "0",
        "--max-decoded-size",
        "1M",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code(&o), 63, "{}", String::from_utf8_lossy(&o.stderr));
    // Without limits it decodes whole.
    let o = mptcp(&["get", "-s", "--compressed", "--max-decoded-ratio", "0", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 64 << 20);
}

/// Whether the server closes `sock` within `within` (reads until EOF).
fn closed_within(sock: &mut std::net::TcpStream, within: Duration) -> bool {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Clients that say nothing, say it slowly, sit idle after a request, or
/// never finish a TLS handshake are all closed after their time limits.
#[test]
fn serve_closes_silent_slow_and_idle_clients() {
    let server = Server::start_with("--http", &["--header-timeout", "1", "--idle-timeout", "1"]);
    let mut silent = std::net::TcpStream::connect(server.addr).unwrap();
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    let mut idle = std::net::TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nuser-agent: curl\r\n\r\n").unwrap();
    let mut got = [0u8; 64];
    assert!(idle.read(&mut got).unwrap() > 0, "answered");
    let dripping = std::thread::spawn(move || {
        slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        for _ in 0..20 {
            if slow.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        closed_within(&mut slow, Duration::from_secs(3))
    });
    assert!(closed_within(&mut silent, Duration::from_secs(4)), "a silent client is closed");
    assert!(closed_within(&mut idle, Duration::from_secs(4)), "an idle kept-alive connection is closed");
    assert!(dripping.join().unwrap(), "a slowloris client is closed");

    let tls = Server::start_with("--https", &["--handshake-timeout", "1"]);
    let mut mute = std::net::TcpStream::connect(tls.addr).unwrap();
    assert!(closed_within(&mut mute, Duration::from_secs(4)), "a client that never completes TLS is closed");
}

/// One address gets at most --max-per-client connections; the others are
/// closed at once while the first ones still work.
#[test]
fn serve_limits_connections_per_client() {
    let server = Server::start_with("--http", &["--max-per-client", "3"]);
    let held: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200)); // accepted, counted
    let mut extra = std::net::TcpStream::connect(server.addr).unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)), "the fourth is closed");
    let mut first = &held[0];
    first.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nuser-agent: curl\r\n\r\n").unwrap();
    let mut got = [0u8; 64];
    assert!(first.read(&mut got).unwrap() > 0, "the first three still work");
}

/// SIGTERM stops the server within its grace period, whatever clients
/// hold (a half-sent head, a download read slowly); a second signal stops
/// it at once.
#[test]
fn serve_stops_within_its_grace_period() {
    for (grace, signals, within) in [("1", 1, Duration::from_secs(4)), ("60", 2, Duration::from_secs(3))] {
        let mut server = Server::start_with("--http", &["--grace", grace, "--header-timeout", "60"]);
        let mut half = std::net::TcpStream::connect(server.addr).unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nhost:").unwrap();
        let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
        slow.write_all(b"GET /files/1G HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut got = [0u8; 1024];
        slow.read_exact(&mut got).unwrap(); // the download has begun
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        for _ in 0..signals {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(300));
        }
        loop {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < within, "grace {grace}, {signals} signal(s): still running");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop((half, slow));
    }
}

/// `HEAD` of a huge file costs the server nothing: no hash is made for
/// it, and files beyond 256 MiB get none (a GET's first byte would wait
/// for it) unless listed (`/files/1000M`); smaller ones carry theirs.
#[test]
fn serve_spends_no_hashing_on_head_or_huge_files() {
    let server = Server::start();
    let ask = |method: &str, path: &str| {
        let mut sock = std::net::TcpStream::connect(server.addr).unwrap();
        sock.write_all(format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    };
    let started = Instant::now();
    for n in 0..4 {
        let head = ask("HEAD", &format!("/files/200000000{n}"));
        assert!(head.contains("content-length: 200000000") && !head.contains("x-content-sha256"), "{head}");
    }
    let huge = ask("GET", "/files/300M");
    assert!(huge.starts_with("http/1.1 200") && !huge.contains("x-content-sha256"), "{huge}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let small = ask("GET", "/files/1M");
    assert!(small.contains("x-content-sha256"), "{small}");
    assert!(ask("HEAD", "/files/1M").contains("x-content-sha256"), "known by now: sent with HEAD too");
}

/// Runs `args` on a terminal (a pty from util-linux's `script`): what the
/// terminal showed, and the exit code.
fn on_terminal(args: &str) -> (String, i32) {
    let o = Command::new("script")
        .args(["-qec", &format!("'{MPTCP}' {args}"), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .output()
        .expect("util-linux's `script` (package bsdutils) runs");
    (String::from_utf8_lossy(&o.stdout).into_owned(), code(&o))
}

/// As curl: a binary body is not poured onto a terminal unless asked for
/// with `-o -`; text is.
#[test]
fn a_binary_body_is_refused_to_a_terminal_unless_asked_for() {
    let server = Server::start();
    let (tty, code) = on_terminal(&format!("get http://{}/files/1K", server.addr));
    assert_eq!(code, 23, "{tty}");
    assert!(tty.contains("binary (application/octet-stream)") && tty.contains("-o -"), "{tty:?}");
    let (tty, code) = on_terminal(&format!("get -s -o - http://{}/files/1K", server.addr));
    assert_eq!(code, 0, "{tty}");
    let (tty, code) = on_terminal(&format!("get -s http://{}/", server.addr));
    assert_eq!(code, 0, "{tty}");
    assert!(tty.contains("You are using MPTCP"), "text is shown: {tty:?}");
}

/// `serve --cert-out` writes the certificate a client then trusts with
/// `--cacert`; without it, the TLS error says what to do.
#[test]
fn a_self_signed_server_tells_its_clients_how_to_trust_it() {
    let scratch = Scratch::new("cert-out");
    let cert = scratch.0.join("serve.pem");
    let server = Server::start_with("--https", &["--cert-out", cert.to_str().unwrap()]);
    let url = format!("https://{}/", server.addr);
    let o = mptcp(&["get", "-s", &url]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 6, "{err}");
    assert!(err.contains("hint:") && err.contains("--cacert") && err.contains("-k"), "{err}");
    let o = mptcp(&["get", "-s", "--cacert", cert.to_str().unwrap(), &url]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("using MPTCP"));
    // An existing file is never replaced.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = mptcp(&["serve", "--https", &format!("127.0.0.1:{port}"), "--cert-out", cert.to_str().unwrap()]);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("never replaced"));
}

/// Errors say each thing once; `check --json` fails in JSON; a TCP
/// connection is not said to have a subflow.
#[test]
fn errors_and_summaries_read_cleanly() {
    let refused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let o = mptcp(&["get", &format!("http://{refused}/")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches(&refused.to_string()).count(), 1, "the address once: {err}");

    let o = mptcp(&["check", "--json", &format!("http://{refused}/")]);
    assert_eq!(code(&o), 5);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a failure in JSON on stdout");
    assert!(v["error"].as_str().unwrap().contains("cannot connect"), "{v}");
    assert_eq!(v["exit_code"], 5);

    let server = Server::start();
    let o = mptcp(&["check", "--service", "none", &format!("http://{}/", server.addr)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("subflows: none (TCP)"), "{out}");
    let o = mptcp(&["get", "-s", "-H", "Accept: text/html", "--service", "none", &format!("http://{}/", server.addr)]);
    let html = String::from_utf8_lossy(&o.stdout);
    assert!(html.contains("is TCP, no subflows") && !html.contains("subflow(s)"), "{html}");
    let o = mptcp(&["get", "-o", "/dev/null", "--service", "none", &format!("http://{}/files/1K", server.addr)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TCP, no subflows") && !err.contains("  subflow "), "{err}");
}
