//! Opening sockets for a service type, and reading what they became.
//!
//! Options are grouped as socket2 does: creation and `SOL_SOCKET`/`SOL_TCP`
//! options in [`open`], then the `SOL_MPTCP` telemetry block.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::info::{canonical_ip, MptcpInfo, SubflowInfo, TcpInfo, MPTCP_INFO_SIZE, TCP_INFO_SIZE};
use crate::{sys, Error, FirstPath, MultipathStatus, Parameters, PathManager, Result, ServiceType, Transport};

/// What [`open`] created, fixed for the socket's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// An MPTCP socket (which may still fall back to TCP with its peer).
    Mptcp,
    /// A TCP socket because the service type is `none`.
    TcpByRequest,
    /// A TCP socket because MPTCP sockets cannot be created here.
    TcpUnavailable(String),
}

/// Facts about a connection's socket known from its creation.
#[derive(Clone, Debug)]
pub(crate) struct SocketMeta {
    pub requested: ServiceType,
    pub opened: Opened,
    /// The path manager of the socket's network namespace at creation.
    pub path_manager: PathManager,
    /// The peer, once connected: still known after the connection closed.
    pub peer: Option<SocketAddr>,
    /// The `multipath` path manager that took the connection, if any.
    pub enforced_by: Option<PathManager>,
}

/// `socket()` refused MPTCP itself, as opposed to failing for lack of
/// resources: no MPTCP in the kernel (`EPROTONOSUPPORT`), or
/// `net.mptcp.enabled = 0` (`ENOPROTOOPT`).
fn mptcp_unsupported(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPROTONOSUPPORT | libc::ENOPROTOOPT))
}

/// Creates and configures a stream socket for `domain` as `params` ask,
/// falling back to TCP where MPTCP is unavailable (unless strict).
pub(crate) fn open(domain: Domain, params: &Parameters) -> Result<(Socket, SocketMeta)> {
    let requested = params.get_multipath_service_type();
    let (socket, opened) = if !requested.is_multipath() {
        (tcp_socket(domain)?, Opened::TcpByRequest)
    } else {
        match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(s) => (s, Opened::Mptcp),
            Err(e) if mptcp_unsupported(&e) => {
                let reason = format!("MPTCP socket refused: {e}");
                if params.get_require_multipath() {
                    let status = status_for(&Opened::TcpUnavailable(reason), false, requested, PathManager::None);
                    return Err(Error::MultipathUnavailable { status: Box::new(status) });
                }
                tracing::debug!(%reason, "falling back to a TCP socket");
                (tcp_socket(domain)?, Opened::TcpUnavailable(reason))
            }
            Err(e) => return Err(Error::socket("socket(IPPROTO_MPTCP)", e)),
        }
    };
    configure(&socket, params)?;
    let paced_badly_by_bbr =
        matches!(params.get_multipath_service_type(), ServiceType::Interactive | ServiceType::Aggregate);
    if opened == Opened::Mptcp && paced_badly_by_bbr && params.get_congestion_control().is_none() {
        keep_bbr_off_subflows(&socket);
    }
    let path_manager = if opened == Opened::Mptcp { namespace_path_manager() } else { PathManager::None };
    Ok((socket, SocketMeta { requested, opened, path_manager, peer: None, enforced_by: None }))
}

fn tcp_socket(domain: Domain) -> Result<Socket> {
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(|e| Error::socket("socket(IPPROTO_TCP)", e))
}

/// Options at `SOL_SOCKET` and `SOL_TCP` that the kernel accepts on MPTCP
/// sockets too (see the facts page: it refuses several others).
fn configure(socket: &Socket, params: &Parameters) -> Result<()> {
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| Error::socket(format!("setsockopt {what}"), e));
    if params.get_nodelay() {
        step("TCP_NODELAY", socket.set_tcp_nodelay(true))?;
    }
    if let Some(k) = params.get_keepalive() {
        let ka = TcpKeepalive::new().with_time(k.idle).with_interval(k.interval).with_retries(k.retries);
        step("SO_KEEPALIVE", socket.set_tcp_keepalive(&ka))?;
    }
    if let Some(cc) = params.get_congestion_control() {
        step("TCP_CONGESTION", congestion_available(cc).and_then(|()| socket.set_tcp_congestion(cc.as_bytes())))?;
    }
    if let Some(mark) = params.get_mark() {
        step("SO_MARK", socket.set_mark(mark))?;
    }
    if let Some(dev) = params.get_bind_device() {
        step("SO_BINDTODEVICE", socket.bind_device(Some(dev.as_bytes())))?;
    }
    if let Some(bytes) = params.get_recv_buffer_size() {
        // The kernel takes an int and doubles it: larger values would wrap.
        let set = match bytes {
            1..=crate::params::MAX_RECV_BUFFER => socket.set_recv_buffer_size(bytes),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{bytes} bytes: must be 1 to {}", crate::params::MAX_RECV_BUFFER),
            )),
        };
        step("SO_RCVBUF", set)?;
        // The kernel silently caps the request at net.core.rmem_max.
        if let Ok(got) = socket.recv_buffer_size() {
            if got < bytes.saturating_mul(2) {
                tracing::debug!(asked = bytes, got, "receive buffer capped by net.core.rmem_max");
            }
        }
    }
    Ok(())
}

/// How long one connection attempt has to itself before the next starts
/// beside it (happy eyeballs' 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Whether a connection with `params` asks a path manager where to start
/// (see [`first_paths`]).
pub(crate) fn asks_for_first_path(params: &Parameters) -> bool {
    matches!(params.get_multipath_service_type(), ServiceType::Aggregate | ServiceType::Interactive)
        && params.get_local_address().is_none()
        && params.get_bind_device().is_none()
}

/// Where attempts to `remote` start from, in turns: the attempts of a turn
/// start together, each turn a little after the one before unless one
/// connected. `None` leaves the source to the routing table.
/// - The caller's local address, if any: one turn.
/// - Aggregate and interactive connections under a path manager (the
///   parameters', else the namespace's daemon): its paths fastest first,
///   or a race from every path when nothing is known; then the routing
///   table's choice (should none of them answer).
/// - Otherwise the routing table's choice.
pub(crate) fn first_paths(remote: IpAddr, params: &Parameters) -> Vec<Vec<Option<SocketAddr>>> {
    let routed = vec![vec![params.get_local_address()]];
    if !asks_for_first_path(params) {
        return routed;
    }
    // The parameters' manager, else the daemon of this namespace if one
    // runs (as for registration).
    let daemon;
    let manager: &dyn crate::Enforcer = match params.get_path_manager() {
        Some(m) => m.as_ref(),
        None => {
            daemon = crate::daemon_client::Daemon::discover();
            &daemon
        }
    };
    let usable = |ip: &IpAddr| ip.is_ipv4() == remote.to_canonical().is_ipv4();
    let from = |ip: IpAddr| Some(SocketAddr::new(ip, 0));
    match manager.first_path(remote.to_canonical(), params.get_multipath_service_type()) {
        FirstPath::Ordered(ips) if ips.iter().any(usable) => {
            ips.into_iter().filter(usable).map(|ip| vec![from(ip)]).chain([vec![None]]).collect()
        }
        FirstPath::Race(ips) if ips.iter().any(usable) => {
            vec![ips.into_iter().filter(usable).map(from).collect(), vec![None]]
        }
        _ => routed,
    }
}

/// The socket for one connection attempt to `addr` from `from` (else
/// where the routing table says): opened, configured and bound, and the
/// address to connect it to. The outer error stops every attempt (strict
/// mode on a host without MPTCP); the inner one only this address (its
/// family disabled, its local port taken by a concurrent attempt, ...).
pub(crate) fn for_attempt(
    addr: SocketAddr,
    from: Option<SocketAddr>,
    params: &Parameters,
) -> Result<io::Result<(Socket, SocketMeta, SocketAddr)>> {
    let opened = open_for(addr, params).and_then(|(sock, mut meta, to)| {
        if let Some(local) = from {
            if local.port() == 0 {
                // The port is then chosen at connect, per destination, as
                // for an unbound socket: binding port 0 would take one from
                // the ephemeral range for good. Best effort.
                let _ = sys::setsockopt(&sock, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, &1i32);
            }
            let local = if to.is_ipv6() { SocketAddr::new(mapped(local.ip()), local.port()) } else { local };
            sock.bind(&local.into()).map_err(|e| Error::socket(format!("bind {local}"), e))?;
        }
        meta.peer = Some(addr);
        Ok((sock, meta, to))
    });
    match opened {
        Ok(ready) => Ok(Ok(ready)),
        Err(Error::Socket { what, source }) => Ok(Err(io::Error::new(source.kind(), format!("{what}: {source}")))),
        Err(fatal) => Err(fatal),
    }
}

/// A connection attempt under way: a non-blocking socket whose connect
/// has started, what is known of it, and the address it is for.
pub(crate) type Started = (Socket, SocketMeta, SocketAddr);

/// Connects the first attempt to complete, within `timeout`: `turns` are
/// started one after another, `every` apart (sooner when every attempt
/// under way has failed); the losers are closed. The failures come back
/// as the error.
pub(crate) fn first_to_connect(
    mut turns: impl Iterator<Item = Vec<io::Result<Started>>>,
    every: Duration,
    timeout: Option<Duration>,
) -> std::result::Result<(Socket, SocketMeta), Vec<io::Error>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut failures = Vec::new();
    let mut running: Vec<Started> = Vec::new();
    let mut next_turn = Some(Instant::now());
    loop {
        let now = Instant::now();
        if next_turn.is_some_and(|at| now >= at || running.is_empty()) {
            match turns.next() {
                Some(turn) => {
                    for attempt in turn {
                        match attempt {
                            Ok(a) => running.push(a),
                            Err(e) => failures.push(e),
                        }
                    }
                    next_turn = Some(now + every);
                    continue;
                }
                None => next_turn = None,
            }
        }
        if running.is_empty() || deadline.is_some_and(|at| now >= at) {
            break;
        }
        let until = [deadline, next_turn].into_iter().flatten().min();
        let wait =
            until.map_or(-1, |at| at.saturating_duration_since(now).as_millis().clamp(1, i32::MAX as u128) as i32);
        let mut fds: Vec<libc::pollfd> = running
            .iter()
            .map(|(s, _, _)| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLOUT, revents: 0 })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            failures.extend(running.drain(..).map(|_| io::Error::new(e.kind(), e.to_string())));
            break;
        }
        // Back to front, so that removing one leaves the others' indices.
        for i in (0..fds.len()).rev() {
            if fds[i].revents == 0 {
                continue;
            }
            let (sock, meta, to) = running.swap_remove(i);
            match sock.take_error() {
                Ok(None) if sock.peer_addr().is_ok() => return Ok((sock, meta)),
                Ok(None) => failures.push(io::Error::new(io::ErrorKind::NotConnected, format!("{to}: not connected"))),
                Ok(Some(e)) | Err(e) => failures.push(e),
            }
        }
    }
    failures.extend(running.into_iter().map(|_| io::Error::from(io::ErrorKind::TimedOut)));
    Err(failures)
}

/// An IPv4 address as an IPv4-mapped IPv6 one (an IPv6 address as it is).
fn mapped(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
        v6 => v6,
    }
}

/// The socket for a connection to `addr`, and the address to connect it
/// to. An MPTCP connection to an IPv4 address goes through an IPv6 socket
/// (not IPv6-only), to the address mapped: the kernel lets only such a
/// socket add subflows of the other family, so that an IPv6-only path (a
/// cellular network) can join the IPv6 address the server announces. Where
/// the host makes no IPv6 sockets, and for TCP, an IPv4 socket.
fn open_for(addr: SocketAddr, params: &Parameters) -> Result<(Socket, SocketMeta, SocketAddr)> {
    if addr.is_ipv4() && params.get_multipath_service_type().is_multipath() {
        match open(Domain::IPV6, params) {
            Ok((sock, meta)) if meta.opened == Opened::Mptcp && sock.set_only_v6(false).is_ok() => {
                return Ok((sock, meta, SocketAddr::new(mapped(addr.ip()), addr.port())));
            }
            // No IPv6 here (EAFNOSUPPORT), or MPTCP refused: IPv4 below.
            Ok(_) | Err(Error::Socket { .. }) => {}
            Err(fatal) => return Err(fatal),
        }
    }
    let (sock, meta) = open(Domain::for_address(addr), params)?;
    Ok((sock, meta, addr))
}

/// BBR on MPTCP subflows misjudges their bandwidth whenever the MPTCP
/// layer, not the network, limits what a subflow sends: the subflows'
/// delivery-rate samples are not marked application-limited, so BBR takes
/// the rate of the small exchanges, or of a new subflow's first scheduled
/// share, for the path's capacity and paces at it. Measured in the lab
/// (wifi 20 ms, 20 Mbit/s): echo exchanges over MPTCP on one subflow, 5 KB
/// 47 ms with BBR against 21 ms with cubic, 20 KB 57 against 33.5 ms
/// (plain TCP with BBR: 23 and 36 ms); an aggregate download back to 90% of
/// both paths 1.06-1.20 s after a wifi flap with BBR, 0.70-0.80 s with
/// cubic. So interactive and aggregate MPTCP sockets whose namespace default
/// is BBR use cubic, unless the caller chose an algorithm. Not handover: a
/// handover server with cubic restarts its idle backup subflow from the
/// initial window, and the link-down stall grew from 113 to 201 ms. Best
/// effort: a failure leaves the default.
fn keep_bbr_off_subflows(socket: &Socket) {
    let Ok(current) = socket.tcp_congestion() else { return };
    if current.split(|&b| b == 0).next() != Some(b"bbr".as_slice()) || congestion_available("cubic").is_err() {
        return;
    }
    if let Err(e) = socket.set_tcp_congestion(b"cubic") {
        tracing::debug!(error = %e, "could not replace bbr with cubic on an MPTCP socket");
    }
}

/// MPTCP sockets accept any name for `TCP_CONGESTION` and silently keep the
/// default when it does not exist; check the name first so a typo is an
/// error as it is on TCP sockets.
fn congestion_available(name: &str) -> io::Result<()> {
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")?;
    if available.split_whitespace().any(|a| a == name) {
        return Ok(());
    }
    let msg = format!("congestion control {name:?} is not available (available: {})", available.trim());
    Err(io::Error::new(io::ErrorKind::NotFound, msg))
}

/// `net.mptcp.pm_type` of the calling thread's network namespace.
fn namespace_path_manager() -> PathManager {
    match std::fs::read_to_string("/proc/sys/net/mptcp/pm_type") {
        Ok(s) if s.trim() == "1" => PathManager::UserspaceUnmanaged,
        // Absent before Linux 6.1, where the kernel manager was the only one.
        _ => PathManager::Kernel,
    }
}

// ---- Telemetry: `SOL_MPTCP` and `SOL_TCP` reads ----

/// `TCP_IS_MPTCP`: whether the socket speaks MPTCP with its peer right now.
pub(crate) fn is_mptcp(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(sys::getsockopt_int(fd, libc::SOL_TCP, sys::TCP_IS_MPTCP)? == 1)
}

/// The socket's `SO_PROTOCOL`: `IPPROTO_MPTCP` or `IPPROTO_TCP`.
pub fn socket_protocol(fd: BorrowedFd<'_>) -> io::Result<i32> {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
}

fn status_for(opened: &Opened, speaks_mptcp: bool, requested: ServiceType, pm: PathManager) -> MultipathStatus {
    let (transport, path_manager, enforced) = match opened {
        Opened::TcpByRequest => (Transport::TcpByRequest, PathManager::None, true),
        Opened::TcpUnavailable(reason) => {
            (Transport::TcpMptcpUnavailable { reason: reason.clone() }, PathManager::None, false)
        }
        // No multipath path manager exists yet to enforce a service type.
        Opened::Mptcp if speaks_mptcp => (Transport::Multipath, pm, false),
        Opened::Mptcp => (Transport::FellBackToTcp, PathManager::None, false),
    };
    MultipathStatus { transport, requested, path_manager, enforced }
}

/// The live status of a connected socket.
pub(crate) fn status(fd: BorrowedFd<'_>, meta: &SocketMeta) -> MultipathStatus {
    // A socket whose TCP_IS_MPTCP cannot be read is not usable as MPTCP.
    let speaks = meta.opened == Opened::Mptcp && is_mptcp(fd).unwrap_or(false);
    let mut status = status_for(&meta.opened, speaks, meta.requested, meta.path_manager);
    if let (Some(manager), true) = (meta.enforced_by, status.is_multipath()) {
        status.path_manager = manager;
        status.enforced = true;
    }
    status
}

/// Hands a freshly connected socket to the parameters' path manager, if
/// any and if the connection is multipath; returns who took it. A refusal
/// leaves the kernel's path manager in charge, which the status shows.
/// Blocks for as long as the path manager takes to answer (a daemon: a
/// couple of seconds at worst): async callers run it off the runtime.
pub(crate) fn enforce(fd: BorrowedFd<'_>, meta: &SocketMeta, params: &Parameters) -> Option<PathManager> {
    if !status(fd, meta).is_multipath() {
        return None;
    }
    // The parameters' manager, else the daemon of this network namespace
    // if one runs: its absence is the normal case, and silent.
    let result = match params.get_path_manager() {
        Some(m) => m.manage(fd, meta.requested).map(|()| m.kind()),
        None => {
            let daemon = crate::daemon_client::Daemon::discover();
            match daemon.register(fd, meta.requested) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                r => r.map(|_| PathManager::Daemon).map_err(crate::EnforceError::failed),
            }
        }
    };
    match result {
        Ok(kind) => Some(kind),
        Err(e) => {
            tracing::warn!(error = %e, "the path manager did not take the connection");
            None
        }
    }
}

/// In strict mode, turns a connection that is not multipath, or that the
/// given path manager did not take, into an error.
pub(crate) fn check_strict(fd: BorrowedFd<'_>, meta: &SocketMeta, params: &Parameters) -> Result<()> {
    if params.get_require_multipath() {
        let status = status(fd, meta);
        if !status.is_multipath() || (params.get_path_manager().is_some() && !status.enforced) {
            return Err(Error::MultipathUnavailable { status: Box::new(status) });
        }
    }
    Ok(())
}

/// `MPTCP_INFO` of an MPTCP connection.
pub(crate) fn mptcp_info(fd: BorrowedFd<'_>, meta: &SocketMeta) -> Result<MptcpInfo> {
    let status = status(fd, meta);
    if !status.is_multipath() {
        return Err(Error::NotMultipath(status.transport));
    }
    let mut buf = [0u8; MPTCP_INFO_SIZE];
    let n = sys::getsockopt_bytes(fd, sys::SOL_MPTCP, sys::MPTCP_INFO, &mut buf)?;
    Ok(MptcpInfo::decode(&buf[..n])?)
}

/// The connection's subflows; a plain TCP connection has exactly one.
pub(crate) fn subflows(fd: BorrowedFd<'_>, meta: &SocketMeta) -> Result<Vec<SubflowInfo>> {
    let mut subflows = if status(fd, meta).is_multipath() {
        match sys::full_info(fd) {
            Ok(full) => full.subflows,
            // Fell back between the two calls: one TCP flow now.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && !is_mptcp(fd).unwrap_or(false) => {
                vec![tcp_flow(fd, meta)?]
            }
            // Still MPTCP, so the kernel lacks MPTCP_FULL_INFO (before 6.5):
            // one flow would be a lie.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                let why = "this kernel cannot list subflows (MPTCP_FULL_INFO needs Linux 6.5 or later)";
                return Err(Error::socket(why, e));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        vec![tcp_flow(fd, meta)?]
    };
    name_interfaces(&mut subflows);
    Ok(subflows)
}

/// Fills each subflow's interface from its local address.
pub(crate) fn name_interfaces(subflows: &mut [SubflowInfo]) {
    let interfaces = interface_addresses();
    for sf in subflows {
        let ip = canonical_ip(&sf.local);
        sf.interface = interfaces.iter().find(|(_, a)| *a == ip).map(|(name, _)| name.clone());
    }
}

/// The interfaces and addresses of the calling thread's network namespace,
/// remembered for a second per namespace: `getifaddrs` is a netlink dump,
/// too slow to repeat for every `subflows()` call of a busy server, while
/// addresses change far less often than that.
fn interface_addresses() -> Arc<Vec<(String, std::net::IpAddr)>> {
    use std::os::unix::fs::MetadataExt;
    type Entry = (u64, Instant, Arc<Vec<(String, std::net::IpAddr)>>);
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    const FRESH: Duration = Duration::from_secs(1);
    // A thread may have moved to another namespace (setns): key by it.
    let Ok(netns) = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()) else {
        return Arc::new(sys::interface_addresses().unwrap_or_default());
    };
    let now = Instant::now();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|(_, at, _)| now.duration_since(*at) < FRESH);
    if let Some((_, _, found)) = cache.iter().find(|(ns, _, _)| *ns == netns) {
        return found.clone();
    }
    let fresh = Arc::new(sys::interface_addresses().unwrap_or_default());
    cache.push((netns, now, fresh.clone()));
    fresh
}

/// A plain TCP connection described as its single flow.
fn tcp_flow(fd: BorrowedFd<'_>, meta: &SocketMeta) -> Result<SubflowInfo> {
    let mut buf = [0u8; TCP_INFO_SIZE];
    let n = sys::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, &mut buf)?;
    let sock = SockRef::from(&fd);
    let addr = |a: io::Result<socket2::SockAddr>| -> Result<SocketAddr> {
        a?.as_socket().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket").into())
    };
    Ok(SubflowInfo {
        id: 1,
        local: crate::connection::canonical(addr(sock.local_addr())?),
        remote: match (addr(sock.peer_addr()), meta.peer) {
            (Ok(a), _) => crate::connection::canonical(a),
            // getpeername fails once the connection is closed.
            (Err(_), Some(peer)) => peer,
            (Err(e), None) => return Err(e),
        },
        interface: None,
        tcp: TcpInfo::decode(&buf[..n])?,
    })
}
