//! Round-trip time by ICMP echo, without the ping program.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{LabError, Result};

/// RTT samples of a ping run.
#[derive(Clone, Debug, PartialEq)]
pub struct PingStats {
    /// Each reply's round-trip time, in send order.
    pub samples: Vec<Duration>,
    /// Requests without a reply.
    pub lost: usize,
}

impl PingStats {
    /// The median RTT, if any reply came back.
    pub fn median(&self) -> Option<Duration> {
        let mut s = self.samples.clone();
        s.sort();
        s.get(s.len() / 2).copied()
    }
    /// The smallest RTT.
    pub fn min(&self) -> Option<Duration> {
        self.samples.iter().min().copied()
    }
}

/// Sends `count` ICMP echo requests from `from` to `to`, `interval` apart,
/// each waiting up to 1 s for its reply. Uses an ICMP datagram socket, so
/// the calling thread's namespace must allow it (`ping_group_range`).
pub(crate) fn ping(from: Ipv4Addr, to: Ipv4Addr, count: usize, interval: Duration) -> Result<PingStats> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e| LabError::io(what, e)
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).map_err(io("ICMP socket"))?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into()).map_err(io("bind ICMP socket"))?;
    // An ICMP datagram socket sends and receives like a UDP one.
    let sock: std::net::UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_secs(1))).map_err(io("SO_RCVTIMEO"))?;
    let dest = SocketAddr::V4(SocketAddrV4::new(to, 0));
    let mut stats = PingStats { samples: Vec::with_capacity(count), lost: 0 };
    for seq in 0..count as u16 {
        // Echo request: type 8, code 0; the kernel fills in the checksum
        // and the identifier of ping sockets.
        let mut req = [0u8; 64];
        req[0] = 8;
        req[6..8].copy_from_slice(&seq.to_be_bytes());
        let sent = Instant::now();
        sock.send_to(&req, dest).map_err(io("send ICMP echo"))?;
        let deadline = sent + Duration::from_secs(1);
        loop {
            let mut reply = [0u8; 128];
            match sock.recv(&mut reply) {
                Ok(n) if n >= 8 => {
                    if reply[0] == 0 && reply[6..8] == seq.to_be_bytes() {
                        stats.samples.push(sent.elapsed());
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    stats.lost += 1;
                    break;
                }
                Err(e) => return Err(LabError::io("receive ICMP echo reply", e)),
            }
            if Instant::now() >= deadline {
                stats.lost += 1;
                break;
            }
        }
        std::thread::sleep(interval);
    }
    Ok(stats)
}
