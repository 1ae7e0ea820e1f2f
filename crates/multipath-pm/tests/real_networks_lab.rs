//! The path manager on the networks real clients have: IPv6-only paths,
//! three paths, an address that changes under a download, an interface
//! plugged in mid-download, a default route that goes away, the kernel's
//! subflow limit. Each test downloads through the lab with every byte
//! checked, applies its events at fixed times, and judges from the client's
//! interface counters which path carried the data and how long it stalled.
//! The kernel's sysctls stay stock unless a test says why. Needs root;
//! without it each test reports itself SKIPPED.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::testing::lab_test;
use multipath_lab::traffic::{longest_stall, RxRecorder, RxSample};
use multipath_lab::{Families, Lab, LabConfig, PathConfig};
use multipath_pm::policy::{ConnView, PolicyConfig};
use multipath_pm::Manager;

fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// What happens to the client's network during a download.
#[derive(Clone, Copy, Debug)]
enum Event {
    Link(&'static str, bool),
    Renumber(&'static str),
    Plug(&'static str, bool),
    DefaultRoute(&'static str, bool),
}

impl Event {
    fn apply(self, lab: &Lab) {
        match self {
            Event::Link(path, up) => lab.set_link(path, up).unwrap(),
            Event::Renumber(path) => drop(lab.renumber(path).unwrap()),
            Event::Plug(path, plugged) => lab.set_plugged(path, plugged).unwrap(),
            Event::DefaultRoute(path, present) => lab.set_default_route(path, present).unwrap(),
        }
    }
}

/// A download's record.
struct Download {
    samples: Vec<RxSample>,
    /// When each event ran, on the samples' clock.
    applied: Vec<(Duration, Event)>,
    paths: Vec<String>,
    manager: Manager,
    token: u32,
    /// The connection, still open.
    conn: blocking::Connection,
}

const QUIET_BYTES: u64 = 3000;

impl Download {
    /// What the manager holds of the connection now.
    fn view(&self) -> ConnView {
        let all = self.manager.connections().unwrap();
        all.into_iter().find(|c| c.token == self.token).expect("the connection is managed").view
    }

    /// Bytes `path` received between `from_ms` and `to_ms`.
    fn carried(&self, path: &str, from_ms: u64, to_ms: u64) -> u64 {
        let i = self.paths.iter().position(|p| p == path).expect("a lab path");
        let at = |ms: u64| {
            let t = Duration::from_millis(ms);
            self.samples.iter().take_while(|s| s.at <= t).last().map_or(0, |s| s.bytes[i])
        };
        at(to_ms).saturating_sub(at(from_ms))
    }

    /// The share of what arrived between `from_ms` and `to_ms` that came
    /// over `path`.
    fn share(&self, path: &str, from_ms: u64, to_ms: u64) -> f64 {
        let all: u64 = self.paths.iter().map(|p| self.carried(p, from_ms, to_ms)).sum();
        assert!(all > 64 * 1024, "only {all} B arrived between {from_ms} and {to_ms} ms");
        self.carried(path, from_ms, to_ms) as f64 / all as f64
    }

    /// The longest stall after event number `n`, up to the next event.
    fn stall_after(&self, n: usize) -> Duration {
        let from = self.applied[n].0;
        let until = self.applied.get(n + 1).map_or(Duration::MAX, |e| e.0);
        let window: Vec<RxSample> = self.samples.iter().filter(|s| s.at <= until).cloned().collect();
        longest_stall(&window, from, QUIET_BYTES)
    }

    /// Asserts that `path` carried at least `share` of the bytes between
    /// `from_ms` and `to_ms`.
    fn assert_carried(&self, path: &str, share: f64, from_ms: u64, to_ms: u64) {
        let got = self.share(path, from_ms, to_ms);
        assert!(got >= share, "{path} carried {got:.2} of the bytes between {from_ms} and {to_ms} ms, wanted {share}");
    }
}

/// Downloads from the server at `server_ip` for `end_ms` under `service`
/// (the in-process manager), applying `script` (ms, event) as it goes.
fn download(lab: &Lab, server_ip: IpAddr, service: ServiceType, script: &[(u64, Event)], end_ms: u64) -> Download {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // The userspace path manager, in the lab's own client namespace.
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let params = Parameters::tcp().multipath_service_type(service).nodelay(true);
    // A dual-stack server: one IPv6 listener, not IPv6-only. (A connection
    // accepted by an IPv4 listener can take no IPv6 join: the kernel resets
    // it, whatever the server announces.)
    let any: SocketAddr = "[::]:0".parse().unwrap();
    let listener = lab.server().run(|| blocking::Listener::bind(any, &params)).unwrap();
    let server = SocketAddr::new(server_ip, listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 2];
        conn.read_exact(&mut hello).unwrap();
        conn.write_all(&hello).unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = byte_at(sent + i);
            }
            match conn.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => return, // the client is done
            }
        }
    });
    let (manager, mut conn) = lab.client().run(|| {
        let manager = Manager::start(PolicyConfig::default()).unwrap();
        let conn = blocking::Connection::connect(server, &params).unwrap();
        (manager, conn)
    });
    // Data must flow before the kernel lets a client add subflows.
    conn.write_all(b"hi").unwrap();
    conn.read_exact(&mut [0u8; 2]).unwrap();
    let token = manager.manage(conn.as_fd(), service).unwrap();
    // A download that stops fails the test instead of hanging it.
    conn.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let recorder = RxRecorder::start(lab, Duration::from_millis(10)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut next, mut applied) = (0usize, 0usize, Vec::new());
    let end = Duration::from_millis(end_ms);
    while recorder.elapsed() < end {
        let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("after {got} B at {:?}: {e}", recorder.elapsed()));
        assert!(n > 0, "closed after {got} B");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, byte_at(got + i), "byte {} corrupted", got + i);
        }
        got += n;
        if let Some(&(at, event)) = script.get(next) {
            if recorder.elapsed() >= Duration::from_millis(at) {
                let t = recorder.elapsed();
                event.apply(lab);
                eprintln!("{:>6.0} ms: {event:?}", t.as_secs_f64() * 1e3);
                applied.push((t, event));
                next += 1;
            }
        }
    }
    assert_eq!(next, script.len(), "the download stalled before every event ran ({got} B)");
    let samples = recorder.stop();
    let paths = lab.paths().iter().map(|p| p.name().to_owned()).collect();
    let d = Download { samples, applied, paths, manager, token, conn };
    for (i, (at, event)) in d.applied.iter().enumerate() {
        eprintln!("after {event:?} at {at:?}: longest stall {:?}", d.stall_after(i));
    }
    eprintln!("{got} B verified; view: {:?}", d.view());
    d
}

/// Handover on IPv6-only paths: wifi's link fails, cell (over IPv6)
/// carries the download, wifi returns and takes it back.
#[test]
fn handover_moves_between_ipv6_only_paths() {
    let Some(_one_at_a_time) = lab_test("handover_moves_between_ipv6_only_paths") else { return };
    let config = LabConfig::new()
        .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)).families(Families::V6))
        .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)).families(Families::V6));
    let lab = Lab::up(&config).unwrap();
    let script = [(1500, Event::Link("wifi", false)), (3500, Event::Link("wifi", true))];
    let d = download(&lab, lab.server_addr6().into(), ServiceType::Handover, &script, 6000);
    d.assert_carried("wifi", 0.95, 300, 1500);
    d.assert_carried("cell", 0.95, 2000, 3500);
    d.assert_carried("wifi", 0.95, 5000, 6000);
    assert!(d.stall_after(0) < Duration::from_secs(1), "stall {:?}", d.stall_after(0));
    let local = d.conn.local_addr().unwrap();
    assert!(local.is_ipv6(), "{local}");
}

/// Three paths, best first: ethernet fails and wifi takes over, wifi fails
/// and cell takes over, ethernet returns and takes the download back. The
/// kernel's limits stay stock (two joins per connection, both ends).
#[test]
fn handover_falls_down_three_paths_and_returns_to_the_best() {
    let Some(_one_at_a_time) = lab_test("handover_falls_down_three_paths_and_returns_to_the_best") else { return };
    let config = LabConfig::new()
        .path(PathConfig::new("eth").rate_mbit(40.0).rtt(Duration::from_millis(4)))
        .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)))
        .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)));
    let lab = Lab::up(&config).unwrap();
    let script =
        [(1500, Event::Link("eth", false)), (3500, Event::Link("wifi", false)), (5500, Event::Link("eth", true))];
    let d = download(&lab, lab.server_addr().into(), ServiceType::Handover, &script, 8000);
    d.assert_carried("eth", 0.95, 300, 1500);
    d.assert_carried("wifi", 0.95, 2000, 3500);
    d.assert_carried("cell", 0.95, 4000, 5500);
    d.assert_carried("eth", 0.95, 7000, 8000);
    for step in 0..2 {
        assert!(d.stall_after(step) < Duration::from_secs(1), "stall after step {step}: {:?}", d.stall_after(step));
    }
}

/// Wifi is renumbered during a download (old address removed, new one
/// added, as a DHCP renewal with a new lease or a roam does): the
/// connection survives, and carries on over wifi from the new address.
#[test]
fn a_download_moves_to_the_new_address_of_a_renumbered_path() {
    let Some(_one_at_a_time) = lab_test("a_download_moves_to_the_new_address_of_a_renumbered_path") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let script = [(1500, Event::Renumber("wifi"))];
    let d = download(&lab, lab.server_addr().into(), ServiceType::Handover, &script, 4500);
    d.assert_carried("wifi", 0.95, 300, 1500);
    d.assert_carried("wifi", 0.95, 3000, 4500);
    let new: IpAddr = lab.path("wifi").unwrap().client_addr().into();
    let view = d.view();
    assert!(view.subflows.iter().any(|s| s.path == "wifi" && s.local.ip() == new && !s.backup), "{view:?}");
    assert!(d.stall_after(0) < Duration::from_millis(500), "stall {:?}", d.stall_after(0));
}

/// Wifi's default route goes away while its link stays up (a lease that
/// ran out): the download moves to cell, and back when the route returns.
#[test]
fn a_path_that_loses_its_default_route_is_left_until_it_returns() {
    let Some(_one_at_a_time) = lab_test("a_path_that_loses_its_default_route_is_left_until_it_returns") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let script = [(1500, Event::DefaultRoute("wifi", false)), (3500, Event::DefaultRoute("wifi", true))];
    let d = download(&lab, lab.server_addr().into(), ServiceType::Handover, &script, 6000);
    d.assert_carried("cell", 0.95, 2000, 3500);
    d.assert_carried("wifi", 0.95, 5000, 6000);
}

/// A cell modem plugged in mid-download: aggregate starts using it as soon
/// as it has an address and a route.
#[test]
fn aggregate_takes_in_an_interface_plugged_in_mid_download() {
    let Some(_one_at_a_time) = lab_test("aggregate_takes_in_an_interface_plugged_in_mid_download") else { return };
    let config = LabConfig::new()
        .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)))
        .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)).unplugged());
    let lab = Lab::up(&config).unwrap();
    let script = [(1500, Event::Plug("cell", true))];
    let d = download(&lab, lab.server_addr().into(), ServiceType::Aggregate, &script, 5000);
    assert_eq!(d.carried("cell", 0, 1400), 0);
    d.assert_carried("cell", 0.2, 3000, 5000);
    let plugged = d.applied[0].0;
    let first = d.samples.iter().find(|s| s.at > plugged && s.bytes[1] > 64 * 1024).map(|s| s.at - plugged);
    eprintln!("cell carried its first 64 KiB {first:?} after it was plugged in");
}

/// With the client's subflow limit at 1 (lowered by this test, in its own
/// namespace: the case is a host that asked for fewer subflows), an
/// aggregate connection over three paths joins one other path, the best,
/// and says which path waits.
#[test]
fn the_kernels_subflow_limit_leaves_the_worst_path_out_and_says_so() {
    let Some(_one_at_a_time) = lab_test("the_kernels_subflow_limit_leaves_the_worst_path_out_and_says_so") else {
        return;
    };
    let config = LabConfig::new()
        .path(PathConfig::new("eth").rate_mbit(20.0).rtt(Duration::from_millis(4)))
        .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)))
        .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)));
    let lab = Lab::up(&config).unwrap();
    let status = std::process::Command::new("ip")
        .args(["-n", lab.client().name(), "mptcp", "limits", "set", "subflows", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let d = download(&lab, lab.server_addr().into(), ServiceType::Aggregate, &[], 3000);
    let view = d.view();
    assert_eq!(view.subflows.len(), 2, "{view:?}");
    assert_eq!(view.held_back, ["cell"], "{view:?}");
    assert!(d.carried("wifi", 1000, 3000) > 1024 * 1024);
    assert!(d.carried("cell", 0, 3000) < QUIET_BYTES * 10, "cell carried data");
    eprintln!("{:?}", started.elapsed());
}

/// Wifi with IPv4 only, cell with IPv6 only, a dual-stack server that
/// announces its addresses.
fn split_families_lab() -> Lab {
    let config = LabConfig::new()
        .path(PathConfig::new("wifi").rate_mbit(20.0).rtt(Duration::from_millis(20)).families(Families::V4))
        .path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)).families(Families::V6));
    let lab = Lab::up(&config).unwrap();
    lab.server_announces().unwrap();
    lab
}

/// An IPv4 connection (the library makes it an IPv6 socket's, to the
/// server's IPv4 address mapped) over wifi: when wifi fails, handover moves it to cell over IPv6,
/// to the address the server announced, and back when wifi returns.
#[test]
fn handover_moves_an_ipv4_connection_to_an_ipv6_only_path_through_the_announced_address() {
    let name = "handover_moves_an_ipv4_connection_to_an_ipv6_only_path_through_the_announced_address";
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = split_families_lab();
    // The library's MPTCP socket to an IPv4 address is an IPv6 one.
    let script = [(1500, Event::Link("wifi", false)), (3500, Event::Link("wifi", true))];
    let d = download(&lab, lab.server_addr().into(), ServiceType::Handover, &script, 6000);
    d.assert_carried("wifi", 0.95, 300, 1500);
    d.assert_carried("cell", 0.95, 2000, 3500);
    d.assert_carried("wifi", 0.95, 5000, 6000);
    assert!(d.stall_after(0) < Duration::from_secs(1), "stall {:?}", d.stall_after(0));
    assert_lists_both_families(&d, &lab);
}

/// The library's subflow list of a mixed connection: each subflow with its
/// family and interface, to the server's address of that family.
fn assert_lists_both_families(d: &Download, lab: &Lab) {
    // Interfaces are named from the calling thread's namespace: the
    // client's, as for a program running there.
    let subflows = lab.client().run(|| d.conn.subflows()).unwrap();
    let subflows: Vec<_> = subflows.into_iter().filter(|s| s.is_open()).collect();
    for s in &subflows {
        eprintln!("subflow {} -> {} on {:?}, IPv4 {}", s.local, s.remote, s.interface, s.is_ipv4());
    }
    let on = |name: &str, v4: bool, server: IpAddr| {
        subflows.iter().any(|s| {
            s.interface.as_deref() == Some(name) && s.is_ipv4() == v4 && s.remote.ip().to_canonical() == server
        })
    };
    assert!(on("wifi", true, lab.server_addr().into()), "{subflows:?}");
    assert!(on("cell", false, lab.server_addr6().into()), "{subflows:?}");
}

/// The reverse: an IPv6 connection, over cell (the only IPv6 path), joins
/// wifi over IPv4 to the server's announced IPv4 address, and handover
/// moves it there: wifi is the better path.
#[test]
fn an_ipv6_connection_moves_to_an_ipv4_only_path_through_the_announced_address() {
    let name = "an_ipv6_connection_moves_to_an_ipv4_only_path_through_the_announced_address";
    let Some(_one_at_a_time) = lab_test(name) else { return };
    let lab = split_families_lab();
    let d = download(&lab, lab.server_addr6().into(), ServiceType::Handover, &[], 3000);
    d.assert_carried("wifi", 0.95, 1500, 3000);
    let view = d.view();
    let server4 = SocketAddr::new(lab.server_addr().into(), view.remote.port());
    assert!(view.subflows.iter().any(|s| s.path == "wifi" && s.local.is_ipv4()), "{view:?} (to {server4})");
    assert_lists_both_families(&d, &lab);
}
