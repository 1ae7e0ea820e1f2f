//! Messages to the program's standard error, each kind said once per
//! process: a program opening thousands of connections must not flood its
//! user's terminal.

use std::sync::atomic::{AtomicU32, Ordering};

/// Kinds of message, each said at most once.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Notice {
    /// `MULTIPATH_RUN_SERVICE` or `MULTIPATH_RUN_REGISTER` unreadable.
    BadSettings,
    /// The kernel refused MPTCP sockets (`net.mptcp.enabled = 0`?).
    NoMptcp,
    /// A refused option made a socket TCP.
    FellBack,
    /// A refused option on a socket already connected or listening.
    RefusedLate,
    /// No daemon answered.
    NoDaemon,
    /// The daemon refused a connection.
    Refused,
    /// The daemon failed otherwise (timeout, garbage).
    DaemonFailed,
}

static SAID: AtomicU32 = AtomicU32::new(0);

/// Writes `message` to standard error unless a message of this kind was
/// written before. Returns whether it was.
pub(crate) fn once(kind: Notice, message: impl FnOnce() -> String) -> bool {
    let bit = 1u32 << kind as u32;
    if SAID.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        return false;
    }
    let line = format!("multipath: {}: {}\n", program(), message());
    // Straight to the descriptor: no buffer of the program's (or ours) to
    // flush at exit, and errno left as the program's caller set it.
    let saved = crate::real::errno();
    // SAFETY: the buffer is valid for its length; a short or failed write
    // of a diagnostic is not worth retrying.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    crate::real::set_errno(saved);
    true
}

/// The program's name, as `ps` shows it.
fn program() -> String {
    std::fs::read_to_string("/proc/self/comm").map(|s| s.trim_end().to_owned()).unwrap_or_else(|_| "?".into())
}
