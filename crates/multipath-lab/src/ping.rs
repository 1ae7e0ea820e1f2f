//! Round-trip time by ICMP echo, without the ping program.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use multipath::icmp::EchoSocket;

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
/// each waiting up to 1 s for its reply. A datagram socket where the
/// namespace's `ping_group_range` allows one, a raw socket otherwise (the
/// lab runs as root): the lab leaves the kernel's default range alone.
pub(crate) fn ping(from: IpAddr, to: IpAddr, count: usize, interval: Duration) -> Result<PingStats> {
    let sock = EchoSocket::open(from).map_err(|e| LabError::io("ICMP socket", e))?;
    let mut stats = PingStats { samples: Vec::with_capacity(count), lost: 0 };
    for seq in 0..count as u16 {
        let sent = Instant::now();
        sock.send(to, seq, &[0u8; 56]).map_err(|e| LabError::io("send ICMP echo", e))?;
        let deadline = sent + Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sock.recv_reply(Some(left)).map_err(|e| LabError::io("receive ICMP echo reply", e))? {
                Some(got) if got == seq => {
                    stats.samples.push(sent.elapsed());
                    break;
                }
                Some(_) => continue, // a late reply to an earlier request
                None => {
                    stats.lost += 1;
                    break;
                }
            }
        }
        std::thread::sleep(interval);
    }
    Ok(stats)
}

/// One echo from `from` to `to`: its round-trip time, or `None` when no
/// reply came within `wait` (a path that loses packets may lose this one).
pub(crate) fn ping_once(from: IpAddr, to: IpAddr, wait: Duration) -> Result<Option<Duration>> {
    let sock = EchoSocket::open(from).map_err(|e| LabError::io("ICMP socket", e))?;
    let sent = Instant::now();
    sock.send(to, 0, &[0u8; 56]).map_err(|e| LabError::io("send ICMP echo", e))?;
    let reply = sock.recv_reply(Some(wait)).map_err(|e| LabError::io("receive ICMP echo reply", e))?;
    Ok(reply.map(|_| sent.elapsed()))
}
