//! Each service type enforced on real traffic across the lab, once by the
//! in-process path manager and once through the daemon, registered by an
//! unprivileged program. Needs root; without it each test reports itself
//! SKIPPED.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multipath::daemon_client::Daemon as DaemonClient;
use multipath::{blocking, Parameters, PathManager, ServiceType};
use multipath_lab::testing::{become_user, echo_server, lab_test, strip_mptcp_options};
use multipath_lab::{Lab, LabConfig};
use multipath_pm::policy::PolicyConfig;
use multipath_pm::{Daemon, DaemonConfig, Manager};

/// How the connection under test is managed.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `Manager::manage` in the test process (root).
    InProcess,
    /// Registered with a `Daemon` by the library, as an unprivileged user
    /// (entitled to aggregate).
    Daemon,
    /// Never registered: a daemon whose default service type is the one
    /// under test finds the connection through the kernel's events and
    /// measures it from the kernel, as for a program that knows nothing of
    /// multipath.
    Unregistered,
}

/// A path manager that takes nothing: the connection stays unregistered.
#[derive(Debug)]
struct Nobody;

impl multipath::Enforcer for Nobody {
    fn manage(&self, _: std::os::fd::BorrowedFd<'_>, _: ServiceType) -> Result<(), multipath::EnforceError> {
        Err(multipath::EnforceError::refused("this test's connection stays unregistered"))
    }
    fn kind(&self) -> PathManager {
        PathManager::Daemon
    }
}

/// The uid the daemon's connections are opened as.
const USER: u32 = 4242;

const TOTAL: usize = 12 * 1024 * 1024;

fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Bytes received per local IP while the download runs, sampled from the
/// connection's subflows.
fn received_on(conn: &blocking::Connection, ip: std::net::IpAddr) -> u64 {
    conn.subflows()
        .map(|s| s.iter().filter(|s| s.local.ip() == ip).map(|s| s.tcp.bytes_received.unwrap_or(0)).sum())
        .unwrap_or(0)
}

/// What a handover download through a failure of wifi showed.
struct Through {
    cell_before: u64,
    cell_during: u64,
    wifi_after: u64,
    longest_gap: Duration,
}

/// Which family the connection under test uses (the lab is dual stack).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    V4,
    V6,
}

/// A handover download of `size` bytes, verified byte by byte, with wifi
/// failed by `fail(lab, true)` at 1.5 s and restored at 3.5 s.
fn handover_through(name: &str, via: Via, family: Family, size: usize, fail: fn(&Lab, bool)) -> Option<Through> {
    let _one_at_a_time = lab_test(name)?;
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let (any, server_ip): (SocketAddr, std::net::IpAddr) = match family {
        Family::V4 => ("0.0.0.0:0".parse().unwrap(), lab.server_addr().into()),
        Family::V6 => ("[::]:0".parse().unwrap(), lab.server_addr6().into()),
    };
    let listener = lab.server().run(|| blocking::Listener::bind(any, &params)).unwrap();
    let server = SocketAddr::new(server_ip, listener.local_addr().unwrap().port());
    let data: Vec<u8> = (0..size).map(byte_at).collect();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 2];
        conn.read_exact(&mut hello).unwrap();
        conn.write_all(&hello).unwrap();
        let _ = conn.write_all(&data);
        // Close only after the client has everything (its EOF), so nothing
        // unread makes the close a reset.
        let _ = conn.get_ref().shutdown(std::net::Shutdown::Write);
        let _ = conn.read(&mut [0u8; 1]);
    });
    let managed = managed(&lab, server, ServiceType::Handover, via);
    let (manager, mut conn, token) = (managed.manager, managed.conn, managed.token);
    let (wifi_ip, cell_ip) =
        (lab.path("wifi").unwrap().client_addr_for(server_ip), lab.path("cell").unwrap().client_addr_for(server_ip));
    assert_eq!(conn.local_addr().unwrap().ip(), wifi_ip, "the connection starts on wifi, in its family");

    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut phase) = (0usize, 0);
    let (mut cell_before, mut cell_at_back, mut wifi_at_back) = (0, 0, 0);
    let (mut longest_gap, mut last) = (Duration::ZERO, Instant::now());
    let started = Instant::now();
    while got < size {
        let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("after {got} B, phase {phase}: {e}"));
        assert!(n > 0, "closed after {got} of {size} bytes");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, byte_at(got + i), "byte {} corrupted", got + i);
        }
        if got == 0 {
            last = Instant::now(); // gaps count from the first byte
        }
        got += n;
        if last.elapsed() > Duration::from_millis(100) {
            eprintln!("gap of {:?} ending at {:?} (phase {phase})", last.elapsed(), started.elapsed());
        }
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
        let t = started.elapsed();
        if phase == 0 && t > Duration::from_millis(1500) {
            cell_before = received_on(&conn, cell_ip);
            fail(&lab, true);
            phase = 1;
        } else if phase == 1 && t > Duration::from_millis(3500) {
            assert_eq!(manager.active_path(token).unwrap().as_deref(), Some("cell"));
            cell_at_back = received_on(&conn, cell_ip);
            wifi_at_back = received_on(&conn, wifi_ip);
            fail(&lab, false);
            phase = 2;
        }
    }
    assert_eq!(phase, 2, "the download ended before the script ran: make it larger");
    assert_eq!(manager.active_path(token).unwrap().as_deref(), Some("wifi"));
    let through = Through {
        cell_before,
        cell_during: cell_at_back - cell_before,
        wifi_after: received_on(&conn, wifi_ip).saturating_sub(wifi_at_back),
        longest_gap,
    };
    eprintln!(
        "cell before {} B, cell during {} B, wifi after {} B, longest gap {:?}",
        through.cell_before, through.cell_during, through.wifi_after, through.longest_gap
    );
    Some(through)
}

fn assert_handover(t: &Through) {
    assert!(t.cell_before < 64 * 1024, "cell carried {} B while wifi was healthy", t.cell_before);
    assert!(t.cell_during > 1024 * 1024, "cell carried too little ({} B) while wifi was failed", t.cell_during);
    assert!(t.wifi_after > 1024 * 1024, "traffic did not return to wifi ({} B)", t.wifi_after);
}

macro_rules! three_ways {
    ($scenario:ident: $in_process:ident, $daemon:ident, $unregistered:ident) => {
        both_ways!($scenario: $in_process, $daemon);
        #[test]
        fn $unregistered() {
            $scenario(stringify!($unregistered), Via::Unregistered);
        }
    };
}

macro_rules! both_ways {
    ($scenario:ident: $in_process:ident, $daemon:ident) => {
        #[test]
        fn $in_process() {
            $scenario(stringify!($in_process), Via::InProcess);
        }
        #[test]
        fn $daemon() {
            $scenario(stringify!($daemon), Via::Daemon);
        }
    };
}

three_ways!(handover_link_down: handover_survives_wifi_down_in_process, handover_survives_wifi_down_via_daemon, handover_survives_wifi_down_unregistered);
both_ways!(handover_link_down_v6: handover_survives_wifi_down_over_ipv6_in_process, handover_survives_wifi_down_over_ipv6_via_daemon);
three_ways!(handover_blackhole: handover_survives_wifi_blackhole_in_process, handover_survives_wifi_blackhole_via_daemon, handover_survives_wifi_blackhole_unregistered);
three_ways!(interactive_swap: interactive_follows_swapped_delays_in_process, interactive_follows_swapped_delays_via_daemon, interactive_follows_swapped_delays_unregistered);
three_ways!(aggregate_both: aggregate_uses_both_paths_in_process, aggregate_uses_both_paths_via_daemon, aggregate_uses_both_paths_unregistered);

/// During a download, wifi's link goes down, then up again.
fn handover_link_down(name: &str, via: Via) {
    let fail = |lab: &Lab, failed: bool| lab.set_link("wifi", !failed).unwrap();
    if let Some(t) = handover_through(name, via, Family::V4, TOTAL, fail) {
        assert_handover(&t);
    }
}

/// The same over IPv6: wifi's IPv6 address goes with its link (the kernel's
/// default `keep_addr_on_down`), and comes back with it.
fn handover_link_down_v6(name: &str, via: Via) {
    let fail = |lab: &Lab, failed: bool| lab.set_link("wifi", !failed).unwrap();
    if let Some(t) = handover_through(name, via, Family::V6, TOTAL, fail) {
        assert_handover(&t);
    }
}

/// During a download, wifi silently drops everything (the link stays up),
/// then recovers.
fn handover_blackhole(name: &str, via: Via) {
    let fail = |lab: &Lab, failed: bool| lab.set_blackhole("wifi", failed).unwrap();
    if let Some(t) = handover_through(name, via, Family::V4, 20 * 1024 * 1024, fail) {
        assert_handover(&t);
    }
}

/// An IPv6 download through a blackholed wifi, found by ICMPv6 probes on
/// the kernel's default `ping_group_range` (raw sockets).
#[test]
fn handover_survives_wifi_blackhole_over_ipv6_via_daemon() {
    let fail = |lab: &Lab, failed: bool| lab.set_blackhole("wifi", failed).unwrap();
    let name = "handover_survives_wifi_blackhole_over_ipv6_via_daemon";
    if let Some(t) = handover_through(name, Via::Daemon, Family::V6, 20 * 1024 * 1024, fail) {
        assert_handover(&t);
    }
}

/// A managed connection from the client namespace, and what manages it.
struct Managed {
    manager: Arc<Manager>,
    conn: blocking::Connection,
    token: u32,
    _daemon: Option<Daemon>,
}

fn managed(lab: &Lab, server: SocketAddr, service: ServiceType, via: Via) -> Managed {
    // RUST_LOG=multipath_pm=debug shows each command with its time.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let params = Parameters::tcp().multipath_service_type(service).nodelay(true);
    let managed = match via {
        Via::InProcess => {
            let (manager, mut conn) = lab.client().run(|| {
                let manager = Manager::start(PolicyConfig::default()).unwrap();
                let conn = blocking::Connection::connect(server, &params).unwrap();
                (manager, conn)
            });
            // Data must flow before the kernel lets a client add subflows.
            conn.write_all(b"hi").unwrap();
            conn.read_exact(&mut [0u8; 2]).unwrap();
            let token = manager.manage(conn.as_fd(), service).unwrap();
            Managed { manager: Arc::new(manager), conn, token, _daemon: None }
        }
        Via::Daemon => {
            // The namespace's own daemon, found by the library on its own.
            let config = DaemonConfig { aggregate_uids: vec![USER], ..Default::default() };
            let daemon = lab.client().run(|| Daemon::start(config)).unwrap();
            // The library registers the connection as soon as it is
            // connected, before any data: the daemon must cope with the
            // kernel's events coming later.
            let params = params.path_manager(Arc::new(DaemonClient::of_this_namespace()));
            let mut conn = lab.client().run(|| {
                become_user(USER).unwrap();
                blocking::Connection::connect(server, &params).unwrap()
            });
            let status = conn.multipath_status();
            assert!(status.enforced && status.path_manager == PathManager::Daemon, "{status}");
            conn.write_all(b"hi").unwrap();
            conn.read_exact(&mut [0u8; 2]).unwrap();
            let token = conn.mptcp_info().unwrap().token;
            Managed { manager: daemon.manager().clone(), conn, token, _daemon: Some(daemon) }
        }
        Via::Unregistered => {
            let policy = PolicyConfig { default_service: Some(service), ..PolicyConfig::default() };
            let config = DaemonConfig { policy, ..Default::default() };
            let daemon = lab.client().run(|| Daemon::start(config)).unwrap();
            let params = params.path_manager(Arc::new(Nobody));
            let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
            assert!(!conn.multipath_status().enforced);
            // The kernel reports the connection established once data has
            // flowed: the daemon adopts it then.
            conn.write_all(b"hi").unwrap();
            conn.read_exact(&mut [0u8; 2]).unwrap();
            let token = conn.mptcp_info().unwrap().token;
            let manager = daemon.manager().clone();
            eventually(Duration::from_secs(2), "the adoption", || {
                manager.active_path(token).unwrap().is_some() || service == ServiceType::Aggregate
            });
            Managed { manager, conn, token, _daemon: Some(daemon) }
        }
    };
    assert_eq!(managed.token, managed.conn.mptcp_info().unwrap().token);
    managed
}

/// Until `what` holds, failing after `within`: for states the manager
/// reaches on its own schedule, which no event announces.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wifi starts faster; the delays swap live; the active path follows.
fn interactive_swap(name: &str, via: Via) {
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let server = echo_server(&lab, true);
    let managed = managed(&lab, server, ServiceType::Interactive, via);
    let (manager, mut conn, token) = (managed.manager, managed.conn, managed.token);
    let cell_ip = lab.path("cell").unwrap().client_addr().into();
    let ping = |conn: &mut blocking::Connection| {
        conn.write_all(&[1u8; 1000]).unwrap();
        conn.read_exact(&mut [0u8; 1000]).unwrap();
    };
    eventually(Duration::from_secs(5), "a cell subflow", || {
        ping(&mut conn);
        conn.subflows().unwrap().iter().filter(|s| s.is_open()).count() == 2
    });
    for _ in 0..20 {
        ping(&mut conn);
    }
    assert_eq!(manager.active_path(token).unwrap().as_deref(), Some("wifi"), "wifi is faster at first");

    // Wifi becomes a 120 ms path; cell stays at 60 ms.
    let (up, down) = lab.path("wifi").unwrap().shape();
    let slow = |mut s: multipath_lab::LinkShape| {
        s.delay = Duration::from_millis(60);
        s
    };
    lab.set_shape("wifi", slow(up), slow(down)).unwrap();
    eventually(Duration::from_secs(5), "the switch to cell", || {
        ping(&mut conn);
        manager.active_path(token).unwrap().as_deref() == Some("cell")
    });
    let before = received_on(&conn, cell_ip);
    for _ in 0..20 {
        ping(&mut conn);
    }
    assert!(received_on(&conn, cell_ip) - before >= 20 * 1000, "the replies now come over cell");
}

/// Both paths carry data, in both directions.
fn aggregate_both(name: &str, via: Via) {
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let server = echo_server(&lab, true);
    // Fields moved out one by one: the rest (the daemon) lives to the end.
    let managed = managed(&lab, server, ServiceType::Aggregate, via);
    let mut conn = managed.conn;
    let (wifi_ip, cell_ip) =
        (lab.path("wifi").unwrap().client_addr().into(), lab.path("cell").unwrap().client_addr().into());
    eventually(Duration::from_secs(5), "a cell subflow", || {
        conn.subflows().unwrap().iter().filter(|s| s.is_open()).count() == 2
    });
    // 6 MB echoed: both directions load both paths.
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 96;
    let chunk = vec![7u8; CHUNK];
    let mut reader = conn.try_clone().unwrap();
    let echoed = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < CHUNKS * CHUNK {
            got += reader.read(&mut buf).unwrap();
        }
        got
    });
    for _ in 0..CHUNKS {
        conn.write_all(&chunk).unwrap();
    }
    assert_eq!(echoed.join().unwrap(), CHUNKS * CHUNK);
    let (wifi, cell) = (received_on(&conn, wifi_ip), received_on(&conn, cell_ip));
    eprintln!("aggregate: wifi received {wifi} B, cell {cell} B");
    assert!(cell > 500_000 && wifi > 500_000, "both paths carry data: wifi {wifi} B, cell {cell} B");
}

#[test]
fn connections_opened_with_the_manager_are_enforced_and_say_so() {
    let Some(_one_at_a_time) = lab_test("connections_opened_with_the_manager_are_enforced_and_say_so") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let server = echo_server(&lab, true);
    let manager = std::sync::Arc::new(lab.client().run(|| Manager::start(PolicyConfig::default())).unwrap());
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).path_manager(manager.clone());
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    let status = conn.multipath_status();
    assert!(status.enforced, "{status}");
    assert_eq!(status.path_manager, multipath::PathManager::InProcess);
    assert!(status.to_string().contains("handover enforced"), "{status}");
    eventually(Duration::from_secs(5), "the cell backup subflow", || {
        conn.write_all(b"ping").unwrap();
        conn.read_exact(&mut [0u8; 4]).unwrap();
        conn.subflows().unwrap().iter().filter(|s| s.is_open()).count() == 2
    });
    let token = conn.mptcp_info().unwrap().token;
    assert_eq!(manager.active_path(token).unwrap().as_deref(), Some("wifi"));

    // Without a manager the same connection is only requested, not enforced.
    let plain = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let other = lab.client().run(|| blocking::Connection::connect(server, &plain)).unwrap();
    let status = other.multipath_status();
    assert!(!status.enforced && status.path_manager == multipath::PathManager::UserspaceUnmanaged, "{status}");
}

/// A healthy wifi never loses a handover connection, whatever the traffic:
/// a saturating download, seconds of idleness, then bursts with pauses
/// (each pause a silence that gets probed). No command after the cell
/// backup's join, and cell carries nothing.
#[test]
fn handover_does_not_switch_on_a_healthy_link_whether_saturated_idle_or_bursty() {
    let Some(_one_at_a_time) = lab_test("handover_does_not_switch_on_a_healthy_link_whether_saturated_idle_or_bursty")
    else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    // The server answers each 8-byte length with that many bytes.
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().unwrap(), &params)).unwrap();
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut len = [0u8; 8];
        let chunk = vec![0x5au8; 64 * 1024];
        while conn.read_exact(&mut len).is_ok() {
            let mut left = u64::from_be_bytes(len) as usize;
            while left > 0 {
                let n = left.min(chunk.len());
                if conn.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        }
    });
    let (log, sent) = std::sync::mpsc::sync_channel(1024);
    let manager = lab.client().run(|| Manager::start_with_log(PolicyConfig::default(), Some(log))).unwrap();
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).path_manager(Arc::new(manager));
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    let fetch = |conn: &mut blocking::Connection, n: usize| {
        conn.write_all(&(n as u64).to_be_bytes()).unwrap();
        let mut buf = vec![0u8; n];
        conn.read_exact(&mut buf).unwrap();
    };
    fetch(&mut conn, 1);
    eventually(Duration::from_secs(5), "the cell backup subflow", || {
        fetch(&mut conn, 1);
        conn.subflows().unwrap().iter().filter(|s| s.tcp.state == multipath::TcpState::Established).count() == 2
    });
    // Commands up to here set the connection up; later ones would be switches.
    std::thread::sleep(Duration::from_millis(100));
    let setup: Vec<_> = sent.try_iter().map(|s| s.command).collect();
    let cell_ip = lab.path("cell").unwrap().client_addr().into();
    let cell_before = received_on(&conn, cell_ip);

    let saturated = Instant::now();
    fetch(&mut conn, 8 * 1024 * 1024); // about 3.5 s at 19 Mbit/s
    eprintln!("saturated download took {:?}", saturated.elapsed());
    std::thread::sleep(Duration::from_secs(3)); // idle
    for i in 0..24u64 {
        // Bursts of 16-128 KB, pauses of 50-750 ms.
        fetch(&mut conn, (16 * 1024) << (i % 4));
        std::thread::sleep(Duration::from_millis(50 + (i * 137) % 700));
    }
    let later: Vec<_> = sent.try_iter().map(|s| s.command).collect();
    assert!(later.is_empty(), "switch commands on a healthy link: {later:?} (setup was {setup:?})");
    let cell = received_on(&conn, cell_ip) - cell_before;
    assert!(cell < 16 * 1024, "cell carried {cell} B while wifi was healthy");
}

/// The client namespace's quarantine rules (`from ADDR unreachable`, tag
/// 77), as `ip rule` lists them.
fn quarantine_rules(lab: &Lab) -> Vec<String> {
    let out = lab.client().command("ip").args(["rule", "show"]).output().unwrap();
    assert!(out.status.success(), "ip rule show: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("unreachable") && l.contains("proto 77"))
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_owned())
        .collect()
}

/// What a program sending from `from` to the server gets: connected, or
/// the routing error.
fn route_from(lab: &Lab, from: std::net::IpAddr) -> Result<(), i32> {
    let to = SocketAddr::new(lab.server_addr().into(), 9);
    lab.client().run(|| {
        let sock = std::net::UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        sock.connect(to).map_err(|e| e.raw_os_error().unwrap_or(0))
    })
}

#[test]
fn a_path_whose_interface_is_down_is_quarantined_until_it_returns_or_the_manager_stops() {
    let name = "a_path_whose_interface_is_down_is_quarantined_until_it_returns_or_the_manager_stops";
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let wifi: std::net::IpAddr = lab.path("wifi").unwrap().client_addr().into();
    // A rule a crashed manager left behind is removed at start.
    let stale = ["rule", "add", "pref", "9", "from", "10.1.0.2", "unreachable", "proto", "77"];
    assert!(lab.client().command("ip").args(stale).status().unwrap().success());
    assert_eq!(quarantine_rules(&lab), ["10.1.0.2"]);
    assert_eq!(route_from(&lab, wifi), Err(libc::ENETUNREACH), "the stale rule applies");

    let manager = lab.client().run(|| Manager::start(PolicyConfig::default())).unwrap();
    assert!(quarantine_rules(&lab).is_empty(), "stale rule kept");
    assert_eq!(route_from(&lab, wifi), Ok(()));

    // Down: without the rule, wifi's packets would leave through cell's
    // default route (the main table's last one standing).
    lab.set_link("wifi", false).unwrap();
    eventually(Duration::from_secs(2), "quarantine of wifi", || quarantine_rules(&lab) == [wifi.to_string()]);
    assert_eq!(route_from(&lab, wifi), Err(libc::ENETUNREACH));

    lab.set_link("wifi", true).unwrap();
    eventually(Duration::from_secs(2), "release of wifi", || quarantine_rules(&lab).is_empty());
    assert_eq!(route_from(&lab, wifi), Ok(()));

    // Down again, then the manager stops: it takes its rule with it.
    lab.set_link("wifi", false).unwrap();
    eventually(Duration::from_secs(2), "quarantine of wifi", || quarantine_rules(&lab) == [wifi.to_string()]);
    drop(manager);
    assert!(quarantine_rules(&lab).is_empty(), "rule outlived the manager");

    // Switched off, nothing is quarantined.
    let config = PolicyConfig { quarantine_down_paths: false, ..PolicyConfig::default() };
    let manager = lab.client().run(|| Manager::start(config)).unwrap();
    lab.set_link("wifi", true).unwrap();
    lab.set_link("wifi", false).unwrap();
    // The manager has seen wifi come and go once its path list says so.
    eventually(Duration::from_secs(2), "wifi gone", || manager.paths().unwrap().len() == 1);
    assert!(quarantine_rules(&lab).is_empty());
}

/// Echoes `size` bytes of the pattern over `conn`: how many came back
/// intact before the end or an error (a corrupted byte fails the test).
fn echo_prefix(conn: &mut blocking::Connection, size: usize) -> (usize, Option<std::io::Error>) {
    let payload: Vec<u8> = (0..size).map(byte_at).collect();
    let mut writer = conn.try_clone().expect("a second handle on the socket");
    // A peer that stops reading must not hang the sender.
    socket2::SockRef::from(&writer).set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&payload));
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let error = loop {
        if got == size {
            break None;
        }
        match conn.read(&mut buf) {
            Ok(0) => break Some(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                if let Some(i) = (0..n).find(|&i| buf[i] != byte_at(got + i)) {
                    panic!("bytes changed in transit at {}: got {:02x?}", got + i, &buf[i..n.min(i + 16)]);
                }
                got += n;
            }
            Err(e) => break Some(e),
        }
    };
    let _ = sender.join();
    (got, error)
}

/// Middleboxes meet a path manager that adds subflows. One strips MPTCP
/// from SYNs: the connection is plain TCP, the manager is told so and
/// leaves it alone, and it works. One strips MPTCP from every segment once
/// the connection's cell join is fully established: the status must say
/// what the kernel did, and no byte may arrive altered (the kernel resets
/// the subflows: an error or a stall, never other bytes).
///
/// Stripping that starts while a join is still being set up is not tested
/// for intact bytes: since Linux 6.12 the server then falls back to TCP
/// while the client, not yet fallen back, resends its unacknowledged window
/// on the initial subflow, which the server takes as new data (1 run in 5
/// here; the same without any join, by the client's retransmission timer;
/// DSS checksums do not help, they travel in the stripped option). Upstream:
/// multipath-tcp/mptcp_net-next#519. Nothing a path manager does can
/// prevent it.
#[test]
fn middleboxes_meet_a_path_manager_adding_subflows() {
    let Some(_one_at_a_time) = lab_test("middleboxes_meet_a_path_manager_adding_subflows") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let server = echo_server(&lab, true);
    let manager = Arc::new(lab.client().run(|| Manager::start(PolicyConfig::default())).unwrap());
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).path_manager(manager.clone());
    let read_timeout = |c: &blocking::Connection| {
        socket2::SockRef::from(c).set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    };

    // Stripped after the handshake, with a cell join in place: established
    // (not still SYN-SENT, whose stripped SYN-ACK would reset it), and data
    // acknowledged after it.
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    read_timeout(&conn);
    assert!(conn.multipath_status().enforced, "{}", conn.multipath_status());
    let established = |c: &blocking::Connection| {
        c.subflows().unwrap().iter().filter(|s| s.tcp.state == multipath::TcpState::Established).count()
    };
    eventually(Duration::from_secs(5), "the cell backup subflow", || {
        conn.write_all(b"ping").unwrap();
        conn.read_exact(&mut [0u8; 4]).unwrap();
        established(&conn) == 2
    });
    conn.write_all(b"ping").unwrap();
    conn.read_exact(&mut [0u8; 4]).unwrap();
    strip_mptcp_options(&lab, false);
    // The kernel resets the subflows; a stall ends the echo sooner.
    socket2::SockRef::from(&conn).set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (got, error) = echo_prefix(&mut conn, 2_000_000);
    let status = conn.multipath_status();
    let fell_back = conn.mptcp_info().map(|i| i.flags & multipath::MptcpInfo::FLAG_FALLBACK != 0).unwrap_or(true);
    eprintln!("options stripped after the join: {got} B echoed intact, error {error:?}; {status}");
    assert_eq!(status.transport == multipath::Transport::FellBackToTcp, fell_back, "{status}");
    assert!(error.is_none() || got < 2_000_000);

    // Stripped from SYNs: plain TCP, refused by the manager with a reason.
    strip_mptcp_options(&lab, true);
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params)).unwrap();
    read_timeout(&conn);
    let status = conn.multipath_status();
    assert_eq!(status.transport, multipath::Transport::FellBackToTcp, "{status}");
    assert!(!status.enforced, "nothing to enforce on TCP: {status}");
    let (got, error) = echo_prefix(&mut conn, 500_000);
    assert!(error.is_none() && got == 500_000, "{got} B, {error:?}");
}
