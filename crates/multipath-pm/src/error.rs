//! Errors of the path manager.

use std::io;

use crate::netlink::codec::DecodeError;

/// What can go wrong talking to the kernel's path manager.
#[derive(Debug, thiserror::Error)]
pub enum PmError {
    /// The kernel has no `mptcp_pm` family (no MPTCP, or too old).
    #[error("the kernel has no generic netlink family {0:?} (MPTCP missing or too old)")]
    NoFamily(String),
    /// The kernel refused a command.
    #[error("{command} refused: {} ({})", message.as_deref().unwrap_or("no detail"), io::Error::from_raw_os_error(*errno))]
    Refused {
        /// The command.
        command: &'static str,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack text.
        message: Option<String>,
    },
    /// The descriptor handed over is not a connected MPTCP connection.
    #[error("not a connected MPTCP connection: {0}")]
    NotManageable(String),
    /// Another daemon serves this network namespace.
    #[error("another path-manager daemon serves this network namespace ({address}{}); stop it first", pid.map(|p| format!(", pid {p}")).unwrap_or_default())]
    AlreadyRunning {
        /// Where it listens.
        address: String,
        /// Its pid, when it could be asked.
        pid: Option<i32>,
    },
    /// The socket path is taken by something that is not a dead socket.
    #[error("{} exists and is {what}: not replacing it (choose another --socket, or remove it yourself)", path.display())]
    SocketPathTaken {
        /// The path.
        path: std::path::PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// The user already has as many registered connections open as allowed.
    #[error("uid {uid} has {limit} registered connections open already (the daemon's max_per_uid)")]
    TooMany {
        /// The user.
        uid: u32,
        /// The limit.
        limit: usize,
    },
    /// A connection the path manager leaves to the kernel as it is.
    #[error("left to the kernel's handling: {0}")]
    Unservable(#[from] crate::policy::Unservable),
    /// The event socket overflowed: events were lost; resynchronise.
    #[error("path-manager events were lost (socket buffer overrun)")]
    EventsLost,
    /// The kernel sent something unparseable.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A socket error.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
}

impl PmError {
    /// The errno of a refused command.
    pub fn errno(&self) -> Option<i32> {
        match self {
            PmError::Refused { errno, .. } => Some(*errno),
            PmError::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}
