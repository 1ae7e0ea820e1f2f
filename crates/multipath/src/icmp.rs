//! ICMP echo from a chosen source address: how a path manager tells a
//! silent path from a dead one, and how the lab measures a path's RTT.
//!
//! An ICMP datagram ("ping") socket needs the caller's group inside
//! `net.ipv4.ping_group_range`, which is `1 0` (nobody, root included) on a
//! stock kernel. A raw socket needs CAP_NET_RAW instead, which a path
//! manager has. [`EchoSocket::open`] takes whichever the host allows, in
//! that order, and says which it got.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// `SOL_RAW` / `ICMP_FILTER` (linux/icmp.h): a mask of ICMP types to drop.
const SOL_RAW: i32 = 255;
const ICMP_FILTER: i32 = 1;
/// `ICMP6_FILTER` at level `IPPROTO_ICMPV6` (linux/icmpv6.h): 256 bits, a
/// set bit drops that type.
const ICMP6_FILTER: i32 = 1;

/// Which kind of socket carries the echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoKind {
    /// An ICMP datagram socket: the kernel sets the identifier and hands
    /// this socket its own replies only.
    Datagram,
    /// A raw socket (CAP_NET_RAW): replies are matched by identifier here.
    Raw,
}

/// An ICMP echo socket bound to one local address.
#[derive(Debug)]
pub struct EchoSocket {
    socket: Socket,
    kind: EchoKind,
    v6: bool,
    /// Our identifier on a raw socket (a datagram socket's is the kernel's).
    ident: u16,
}

static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

impl EchoSocket {
    /// Opens an echo socket that sends from `from`: a datagram socket
    /// where `ping_group_range` allows one, a raw socket otherwise. Fails
    /// only when neither is allowed; the error names both refusals.
    pub fn open(from: IpAddr) -> io::Result<EchoSocket> {
        let (domain, protocol) = match from {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let bind = |s: Socket| -> io::Result<Socket> {
            s.bind(&SockAddr::from(SocketAddr::new(from, 0)))?;
            Ok(s)
        };
        let (socket, kind) = match Socket::new(domain, Type::DGRAM, Some(protocol)).and_then(bind) {
            Ok(s) => (s, EchoKind::Datagram),
            Err(dgram) => match Socket::new(domain, Type::RAW, Some(protocol)).and_then(bind) {
                Ok(s) => (s, EchoKind::Raw),
                Err(raw) => {
                    return Err(io::Error::new(
                        raw.kind(),
                        format!(
                            "no ICMP echo socket: datagram refused ({dgram}; net.ipv4.ping_group_range), \
                             raw refused ({raw}; needs CAP_NET_RAW)"
                        ),
                    ))
                }
            },
        };
        let v6 = from.is_ipv6();
        if kind == EchoKind::Raw {
            set_reply_filter(&socket, v6)?;
        }
        let ident = (std::process::id() as u16) ^ NEXT_IDENT.fetch_add(0x9e37, Ordering::Relaxed);
        Ok(EchoSocket { socket, kind, v6, ident })
    }

    /// Which kind of socket this is.
    pub fn kind(&self) -> EchoKind {
        self.kind
    }

    /// Sends echo request `seq` to `to` with `payload` after the header.
    pub fn send(&self, to: IpAddr, seq: u16, payload: &[u8]) -> io::Result<()> {
        let mut packet = Vec::with_capacity(8 + payload.len());
        packet.push(if self.v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
        packet.extend_from_slice(&[0, 0, 0]); // code, checksum
        packet.extend_from_slice(&self.ident.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(payload);
        // The kernel fills in the checksum of ICMPv6 and of datagram
        // sockets; a raw IPv4 socket sends what it is given.
        if self.kind == EchoKind::Raw && !self.v6 {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        self.socket.send_to(&packet, &SockAddr::from(SocketAddr::new(to, 0)))?;
        Ok(())
    }

    /// Waits up to `timeout` (`None`: do not wait) for an echo reply to
    /// this socket; its sequence number, or `None` when none came.
    /// Anything else that arrives is skipped.
    pub fn recv_reply(&self, timeout: Option<Duration>) -> io::Result<Option<u16>> {
        match timeout {
            None => self.socket.set_nonblocking(true)?,
            Some(t) => {
                self.socket.set_nonblocking(false)?;
                self.socket.set_read_timeout(Some(t.max(Duration::from_micros(1))))?;
            }
        }
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // SAFETY: recv initialised the first `n` bytes.
            let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
            if let Some(seq) = self.parse_reply(bytes) {
                return Ok(Some(seq));
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                self.socket.set_read_timeout(Some(left))?;
            }
        }
    }

    /// The sequence number of an echo reply meant for this socket.
    fn parse_reply(&self, bytes: &[u8]) -> Option<u16> {
        // A raw IPv4 socket gets the IP header too; IPv6 and datagram
        // sockets get the ICMP message alone.
        let icmp = if self.kind == EchoKind::Raw && !self.v6 {
            let ihl = usize::from(bytes.first()? & 0x0f) * 4;
            bytes.get(ihl..)?
        } else {
            bytes
        };
        let header: &[u8; 8] = icmp.get(..8)?.try_into().ok()?;
        let reply = if self.v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        let ident = u16::from_be_bytes([header[4], header[5]]);
        // The kernel rewrote a datagram socket's identifier and delivers it
        // only its own replies.
        let ours = self.kind == EchoKind::Datagram || ident == self.ident;
        (header[0] == reply && ours).then(|| u16::from_be_bytes([header[6], header[7]]))
    }
}

impl std::os::fd::AsFd for EchoSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Lets only echo replies through to a raw socket (it would otherwise get
/// a copy of every ICMP message addressed to its address).
fn set_reply_filter(socket: &Socket, v6: bool) -> io::Result<()> {
    if v6 {
        let mut block = [u32::MAX; 8];
        block[usize::from(ECHO_REPLY_V6) / 32] &= !(1 << (ECHO_REPLY_V6 % 32));
        crate::sys::setsockopt(socket, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &block)
    } else {
        let block: u32 = !(1 << ECHO_REPLY_V4);
        crate::sys::setsockopt(socket, SOL_RAW, ICMP_FILTER, &block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example_and_odd_lengths() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
        // A packet with its checksum in place sums to zero.
        let mut echo = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x'];
        let sum = checksum(&echo);
        echo[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&echo), 0);
    }

    #[test]
    fn replies_are_matched_by_type_and_identifier() {
        let raw = |v6| EchoSocket {
            socket: Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
            kind: EchoKind::Raw,
            v6,
            ident: 0x1234,
        };
        let mut ip_header = vec![0x45u8];
        ip_header.resize(20, 0);
        let v4 = raw(false);
        let reply = [ip_header.clone(), vec![0, 0, 0, 0, 0x12, 0x34, 0, 7]].concat();
        assert_eq!(v4.parse_reply(&reply), Some(7));
        let foreign = [ip_header.clone(), vec![0, 0, 0, 0, 0x43, 0x21, 0, 7]].concat();
        assert_eq!(v4.parse_reply(&foreign), None, "someone else's ping");
        let request = [ip_header.clone(), vec![8, 0, 0, 0, 0x12, 0x34, 0, 7]].concat();
        assert_eq!(v4.parse_reply(&request), None);
        assert_eq!(v4.parse_reply(&ip_header), None, "truncated");
        assert_eq!(v4.parse_reply(&[0x4f]), None, "header length past the end");
        let v6 = raw(true);
        assert_eq!(v6.parse_reply(&[129, 0, 0, 0, 0x12, 0x34, 0, 9]), Some(9));
        assert_eq!(v6.parse_reply(&[0, 0, 0, 0, 0x12, 0x34, 0, 9]), None);
    }
}
