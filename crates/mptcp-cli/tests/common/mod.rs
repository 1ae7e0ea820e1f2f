//! What the lab tests of `mptcp` share: the daemon and the server as
//! processes in a lab's namespaces, killed when dropped (a panic included).

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multipath_lab::Lab;

pub const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

/// `mptcp pmd` in the lab's client namespace, once it says it manages;
/// killed on drop if still running.
pub struct Pmd(pub Child, pub Arc<Mutex<Vec<String>>>);

impl Pmd {
    pub fn start(lab: &Lab) -> Pmd {
        Pmd::start_with(lab, &[])
    }

    pub fn start_with(lab: &Lab, args: &[&str]) -> Pmd {
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.client().name(), MPTCP, "pmd"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("mptcp pmd starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("mptcp pmd said nothing before exiting").unwrap();
            if line.contains("managing MPTCP connections") {
                break;
            }
        }
        // Keep what it says, so it never blocks on a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l)));
        Pmd(child, log)
    }

    /// Whether it said something containing `what` so far.
    pub fn said(&self, what: &str) -> bool {
        self.1.lock().unwrap().iter().any(|l| l.contains(what))
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }

    pub fn crash(mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for Pmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mptcp serve` in the lab's server namespace, plain HTTP on the
/// server's IPv4 address (port 8080) and IPv6 address (8081); killed on drop.
pub struct Serve(Child);

impl Serve {
    pub fn start(lab: &Lab) -> Serve {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.server().name(),
                MPTCP,
                "serve",
                "--http",
                "0.0.0.0:8080",
                "--http",
                "[::]:8081",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("mptcp serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut serving = 0;
        while serving < 2 {
            let line = lines.next().expect("mptcp serve said nothing before exiting").unwrap();
            serving += usize::from(line.contains("serving http://"));
        }
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Serve(child)
    }

    /// Its IPv4 address.
    pub fn v4(lab: &Lab) -> SocketAddr {
        SocketAddr::new(lab.server_addr().into(), 8080)
    }

    /// Its IPv6 address.
    pub fn v6(lab: &Lab) -> SocketAddr {
        SocketAddr::new(lab.server_addr6().into(), 8081)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `within` for `check`, polling.
pub fn within(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh directory for a test's files, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mptcp-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The names in it, sorted.
    pub fn entries(&self) -> Vec<String> {
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

/// A child process killed (and reaped) when dropped, a panic included.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
