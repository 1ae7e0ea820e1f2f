//! `mptcp pmd` as a system service in a lab's client namespace: killed
//! with SIGKILL and started again, it leaves the namespace as it found it.
//! Needs root; without it each test reports itself SKIPPED.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use multipath::{blocking, Parameters, PathManager, ServiceType, TcpState};
use multipath_lab::testing::{echo_server, lab_test};
use multipath_lab::{Lab, LabConfig};

mod common;
use common::{within, Pmd, MPTCP};

fn pm_type(lab: &Lab) -> String {
    lab.client().run(|| std::fs::read_to_string("/proc/sys/net/mptcp/pm_type")).unwrap().trim().to_owned()
}

fn quarantine_rules(lab: &Lab) -> usize {
    let out = Command::new("ip").args(["-n", lab.client().name(), "rule", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("proto 77")).count()
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    within(what, Duration::from_secs(5), check);
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

/// `mptcp monitor --json` in the lab's client namespace, keeping the
/// latest table sizes of the daemon it reports.
struct Monitor {
    child: Child,
    tables: Arc<Mutex<Option<serde_json::Value>>>,
}

impl Monitor {
    fn start(lab: &Lab) -> Monitor {
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.client().name(), MPTCP, "monitor", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mptcp monitor starts");
        let tables = Arc::new(Mutex::new(None));
        let latest = tables.clone();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let value: serde_json::Value = serde_json::from_str(&line).expect("monitor prints JSON lines");
                if let Some(daemon) = value.get("daemon") {
                    *latest.lock().unwrap() = Some(daemon.clone());
                }
            }
        });
        Monitor { child, tables }
    }

    /// The latest size of table `name`, as the monitor printed it.
    fn table(&self, name: &str) -> Option<u64> {
        self.tables.lock().unwrap().as_ref()?.get(name)?.as_u64()
    }

    /// Whether the latest tables printed are all empty.
    fn all_empty(&self) -> bool {
        let tables = self.tables.lock().unwrap();
        let Some(serde_json::Value::Object(map)) = tables.as_ref() else { return false };
        !map.is_empty() && map.values().all(|v| v.as_u64() == Some(0))
    }

    fn latest(&self) -> String {
        format!("{:?}", self.tables.lock().unwrap())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets its flag when dropped, a panic included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// On a failure, what the daemon said last.
struct DumpOnPanic<'a>(&'a Pmd);

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0 .1.lock().unwrap();
            eprintln!("mptcp pmd said, last:\n{}", log[log.len().saturating_sub(80)..].join("\n"));
        }
    }
}

/// The client's subflows by state and MPTCP flags (`ss -M`: `e` is fully
/// established, `b` backup), counted: what a failure looked like.
fn subflow_kinds(lab: &Lab) -> String {
    let out = Command::new("ip").args(["netns", "exec", lab.client().name(), "ss", "-tniH"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut kinds = std::collections::BTreeMap::new();
    let mut state = "";
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            state = line.split_whitespace().next().unwrap_or("");
        } else if let Some(flags) = line.split_whitespace().find_map(|w| w.strip_prefix("flags:")) {
            *kinds.entry(format!("{state} {flags}")).or_insert(0) += 1;
        }
    }
    format!("{kinds:?}")
}

/// The MPTCP connections the kernel of the lab's client still lists (not
/// listeners, not closed ones), and a count of them by state.
fn mptcp_connections(lab: &Lab) -> (u64, String) {
    let out = Command::new("ip").args(["netns", "exec", lab.client().name(), "ss", "-ManH"]).output().unwrap();
    let mut states = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(state) = line.split_whitespace().next() {
            *states.entry(state.to_owned()).or_insert(0u64) += 1;
        }
    }
    let open = states.iter().filter(|(s, _)| !matches!(s.as_str(), "LISTEN" | "UNCONN")).map(|(_, n)| n).sum();
    (open, format!("{states:?}"))
}

/// Connections in the churn tests.
const CHURN: usize = 1000;
/// Threads opening and driving them; at most the daemon's 8 registrations
/// in progress per user.
const DRIVERS: usize = 8;

/// A connection of either kind: the library's, or a plain socket's.
trait Stream: Read + Write + std::os::fd::AsFd + Send {}
impl<T: Read + Write + std::os::fd::AsFd + Send> Stream for T {}

/// One request and its echoed response, on each of a driver's connections
/// at once (all requests out, then all responses in: one RTT per round).
fn exchange_round(conns: &mut [Box<dyn Stream>], round: u64) -> std::io::Result<()> {
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&[round.to_be_bytes(), (i as u64).to_be_bytes()].concat())?;
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut echo = [0u8; 16];
        c.read_exact(&mut echo)?;
        assert_eq!(echo, *[round.to_be_bytes(), (i as u64).to_be_bytes()].concat(), "echo intact");
    }
    Ok(())
}

/// `CHURN` connections through the daemon doing request/response while
/// wifi goes down and comes back: every one survives both, and once they
/// close, the daemon's tables, as `mptcp monitor --json` shows them, are
/// empty again. `registered`: the library registers each for handover;
/// otherwise they are plain MPTCP sockets (any program's) the daemon
/// learns of from the kernel's events, managed with the configured default.
///
/// The lab's echo server listens with a backlog of 64, as many programs
/// do: the burst overflows it, the server answers with SYN cookies, and a
/// few dozen joins are lost to collisions in the kernel's join-cookie
/// table (the client sees them established; the server never completes
/// them). The daemon must find and replace those, or the connections
/// relying on them die with wifi: that is what this test first caught.
fn churn(name: &str, registered: bool, pmd_args: &[&str], pmd_said: Option<&str>) {
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let pmd = Pmd::start_with(&lab, pmd_args);
    let dump = DumpOnPanic(&pmd);
    let monitor = Monitor::start(&lab);
    within("the monitor shows the daemon's tables", Duration::from_secs(5), || monitor.table("connections").is_some());
    let server = echo_server(&lab, true);
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);

    // Opened by DRIVERS threads in the client's namespace, a burst.
    let started = Instant::now();
    let mut groups: Vec<Vec<Box<dyn Stream>>> = lab.client().run(|| {
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..DRIVERS)
                .map(|_| {
                    let params = &params;
                    scope.spawn(move || {
                        (0..CHURN / DRIVERS)
                            .map(|_| {
                                if registered {
                                    let conn = blocking::Connection::connect(server, params).expect("connect");
                                    let status = conn.multipath_status();
                                    assert!(status.enforced && status.path_manager == PathManager::Daemon, "{status}");
                                    Box::new(conn) as Box<dyn Stream>
                                } else {
                                    let s = socket2::Socket::new(
                                        socket2::Domain::IPV4,
                                        socket2::Type::STREAM,
                                        Some(socket2::Protocol::MPTCP),
                                    )
                                    .expect("an MPTCP socket");
                                    s.connect(&server.into()).expect("connect");
                                    Box::new(std::net::TcpStream::from(s))
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            openers.into_iter().map(|t| t.join().unwrap()).collect()
        })
    });
    eprintln!("{name}: {CHURN} connections open in {:?}", started.elapsed());
    for c in groups.iter().flatten() {
        socket2::SockRef::from(&c.as_fd()).set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }

    // Request/response on every connection, round after round, until told.
    let stop = AtomicBool::new(false);
    let rounds: Vec<AtomicU64> = (0..DRIVERS).map(|_| AtomicU64::new(0)).collect();
    let fewest = || rounds.iter().map(|r| r.load(Ordering::SeqCst)).min().unwrap();
    std::thread::scope(|scope| {
        // A failed check below must stop the drivers, or the scope would
        // wait for them forever.
        let _stop_on_panic = StopOnDrop(&stop);
        for (conns, done) in groups.iter_mut().zip(&rounds) {
            let stop = &stop;
            let lab = &lab;
            scope.spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = exchange_round(conns, round) {
                        panic!("{name}: round {round}: {e}\nsubflows: {}", subflow_kinds(lab));
                    }
                    round += 1;
                    done.store(round, Ordering::SeqCst);
                }
            });
        }
        let after = |what: &str| {
            let from = fewest();
            within(what, Duration::from_secs(30), || fewest() >= from + 3);
        };
        after("three rounds on every connection");
        // (The kernel tells of a client connection only once data went
        // both ways: an unregistered one is known from then on.)
        within("the daemon manages every connection", Duration::from_secs(20), || {
            monitor.table("connections") == Some(CHURN as u64)
        });
        assert_eq!(
            monitor.table("registered"),
            Some(if registered { CHURN as u64 } else { 0 }),
            "{}",
            monitor.latest()
        );
        if let Some(what) = pmd_said {
            assert!(pmd.said(what), "the daemon never said {what:?}");
        }
        lab.set_link("wifi", false).unwrap();
        let down = Instant::now();
        after("three rounds on every connection with wifi down");
        eprintln!("{name}: every connection answered 3 times over cell within {:?}", down.elapsed());
        lab.set_link("wifi", true).unwrap();
        after("three rounds on every connection with wifi back");
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(monitor.table("connections"), Some(CHURN as u64), "all still managed: {}", monitor.latest());

    drop(groups);
    let closed = Instant::now();
    let deadline = closed + Duration::from_secs(15);
    while !monitor.all_empty() {
        if Instant::now() >= deadline {
            // The kernel may keep a closed connection a while (an orphan
            // waiting for its peer's DATA_FIN, up to a minute): the daemon
            // may follow what the kernel still lists, never more.
            let (open, states) = mptcp_connections(&lab);
            let managed = monitor.table("connections").unwrap_or(u64::MAX);
            assert!(
                managed <= open,
                "{name}: the daemon holds {managed} connections 15 s after the last close, the kernel lists \
                 {open} ({states}): {}\nsubflows: {}",
                monitor.latest(),
                subflow_kinds(&lab)
            );
            eprintln!("{name}: {managed} connections left after 15 s, all still listed by the kernel: {states}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{name}: tables as the kernel's {:?} after the last close", closed.elapsed());
    drop(dump);
    assert!(pmd.stop().success());
}

#[test]
fn a_thousand_registered_connections_survive_wifi_failing_and_leave_nothing_behind() {
    churn("a_thousand_registered_connections_survive_wifi_failing_and_leave_nothing_behind", true, &[], None);
}

/// The event socket's buffer shrunk to a few kilobytes (a config key for
/// exactly this): the burst of connections overflows it, the daemon says
/// so, resynchronises from the kernel's socket lists, and no connection is
/// left unmanaged (an unmanaged one would die with wifi: nothing else opens
/// a cell subflow under the userspace path manager).
#[test]
fn lost_events_leave_no_connection_unmanaged() {
    // Cargo's scratch directory for this package's tests, not the shared /tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pmd-lost-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pmd.toml");
    std::fs::write(&config, "default_service = \"handover\"\n[limits]\nevent_buffer_bytes = 1024\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    churn("lost_events_leave_no_connection_unmanaged", false, &["--config", &config], Some("events lost"));
    let _ = std::fs::remove_dir_all(&dir);
}
