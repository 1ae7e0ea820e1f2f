//! The netlink driver against the kernel's userspace path manager, in the
//! lab. Needs root; without it each test reports itself SKIPPED.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use multipath::{blocking, Parameters, ServiceType, TcpState};
use multipath_lab::testing::lab_test;
use multipath_lab::{Lab, LabConfig};
use multipath_pm::netlink::mptcp_pm::flags;
use multipath_pm::{Command, Event, EventSocket, LocalAddr, PmError, PmSocket, RouteWatcher};

fn ifindex(name: &str) -> i32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name.
    unsafe { libc::if_nametoindex(c.as_ptr()) as i32 }
}

/// Reads events until one matches, failing after 5 s without it.
fn wait_for(events: &mut EventSocket, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(5);
    events.set_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        assert!(Instant::now() < deadline, "no {what} event within 5 s");
        for e in events.recv().unwrap_or_else(|e| panic!("waiting for {what}: {e}")) {
            if pred(&e) {
                return e;
            }
        }
    }
}

#[test]
fn userspace_pm_commands_and_events_on_a_real_connection() {
    let Some(_one_at_a_time) = lab_test("userspace_pm_commands_and_events_on_a_real_connection") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().unwrap(), &params)).unwrap();
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            let _ = conn.write_all(&buf[..n]);
        }
    });
    let cell_ip: IpAddr = lab.path("cell").unwrap().client_addr().into();

    // The server's view: MP_JOIN's backup bit and MP_PRIO arrive as events there.
    let mut server_events = lab.server().run(EventSocket::open).unwrap();

    lab.client().run(|| {
        let mut events = EventSocket::open().unwrap();
        let mut pm = PmSocket::open().unwrap();
        let mut conn = blocking::Connection::connect(server, &params).unwrap();
        let token = conn.mptcp_info().unwrap().token;
        // A client's connection is fully established (and may get more
        // subflows) only once data has been exchanged.
        conn.write_all(b"x").unwrap();
        conn.read_exact(&mut [0u8; 1]).unwrap();
        let established =
            wait_for(&mut events, "ESTABLISHED", |e| matches!(e, Event::Established(c) if c.token == token));
        let Event::Established(c) = established else { unreachable!() };
        // The library's MPTCP socket to an IPv4 server is an IPv6 one: the
        // event shows the server's address IPv4-mapped.
        assert_eq!(c.remote, SocketAddr::new(lab.server_addr().to_ipv6_mapped().into(), server.port()));
        assert!(!c.server_side);

        // A backup subflow on cell, with an id and interface of our choosing.
        let local = LocalAddr { id: 5, addr: cell_ip, port: 0, ifindex: ifindex("cell"), flags: flags::BACKUP };
        pm.execute(&Command::SubflowCreate { token, local, remote: server }).unwrap();
        let sub =
            wait_for(&mut events, "SUB_ESTABLISHED", |e| matches!(e, Event::SubEstablished(s) if s.token == token));
        let Event::SubEstablished(sub) = sub else { unreachable!() };
        assert_eq!((sub.local.ip(), sub.loc_id, sub.remote), (cell_ip, 5, server));
        assert_eq!(sub.ifindex, Some(ifindex("cell") as u32));
        let open: Vec<_> =
            conn.subflows().unwrap().into_iter().filter(|s| s.tcp.state == TcpState::Established).collect();
        assert_eq!(open.len(), 2, "{open:#?}");
        let at_server =
            wait_for(&mut server_events, "server SUB_ESTABLISHED", |e| matches!(e, Event::SubEstablished(_)));
        let Event::SubEstablished(at_server) = at_server else { unreachable!() };
        assert!(at_server.backup, "the join carried the backup flag: {at_server:?}");

        // MP_PRIO needs the join fully established (the peer's ack of the
        // third ACK), which has no event: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(2);
        let unbackup = Command::SetBackup { token, local: sub.local, remote: server, backup: false };
        while let Err(e) = pm.execute(&unbackup) {
            assert!(e.errno() == Some(libc::EINVAL) && Instant::now() < deadline, "{e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let prio = wait_for(&mut server_events, "SUB_PRIORITY", |e| matches!(e, Event::SubPriority(_)));
        let Event::SubPriority(prio) = prio else { unreachable!() };
        assert!(!prio.backup, "{prio:?}");
        assert_eq!(prio.remote.ip(), cell_ip);

        // GET_ADDR: the kernel's entry for the id the join used.
        let entry = pm.get_addr(token, 5).unwrap();
        assert_eq!((entry.id, entry.addr), (5, cell_ip), "{entry:?}");
        let err = pm.get_addr(token, 42).unwrap_err();
        assert!(matches!(err, PmError::Refused { command: "GET_ADDR", .. }), "{err}");
        // The dump form: the connection's entries, here the join's alone.
        let all = pm.addresses(token).unwrap();
        assert_eq!(all.iter().map(|e| (e.id, e.addr)).collect::<Vec<_>>(), [(5, cell_ip)], "{all:?}");
        let err = pm.addresses(token ^ 0x5a5a_5a5a).unwrap_err();
        assert!(matches!(err, PmError::Refused { command: "GET_ADDR", .. }), "{err}");

        // ANNOUNCE (ADD_ADDR) reaches the server as an ANNOUNCED event; the
        // kernel's entry stays the subflow's (flags unchanged). An address has
        // one id per connection: announcing cell under another id than its
        // subflow's is refused.
        let clash = LocalAddr { id: 7, addr: cell_ip, port: 0, ifindex: 0, flags: flags::SIGNAL };
        let err = pm.execute(&Command::Announce { token, addr: clash }).unwrap_err();
        assert!(err.to_string().contains("did not match address and id"), "{err}");
        let announced = LocalAddr { id: 5, ..clash };
        pm.execute(&Command::Announce { token, addr: announced }).unwrap();
        let at_server = wait_for(&mut server_events, "server ANNOUNCED", |e| matches!(e, Event::Announced { .. }));
        let Event::Announced { rem_id, addr, .. } = at_server else { unreachable!() };
        assert_eq!((rem_id, addr.ip()), (5, cell_ip));
        let entry = pm.get_addr(token, 5).unwrap();
        assert_eq!((entry.id, entry.addr), (5, cell_ip), "{entry:?}");
        assert_eq!(entry.flags, flags::SUBFLOW, "{entry:?}");

        // Refusals come back with the kernel's own words.
        let bogus = Command::SubflowCreate { token: token ^ 0x5a5a_5a5a, local, remote: server };
        match pm.execute(&bogus) {
            Err(e @ PmError::Refused { errno: libc::EINVAL, .. }) => {
                assert!(e.to_string().contains("token"), "{e}");
            }
            other => panic!("expected EINVAL for an unknown token, got {other:?}"),
        }
        let foreign = LocalAddr { id: 6, addr: "192.0.2.1".parse().unwrap(), ..local };
        let err = pm.execute(&Command::SubflowCreate { token, local: foreign, remote: server }).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EADDRNOTAVAIL), "{err}");

        // Withdraw the address id (RM_ADDR), then destroy the subflow.
        pm.execute(&Command::Remove { token, loc_id: 5 }).unwrap();
        pm.execute(&Command::SubflowDestroy { token, local: sub.local, remote: server })
            .or_else(|e| if e.errno() == Some(libc::ESRCH) { Ok(()) } else { Err(e) })
            .unwrap();
        wait_for(
            &mut events,
            "SUB_CLOSED",
            |e| matches!(e, Event::SubClosed(s) if s.token == token && s.local == sub.local),
        );
    });
}

#[test]
fn route_watcher_sees_paths_come_and_go() {
    let Some(_one_at_a_time) = lab_test("route_watcher_sees_paths_come_and_go") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let mut watcher = lab.client().run(RouteWatcher::open).unwrap();
    let names = |w: &mut RouteWatcher| -> Vec<(String, u32)> {
        lab.client().run(|| w.paths().unwrap()).into_iter().map(|p| (p.name, p.rank)).collect()
    };
    assert_eq!(names(&mut watcher), vec![("wifi".into(), 100), ("cell".into(), 200)]);
    watcher.changed().unwrap(); // whatever the lab's setup left pending

    lab.set_link("wifi", false).unwrap();
    assert!(watcher.wait(Duration::from_secs(2)).unwrap(), "no notification for wifi going down");
    assert!(watcher.changed().unwrap());
    assert_eq!(names(&mut watcher), vec![("cell".into(), 200)]);

    lab.set_link("wifi", true).unwrap();
    assert!(watcher.wait(Duration::from_secs(2)).unwrap(), "no notification for wifi coming back");
    watcher.changed().unwrap();
    assert_eq!(names(&mut watcher), vec![("wifi".into(), 100), ("cell".into(), 200)]);
}

#[test]
fn socket_killer_aborts_a_tcp_socket_and_its_peer_sees_the_reset() {
    let Some(_one_at_a_time) = lab_test("socket_killer_aborts_a_tcp_socket_and_its_peer_sees_the_reset") else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let listener = lab.server().run(|| std::net::TcpListener::bind("0.0.0.0:0")).unwrap();
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr().unwrap().port());
    let client = lab.client().run(|| std::net::TcpStream::connect(server)).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let local = client.local_addr().unwrap();
    let mut killer = lab.client().run(multipath_pm::SocketKiller::open).unwrap();
    assert!(lab.client().run(|| killer.abort(local, server)).unwrap(), "the socket was found");
    accepted.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = accepted.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    // Gone: a second abort finds nothing.
    assert!(!lab.client().run(|| killer.abort(local, server)).unwrap());
}
