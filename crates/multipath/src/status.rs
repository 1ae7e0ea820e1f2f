//! What a connection really is: multipath or not, and why.

use std::fmt;

use serde::Serialize;

use crate::ServiceType;

/// The transport a connection actually runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transport {
    /// MPTCP, established with the peer.
    Multipath,
    /// Asked for MPTCP, but the peer (or a middlebox) does not speak it:
    /// plain TCP on one path.
    FellBackToTcp,
    /// Plain TCP because the service type is `none`.
    TcpByRequest,
    /// Plain TCP because this host cannot open MPTCP sockets.
    TcpMptcpUnavailable {
        /// Why: the kernel's answer to the MPTCP `socket()` call.
        reason: String,
    },
}

/// Who decides which subflows a connection has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathManager {
    /// None: the connection is plain TCP.
    None,
    /// The kernel's in-kernel path manager (`net.mptcp.pm_type = 0`): one
    /// system-wide endpoint list, blind to service types.
    Kernel,
    /// The namespace runs the userspace path manager (`pm_type = 1`) but no
    /// `multipath` path manager has taken this connection.
    UserspaceUnmanaged,
    /// A `multipath` path manager running inside this program.
    InProcess,
    /// The `mptcp pmd` daemon.
    Daemon,
}

/// Whether a connection is multipath, which service type was asked for and
/// whether anything enforces it: the answer to Apple's
/// `URLSessionTaskTransactionMetrics.isMultipath`, with the reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MultipathStatus {
    /// The transport in use.
    pub transport: Transport,
    /// The service type the application asked for.
    pub requested: ServiceType,
    /// Who manages the subflows.
    pub path_manager: PathManager,
    /// Whether the requested service type's behaviour is enforced on this
    /// connection. Only a `multipath` path manager (in-process or daemon)
    /// enforces it; trivially true for `none` on plain TCP.
    pub enforced: bool,
}

impl MultipathStatus {
    /// Whether the connection runs MPTCP with its peer.
    pub fn is_multipath(&self) -> bool {
        self.transport == Transport::Multipath
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Multipath => f.write_str("multipath"),
            Transport::FellBackToTcp => {
                f.write_str("fell back to TCP (the peer, or a middlebox on the way, does not speak MPTCP)")
            }
            Transport::TcpByRequest => f.write_str("TCP by request (service type none)"),
            Transport::TcpMptcpUnavailable { reason } => write!(f, "TCP, MPTCP unavailable on this host: {reason}"),
        }
    }
}

impl fmt::Display for PathManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathManager::None => "none",
            PathManager::Kernel => "kernel",
            PathManager::UserspaceUnmanaged => "userspace (unmanaged)",
            PathManager::InProcess => "multipath (in-process)",
            PathManager::Daemon => "multipath (daemon)",
        })
    }
}

impl fmt::Display for MultipathStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; service type {} {}; path manager {}",
            self.transport,
            self.requested,
            if self.enforced { "enforced" } else { "not enforced" },
            self.path_manager
        )
    }
}
