//! Aggregate's send buffer: large enough for the slowest path, once the
//! connection is a bulk transfer.
//!
//! The kernel sizes an MPTCP connection's send buffer as the sum of its
//! subflows' buffers, each autotuned to its own window. Data stays in it
//! until the peer acknowledges it at the connection level, which waits for
//! the slowest path: every path's data sent over the slowest path's round
//! trip. When the paths' RTTs differ, the sum is too small and the sender
//! stalls on a full buffer. Measured in the lab (wifi 20 Mbit/s 20 ms, cell
//! 20 Mbit/s 200 ms, cubic sender, `ss -M` on the server): the buffer full
//! at 2.4-2.9 MB, 0.80-0.85 of the paths' sum; with 8 MB, 0.98-1.00, for
//! the kernel's path manager and ours alike.
//!
//! A buffer the application sets stops the kernel's autotuning and has the
//! rest of what the application writes queued at once, spread over the
//! paths: set from the start, a 100 KB download took one round trip more
//! (121 ms against 110); set after 256 KB, a 1 MB download beside a 60 ms
//! path took 1.02 of the 20 ms path alone instead of 0.90. So the buffer
//! grows only once the connection has written [`GROW_AFTER`]: short
//! transfers are done on autotuning.
//!
//! And only while at least two paths carry data, each with a real share of
//! the rate their windows allow ([`SHARE_FLOOR`]): a large
//! buffer beside a path carrying a sliver lets the scheduler park data on
//! it. 50 Mbit/s 10 ms beside 1 Mbit/s 300 ms under the kernel's path
//! manager, grown from the start: 1.00 of the fast path alone in four runs
//! and 0.03 in the fifth; autotuned, 0.58. A path that small is the
//! contribution guard's to back off, not the buffer's to cover.
//! It is `net.ipv4.tcp_wmem`'s maximum (what autotuning may give one
//! subflow; the kernel allows an MPTCP connection that per subflow), doubled
//! by the kernel, within `net.core.wmem_max`; never smaller than the buffer
//! already has.

use std::io;
use std::os::fd::BorrowedFd;

use socket2::SockRef;

use crate::socket::{self, Opened, SocketMeta};
use crate::{sys, ServiceType};

/// Bytes an aggregate connection writes before its send buffer may grow,
/// and between two looks at how its paths share the data.
pub(crate) const GROW_AFTER: u64 = 2 << 20;
/// Each path carrying data must have at least this share of the rate the
/// paths' windows allow. A lossy 3 Mbit/s, 200 ms path beside 20 Mbit/s
/// reached 10% at times, and data parked on it in a grown buffer held the
/// connection at 0.75 of the fast path alone for seconds after it was made
/// backup (lab test `a_lossy_slow_cell_is_backed_off_and_returns_when_it_recovers`).
const SHARE_FLOOR: f64 = 0.25;
/// A path carrying less than this share is not carrying data (a backup
/// subflow's odd retransmission).
const NEGLIGIBLE: f64 = 0.01;

/// One connection's send-buffer growth: counts what it writes, and every
/// [`GROW_AFTER`] looks at its paths until it grows the buffer.
#[derive(Clone, Debug)]
pub(crate) struct SendBuffer {
    /// Bytes left before the next look; `None`: nothing to do (not
    /// aggregate, not MPTCP, or done).
    left: Option<u64>,
    /// Each subflow's bytes acknowledged at the last look, by subflow id.
    acked: Vec<(u32, u64)>,
    /// Each subflow's highest window rate seen at a look, bytes/s: once a
    /// slow path stalls the others, their windows' rates fall too.
    rates: Vec<(u32, f64)>,
}

impl SendBuffer {
    /// Growth for a connection opened as `meta` says.
    pub(crate) fn new(meta: &SocketMeta) -> SendBuffer {
        let grows = meta.requested == ServiceType::Aggregate && meta.opened == Opened::Mptcp;
        SendBuffer { left: grows.then_some(GROW_AFTER), acked: Vec::new(), rates: Vec::new() }
    }

    /// The connection wrote `n` bytes.
    pub(crate) fn wrote(&mut self, fd: BorrowedFd<'_>, n: usize) {
        let Some(left) = self.left else { return };
        let left = left.saturating_sub(n as u64);
        if left > 0 {
            self.left = Some(left);
            return;
        }
        self.left = match self.look(fd) {
            Ok(false) => Some(GROW_AFTER),
            Ok(true) => None,
            Err(e) => {
                tracing::debug!(error = %e, "could not grow an aggregate connection's send buffer");
                None
            }
        };
    }

    /// Grows the buffer if the paths share the data; whether it is done.
    /// A connection that fell back to TCP has one path and autotuning
    /// suits it.
    fn look(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        if !socket::is_mptcp(fd)? {
            return Ok(true);
        }
        let subflows = sys::full_info(fd)?.subflows;
        let now: Vec<(u32, u64)> = subflows.iter().map(|s| (s.id, s.tcp.bytes_acked.unwrap_or(0))).collect();
        for s in &subflows {
            let rate = window_rate(&s.tcp);
            match self.rates.iter_mut().find(|(id, _)| *id == s.id) {
                Some((_, best)) => *best = best.max(rate),
                None => self.rates.push((s.id, rate)),
            }
        }
        let spread = shared(&self.acked, &now, &self.rates);
        self.acked = now;
        if spread {
            grow(fd)?;
        }
        Ok(spread)
    }
}

/// What a subflow's window lets it send, bytes/s: congestion window over
/// smoothed RTT.
fn window_rate(tcp: &crate::TcpInfo) -> f64 {
    f64::from(tcp.snd_cwnd) * f64::from(tcp.snd_mss) / (f64::from(tcp.rtt_us.max(1)) / 1e6)
}

/// Whether at least two subflows carried data since `before` (bytes
/// acknowledged, by subflow id), and each of them has at least
/// [`SHARE_FLOOR`] of their windows' rates (`rates`, the highest seen).
/// Windows, not bytes: a slow path's stalls hold the fast one back, and its
/// share of the bytes rises with the harm (1 Mbit/s, 300 ms beside
/// 50 Mbit/s, kernel path manager: 10%).
fn shared(before: &[(u32, u64)], now: &[(u32, u64)], rates: &[(u32, f64)]) -> bool {
    let carried: Vec<(u32, u64)> = now
        .iter()
        .map(|(id, acked)| (*id, acked.saturating_sub(before.iter().find(|(b, _)| b == id).map_or(0, |(_, a)| *a))))
        .collect();
    let total: u64 = carried.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return false;
    }
    let carrying: Vec<f64> = carried
        .iter()
        .filter(|(_, c)| *c as f64 / total as f64 >= NEGLIGIBLE)
        .map(|(id, _)| rates.iter().find(|(r, _)| r == id).map_or(0.0, |(_, rate)| *rate))
        .collect();
    let sum: f64 = carrying.iter().sum();
    carrying.len() >= 2 && sum > 0.0 && carrying.iter().all(|&r| r / sum >= SHARE_FLOOR)
}

/// Grows the send buffer as far as the host allows, never shrinking it.
fn grow(fd: BorrowedFd<'_>) -> io::Result<()> {
    let sock = SockRef::from(&fd);
    let current = sock.send_buffer_size()?;
    let autotune_max = sysctl_field("/proc/sys/net/ipv4/tcp_wmem", 2)?;
    let wmem_max = sysctl_field("/proc/sys/net/core/wmem_max", 0)?;
    match request(current, autotune_max, wmem_max) {
        Some(bytes) => sock.set_send_buffer_size(bytes),
        None => {
            tracing::debug!(current, wmem_max, "net.core.wmem_max keeps the aggregate send buffer autotuned");
            Ok(())
        }
    }
}

/// What to ask `SO_SNDBUF` for, if anything: the kernel doubles the request
/// and caps it at `wmem_max`; `None` where that would not exceed the
/// buffer's `current` size (autotuning then keeps going).
fn request(current: usize, autotune_max: usize, wmem_max: usize) -> Option<usize> {
    let asked = autotune_max.min(wmem_max);
    (asked.saturating_mul(2) > current).then_some(asked)
}

/// Field `index` (whitespace-separated) of a sysctl file.
fn sysctl_field(path: &str, index: usize) -> io::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    text.split_whitespace()
        .nth(index)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_grows_to_the_autotuning_maximum_within_wmem_max() {
        // This host's settings: tcp_wmem max 4 MB, wmem_max 4 MB.
        assert_eq!(request(2_900_000, 4 << 20, 4 << 20), Some(4 << 20));
        // A tighter wmem_max caps the request.
        assert_eq!(request(1_000_000, 4 << 20, 1 << 20), Some(1 << 20));
    }

    #[test]
    fn it_grows_only_while_two_paths_carry_data_at_a_real_share_of_the_rate() {
        let alike = [(1, 2.5e6), (2, 2.3e6)];
        // 20/20 Mbit/s, 20/200 ms: both carry, windows alike.
        assert!(shared(&[], &[(1, 1_100_000), (2, 900_000)], &[(1, 2.5e6), (2, 1.2e6)]));
        assert!(shared(&[], &[(1, 1_100_000), (2, 900_000)], &alike));
        // Since the last look: the cell joined late, then carried 40%.
        assert!(shared(&[(1, 2_000_000)], &[(1, 3_200_000), (2, 800_000)], &alike));
        // 50/1 Mbit/s: the cell carried 10% of the bytes while stalling
        // wifi, but its window is 2% of the rate.
        assert!(!shared(&[], &[(1, 1_800_000), (2, 200_000)], &[(1, 6.2e6), (2, 0.13e6)]));
        // 20/3 Mbit/s, 200 ms, 1% loss: 10% of the windows' rate.
        assert!(!shared(&[], &[(1, 1_800_000), (2, 200_000)], &[(1, 2.5e6), (2, 0.28e6)]));
        // One path; a backup subflow's stray retransmission beside it.
        assert!(!shared(&[], &[(1, 2_000_000)], &alike));
        assert!(!shared(&[], &[(1, 2_000_000), (2, 3_000)], &alike));
        // A backup subflow's sliver does not stop two real paths.
        assert!(shared(&[], &[(1, 1_000_000), (2, 1_000_000), (3, 5_000)], &[(1, 2e6), (2, 2e6), (3, 1e3)]));
        // Nothing acknowledged since the last look.
        assert!(!shared(&[(1, 5)], &[(1, 5)], &alike));
    }

    #[test]
    fn a_buffer_is_never_made_smaller() {
        // The common default wmem_max (208 KiB): doubled, still below what
        // autotuning reached.
        assert_eq!(request(2_900_000, 4 << 20, 212_992), None);
        assert_eq!(request(8 << 20, 4 << 20, 4 << 20), None);
    }
}
