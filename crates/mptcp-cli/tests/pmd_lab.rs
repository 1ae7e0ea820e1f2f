//! `mptcp pmd` as a system service in a lab's client namespace: killed
//! with SIGKILL and started again, it leaves the namespace as it found it.
//! Needs root; without it each test reports itself SKIPPED.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use multipath::{blocking, Parameters, PathManager, ServiceType, TcpState};
use multipath_lab::testing::{echo_server, lab_test};
use multipath_lab::{Lab, LabConfig};

const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

/// `mptcp pmd` in the lab's client namespace, once it says it manages;
/// killed on drop if still running.
struct Pmd(Child);

impl Pmd {
    fn start(lab: &Lab) -> Pmd {
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.client().name(), MPTCP, "pmd"])
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
        // Keep draining what it says, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Pmd(child)
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }

    fn crash(mut self) {
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

fn pm_type(lab: &Lab) -> String {
    lab.client().run(|| std::fs::read_to_string("/proc/sys/net/mptcp/pm_type")).unwrap().trim().to_owned()
}

fn quarantine_rules(lab: &Lab) -> usize {
    let out = Command::new("ip").args(["-n", lab.client().name(), "rule", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("proto 77")).count()
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crash_and_a_restart_leave_the_namespace_as_it_was() {
    let Some(_one_at_a_time) = lab_test("a_crash_and_a_restart_leave_the_namespace_as_it_was") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let original = pm_type(&lab);
    assert_eq!(original, "0", "a new namespace starts on the kernel's path manager");

    let first = Pmd::start(&lab);
    assert_eq!(pm_type(&lab), "1");
    // A program's connection, registered by the library on its own.
    let server = echo_server(&lab, true);
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    let status = conn.multipath_status();
    assert!(status.enforced && status.path_manager == PathManager::Daemon, "{status}");
    let (wifi, cell) = (lab.path("wifi").unwrap().client_addr(), lab.path("cell").unwrap().client_addr());
    let on = |conn: &mut blocking::Connection, ip: std::net::Ipv4Addr| {
        conn.write_all(b"ping").unwrap();
        conn.read_exact(&mut [0u8; 4]).unwrap();
        conn.subflows().unwrap().iter().any(|s| s.local.ip() == ip && s.tcp.state == TcpState::Established)
    };
    eventually("a cell subflow", || on(&mut conn, cell));
    let second = Command::new("ip").args(["netns", "exec", lab.client().name(), MPTCP, "pmd"]).output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && said.contains(&format!("pid {}", first.0.id())), "{said}");
    lab.set_link("wifi", false).unwrap();
    eventually("a quarantine rule for wifi", || quarantine_rules(&lab) == 1);
    first.crash();
    assert_eq!(pm_type(&lab), "1", "a crash puts nothing back");
    assert_eq!(quarantine_rules(&lab), 1);

    eventually("no wifi subflow left", || !on(&mut conn, wifi));

    lab.set_link("wifi", true).unwrap();
    let restarted = Pmd::start(&lab);
    assert_eq!(quarantine_rules(&lab), 0, "the crashed daemon's rule is gone at start");
    // The connection outlived the crash, and the new daemon manages it as
    // it was registered: handover back onto the returned wifi (nothing
    // else would open a subflow: the namespace is on the userspace path
    // manager).
    eventually("a new wifi subflow for the adopted connection", || on(&mut conn, wifi));
    assert!(restarted.stop().success());
    assert_eq!(pm_type(&lab), original, "the value from before the first daemon is back");
}
