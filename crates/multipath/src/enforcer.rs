//! The hook through which a path manager takes over connections, so that a
//! connection opened with [`Parameters::path_manager`](crate::Parameters::path_manager)
//! has its service type enforced from the moment it is established.

use std::fmt::Debug;
use std::os::fd::BorrowedFd;

use crate::{PathManager, ServiceType};

/// A path manager that enforces service types (the in-process manager of
/// `multipath-pm`, or a client of its daemon).
pub trait Enforcer: Send + Sync + Debug {
    /// Starts enforcing `service` on the MPTCP connection behind `socket`.
    /// The socket is connected and speaks MPTCP with its peer.
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), String>;

    /// What [`MultipathStatus::path_manager`](crate::MultipathStatus::path_manager)
    /// reports for the connections it manages.
    fn kind(&self) -> PathManager;
}
