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
//! A buffer the application sets stops the kernel's autotuning, and with it
//! set from the start a 100 KB download took one round trip more (121 ms
//! against 110; 1 MB unchanged). So the buffer grows only once the
//! connection has written [`GROW_AFTER`]: a short transfer is done by then.
//! It is `net.ipv4.tcp_wmem`'s maximum (what autotuning may give one
//! subflow; the kernel allows an MPTCP connection that per subflow), doubled
//! by the kernel, within `net.core.wmem_max`; never smaller than the buffer
//! already has.

use std::io;
use std::os::fd::BorrowedFd;

use socket2::SockRef;

use crate::socket::{self, Opened, SocketMeta};
use crate::ServiceType;

/// Bytes an aggregate connection writes before its send buffer grows.
pub(crate) const GROW_AFTER: u64 = 256 * 1024;

/// One connection's send-buffer growth: counts what it writes, grows the
/// buffer once.
#[derive(Clone, Debug)]
pub(crate) struct SendBuffer {
    /// Bytes left before growing; `None`: nothing to do (not aggregate, not
    /// MPTCP, or done).
    left: Option<u64>,
}

impl SendBuffer {
    /// Growth for a connection opened as `meta` says.
    pub(crate) fn new(meta: &SocketMeta) -> SendBuffer {
        let grows = meta.requested == ServiceType::Aggregate && meta.opened == Opened::Mptcp;
        SendBuffer { left: grows.then_some(GROW_AFTER) }
    }

    /// The connection wrote `n` bytes.
    pub(crate) fn wrote(&mut self, fd: BorrowedFd<'_>, n: usize) {
        let Some(left) = self.left else { return };
        let left = left.saturating_sub(n as u64);
        if left > 0 {
            self.left = Some(left);
            return;
        }
        self.left = None;
        if let Err(e) = grow(fd) {
            tracing::debug!(error = %e, "could not grow an aggregate connection's send buffer");
        }
    }
}

/// Grows the send buffer of a connection still speaking MPTCP (one that
/// fell back to TCP has one path and autotuning suits it).
fn grow(fd: BorrowedFd<'_>) -> io::Result<()> {
    if !socket::is_mptcp(fd)? {
        return Ok(());
    }
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
    fn a_buffer_is_never_made_smaller() {
        // The common default wmem_max (208 KiB): doubled, still below what
        // autotuning reached.
        assert_eq!(request(2_900_000, 4 << 20, 212_992), None);
        assert_eq!(request(8 << 20, 4 << 20, 4 << 20), None);
    }
}
