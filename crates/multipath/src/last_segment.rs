//! An MPTCP connection's last partial segment, sent when the application
//! is done writing rather than a round trip later.
//!
//! Plain TCP sends a final segment shorter than the MSS as soon as the
//! application closes or shuts down writing: Nagle's rule is lifted for
//! the FIN. The kernel's MPTCP (6.18 here) does not lift it on the
//! subflow: the tail waits until everything before it is acknowledged.
//! Measured in the lab (20 Mbit/s, 20 ms; cubic server; send, then close;
//! medians of 10, tcpdump on the server):
//!
//! | 95 000 B / 100 000 B       | ms            |
//! |----------------------------|---------------|
//! | TCP                        | 102.4 / 105.0 |
//! | MPTCP                      | 110.3 / 109.8 |
//! | MPTCP, `shutdown(SHUT_WR)` | 110.1 / 110.7 |
//! | MPTCP, TCP_NODELAY at close| 103.1 / 104.7 |
//!
//! The trace showed the DATA_FIN sent at 67 ms and the last 668 bytes
//! held until the ACK of everything before them, at 91 ms. So the last
//! handle of an MPTCP connection sets TCP_NODELAY as it closes, and so
//! does a shutdown of the write side: nothing is written after either for
//! Nagle to coalesce.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use socket2::SockRef;

use crate::socket::{Opened, SocketMeta};

/// Owned by each handle of a connection, declared before its stream so
/// that it drops while the descriptor is still open.
#[derive(Debug)]
pub(crate) struct PushOnClose {
    /// The handle's descriptor; `None` for sockets that are not MPTCP.
    fd: Option<RawFd>,
    /// Shared by a connection's handles (`try_clone`): the last one to go
    /// pushes.
    handles: Option<Arc<()>>,
}

impl PushOnClose {
    /// For a connection whose handle is `fd`, opened as `meta` says.
    pub(crate) fn new(fd: BorrowedFd<'_>, meta: &SocketMeta) -> PushOnClose {
        use std::os::fd::AsRawFd;
        let fd = (meta.opened == Opened::Mptcp).then(|| fd.as_raw_fd());
        PushOnClose { fd, handles: Some(Arc::new(())) }
    }

    /// For a second handle of the same connection, `fd` (a `dup`).
    pub(crate) fn for_clone(&self, fd: BorrowedFd<'_>) -> PushOnClose {
        use std::os::fd::AsRawFd;
        PushOnClose { fd: self.fd.map(|_| fd.as_raw_fd()), handles: self.handles.clone() }
    }

    /// The write side is being shut down: send what is queued now.
    pub(crate) fn shutting_down(&self) {
        if let Some(fd) = self.fd {
            push(fd);
        }
    }
}

impl Drop for PushOnClose {
    fn drop(&mut self) {
        // `into_inner` is `Some` for exactly one handle, even when two
        // drop at once on different threads.
        let last = self.handles.take().and_then(Arc::into_inner).is_some();
        if let (Some(fd), true) = (self.fd, last) {
            push(fd);
        }
    }
}

fn push(fd: RawFd) {
    // SAFETY: the owner declares this guard before its stream, so the
    // descriptor is open for as long as the guard lives.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // Best effort: a socket already reset refuses it, and then there is
    // nothing left to push.
    if let Err(e) = SockRef::from(&fd).set_tcp_nodelay(true) {
        tracing::trace!(error = %e, "could not set TCP_NODELAY at close");
    }
}
