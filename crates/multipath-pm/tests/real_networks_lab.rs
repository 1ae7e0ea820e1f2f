//! The path manager on the networks real clients have: IPv6-only paths,
//! three paths, an address that changes under a download, an interface
//! plugged in mid-download, a default route that goes away, the kernel's
//! subflow limit. Each test downloads through the lab with every byte
//! checked, applies its events at fixed times, and judges from the client's
//! interface counters which path carried the data and how long it stalled.
//! The kernel's sysctls stay stock unless a test says why. Needs root;
//! without it each test reports itself SKIPPED.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{download, Download, Event, QUIET_BYTES};
use multipath::ServiceType;
use multipath_lab::testing::lab_test;
use multipath_lab::{Families, Lab, LabConfig, PathConfig};

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
