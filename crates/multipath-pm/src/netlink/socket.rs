//! Generic-netlink sockets for `mptcp_pm`: one for commands (each waits for
//! its acknowledgement) and one subscribed to the events group.
//!
//! Blocking and small on purpose: the path manager's event loop owns them;
//! every raw call is one function at the end of this file.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::codec::consts::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use super::codec::{genl_request, messages, route_messages, Header, Message};
use super::ctrl::{self, Family};
use super::mptcp_pm::{self, Command, Event, LocalAddr};
use super::route::LocalPath;
use super::sock_diag::{InetDiagMsg, Query};
use super::{route, sock_diag};
use crate::PmError;

const NETLINK_GENERIC: i32 = 16;
const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
const RECV_BUF: usize = 64 * 1024;

/// A socket that sends path-manager commands. Needs CAP_NET_ADMIN in the
/// network namespace it was opened in.
#[derive(Debug)]
pub struct PmSocket {
    fd: OwnedFd,
    family: Family,
    seq: u32,
}

impl PmSocket {
    /// Opens a socket in the calling thread's network namespace and
    /// resolves the `mptcp_pm` family.
    pub fn open() -> Result<PmSocket, PmError> {
        let fd = netlink_socket()?;
        let family = resolve(&fd, mptcp_pm::FAMILY)?;
        Ok(PmSocket { fd, family, seq: 1 })
    }

    /// Sends `command` and waits for the kernel's verdict.
    pub fn execute(&mut self, command: &Command) -> Result<(), PmError> {
        self.seq = self.seq.wrapping_add(1);
        let header = Header { ty: self.family.id, flags: NLM_F_REQUEST | NLM_F_ACK, seq: self.seq, pid: 0 };
        let msg = genl_request(header, command.number(), mptcp_pm::VERSION, |a| command.write_attrs(a));
        send(&self.fd, &msg)?;
        wait_ack(&self.fd, self.seq, command.name())
    }

    /// GET_ADDR: the address entry `id` of connection `token`, as the
    /// kernel's userspace path manager holds it.
    pub fn get_addr(&mut self, token: u32, id: u8) -> Result<LocalAddr, PmError> {
        let (cmd, name) = (mptcp_pm::GET_ADDR, "GET_ADDR");
        self.request_one(cmd, name, |a| mptcp_pm::get_addr_request(a, token, id), mptcp_pm::decode_addr_reply)
    }

    /// GET_LIMITS: the namespace's subflow and announced-address limits.
    pub fn limits(&mut self) -> Result<mptcp_pm::Limits, PmError> {
        self.request_one(mptcp_pm::GET_LIMITS, "GET_LIMITS", |_| {}, mptcp_pm::decode_limits_reply)
    }

    /// A request answered by one message, decoded by `decode`.
    fn request_one<T>(
        &mut self,
        cmd: u8,
        name: &'static str,
        write: impl FnOnce(&mut crate::netlink::codec::AttrWriter<'_>),
        decode: fn(&[u8]) -> Result<T, crate::netlink::codec::DecodeError>,
    ) -> Result<T, PmError> {
        self.seq = self.seq.wrapping_add(1);
        let header = Header { ty: self.family.id, flags: NLM_F_REQUEST | NLM_F_ACK, seq: self.seq, pid: 0 };
        let msg = genl_request(header, cmd, mptcp_pm::VERSION, write);
        send(&self.fd, &msg)?;
        let (seq, mut found) = (self.seq, None);
        transact(&self.fd, &mut vec![0u8; RECV_BUF], true, |m| match m {
            Message::Genl { header, attrs, .. } if header.seq == seq => {
                found = Some(decode(attrs)?);
                Ok(None)
            }
            Message::Error { seq: s, errno, message } if s == seq => {
                Err(PmError::Refused { command: name, errno, message })
            }
            Message::Ack { seq: s } if s == seq => found.take().map(Some).ok_or_else(|| PmError::Refused {
                command: name,
                errno: libc::ENODATA,
                message: Some("acknowledged without a reply".into()),
            }),
            _ => Ok(None),
        })
    }

    /// GET_ADDR as a dump: every address entry of connection `token` that
    /// the userspace path manager holds (announced, or used by a subflow
    /// it created), in the kernel's order.
    pub fn addresses(&mut self, token: u32) -> Result<Vec<LocalAddr>, PmError> {
        self.seq = self.seq.wrapping_add(1);
        let header = Header { ty: self.family.id, flags: NLM_F_REQUEST | NLM_F_DUMP, seq: self.seq, pid: 0 };
        let msg = genl_request(header, mptcp_pm::GET_ADDR, mptcp_pm::VERSION, |a| {
            mptcp_pm::dump_addrs_request(a, token);
        });
        send(&self.fd, &msg)?;
        let (seq, mut out) = (self.seq, Vec::new());
        transact(&self.fd, &mut vec![0u8; RECV_BUF], true, |m| match m {
            Message::Genl { header, attrs, .. } if header.seq == seq => {
                out.push(mptcp_pm::decode_addr_reply(attrs)?);
                Ok(None)
            }
            Message::Done { seq: s } if s == seq => Ok(Some(std::mem::take(&mut out))),
            Message::Error { seq: s, errno, message } if s == seq => {
                Err(PmError::Refused { command: "GET_ADDR", errno, message })
            }
            _ => Ok(None),
        })
    }

    /// The resolved family (id and multicast groups).
    pub fn family(&self) -> &Family {
        &self.family
    }
}

/// A socket subscribed to `mptcp_pm_events`.
#[derive(Debug)]
pub struct EventSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl EventSocket {
    /// Subscribes in the calling thread's network namespace.
    pub fn open() -> Result<EventSocket, PmError> {
        let fd = netlink_socket()?;
        let family = resolve(&fd, mptcp_pm::FAMILY)?;
        let group = family
            .group(mptcp_pm::EVENTS_GROUP)
            .ok_or_else(|| PmError::NoFamily(format!("{}/{}", mptcp_pm::FAMILY, mptcp_pm::EVENTS_GROUP)))?;
        setsockopt_int(&fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as i32)?;
        let socket = EventSocket { fd, buf: vec![0; RECV_BUF] };
        let _ = socket.set_receive_buffer(Self::DEFAULT_BUFFER);
        Ok(socket)
    }

    /// The receive buffer asked for by default: bursts of connections
    /// produce bursts of events, and lost ones force a resync.
    pub const DEFAULT_BUFFER: usize = 4 << 20;

    /// Sets the socket's receive buffer to `bytes`: beyond
    /// `net.core.rmem_max` with CAP_NET_ADMIN (`SO_RCVBUFFORCE`), within it
    /// otherwise. What the kernel granted (it doubles the value for its
    /// bookkeeping, and has a floor of a few kilobytes).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.fd);
        let forced = i32::try_from(bytes).unwrap_or(i32::MAX);
        if setsockopt_int(&self.fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, forced).is_err() {
            sock.set_recv_buffer_size(bytes)?;
        }
        sock.recv_buffer_size()
    }

    /// Blocks for the next datagram and decodes its events. Events that
    /// cannot be decoded are logged and skipped; an overrun is an error.
    pub fn recv(&mut self) -> Result<Vec<Event>, PmError> {
        let n = match recv(&self.fd, &mut self.buf) {
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(PmError::EventsLost),
            r => r?,
        };
        self.decode(n)
    }

    /// Like [`EventSocket::recv`], without waiting: `None` when nothing is
    /// pending.
    pub fn try_recv(&mut self) -> Result<Option<Vec<Event>>, PmError> {
        let n = match recv_flags(&self.fd, &mut self.buf, libc::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(PmError::EventsLost),
            r => r?,
        };
        Ok(Some(self.decode(n)?))
    }

    fn decode(&self, n: usize) -> Result<Vec<Event>, PmError> {
        let mut events = Vec::new();
        for m in messages(&self.buf[..n]) {
            match m {
                Ok(Message::Genl { cmd, attrs, .. }) => match mptcp_pm::decode_event(cmd, attrs) {
                    Ok(e) => events.push(e),
                    Err(e) => tracing::warn!(error = %e, cmd, "undecodable path-manager event skipped"),
                },
                Ok(Message::Overrun) => return Err(PmError::EventsLost),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "malformed netlink datagram skipped"),
            }
        }
        Ok(events)
    }

    /// Sets a receive timeout (`None` blocks forever).
    pub fn set_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        let tv = timeout.map_or(libc::timeval { tv_sec: 0, tv_usec: 0 }, |t| libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        });
        setsockopt_raw(&self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }
}

impl AsFd for EventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Watches links, addresses and routes, and lists the usable local paths.
#[derive(Debug)]
pub struct RouteWatcher {
    /// Subscribed to changes; read without blocking.
    events: OwnedFd,
    /// For dumps.
    dumps: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

const NETLINK_ROUTE: i32 = 0;

/// Aborts TCP sockets by their 4-tuple (`sock_diag` SOCK_DESTROY; needs
/// CAP_NET_ADMIN and a kernel built with `CONFIG_INET_DIAG_DESTROY`).
#[derive(Debug)]
pub struct SocketKiller {
    fd: OwnedFd,
    seq: u32,
}

impl SocketKiller {
    /// Opens a `sock_diag` socket in the calling thread's network namespace.
    pub fn open() -> Result<SocketKiller, PmError> {
        Ok(SocketKiller { fd: netlink_socket_of(sock_diag::NETLINK_SOCK_DIAG)?, seq: 1 })
    }

    /// Aborts the TCP socket `local` -> `remote` (its peer gets a reset);
    /// whether there was one.
    pub fn abort(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<bool, PmError> {
        self.seq = self.seq.wrapping_add(1);
        let Some(msg) = sock_diag::destroy_request(local, remote, self.seq) else { return Ok(false) };
        send(&self.fd, &msg)?;
        match wait_ack_with(&self.fd, self.seq, "SOCK_DESTROY", false) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Measures connections and subflows through `sock_diag` (needs
/// CAP_NET_ADMIN for the subflows' MPTCP details).
#[derive(Debug)]
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

/// Queries sent in one datagram, at most: their replies must fit the
/// socket's receive buffer, or the kernel drops the rest (ENOBUFS).
pub const DIAG_BATCH: usize = 128;

impl Diag {
    /// Opens a `sock_diag` socket in the calling thread's network namespace.
    pub fn open() -> Result<Diag, PmError> {
        let fd = netlink_socket_of(sock_diag::NETLINK_SOCK_DIAG)?;
        // Room for a full batch of replies (a subflow's is ~450 bytes) and
        // for dumps, which the kernel fills a buffer at a time.
        let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20);
        Ok(Diag { fd, seq: 1, buf: vec![0; RECV_BUF] })
    }

    /// Asks every query (none of them a dump; at most [`DIAG_BATCH`]) in
    /// one datagram and hands `each` the index of each query with the
    /// socket found, or the errno the kernel answered (ENOENT: no such
    /// socket). An unreadable answer gets no call.
    pub fn query(
        &mut self,
        queries: &[Query],
        mut each: impl FnMut(usize, Result<InetDiagMsg<'_>, i32>),
    ) -> Result<(), PmError> {
        assert!(queries.len() <= DIAG_BATCH, "a batch of {} queries", queries.len());
        let first = self.seq.wrapping_add(1);
        let mut batch = Vec::with_capacity(queries.len() * 80);
        let mut asked = Vec::with_capacity(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let seq = first.wrapping_add(i as u32);
            if let Some(request) = q.request(seq) {
                batch.extend_from_slice(&request);
                asked.push(i);
            }
        }
        self.seq = first.wrapping_add(queries.len() as u32);
        if asked.is_empty() {
            return Ok(());
        }
        send(&self.fd, &batch)?;
        let index = |seq: u32| -> Option<usize> {
            let i = seq.wrapping_sub(first) as usize;
            (i < queries.len()).then_some(i)
        };
        let mut left = asked.len();
        transact(&self.fd, &mut self.buf, false, |m| {
            match m {
                Message::Data { header, body } => {
                    let Some(i) = index(header.seq) else { return Ok(None) };
                    match InetDiagMsg::parse(body) {
                        Ok(msg) => each(i, Ok(msg)),
                        Err(e) => tracing::warn!(error = %e, "sock_diag reply skipped"),
                    }
                }
                Message::Error { seq, errno, message } => {
                    let Some(i) = index(seq) else { return Ok(None) };
                    if errno != libc::ENOENT {
                        tracing::debug!(errno, ?message, "sock_diag query refused");
                    }
                    each(i, Err(errno));
                }
                _ => return Ok(None),
            }
            left -= 1;
            Ok((left == 0).then_some(()))
        })
    }

    /// Runs a dump ([`Query::AllConnections`] or [`Query::AllSubflows`])
    /// and hands every socket to `each`.
    pub fn dump(&mut self, query: Query, mut each: impl FnMut(InetDiagMsg<'_>)) -> Result<(), PmError> {
        self.seq = self.seq.wrapping_add(1);
        let request = query.request(self.seq).ok_or_else(|| PmError::NotManageable("mixed families".into()))?;
        send(&self.fd, &request)?;
        let seq = self.seq;
        transact(&self.fd, &mut self.buf, false, |m| match m {
            Message::Data { header, body } if header.seq == seq => {
                match InetDiagMsg::parse(body) {
                    Ok(msg) => each(msg),
                    Err(e) => tracing::warn!(error = %e, "sock_diag entry skipped"),
                }
                Ok(None)
            }
            Message::Done { seq: s } if s == seq => Ok(Some(())),
            Message::Error { seq: s, errno, message } if s == seq => {
                Err(PmError::Refused { command: "SOCK_DIAG_BY_FAMILY", errno, message })
            }
            _ => Ok(None),
        })
    }
}

impl RouteWatcher {
    /// Subscribes in the calling thread's network namespace.
    pub fn open() -> Result<RouteWatcher, PmError> {
        let events = netlink_socket_of(NETLINK_ROUTE)?;
        for group in route::GROUPS {
            setsockopt_int(&events, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as i32)?;
        }
        let _ = setsockopt_int(&events, libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20);
        Ok(RouteWatcher { events, dumps: netlink_socket_of(NETLINK_ROUTE)?, seq: 1, buf: vec![0; RECV_BUF] })
    }

    /// Reads every pending change notification without blocking; whether
    /// there was any (a lost one counts: the caller re-reads the tables).
    pub fn changed(&mut self) -> Result<bool, PmError> {
        let mut any = false;
        loop {
            match recv_flags(&self.events, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Blocks until a change notification is pending or `timeout` passes;
    /// whether one is pending.
    pub fn wait(&self, timeout: std::time::Duration) -> Result<bool, PmError> {
        Ok(poll_readable(&self.events, timeout)?)
    }

    /// The usable local paths now, from fresh dumps of the kernel's tables.
    pub fn paths(&mut self) -> Result<Vec<LocalPath>, PmError> {
        Ok(self.snapshot()?.paths)
    }

    /// The usable local paths and the stranded addresses (on interfaces
    /// down or without carrier), from one set of fresh dumps.
    pub fn snapshot(&mut self) -> Result<RouteSnapshot, PmError> {
        let mut entries = Vec::new();
        for kind in route::DUMPS {
            self.dump(&route::dump_request(kind, self.seq.wrapping_add(1)), |ty, body| match route::parse(ty, body) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "rtnetlink entry skipped"),
            })?;
        }
        Ok(RouteSnapshot { paths: route::paths(&entries), stranded: route::stranded(&entries) })
    }

    /// Adds or removes the quarantine rule of `addr` (see
    /// [`route::quarantine_request`]). Adding one that exists, or removing
    /// one that does not, is not an error.
    pub fn set_quarantine(&mut self, addr: IpAddr, on: bool) -> Result<(), PmError> {
        self.seq = self.seq.wrapping_add(1);
        send(&self.dumps, &route::quarantine_request(addr, on, self.seq))?;
        let command = if on { "RTM_NEWRULE" } else { "RTM_DELRULE" };
        match wait_ack_with(&self.dumps, self.seq, command, false) {
            Err(e) if e.errno() == Some(if on { libc::EEXIST } else { libc::ENOENT }) => Ok(()),
            other => other,
        }
    }

    /// The addresses that have a quarantine rule, whoever added it.
    pub fn quarantined(&mut self) -> Result<Vec<IpAddr>, PmError> {
        let mut out = Vec::new();
        self.dump(&route::rule_dump_request(self.seq.wrapping_add(1)), |ty, body| {
            match route::parse_quarantine(ty, body) {
                Ok(Some(addr)) => out.push(addr),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "rtnetlink rule skipped"),
            }
        })?;
        Ok(out)
    }

    /// Sends a dump request (built for the next sequence number) and hands
    /// each reply's type and body to `each`.
    fn dump(&mut self, request: &[u8], mut each: impl FnMut(u16, &[u8])) -> Result<(), PmError> {
        self.seq = self.seq.wrapping_add(1);
        send(&self.dumps, request)?;
        let seq = self.seq;
        transact(&self.dumps, &mut self.buf, false, |m| match m {
            Message::Data { header, body } if header.seq == seq => {
                each(header.ty, body);
                Ok(None)
            }
            Message::Done { seq: s } if s == seq => Ok(Some(())),
            Message::Error { seq: s, errno, message } if s == seq => {
                Err(PmError::Refused { command: "RTM_GET*", errno, message })
            }
            _ => Ok(None),
        })
    }
}

/// What [`RouteWatcher::snapshot`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSnapshot {
    /// The usable local paths, best first.
    pub paths: Vec<LocalPath>,
    /// Addresses on interfaces that are down or without carrier.
    pub stranded: std::collections::BTreeSet<IpAddr>,
}

impl AsFd for RouteWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }
}

fn resolve(fd: &OwnedFd, name: &str) -> Result<Family, PmError> {
    send(fd, &ctrl::get_family_request(name, 1))?;
    let mut family = None;
    transact(fd, &mut vec![0u8; RECV_BUF], true, |m| match m {
        Message::Genl { header, attrs, .. } if header.seq == 1 => {
            family = Some(ctrl::parse_family(attrs)?);
            Ok(None)
        }
        Message::Error { errno, .. } if errno == libc::ENOENT => Err(PmError::NoFamily(name.into())),
        Message::Error { errno, message, .. } => {
            Err(PmError::Refused { command: "CTRL_CMD_GETFAMILY", errno, message })
        }
        Message::Ack { .. } => family.take().map(Some).ok_or_else(|| PmError::NoFamily(name.into())),
        _ => Ok(None),
    })
}

fn wait_ack(fd: &OwnedFd, seq: u32, command: &'static str) -> Result<(), PmError> {
    wait_ack_with(fd, seq, command, true)
}

/// Waits for the acknowledgement of request `seq` on a generic or a
/// classic (rtnetlink) socket.
fn wait_ack_with(fd: &OwnedFd, seq: u32, command: &'static str, generic: bool) -> Result<(), PmError> {
    transact(fd, &mut vec![0u8; RECV_BUF], generic, |m| match m {
        Message::Ack { seq: s } if s == seq => Ok(Some(())),
        Message::Error { seq: s, errno, message } if s == seq => Err(PmError::Refused { command, errno, message }),
        // Replies to earlier requests that timed out, or stray data.
        _ => Ok(None),
    })
}

/// The one loop every request here waits in: receives datagrams and hands
/// each message (generic netlink, or a classic family's) to `on` until it
/// says the transaction is over, with its result or its error.
fn transact<T>(
    fd: &OwnedFd,
    buf: &mut [u8],
    generic: bool,
    mut on: impl FnMut(Message<'_>) -> Result<Option<T>, PmError>,
) -> Result<T, PmError> {
    loop {
        let n = recv(fd, buf)?;
        let replies: Box<dyn Iterator<Item = _>> =
            if generic { Box::new(messages(&buf[..n])) } else { Box::new(route_messages(&buf[..n])) };
        for m in replies {
            if let Some(done) = on(m?)? {
                return Ok(done);
            }
        }
    }
}

// ---- raw system calls ----

/// `socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC)` with extended acks.
fn netlink_socket() -> io::Result<OwnedFd> {
    netlink_socket_of(NETLINK_GENERIC)
}

/// A netlink socket of `protocol` with extended acks.
fn netlink_socket_of(protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Bound (port id chosen by the kernel) before anything else: multicast
    // groups joined by an unbound socket deliver nothing.
    // SAFETY: sockaddr_nl is plain data; zeroed asks for any port id.
    let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `local` is a valid sockaddr_nl of the length passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // Error messages with the kernel's text, without the echoed request.
    setsockopt_int(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)?;
    setsockopt_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)?;
    Ok(fd)
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt_raw(fd, level, name, &value)
}

fn setsockopt_raw<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one datagram to the kernel (port 0).
fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain data; zeroed means "the kernel".
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` are valid for the lengths passed.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram, retrying on EINTR.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, 0)
}

/// `ppoll(2)` on several descriptors: which are readable (all false on
/// timeout). Nanosecond timeouts: `poll`'s milliseconds would round a wait
/// under 1 ms down to 0, and a loop waiting for a deadline would spin.
pub(crate) fn poll_any(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let secs = timeout.as_secs().min(i32::MAX as u64) as libc::time_t;
    let wait = libc::timespec { tv_sec: secs, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    loop {
        // SAFETY: `pfds` is a valid array of its length; `wait` outlives the
        // call; a null signal mask leaves the thread's mask alone.
        let n = unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, &wait, std::ptr::null()) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `fd` becomes readable within `timeout`.
fn poll_readable(fd: &OwnedFd, timeout: std::time::Duration) -> io::Result<bool> {
    Ok(poll_any(&[fd.as_fd()], timeout)?[0])
}

fn recv_flags(fd: &OwnedFd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
