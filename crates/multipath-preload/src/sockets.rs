//! What the hooks do to a socket: which ones to convert, falling back to
//! TCP in place, registering with the daemon.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_int, c_void, socklen_t};
use multipath::daemon_client::Origin;

use crate::notice::{self, Notice};
use crate::{real, settings};

/// `IPPROTO_MPTCP`.
pub(crate) const IPPROTO_MPTCP: c_int = 262;

/// Whether `socket(domain, ty, protocol)` asks for a TCP stream over IPv4
/// or IPv6, which we make MPTCP.
pub(crate) fn is_tcp_stream(domain: c_int, ty: c_int, protocol: c_int) -> bool {
    // The low bits are the type; SOCK_NONBLOCK and SOCK_CLOEXEC ride above.
    const SOCK_TYPE_MASK: c_int = 0xf;
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && ty & SOCK_TYPE_MASK == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
}

/// Descriptors below this are tracked in an [`FdSet`]; a socket above it
/// is taken as connected (never made TCP behind its back) and as not ours
/// at close.
const TRACKED: usize = 65536;

/// One bit per descriptor below [`TRACKED`].
struct FdSet([AtomicU64; TRACKED / 64]);

impl FdSet {
    const fn new() -> FdSet {
        FdSet([const { AtomicU64::new(0) }; TRACKED / 64])
    }

    fn bit(&self, fd: c_int) -> Option<(&AtomicU64, u64)> {
        let fd = usize::try_from(fd).ok().filter(|&fd| fd < TRACKED)?;
        Some((&self.0[fd / 64], 1 << (fd % 64)))
    }

    fn set(&self, fd: c_int, on: bool) {
        if let Some((word, bit)) = self.bit(fd) {
            match on {
                true => word.fetch_or(bit, Ordering::Relaxed),
                false => word.fetch_and(!bit, Ordering::Relaxed),
            };
        }
    }

    /// `None` for a descriptor not tracked.
    fn get(&self, fd: c_int) -> Option<bool> {
        self.bit(fd).map(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }
}

/// `connect` was called on the descriptor since `socket` returned it. A
/// connecting socket cannot be told from a fresh one by `getpeername`
/// (both are `ENOTCONN` until the handshake ends).
static CONNECTED: FdSet = FdSet::new();

/// The descriptor is an MPTCP socket this library made, or accepted from
/// one: its last segment is pushed at close (see [`push_last_segment`]).
static MULTIPATH: FdSet = FdSet::new();

/// Records whether `fd` has connected.
pub(crate) fn mark_connected(fd: c_int, connected: bool) {
    CONNECTED.set(fd, connected);
}

fn has_connected(fd: c_int) -> bool {
    CONNECTED.get(fd).unwrap_or(true)
}

/// Records whether `fd` is an MPTCP socket of ours.
pub(crate) fn mark_multipath(fd: c_int, multipath: bool) {
    MULTIPATH.set(fd, multipath);
}

/// Whether `fd` was recorded as an MPTCP socket of ours.
pub(crate) fn is_marked_multipath(fd: c_int) -> bool {
    MULTIPATH.get(fd).unwrap_or(false)
}

/// The program is done writing to `fd` (closing it or shutting down its
/// write side): sends a short last segment now. The kernel's MPTCP keeps
/// Nagle's rule on the subflow at close, where TCP lifts it for the FIN,
/// so the tail would wait a round trip for the acknowledgement of what
/// came before it. Turning TCP_NODELAY on pushes what is queued; it is
/// turned off again at once when the program had it off, since another
/// process may still hold the socket (a forking server's parent closes its
/// copy first). `errno` is kept.
pub(crate) fn push_last_segment(fd: c_int) {
    if !is_marked_multipath(fd) {
        return;
    }
    let saved = real::errno();
    if int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY) == Some(0) {
        let set = |on: c_int| {
            // SAFETY: an int option, passed by pointer with its size.
            unsafe {
                real::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw const on).cast(),
                    std::mem::size_of::<c_int>() as socklen_t,
                )
            }
        };
        if set(1) == 0 {
            set(0);
        }
    }
    real::set_errno(saved);
}

/// An `int` socket option, `None` if it cannot be read.
fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `value` is a live int and `len` its size.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// Whether `fd` is an MPTCP socket.
pub(crate) fn is_mptcp(fd: c_int) -> bool {
    int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(IPPROTO_MPTCP)
}

/// Options carried over when a socket becomes TCP: those a program
/// commonly sets before it connects. Each is read from the old socket and
/// set on the new one; one that fails is left at its default.
const CARRIED: [(c_int, c_int); 17] = [
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::SOL_SOCKET, libc::SO_LINGER),
    (libc::SOL_SOCKET, libc::SO_PRIORITY),
    (libc::SOL_SOCKET, libc::SO_MARK),
    (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (libc::IPPROTO_TCP, libc::TCP_CONGESTION),
    (libc::IPPROTO_IP, libc::IP_TOS),
    (libc::IPPROTO_IP, libc::IP_FREEBIND),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
];

/// Makes the unconnected MPTCP socket `fd` a TCP socket, in place: a new
/// TCP socket takes over the descriptor number (`dup3`), with the old one's
/// status flags, close-on-exec flag, common options and bound address.
/// Whether it did; when not, nothing changed.
pub(crate) fn fall_back(fd: c_int) -> bool {
    if !is_mptcp(fd) || has_connected(fd) || int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(0) {
        return false;
    }
    let Some(domain) = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) else { return false };
    // SAFETY: fcntl on a descriptor the program owns, reading flags only.
    let (status, fd_flags) = unsafe { (libc::fcntl(fd, libc::F_GETFL), libc::fcntl(fd, libc::F_GETFD)) };
    if status < 0 || fd_flags < 0 {
        return false;
    }
    let mut bound: libc::sockaddr_storage = zeroed_storage();
    let mut bound_len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: `bound` is a sockaddr_storage of `bound_len` bytes.
    if unsafe { libc::getsockname(fd, (&raw mut bound).cast(), &mut bound_len) } != 0 {
        return false;
    }
    let tcp = real::socket(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP);
    if tcp < 0 {
        return false;
    }
    for (level, name) in CARRIED {
        let mut value = [0u8; 64];
        let mut len = value.len() as socklen_t;
        // SAFETY: `value` is valid for `len` bytes; only written.
        if unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) } == 0 {
            // SAFETY: the bytes just read, of the length the kernel gave.
            unsafe { real::setsockopt(tcp, level, name, value.as_ptr().cast::<c_void>(), len) };
        }
    }
    let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 { libc::O_CLOEXEC } else { 0 };
    // SAFETY: `tcp` is ours; `fd` is the program's socket, which dup3
    // closes and replaces atomically (the MPTCP socket goes with it).
    let replaced = unsafe { libc::dup3(tcp, fd, cloexec) };
    // `tcp` is ours, and `fd` now refers to its socket as well.
    real::close(tcp);
    if replaced < 0 {
        return false;
    }
    mark_multipath(fd, false);
    // SAFETY: status flags (O_NONBLOCK) of the program's descriptor, as
    // they were.
    unsafe { libc::fcntl(fd, libc::F_SETFL, status) };
    if bound_port(&bound) != 0 || !bound_is_wildcard(&bound) {
        // SAFETY: the address getsockname gave, of its length. The port
        // is free again: the MPTCP socket closed with dup3.
        unsafe { libc::bind(fd, (&raw const bound).cast(), bound_len) };
    }
    true
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn bound_port(addr: &libc::sockaddr_storage) -> u16 {
    let bytes = sockaddr_bytes(addr);
    // Both sockaddr_in and sockaddr_in6 keep the port at bytes 2..4.
    u16::from_be_bytes([bytes[2], bytes[3]])
}

fn bound_is_wildcard(addr: &libc::sockaddr_storage) -> bool {
    let bytes = sockaddr_bytes(addr);
    match c_int::from(addr.ss_family) {
        libc::AF_INET => bytes[4..8] == [0; 4],
        libc::AF_INET6 => bytes[8..24] == [0; 16],
        _ => true,
    }
}

fn sockaddr_bytes(addr: &libc::sockaddr_storage) -> &[u8] {
    // SAFETY: a sockaddr_storage is plain bytes, all initialised.
    unsafe { std::slice::from_raw_parts((addr as *const libc::sockaddr_storage).cast::<u8>(), 128) }
}

/// The destination `connect` was given, if it is an IPv4 or IPv6 address.
///
/// # Safety
/// `addr` is valid for `len` bytes, or null.
pub(crate) unsafe fn destination(addr: *const libc::sockaddr, len: socklen_t) -> Option<std::net::SocketAddr> {
    if addr.is_null() {
        return None;
    }
    let len = len as usize;
    // SAFETY: the caller's bytes, of the caller's length.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) };
    parse_sockaddr(bytes)
}

/// An IPv4 or IPv6 socket address from its C bytes.
pub(crate) fn parse_sockaddr(bytes: &[u8]) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let family = c_int::from(u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        libc::AF_INET6 if bytes.len() >= 24 => {
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

/// Hands the connection behind `fd` to the daemon, if it is MPTCP and
/// leaves the host. Says once per kind why one was not taken.
pub(crate) fn register(fd: c_int, to: std::net::SocketAddr) {
    let (Some(service), Some(daemon)) = (settings::service(), settings::daemon()) else { return };
    let ip = to.ip().to_canonical();
    if ip.is_loopback() || ip.is_unspecified() || !is_mptcp(fd) {
        return;
    }
    // SAFETY: the program's descriptor, open for the length of this call
    // (we are inside its `connect`).
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    let Err(e) = daemon.register_as(socket, service, Origin::Run) else { return };
    let (kind, what) = match e.kind() {
        std::io::ErrorKind::NotFound => (Notice::NoDaemon, "connections stay MPTCP; no service type is enforced"),
        std::io::ErrorKind::PermissionDenied => (Notice::Refused, "that connection is left to the daemon's rules"),
        _ => (Notice::DaemonFailed, "that connection is left to the daemon's rules"),
    };
    notice::once(kind, || format!("{e} ({what}; said once)"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_set_keeps_each_bit_apart_and_ignores_what_it_cannot_track() {
        let set = FdSet::new();
        for fd in [0, 63, 64, 65535] {
            assert_eq!(set.get(fd), Some(false));
            set.set(fd, true);
        }
        assert_eq!(set.get(62), Some(false), "a neighbour is untouched");
        set.set(64, false);
        assert_eq!((set.get(63), set.get(64), set.get(65535)), (Some(true), Some(false), Some(true)));
        // A failed call's -1, and numbers past the table: not tracked.
        set.set(-1, true);
        set.set(65536, true);
        assert_eq!((set.get(-1), set.get(65536)), (None, None));
    }

    #[test]
    fn only_tcp_streams_are_converted() {
        let nb = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        assert!(is_tcp_stream(libc::AF_INET, libc::SOCK_STREAM, 0));
        assert!(is_tcp_stream(libc::AF_INET6, nb, libc::IPPROTO_TCP));
        assert!(!is_tcp_stream(libc::AF_UNIX, libc::SOCK_STREAM, 0));
        assert!(!is_tcp_stream(libc::AF_INET, libc::SOCK_DGRAM, 0));
        assert!(!is_tcp_stream(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP));
        assert!(!is_tcp_stream(libc::AF_INET, libc::SOCK_STREAM, IPPROTO_MPTCP));
    }

    #[test]
    fn socket_addresses_parse_from_c_bytes() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some("10.0.0.1:8080".parse().unwrap()));
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(parse_sockaddr(&v6), Some("[fd00::2]:443".parse().unwrap()));
        assert_eq!(parse_sockaddr(&v6[..20]), None, "cut short");
        assert_eq!(parse_sockaddr(&[1, 0]), None);
        let mut unix = vec![0u8; 16];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
    }

    #[test]
    fn a_connected_socket_is_never_made_tcp() {
        mark_connected(7, true);
        assert!(has_connected(7));
        mark_connected(7, false);
        assert!(!has_connected(7));
        assert!(has_connected(TRACKED as c_int), "untracked descriptors count as connected");
        assert!(has_connected(-1));
    }
}
