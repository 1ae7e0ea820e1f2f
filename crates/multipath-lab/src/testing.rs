//! Helpers for tests that need a lab.

use std::io::Write;

use crate::lab::is_root;

/// Held by a lab test while it runs: lab tests of one test binary run one
/// at a time, because delay lines and shapers share the machine's two
/// cores and timing assertions would otherwise measure each other.
pub type LabTestGuard = std::sync::MutexGuard<'static, ()>;

/// For a test that builds labs: `None` (after a loud SKIPPED line) without
/// root, otherwise a guard that keeps other lab tests of this binary
/// waiting until it drops. When `CI=true`, a skip is a failure.
pub fn lab_test(test: &str) -> Option<LabTestGuard> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if !root_or_skip(test) {
        return None;
    }
    // A panicking lab test poisons the lock; the next one may still run.
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

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

/// Asks a server for its reply by sending one byte, reads `len` bytes of
/// it, and returns how long after the first byte the last one came.
pub fn reply_spread(stream: &mut (impl std::io::Read + Write), len: usize) -> std::time::Duration {
    stream.write_all(b"?").unwrap();
    let (mut got, mut first, mut buf) = (0, None, [0u8; 256]);
    while got < len {
        match stream.read(&mut buf).unwrap() {
            0 => panic!("the server closed after {got} of {len} bytes"),
            n => got += n,
        }
        first.get_or_insert_with(std::time::Instant::now);
    }
    first.map_or_else(std::time::Duration::default, |t| t.elapsed())
}

/// An echo server in the lab's server namespace, MPTCP or plain TCP, that
/// sends back whatever each client sends; returns its address.
pub fn echo_server(lab: &crate::Lab, mptcp: bool) -> std::net::SocketAddr {
    echo_server_at(lab, lab.server_addr().into(), mptcp)
}

/// [`echo_server`] on the server's IPv6 address.
pub fn echo_server6(lab: &crate::Lab, mptcp: bool) -> std::net::SocketAddr {
    echo_server_at(lab, lab.server_addr6().into(), mptcp)
}

fn echo_server_at(lab: &crate::Lab, ip: std::net::IpAddr, mptcp: bool) -> std::net::SocketAddr {
    use socket2::{Domain, Protocol, Socket, Type};
    let protocol = if mptcp { Protocol::MPTCP } else { Protocol::TCP };
    let listener: std::net::TcpListener = lab
        .server()
        .run(|| -> std::io::Result<_> {
            let s = Socket::new(Domain::for_address(std::net::SocketAddr::new(ip, 0)), Type::STREAM, Some(protocol))?;
            s.set_reuse_address(true)?;
            s.bind(&std::net::SocketAddr::new(ip, 0).into())?;
            s.listen(64)?;
            Ok(s.into())
        })
        .expect("echo server socket");
    let port = listener.local_addr().expect("local_addr").port();
    std::thread::spawn(move || {
        while let Ok((mut conn, _)) = listener.accept() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    std::net::SocketAddr::new(ip, port)
}

/// Drops the calling thread's root for `uid` (and the same gid), to act as
/// an unprivileged program. Raw syscalls change one thread's credentials
/// only, unlike libc's wrappers, which change the whole process's: call it
/// on a thread of its own, such as inside [`crate::Netns::run`].
pub fn become_user(uid: u32) -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling thread's credentials; no memory
    // is passed.
    let set = |call, id: u32| unsafe { libc::syscall(call, id, id, id) };
    if set(libc::SYS_setresgid, uid) != 0 || set(libc::SYS_setresuid, uid) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A small seeded generator (xorshift64*) for tests that want varied but
/// repeatable inputs: scripts of failures, hostile bytes.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator seeded with `seed` (0 is replaced: xorshift stays at 0).
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A middlebox in the lab's router: an iptables rule stripping MPTCP's
/// option (kind 30) from forwarded TCP segments, from SYNs only (`syn`) or
/// from every other one. Needs Debian's iptables.
pub fn strip_mptcp_options(lab: &crate::Lab, syn: bool) {
    let mut rule = vec!["-t", "mangle", "-A", "FORWARD", "-p", "tcp"];
    rule.extend(if syn { vec!["--syn"] } else { vec!["!", "--syn"] });
    rule.extend(["-j", "TCPOPTSTRIP", "--strip-options", "30"]);
    let out = lab.router().command("iptables").args(&rule).output().expect("iptables (Debian's iptables) runs");
    assert!(out.status.success(), "iptables {rule:?}: {}", String::from_utf8_lossy(&out.stderr));
}
