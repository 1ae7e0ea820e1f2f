//! The `multipath` path manager: it enforces a connection's service type
//! through the kernel's userspace path manager (generic netlink `mptcp_pm`).
//!
//! This first part is the netlink driver: [`netlink::codec`] (framing,
//! attributes, errors with extended-ack text), [`netlink::mptcp_pm`]
//! (typed commands and events) and [`netlink::socket`] (a command socket
//! and an event socket). The per-service-type policies come next.
#![warn(missing_docs)]

pub mod daemon;
mod echo;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod manager;
pub mod netlink;
pub mod policy;
mod state;
mod unix;

pub use daemon::{Daemon, DaemonConfig};
pub use error::PmError;
pub use manager::{Manager, ManagerOptions, SentCommand, Tables};
pub use netlink::mptcp_pm::{Command, ConnectionEvent, Event, LocalAddr, SubflowEvent};
pub use netlink::socket::{EventSocket, PmSocket, RouteSnapshot, RouteWatcher, SocketKiller};
pub use state::NamespaceState;
