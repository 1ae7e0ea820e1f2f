//! The lab against the real kernel: shaping, delay, filtering, teardown.
//! Needs root; without it each test reports itself SKIPPED.

use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::time::Duration;

use multipath_lab::measure::Direction;
use multipath_lab::testing::lab_test;
use multipath_lab::{cleanup, DelayMode, Families, Lab, LabConfig, LabError, LinkShape, PathConfig};

fn libc_enetunreach() -> i32 {
    101
}

/// The lab's own delay line, also on a kernel that has netem.
fn relay(mut config: LabConfig) -> LabConfig {
    config.delay_mode = Some(DelayMode::TunRelay);
    config
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The path's RTT, over IPv4 and IPv6 alike.
fn assert_rtt(lab: &Lab, path: &str, expected_ms: f64) {
    for v6 in [false, true] {
        let stats = if v6 {
            lab.ping6(path, 20, Duration::from_millis(20))
        } else {
            lab.ping(path, 20, Duration::from_millis(20))
        };
        let stats = stats.unwrap();
        assert_eq!(stats.lost, 0, "{path} (IPv6 {v6}): {stats:?}");
        let median = ms(stats.median().unwrap());
        eprintln!("{path} (IPv6 {v6}): median RTT {median:.2} ms (configured {expected_ms})");
        assert!(
            (median - expected_ms).abs() <= 2.0,
            "{path} (IPv6 {v6}): median RTT {median:.2} ms, configured {expected_ms} ms"
        );
    }
}

/// The lab runs on the kernel's defaults: no ICMP datagram sockets for
/// anyone (`ping_group_range` `1 0`), as on a stock host.
#[test]
fn the_client_namespace_keeps_the_stock_ping_group_range() {
    let Some(_one_at_a_time) = lab_test("the_client_namespace_keeps_the_stock_ping_group_range") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    let range = lab.client().run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")).unwrap();
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["1", "0"]);
}

#[test]
fn delay_line_holds_configured_rtt_at_idle() {
    let Some(_one_at_a_time) = lab_test("delay_line_holds_configured_rtt_at_idle") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    assert_rtt(&lab, "wifi", 20.0);
    assert_rtt(&lab, "cell", 60.0);
}

#[test]
fn shaper_holds_configured_rates() {
    let Some(_one_at_a_time) = lab_test("shaper_holds_configured_rates") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    for (path, mbit) in [("wifi", 20.0), ("cell", 10.0)] {
        for dir in [Direction::Down, Direction::Up] {
            let got = lab.tcp_goodput(path, dir, Duration::from_secs(4)).unwrap() / 1e6;
            eprintln!("{path} {dir:?}: {got:.2} Mbit/s (shaped {mbit})");
            // TCP goodput sits a few % under the shaped rate (headers).
            assert!(got >= 0.85 * mbit && got <= 1.02 * mbit, "{path} {dir:?}: {got:.2} Mbit/s, shaped {mbit}");
        }
    }
}

#[test]
fn delay_line_does_not_limit_a_100_mbit_path() {
    let Some(_one_at_a_time) = lab_test("delay_line_does_not_limit_a_100_mbit_path") else { return };
    let config = LabConfig::new().path(PathConfig::new("fast").rate_mbit(100.0).rtt(Duration::from_millis(20)));
    let lab = Lab::up(&relay(config)).unwrap();
    assert_rtt(&lab, "fast", 20.0);
    let got = lab.tcp_goodput("fast", Direction::Down, Duration::from_secs(4)).unwrap() / 1e6;
    eprintln!("fast Down: {got:.1} Mbit/s through the delay line (shaped 100)");
    assert!(got >= 90.0, "100 Mbit/s path with delay line carried {got:.1} Mbit/s");
}

#[test]
fn live_reshape_changes_delay() {
    let Some(_one_at_a_time) = lab_test("live_reshape_changes_delay") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    let slow = LinkShape::new(20.0, Duration::from_millis(60));
    lab.set_shape("wifi", slow, slow).unwrap();
    assert_rtt(&lab, "wifi", 120.0);
    assert_eq!(lab.path("wifi").unwrap().shape(), (slow, slow));

    let narrow = LinkShape::new(5.0, Duration::from_millis(10));
    lab.set_shape("cell", narrow, narrow).unwrap();
    let got = lab.tcp_goodput("cell", Direction::Down, Duration::from_secs(4)).unwrap() / 1e6;
    assert!((4.25..=5.1).contains(&got), "cell reshaped to 5 Mbit/s carried {got:.2}");
}

/// Random loss per direction: a path that drops 10% of its upload and
/// nothing of its download.
#[test]
fn loss_is_applied_per_direction() {
    let Some(_one_at_a_time) = lab_test("loss_is_applied_per_direction") else { return };
    let mut lossy = PathConfig::new("lossy").rtt(Duration::from_millis(4));
    lossy.up.loss = 0.10;
    let lab = Lab::up(&relay(LabConfig::new().path(lossy))).unwrap();
    let bind = || std::net::UdpSocket::bind("0.0.0.0:0");
    let (server, client) = (lab.server().run(bind).unwrap(), lab.client().run(bind).unwrap());
    let server_addr = SocketAddr::V4(SocketAddrV4::new(lab.server_addr(), server.local_addr().unwrap().port()));
    let client_ip = lab.path("lossy").unwrap().client_addr();
    let client_addr = SocketAddr::V4(SocketAddrV4::new(client_ip, client.local_addr().unwrap().port()));

    let up = datagrams_through(&client, &server, server_addr);
    let lost = (DATAGRAMS - up) as f64 / DATAGRAMS as f64;
    assert!((0.075..=0.125).contains(&lost), "10% loss configured, {:.1}% lost", lost * 100.0);
    let down = datagrams_through(&server, &client, client_addr);
    assert!(down >= DATAGRAMS - DATAGRAMS / 200, "no loss configured down, {down} of {DATAGRAMS} arrived");
}

const DATAGRAMS: usize = 2000;

/// Sends [`DATAGRAMS`] from `from` to `to_addr` and counts what `to` receives.
fn datagrams_through(from: &std::net::UdpSocket, to: &std::net::UdpSocket, to_addr: SocketAddr) -> usize {
    to.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let (mut got, mut buf) = (0usize, [0u8; 64]);
            // Ends when nothing arrives for 500 ms after the last datagram.
            while to.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        for i in 0..DATAGRAMS {
            from.send_to(&(i as u32).to_be_bytes(), to_addr).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(1)); // far below any queue limit
            }
        }
        receiver.join().unwrap()
    })
}

#[test]
fn link_down_up_and_blackhole() {
    let Some(_one_at_a_time) = lab_test("link_down_up_and_blackhole") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    let once = |path| lab.ping(path, 1, Duration::ZERO);
    lab.set_link("wifi", false).unwrap();
    match once("wifi") {
        Ok(stats) => assert_eq!(stats.lost, 1, "wifi down must not answer"),
        // Or the kernel refuses to send at all.
        Err(LabError::Io { source, .. }) if source.raw_os_error() == Some(libc_enetunreach()) => {}
        Err(e) => panic!("{e}"),
    }
    lab.set_link("wifi", true).unwrap();
    assert_rtt(&lab, "wifi", 20.0);

    lab.set_blackhole("wifi", true).unwrap();
    assert_eq!(once("wifi").unwrap().lost, 1, "blackholed wifi must not answer");
    assert_eq!(lab.ping6("wifi", 1, Duration::ZERO).unwrap().lost, 1, "blackholed wifi must not answer IPv6");
    assert_eq!(once("cell").unwrap().lost, 0, "cell unaffected");
    assert_eq!(lab.ping6("cell", 1, Duration::ZERO).unwrap().lost, 0, "cell unaffected over IPv6");
    lab.set_blackhole("wifi", false).unwrap();
    assert_rtt(&lab, "wifi", 20.0);
}

/// Once wifi's routes are gone, a packet from wifi's address falls through
/// to the main table and leaves via cell; the router must drop it.
#[test]
fn router_drops_foreign_source_addresses() {
    let Some(_one_at_a_time) = lab_test("router_drops_foreign_source_addresses") else { return };
    let lab = Lab::up(&relay(LabConfig::wifi_cell())).unwrap();
    let listener = lab.server().run(|| TcpListener::bind("0.0.0.0:0")).unwrap();
    let target = SocketAddr::V4(SocketAddrV4::new(lab.server_addr(), listener.local_addr().unwrap().port()));
    let connect_from = |path: &str| {
        let from = SocketAddr::V4(SocketAddrV4::new(lab.path(path).unwrap().client_addr(), 0));
        lab.client().run(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&from.into()).unwrap();
            s.connect_timeout(&target.into(), Duration::from_millis(1500))
        })
    };
    assert!(connect_from("wifi").is_ok(), "wifi works while up");
    lab.set_link("wifi", false).unwrap();
    let leaked = connect_from("wifi");
    assert!(leaked.is_err(), "a packet from wifi's address got through via cell");
    assert!(connect_from("cell").is_ok(), "cell still works");

    // IPv6: wifi loses its default routes (its address goes with the link,
    // so the link stays up here), and wifi's source falls through to cell.
    lab.set_link("wifi", true).unwrap();
    let listener6 = lab.server().run(|| TcpListener::bind("[::]:0")).unwrap();
    let target6 = SocketAddr::new(lab.server_addr6().into(), listener6.local_addr().unwrap().port());
    let connect6_from = |path: &str| {
        let from = SocketAddr::new(lab.path(path).unwrap().client_addr6().into(), 0);
        lab.client().run(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
            s.bind(&from.into()).unwrap();
            s.connect_timeout(&target6.into(), Duration::from_millis(1500))
        })
    };
    assert!(connect6_from("wifi").is_ok(), "wifi works over IPv6 while up");
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip").args(["-n", lab.client().name(), "-6"]).args(args).status();
        assert!(status.unwrap().success(), "ip {args:?}");
    };
    ip(&["route", "del", "default", "dev", "wifi"]);
    ip(&["route", "del", "default", "dev", "wifi", "table", "100"]);
    assert!(connect6_from("wifi").is_err(), "an IPv6 packet from wifi's address got through via cell");
    assert!(connect6_from("cell").is_ok(), "cell still works over IPv6");
}

fn lab_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| c.starts_with("dl-"))
        .collect()
}

#[test]
fn teardown_leaves_nothing_even_after_a_panic() {
    let Some(_one_at_a_time) = lab_test("teardown_leaves_nothing_even_after_a_panic") else { return };
    let name = std::sync::Mutex::new(String::new());
    let child = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        // Path names of its own, so its delay-line threads are recognisable
        // among those of labs that other tests run at the same time.
        let config = LabConfig::new().path(PathConfig::new("tdzz1").rtt(Duration::from_millis(10)));
        let lab = Lab::up(&relay(config)).unwrap();
        assert!(lab_threads().iter().any(|t| t.contains("tdzz1")), "delay line threads are named");
        *name.lock().unwrap() = lab.name().to_owned();
        // A process inside the lab, as a test might leave running.
        *child.lock().unwrap() = Some(lab.client().command("sleep").arg("600").spawn().unwrap());
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    let namespaces: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    assert!(!namespaces.iter().any(|n: &String| n.starts_with(&name)), "namespaces left: {namespaces:?}");
    assert!(!cleanup::list_labs().iter().any(|l| l.name == name));
    let leftover: Vec<_> = lab_threads().into_iter().filter(|t| t.contains("tdzz1")).collect();
    assert!(leftover.is_empty(), "delay line threads left: {leftover:?}");
    // The process inside the lab was killed by the teardown, not left running.
    let mut child = child.into_inner().unwrap().expect("child started");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let status = rx.recv_timeout(Duration::from_secs(5)).expect("the lab's process survived teardown").unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");
    let links = std::process::Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("tdzz1") && !links.contains(&name), "links left in the root namespace: {links}");
}

/// `ip -n <client> ARGS`, its output.
fn client_ip(lab: &Lab, args: &[&str]) -> String {
    let out = std::process::Command::new("ip").arg("-n").arg(lab.client().name()).args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Paths of one family, three of them, and the events of a real client:
/// an interface plugged in and pulled out, a renumbering, a lost default
/// route. Each leaves the client's addresses and routes as a host's would.
#[test]
fn paths_of_one_family_and_the_events_of_real_networks() {
    let Some(_one_at_a_time) = lab_test("paths_of_one_family_and_the_events_of_real_networks") else { return };
    let config = LabConfig::new()
        .path(PathConfig::new("eth").rate_mbit(50.0).rtt(Duration::from_millis(4)))
        .path(PathConfig::new("wifi").rtt(Duration::from_millis(20)).families(Families::V4))
        .path(PathConfig::new("cell").rtt(Duration::from_millis(60)).families(Families::V6).unplugged());
    let lab = Lab::up(&relay(config)).unwrap();
    eprintln!("{}", lab.describe());
    // Stock MPTCP limits, not widened by the lab.
    let limits = client_ip(&lab, &["mptcp", "limits", "show"]);
    assert!(limits.contains("subflows 2"), "{limits}");

    // One family each: wifi has no IPv6 address or route, cell is absent.
    let wifi = lab.path("wifi").unwrap();
    assert_eq!(wifi.client_addrs(), vec![std::net::IpAddr::from(wifi.client_addr())]);
    assert!(lab.ping("wifi", 3, Duration::from_millis(20)).unwrap().lost == 0);
    assert!(!client_ip(&lab, &["-6", "addr", "show", "dev", "wifi"]).contains("fd00:"));
    assert!(!client_ip(&lab, &["-6", "route", "show", "default"]).contains("wifi"));
    assert!(!client_ip(&lab, &["-o", "link", "show"]).contains("cell"));
    assert!(lab.set_plugged("cell", false).is_err(), "unplugging an absent path is an error");

    // Plugged in: an IPv6 path only, reaching the server in 60 ms.
    lab.set_plugged("cell", true).unwrap();
    lab.wait_until_answers("cell").unwrap();
    let cell = lab.ping6("cell", 5, Duration::from_millis(20)).unwrap();
    assert_eq!(cell.lost, 0);
    assert!((ms(cell.median().unwrap()) - 60.0).abs() <= 2.0, "{cell:?}");
    assert!(client_ip(&lab, &["-6", "route", "show", "default"]).contains("dev cell"));
    assert!(!client_ip(&lab, &["-4", "route", "show", "default"]).contains("dev cell"));

    // Renumbered: the old address is gone, the new one works, routes back.
    let old = wifi.client_addr();
    let new = lab.renumber("wifi").unwrap();
    assert_eq!(new, vec![std::net::IpAddr::from(wifi.client_addr())]);
    assert_ne!(wifi.client_addr(), old);
    let shown = client_ip(&lab, &["-4", "addr", "show", "dev", "wifi"]);
    assert!(!shown.contains(&format!("{old}/")) && shown.contains(&format!("{}/", wifi.client_addr())), "{shown}");
    lab.wait_until_answers("wifi").unwrap();
    assert!(client_ip(&lab, &["-4", "route", "show", "default"]).contains("dev wifi"));

    // The default route lost while the link stays up, then restored.
    lab.set_default_route("eth", false).unwrap();
    let routes = client_ip(&lab, &["route", "show", "default"]) + &client_ip(&lab, &["-6", "route", "show", "default"]);
    assert!(!routes.contains("dev eth"), "{routes}");
    assert!(client_ip(&lab, &["link", "show", "eth"]).contains("UP"));
    lab.set_default_route("eth", true).unwrap();
    lab.wait_until_answers("eth").unwrap();

    // Pulled out: gone from the client, back again on request.
    lab.set_plugged("cell", false).unwrap();
    assert!(!client_ip(&lab, &["-6", "route", "show", "default"]).contains("dev cell"));
    lab.set_plugged("cell", true).unwrap();
    lab.wait_until_answers("cell").unwrap();
}
