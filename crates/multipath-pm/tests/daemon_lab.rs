//! The daemon: unprivileged programs register their connections by passing
//! the socket; bad requests get clear errors and the daemon keeps serving.
//! Needs root; without it each test reports itself SKIPPED.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use multipath::daemon_client::Daemon as DaemonClient;
use multipath::{blocking, Parameters, PathManager, ServiceType};
use multipath_lab::testing::{become_user, echo_server, echo_server6, lab_test};
use multipath_lab::{Lab, LabConfig};
use multipath_pm::{Daemon, DaemonConfig};

const ENTITLED_UID: u32 = 4242;

struct Setup {
    lab: Lab,
    server: SocketAddr,
    socket: PathBuf,
    _daemon: Daemon,
}

fn setup(name: &str) -> Setup {
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let server = echo_server(&lab, true);
    let socket = std::env::temp_dir().join(format!("{}-{name}", lab.name())).join("pmd.sock");
    // A filesystem socket too: the tests below use it, as programs that
    // look for a path would.
    let config =
        DaemonConfig { socket: Some(socket.clone()), aggregate_uids: vec![ENTITLED_UID], ..Default::default() };
    let daemon = lab.client().run(|| Daemon::start(config)).unwrap();
    Setup { lab, server, socket, _daemon: daemon }
}

/// Opens a connection as `uid` through the daemon, from the client namespace.
fn connect_as(s: &Setup, uid: u32, service: ServiceType) -> Result<(blocking::Connection, u32), String> {
    let daemon = DaemonClient::at(&s.socket);
    s.lab.client().run(|| {
        become_user(uid).unwrap();
        let params = Parameters::tcp().multipath_service_type(service);
        let mut conn = blocking::Connection::connect(s.server, &params).map_err(|e| e.to_string())?;
        conn.write_all(b"hi").unwrap();
        conn.read_exact(&mut [0u8; 2]).unwrap();
        let token = daemon.register(conn.as_fd(), service).map_err(|e| e.to_string())?;
        Ok((conn, token))
    })
}

#[test]
fn unprivileged_programs_register_and_aggregate_needs_an_entitlement() {
    let Some(_one_at_a_time) = lab_test("unprivileged_programs_register_and_aggregate_needs_an_entitlement") else {
        return;
    };
    let s = setup("entitle");
    let (conn, token) = connect_as(&s, 65534, ServiceType::Handover).unwrap();
    assert_eq!(token, conn.mptcp_info().unwrap().token, "the daemon read the token from the socket");

    let refused = connect_as(&s, 65534, ServiceType::Aggregate).unwrap_err();
    assert!(refused.contains("aggregate needs an entitlement") && refused.contains("65534"), "{refused}");
    assert!(refused.contains("--aggregate-uid") && refused.contains("[entitlements]"), "names the keys: {refused}");
    connect_as(&s, ENTITLED_UID, ServiceType::Aggregate).expect("the entitled user gets aggregate");

    // With the daemon as the parameters' path manager, the status says so.
    let daemon: Arc<dyn multipath::Enforcer> = Arc::new(DaemonClient::at(&s.socket));
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).path_manager(daemon);
    let conn = s.lab.client().run(|| {
        become_user(65534).unwrap();
        blocking::Connection::connect(s.server, &params).unwrap()
    });
    let status = conn.multipath_status();
    assert!(status.enforced && status.path_manager == PathManager::Daemon, "{status}");
}

/// Sends raw bytes (and optionally a descriptor) as one request; the reply.
fn raw_request(socket: &std::path::Path, message: &[u8], fd: Option<std::os::fd::BorrowedFd<'_>>) -> String {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    sock.connect(&socket2::SockAddr::unix(socket).unwrap()).unwrap();
    let mut stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(sock));
    match fd {
        // The client library's own path for a request with a descriptor.
        Some(fd) => {
            let text = std::str::from_utf8(message).unwrap();
            let service = text.strip_prefix("manage ").unwrap().parse().unwrap();
            return match DaemonClient::at(socket).register(fd, service) {
                Ok(token) => format!("ok {token}"),
                Err(e) => e.to_string(),
            };
        }
        None => stream.write_all(message).unwrap(),
    }
    let mut reply = vec![0u8; 512];
    let n = stream.read(&mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

#[test]
fn bad_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    let Some(_one_at_a_time) = lab_test("bad_requests_get_clear_errors_and_the_daemon_keeps_serving") else { return };
    let s = setup("garbage");
    let reply = raw_request(&s.socket, b"\xff\xfe garbage", None);
    assert!(reply.starts_with("error") && reply.contains("not text"), "{reply}");
    let reply = raw_request(&s.socket, b"hello there", None);
    assert!(reply.contains("malformed request"), "{reply}");
    let reply = raw_request(&s.socket, b"manage handover", None);
    assert!(reply.contains("no descriptor attached"), "{reply}");
    let reply = raw_request(&s.socket, b"manage redundant", None);
    assert!(reply.contains("unknown multipath service type"), "{reply}");
    let reply = raw_request(&s.socket, &[b'a'; 1000], None);
    assert!(reply.contains("longer than"), "{reply}");

    // A plain TCP socket, and an MPTCP socket that is not connected, of the
    // daemon's namespace.
    let tcp = s.lab.client().run(|| std::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let reply = raw_request(&s.socket, b"manage handover", Some(tcp.as_fd()));
    assert!(reply.contains("not an MPTCP socket"), "{reply}");
    let unconnected = s
        .lab
        .client()
        .run(|| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::MPTCP)))
        .unwrap();
    let reply = raw_request(&s.socket, b"manage handover", Some(unconnected.as_fd()));
    assert!(reply.contains("refused") && reply.contains("MPTCP"), "{reply}");

    // Still serving.
    connect_as(&s, 65534, ServiceType::Handover).expect("the daemon still serves");

    // A client that connects and says nothing holds no one else up, and is
    // told off after 2 s.
    let silent = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    silent.connect(&socket2::SockAddr::unix(&s.socket).unwrap()).unwrap();
    let started = std::time::Instant::now();
    connect_as(&s, 65534, ServiceType::Handover).expect("served beside a silent client");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "waited {:?} behind a silent client",
        started.elapsed()
    );
    let mut silent = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(silent));
    silent.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut reply = vec![0u8; 512];
    let n = silent.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.contains("no request within 2 s"), "{reply}");
}

/// A program that knows nothing of the daemon still gets every path, as
/// under the kernel's path manager, over IPv4 and IPv6 alike.
#[test]
fn unregistered_connections_get_all_paths() {
    let Some(_one_at_a_time) = lab_test("unregistered_connections_get_all_paths") else { return };
    let s = setup("default");
    unregistered_gets_both_paths(&s, s.server);
    unregistered_gets_both_paths(&s, echo_server6(&s.lab, true));
}

fn unregistered_gets_both_paths(s: &Setup, server: SocketAddr) {
    // A program that knows nothing of multipath: a bare MPTCP socket.
    let mut conn: std::net::TcpStream = s
        .lab
        .client()
        .run(|| -> std::io::Result<_> {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(server),
                socket2::Type::STREAM,
                Some(socket2::Protocol::MPTCP),
            )?;
            sock.connect(&server.into())?;
            Ok(sock.into())
        })
        .unwrap();
    let want: Vec<std::net::IpAddr> =
        ["wifi", "cell"].iter().map(|p| s.lab.path(p).unwrap().client_addr_for(server.ip())).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        conn.write_all(b"hi").unwrap();
        conn.read_exact(&mut [0u8; 2]).unwrap();
        let mut open: Vec<std::net::IpAddr> = multipath::raw::subflows(conn.as_fd())
            .unwrap()
            .into_iter()
            .filter(|s| s.tcp.state == multipath::TcpState::Established)
            .map(|s| s.local.ip())
            .collect();
        open.sort();
        let mut want = want.clone();
        want.sort();
        if open == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no second subflow for an unregistered connection");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// MPTCP connections of the client namespace in a state where they are
/// still open (established, or waiting for their owner to close).
fn open_mptcp_connections(lab: &Lab) -> usize {
    const ESTABLISHED: u8 = 1;
    const CLOSE_WAIT: u8 = 8;
    lab.client().run(|| {
        let mut diag = multipath_pm::netlink::socket::Diag::open().unwrap();
        let mut open = 0;
        for v6 in [false, true] {
            let query = multipath_pm::netlink::sock_diag::Query::AllConnections { v6 };
            diag.dump(query, |msg| open += usize::from(matches!(msg.state, ESTABLISHED | CLOSE_WAIT))).unwrap();
        }
        open
    })
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The daemon reads what it needs from a registered socket and lets go of
/// it: the connection closes when its program closes it, and the daemon's
/// descriptors stay as they were, however many register.
#[test]
fn registered_connections_close_and_the_daemon_keeps_no_descriptor() {
    let Some(_one_at_a_time) = lab_test("registered_connections_close_and_the_daemon_keeps_no_descriptor") else {
        return;
    };
    let s = setup("close");
    let before = descriptors();
    for service in [ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate].repeat(10) {
        let (conn, _) = connect_as(&s, ENTITLED_UID, service).unwrap();
        drop(conn);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (open, fds) = (open_mptcp_connections(&s.lab), descriptors());
        if open == 0 && fds <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections still open, {fds} descriptors against {before} before the registrations"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One daemon per network namespace: a second one is refused, naming the
/// first one's pid, whatever socket path it is given; the first keeps
/// serving.
#[test]
fn a_second_daemon_for_the_namespace_is_refused_naming_the_first() {
    let Some(_one_at_a_time) = lab_test("a_second_daemon_for_the_namespace_is_refused_naming_the_first") else {
        return;
    };
    let s = setup("second");
    let elsewhere = s.socket.with_file_name("other.sock");
    for socket in [None, Some(s.socket.clone()), Some(elsewhere.clone())] {
        let config = DaemonConfig { socket: socket.clone(), ..Default::default() };
        let err = s.lab.client().run(|| Daemon::start(config)).unwrap_err().to_string();
        assert!(
            err.contains("another path-manager daemon") && err.contains(&format!("pid {}", std::process::id())),
            "{socket:?}: {err}"
        );
    }
    assert!(!elsewhere.exists(), "the refused daemon created nothing");
    assert!(s.socket.exists(), "the running daemon's socket is untouched");
    connect_as(&s, 65534, ServiceType::Handover).expect("the first daemon still serves");
}

/// `--socket` never replaces what is not a socket nobody listens on.
#[test]
fn a_socket_path_is_replaced_only_when_it_is_a_dead_socket() {
    let Some(_one_at_a_time) = lab_test("a_socket_path_is_replaced_only_when_it_is_a_dead_socket") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let dir = std::env::temp_dir().join(format!("{}-paths", lab.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = |path: &std::path::Path| {
        let config = DaemonConfig { socket: Some(path.to_owned()), ..Default::default() };
        lab.client().run(|| Daemon::start(config))
    };
    let file = dir.join("file");
    std::fs::write(&file, "precious").unwrap();
    let err = start(&file).unwrap_err().to_string();
    assert!(err.contains("is a regular file") && err.contains("not replacing"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    // A start that fails changes nothing in the namespace either.
    let state = dir.join("state");
    let config = DaemonConfig { socket: Some(file.clone()), state_dir: Some(state.clone()), ..Default::default() };
    assert!(lab.client().run(|| Daemon::start(config)).is_err());
    let pm_type = lab.client().run(|| std::fs::read_to_string("/proc/sys/net/mptcp/pm_type")).unwrap();
    assert_eq!(pm_type.trim(), "0", "pm_type untouched by a refused start");
    assert!(std::fs::read_dir(&state).map_or(true, |mut d| d.next().is_none()), "no record left");
    let link = dir.join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let err = start(&link).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    // A dead daemon's socket: bound, then its process gone.
    let dead = dir.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let daemon = start(&dead).expect("a dead socket is replaced");
    drop(daemon);
    assert!(!dead.exists(), "removed when the daemon stops");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The identity that counts is the connecting process's, as the kernel
/// recorded it: a request sent by another process over that connection (a
/// child it forked, a program it handed the socket to) is refused.
#[test]
fn the_request_must_come_from_the_process_that_connected() {
    let Some(_one_at_a_time) = lab_test("the_request_must_come_from_the_process_that_connected") else { return };
    let s = setup("sender");
    let script = r#"
import socket, sys
daemon = socket.socket(fileno=int(sys.argv[1]))
socket.send_fds(daemon, [b"manage aggregate"], [int(sys.argv[2])])
print(daemon.recv(512).decode())
"#;
    let output = s.lab.client().run(|| {
        use std::os::fd::AsRawFd;
        let conn = std::net::TcpStream::from({
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::MPTCP))
                    .unwrap();
            sock.connect(&s.server.into()).unwrap();
            sock
        });
        let daemon = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
        daemon.connect(&socket2::SockAddr::unix(&s.socket).unwrap()).unwrap();
        // Both handed down to the child.
        for fd in [daemon.as_raw_fd(), conn.as_raw_fd()] {
            // SAFETY: clears FD_CLOEXEC on descriptors this test owns.
            assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        }
        std::process::Command::new("python3")
            .args(["-c", script, &daemon.as_raw_fd().to_string(), &conn.as_raw_fd().to_string()])
            .output()
            .expect("python3")
    });
    let reply = String::from_utf8_lossy(&output.stdout);
    assert!(
        reply.starts_with("error") && reply.contains("not from pid"),
        "{reply} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// CPU time of this process's threads named `name`, in clock ticks.
fn thread_ticks(name: &str) -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            (std::fs::read_to_string(dir.join("comm")).ok()?.trim() == name).then_some(dir)
        })
        .filter_map(|dir| {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?)
        })
        .sum()
}

/// Hundreds of clients that connect and say nothing cost the daemon no CPU
/// and delay no one else's registration.
#[test]
fn silent_clients_cost_nothing_and_hold_no_one_up() {
    let Some(_one_at_a_time) = lab_test("silent_clients_cost_nothing_and_hold_no_one_up") else { return };
    let s = setup("silent");
    let mut silent = Vec::new();
    for _ in 0..500 {
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
        sock.set_nonblocking(true).unwrap();
        // A full backlog refuses some: they are silent all the same.
        let _ = sock.connect(&socket2::SockAddr::unix(&s.socket).unwrap());
        silent.push(sock);
    }
    let ticks = thread_ticks("multipath-pmd");
    let busy_from = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let used = (thread_ticks("multipath-pmd") - ticks) as f64 / 100.0 / busy_from.elapsed().as_secs_f64();
    assert!(used < 0.05, "the daemon used {:.0}% of a core beside silent clients", used * 100.0);

    let daemon = DaemonClient::at(&s.socket);
    let took = s.lab.client().run(|| {
        become_user(65534).unwrap();
        let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
        let mut conn = blocking::Connection::connect(s.server, &params).unwrap();
        conn.write_all(b"hi").unwrap();
        conn.read_exact(&mut [0u8; 2]).unwrap();
        let started = std::time::Instant::now();
        daemon.register(conn.as_fd(), ServiceType::Handover).expect("served beside 500 silent clients");
        started.elapsed()
    });
    assert!(took <= std::time::Duration::from_millis(50), "registration took {took:?} beside silent clients");
    drop(silent);
}

/// A daemon takes sockets of its own network namespace only, and a program
/// finds only the daemon of its own namespace.
#[test]
fn sockets_of_another_namespace_are_refused_both_ways() {
    let Some(_one_at_a_time) = lab_test("sockets_of_another_namespace_are_refused_both_ways") else { return };
    let s = setup("netns");
    let mptcp_socket =
        || socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::MPTCP)).unwrap();
    // A server-namespace socket, passed to the client namespace's daemon
    // through its filesystem socket (which every namespace sees).
    let theirs = s.lab.server().run(mptcp_socket);
    let err = DaemonClient::at(&s.socket).register(theirs.as_fd(), ServiceType::Handover).unwrap_err().to_string();
    assert!(err.contains("another network namespace"), "{err}");
    // The server namespace has no daemon of its own.
    let err = s.lab.server().run(|| DaemonClient::of_this_namespace().register(theirs.as_fd(), ServiceType::Handover));
    assert_eq!(err.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    // The other way round: a daemon in the server namespace refuses a
    // client-namespace socket.
    let other = s.socket.with_file_name("server-ns.sock");
    let config = DaemonConfig { socket: Some(other.clone()), ..Default::default() };
    let server_daemon = s.lab.server().run(|| Daemon::start(config)).unwrap();
    let ours = s.lab.client().run(mptcp_socket);
    let err = DaemonClient::at(&other).register(ours.as_fd(), ServiceType::Handover).unwrap_err().to_string();
    assert!(err.contains("another network namespace"), "{err}");
    drop(server_daemon);
}

/// Anyone may bind the abstract name first: the library hands such a
/// squatter nothing, and the real daemon refuses to start, naming it.
#[test]
fn a_squatter_on_the_daemons_name_gets_no_connection() {
    let Some(_one_at_a_time) = lab_test("a_squatter_on_the_daemons_name_gets_no_connection") else { return };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let server = echo_server(&lab, true);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let squatter = lab
        .client()
        .spawn(move || {
            become_user(4242).unwrap();
            let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
            sock.bind(&socket2::SockAddr::unix("\0multipath-pmd").unwrap()).unwrap();
            sock.listen(8).unwrap();
            ready_tx.send(()).unwrap();
            let _ = done_rx.recv();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let conn = lab
        .client()
        .run(|| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::MPTCP))?;
            sock.connect(&server.into())?;
            Ok::<_, std::io::Error>(sock)
        })
        .unwrap();
    let err = lab.client().run(|| DaemonClient::of_this_namespace().register(conn.as_fd(), ServiceType::Handover));
    let err = err.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("uid 4242"), "{err}");
    let refused = lab.client().run(|| Daemon::start(DaemonConfig::default())).unwrap_err().to_string();
    assert!(refused.contains("another path-manager daemon"), "{refused}");
    drop(done_tx);
    squatter.join().unwrap();
}
