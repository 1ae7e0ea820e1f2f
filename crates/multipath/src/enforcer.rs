//! The hook through which a path manager takes over connections, so that a
//! connection opened with [`Parameters::path_manager`](crate::Parameters::path_manager)
//! has its service type enforced from the moment it is established.

use std::fmt::Debug;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use crate::{PathManager, ServiceType};

/// A path manager that enforces service types (the in-process manager of
/// `multipath-pm`, or a client of its daemon).
pub trait Enforcer: Send + Sync + Debug {
    /// Starts enforcing `service` on the MPTCP connection behind `socket`.
    /// The socket is connected and speaks MPTCP with its peer.
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), EnforceError>;

    /// What [`MultipathStatus::path_manager`](crate::MultipathStatus::path_manager)
    /// reports for the connections it manages.
    fn kind(&self) -> PathManager;

    /// Where a new `service` connection to `remote` should start, asked
    /// before it connects. The library asks only for aggregate and
    /// interactive connections whose caller chose neither a local address
    /// nor a device. The default leaves it to the routing table.
    fn first_path(&self, remote: IpAddr, service: ServiceType) -> FirstPath {
        let _ = (remote, service);
        FirstPath::Routed
    }
}

/// Where a connection's first subflow starts: which path carries the
/// handshake and everything sent before the path manager adds the others.
/// A short transfer is over before the others help, so it matters most.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirstPath {
    /// The routing table's choice (the default route).
    Routed,
    /// From these local addresses in turn, the path the manager knows to
    /// be fastest first: each has 250 ms to itself before the next starts
    /// beside it (a path may have failed since it was measured).
    Ordered(Vec<IpAddr>),
    /// From each of these local addresses at once, keeping the first
    /// handshake to complete: nothing is known of the paths yet (happy
    /// eyeballs across paths).
    ///
    /// Either way, the routing table's choice gets a last turn.
    Race(Vec<IpAddr>),
}

/// Why a path manager did not take a connection. Either way the kernel's
/// path manager keeps it, and its status says "not enforced".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnforceError {
    /// The path manager declined this connection: an entitlement it lacks,
    /// a limit reached, addresses it cannot serve.
    #[error("the path manager refused: {reason}")]
    Refused {
        /// Its reason, in its words.
        reason: String,
    },
    /// The path manager could not be asked, or failed while taking it.
    #[error("the path manager failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl EnforceError {
    /// A refusal for `reason`.
    pub fn refused(reason: impl Into<String>) -> Self {
        EnforceError::Refused { reason: reason.into() }
    }

    /// A failure caused by `source`.
    pub fn failed(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        EnforceError::Failed(source.into())
    }
}
