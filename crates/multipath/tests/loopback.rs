//! Real kernel MPTCP on loopback: no root, no lab needed.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use multipath::{blocking, Connection, Error, Listener, Parameters, ServiceType, Transport, IPPROTO_MPTCP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn params(t: ServiceType) -> Parameters {
    Parameters::tcp().multipath_service_type(t)
}

/// Echoes one message back on every accepted connection.
async fn echo_server(listener: Listener) {
    loop {
        let (mut conn, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => conn.write_all(&buf[..n]).await.unwrap(),
                }
            }
        });
    }
}

#[tokio::test]
async fn mptcp_to_mptcp_is_multipath_with_telemetry() {
    let listener = Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    assert_eq!(listener.multipath_status().transport, Transport::Multipath);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));

    let mut conn = Connection::connect(addr, &params(ServiceType::Handover).nodelay(true)).await.unwrap();
    assert_eq!(multipath::socket_protocol(conn.as_fd()).unwrap(), IPPROTO_MPTCP);
    conn.write_all(b"hello").await.unwrap();
    let mut reply = [0u8; 5];
    conn.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"hello");

    let status = conn.multipath_status();
    assert_eq!(status.transport, Transport::Multipath, "{status}");
    assert_eq!(status.requested, ServiceType::Handover);
    assert!(!status.enforced, "no path manager enforces anything yet");

    let info = conn.mptcp_info().unwrap();
    assert_ne!(info.token, 0);
    assert!(!info.fell_back());
    assert!(info.bytes_sent.is_some_and(|b| b >= 5), "{info:?}");

    let subflows = conn.subflows().unwrap();
    assert_eq!(subflows.len(), 1, "{subflows:#?}");
    let sf = &subflows[0];
    assert_eq!(sf.local, conn.local_addr().unwrap());
    assert_eq!(sf.remote, addr);
    assert_eq!(sf.interface.as_deref(), Some("lo"));
    assert!(sf.is_open());
    assert!(sf.tcp.rtt_us > 0);
    assert!(sf.tcp.bytes_acked.unwrap() >= 5);
}

#[tokio::test]
async fn plain_tcp_server_means_fell_back_and_data_intact() {
    // A listener with service type none is a plain TCP server.
    let listener = Listener::bind(any_port(), &params(ServiceType::None)).unwrap();
    assert_eq!(listener.multipath_status().transport, Transport::TcpByRequest);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));

    let conn = Connection::connect(addr, &params(ServiceType::Interactive)).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = conn.into_split();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w
    });
    let mut back = vec![0u8; expected.len()];
    r.read_exact(&mut back).await.unwrap();
    assert!(back == expected, "echoed bytes differ");
    assert_eq!(r.multipath_status().transport, Transport::FellBackToTcp);
    let mut conn = r.unsplit(writer.await.unwrap()).unwrap();
    assert!(matches!(conn.mptcp_info(), Err(Error::NotMultipath(Transport::FellBackToTcp))));
    assert_eq!(conn.subflows().unwrap().len(), 1, "the one TCP flow");
    conn.shutdown().await.unwrap();
}

#[tokio::test]
async fn service_type_none_opens_a_plain_tcp_socket() {
    let listener = Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));
    let conn = Connection::connect(addr, &params(ServiceType::None)).await.unwrap();
    assert_eq!(multipath::socket_protocol(conn.as_fd()).unwrap(), libc_ipproto_tcp());
    assert_eq!(conn.multipath_status().transport, Transport::TcpByRequest);
    assert!(conn.multipath_status().enforced);
}

#[tokio::test]
async fn strict_mode_refuses_a_plain_tcp_peer() {
    let listener = Listener::bind(any_port(), &params(ServiceType::None)).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));
    let strict = params(ServiceType::Handover).require_multipath(true);
    match Connection::connect(addr, &strict).await {
        Err(Error::MultipathUnavailable { status }) => assert_eq!(status.transport, Transport::FellBackToTcp),
        other => panic!("expected MultipathUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_port_and_bad_endpoints_are_clear_errors() {
    // Bind then drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind(any_port()).unwrap().local_addr().unwrap().port();
    let err = Connection::connect(("127.0.0.1", port), &params(ServiceType::Handover)).await.unwrap_err();
    assert!(matches!(&err, Error::Connect { attempts, .. } if attempts.len() == 1), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    for bad in ["nonsense", "host:port", "[::1:80"] {
        let err = Connection::connect(bad, &params(ServiceType::Handover)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidEndpoint { .. }), "{bad}: {err}");
    }
    let err = Connection::connect("no-such-host.invalid:80", &params(ServiceType::Handover)).await.unwrap_err();
    assert!(matches!(err, Error::Resolve { .. } | Error::NoAddresses { .. }), "{err}");
}

#[test]
fn blocking_connection_round_trip() {
    use std::io::{Read, Write};
    let listener = blocking::Listener::bind(any_port(), &params(ServiceType::Aggregate)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
        c.multipath_status()
    });
    let mut conn = blocking::Connection::connect(addr, &params(ServiceType::Aggregate)).unwrap();
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    assert!(conn.multipath_status().is_multipath());
    assert!(server.join().unwrap().is_multipath(), "server side sees MPTCP too");
    assert_eq!(conn.subflows().unwrap().len(), 1);
}

fn libc_ipproto_tcp() -> i32 {
    6
}

#[test]
fn mptcp_listener_accepts_plain_tcp_clients_and_says_so() {
    let listener = blocking::Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
    let (conn, peer) = listener.accept().unwrap();
    let client = client.join().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(conn.multipath_status().transport, Transport::FellBackToTcp);
    assert!(matches!(conn.mptcp_info(), Err(Error::NotMultipath(_))));
}

#[test]
fn status_and_service_types_serialize_for_json_reports() {
    let json = serde_json::to_value(ServiceType::Interactive).unwrap();
    assert_eq!(json, "interactive");
    let back: ServiceType = serde_json::from_value("aggregate".into()).unwrap();
    assert_eq!(back, ServiceType::Aggregate);
    assert!(serde_json::from_value::<ServiceType>("redundant".into()).is_err());
    let status = multipath::MultipathStatus {
        transport: Transport::TcpMptcpUnavailable { reason: "EPROTONOSUPPORT".into() },
        requested: ServiceType::Handover,
        path_manager: multipath::PathManager::None,
        enforced: false,
    };
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["transport"]["kind"], "tcp_mptcp_unavailable");
    assert_eq!(json["transport"]["reason"], "EPROTONOSUPPORT");
    assert_eq!(json["requested"], "handover");
}

#[tokio::test]
async fn socket_options_reach_the_mptcp_socket() {
    let listener = Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));
    // A local port of our choosing proves the bind happened before connect.
    let local_port = std::net::TcpListener::bind(any_port()).unwrap().local_addr().unwrap().port();
    let keepalive = multipath::Keepalive {
        idle: std::time::Duration::from_secs(7),
        interval: std::time::Duration::from_secs(3),
        retries: 4,
    };
    let p = params(ServiceType::Interactive)
        .nodelay(true)
        .keepalive(Some(keepalive))
        .congestion_control("cubic")
        .local_address(SocketAddr::from(([127, 0, 0, 1], local_port)))
        .bind_device("lo")
        .recv_buffer_size(64 * 1024);
    let conn = Connection::connect(addr, &p).await.unwrap();
    assert!(conn.multipath_status().is_multipath());
    assert_eq!(conn.local_addr().unwrap().port(), local_port);
    let sock = socket2::SockRef::from(&conn);
    assert!(sock.tcp_nodelay().unwrap());
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), keepalive.idle);
    assert_eq!(sock.tcp_keepalive_interval().unwrap(), keepalive.interval);
    assert_eq!(sock.tcp_keepalive_retries().unwrap(), keepalive.retries);
    let cc = sock.tcp_congestion().unwrap();
    assert_eq!(cc.split(|&b| b == 0).next(), Some(&b"cubic"[..]));
    assert_eq!(sock.device().unwrap().as_deref(), Some(&b"lo"[..]));
    // Below any rmem_max; the kernel doubles it for its bookkeeping.
    assert_eq!(sock.recv_buffer_size().unwrap(), 2 * 64 * 1024);
}

#[tokio::test]
async fn an_option_the_kernel_refuses_is_a_clear_error() {
    let p = params(ServiceType::Handover).congestion_control("no-such-algorithm");
    let err = Connection::connect("127.0.0.1:9", &p).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("TCP_CONGESTION") && msg.contains("no-such-algorithm"), "{msg}");

    // Sizes the kernel's int would wrap, and 0, are refused rather than sent.
    for bytes in [0, multipath::MAX_RECV_BUFFER + 1] {
        let err = Connection::connect("127.0.0.1:9", &params(ServiceType::Handover).recv_buffer_size(bytes))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("SO_RCVBUF") && msg.contains(&format!("{bytes} bytes")), "{msg}");
    }
}

/// Where the namespace's default is BBR, interactive and aggregate MPTCP
/// connections use cubic unless the caller chose: BBR paces MPTCP subflows
/// at the rate the MPTCP layer gave them. Handover and plain TCP keep the
/// default.
#[tokio::test]
async fn interactive_and_aggregate_mptcp_sockets_avoid_a_bbr_default_unless_asked() {
    let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap();
    let name = |conn: &Connection| {
        let cc = socket2::SockRef::from(conn).tcp_congestion().unwrap();
        String::from_utf8_lossy(cc.split(|&b| b == 0).next().unwrap()).into_owned()
    };
    let listener = Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));
    let mptcp = Connection::connect(addr, &params(ServiceType::Interactive)).await.unwrap();
    let tcp = Connection::connect(addr, &params(ServiceType::None)).await.unwrap();
    let handover = Connection::connect(addr, &params(ServiceType::Handover)).await.unwrap();
    let aggregate = Connection::connect(addr, &params(ServiceType::Aggregate)).await.unwrap();
    let default = default.trim();
    let has = |cc: &str| available.split_whitespace().any(|a| a == cc);
    if default == "bbr" && has("cubic") {
        assert_eq!(name(&mptcp), "cubic");
        assert_eq!(name(&aggregate), "cubic");
        let chosen =
            Connection::connect(addr, &params(ServiceType::Interactive).congestion_control("bbr")).await.unwrap();
        assert_eq!(name(&chosen), "bbr", "an explicit choice stands");
    } else {
        assert_eq!(name(&mptcp), default, "only a bbr default is replaced");
        assert_eq!(name(&aggregate), default, "only a bbr default is replaced");
    }
    assert_eq!(name(&tcp), default, "plain TCP keeps the default");
    assert_eq!(name(&handover), default, "handover keeps the default");
}

#[tokio::test]
async fn telemetry_handles_read_while_the_connection_lives_and_never_keep_it_open() {
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &params).unwrap();
    let addr = listener.local_addr().unwrap();
    let conn = Connection::connect(addr, &params).await.unwrap();
    let (mut server_side, _) = listener.accept().await.unwrap();
    let telemetry = conn.telemetry();
    assert_eq!(telemetry.multipath_status().unwrap(), conn.multipath_status());
    assert_eq!(telemetry.subflows().unwrap().len(), 1);
    assert_eq!(telemetry.mptcp_info().unwrap().token, conn.mptcp_info().unwrap().token);
    drop(conn);
    // The peer sees the close: the handle holds no reference to the socket.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), server_side.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0, "EOF once the connection is dropped");
    let err = telemetry.subflows().unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

/// Registering with a daemon that never answers holds up the connection
/// (a couple of seconds at most), never the runtime: other tasks on the
/// same single thread keep running meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn registering_with_a_stuck_daemon_never_blocks_the_runtime() {
    let listener = Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server(listener));
    // A daemon socket that accepts into its backlog and never answers.
    let dir = std::env::temp_dir().join(format!("mp-stuck-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pmd.sock");
    let _ = std::fs::remove_file(&path);
    let stuck = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    stuck.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    stuck.listen(8).unwrap();
    let daemon = std::sync::Arc::new(multipath::daemon_client::Daemon::at(&path));
    let p = params(ServiceType::Handover).path_manager(daemon);

    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let started = std::time::Instant::now();
    let conn = Connection::connect(addr, &p).await.unwrap();
    let took = started.elapsed();
    ticker.abort();
    let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(took >= std::time::Duration::from_secs(1), "the stuck daemon was waited for ({took:?})");
    assert!(took < std::time::Duration::from_secs(5), "but not for long ({took:?})");
    assert!(ticked >= 50, "the runtime ran other tasks meanwhile: {ticked} ticks in {took:?}");
    assert!(!conn.multipath_status().enforced, "{}", conn.multipath_status());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An MPTCP connection to an IPv4 address is an IPv6 socket's (the kernel
/// lets only those add subflows of the other family: an IPv6-only path can
/// then join the server's announced IPv6 address), shown as IPv4 all the
/// same; `none` stays an IPv4 TCP socket.
#[test]
fn multipath_connections_to_ipv4_are_ipv6_sockets_shown_as_ipv4() {
    let listener = blocking::Listener::bind(any_port(), &params(ServiceType::Handover)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
    let conn = blocking::Connection::connect(addr, &params(ServiceType::Handover)).unwrap();
    let domain = |fd: std::os::fd::BorrowedFd<'_>| socket2::SockRef::from(&fd).domain().unwrap();
    assert_eq!(domain(conn.as_fd()), socket2::Domain::IPV6);
    assert_eq!(conn.peer_addr().unwrap(), addr);
    let local = conn.local_addr().unwrap();
    assert!(local.is_ipv4(), "{local}");
    assert_eq!(server.join().unwrap().unwrap(), local, "the server sees the same IPv4 address");
    let subflows = conn.subflows().unwrap();
    assert!(subflows[0].is_ipv4() && subflows[0].interface.as_deref() == Some("lo"), "{subflows:?}");

    let listener = blocking::Listener::bind(any_port(), &params(ServiceType::None)).unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = std::thread::spawn(move || listener.accept().map(|_| ()));
    let tcp = blocking::Connection::connect(addr, &params(ServiceType::None)).unwrap();
    assert_eq!(domain(tcp.as_fd()), socket2::Domain::IPV4);
}

/// `SO_SNDBUF` as the kernel reports it.
fn send_buffer(fd: std::os::fd::BorrowedFd<'_>) -> usize {
    socket2::SockRef::from(&fd).send_buffer_size().unwrap()
}

/// What an aggregate connection's send buffer grows to on this host:
/// `tcp_wmem`'s maximum, doubled by the kernel, within `wmem_max`.
fn grown_send_buffer() -> usize {
    let field = |path: &str, i: usize| -> usize {
        std::fs::read_to_string(path).unwrap().split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    2 * field("/proc/sys/net/ipv4/tcp_wmem", 2).min(field("/proc/sys/net/core/wmem_max", 0))
}

/// Writes `bytes` on `conn` while the other end drains them.
async fn send_through(conn: &mut (impl tokio::io::AsyncWrite + Unpin), bytes: usize) {
    let chunk = vec![7u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        conn.write_all(&chunk[..n]).await.unwrap();
        left -= n;
    }
    conn.flush().await.unwrap();
}

/// A peer that reads everything it is sent.
async fn drain(mut conn: Connection) {
    let mut buf = vec![0u8; 256 * 1024];
    while matches!(conn.read(&mut buf).await, Ok(1..)) {}
}

/// One path (loopback has one): the send buffer stays autotuned however
/// much an aggregate connection writes, split or not. (Two paths sharing
/// the data grow it: `tests/lab.rs`.)
#[tokio::test]
async fn an_aggregate_connection_on_one_path_keeps_an_autotuned_send_buffer() {
    let grown = grown_send_buffer();
    let listener = Listener::bind(any_port(), &params(ServiceType::Aggregate)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conn = Connection::connect(addr, &params(ServiceType::Aggregate)).await.unwrap();
    let (peer, _) = listener.accept().await.unwrap();
    tokio::spawn(drain(peer));
    send_through(&mut conn, 3 << 20).await;
    let (read, mut write) = conn.into_split();
    send_through(&mut write, 3 << 20).await;
    let conn = read.unsplit(write).unwrap();
    assert_ne!(send_buffer(conn.as_fd()), grown);
}

#[test]
fn an_aggregate_connection_that_fell_back_to_tcp_keeps_an_autotuned_send_buffer() {
    use std::io::{Read, Write};
    let grown = grown_send_buffer();
    let listener = blocking::Listener::bind(any_port(), &params(ServiceType::Aggregate)).unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let mut conn = blocking::Connection::connect(addr, &params(ServiceType::None)).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        while matches!(conn.read(&mut buf), Ok(1..)) {}
    });
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(&vec![7u8; 6 << 20]).unwrap();
    assert_ne!(send_buffer(conn.as_fd()), grown);
    drop(conn);
    reader.join().unwrap();
}
