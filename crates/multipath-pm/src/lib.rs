//! The `multipath` path manager: it enforces a connection's service type
//! through the kernel's userspace path manager (generic netlink `mptcp_pm`).
//!
//! - [`netlink`]: the driver: framing, attributes, errors with extended-ack
//!   text, typed `mptcp_pm` commands and events, rtnetlink, `sock_diag`.
//! - [`policy`]: the service types' decisions, sans I/O.
//! - [`manager`]: the in-process [`Manager`] that runs them against the kernel.
//! - [`daemon`]: the [`Daemon`] behind `mptcp pmd`.
//! - [`rules`]: per-program rules (first match wins), sans I/O; the daemon
//!   does not apply them yet.
#![warn(missing_docs)]

pub mod daemon;
mod echo;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod manager;
pub mod netlink;
pub mod owner;
pub mod policy;
pub mod rules;
mod state;
mod unix;

pub use daemon::{Daemon, DaemonConfig};
pub use error::PmError;
pub use manager::{
    Classifier, ManagedConnection, Manager, ManagerOptions, Recorded, Registrant, SentCommand, Source, Tables,
};
pub use netlink::mptcp_pm::{Command, ConnectionEvent, Event, LocalAddr, SubflowEvent};
pub use netlink::socket::{EventSocket, PmSocket, RouteSnapshot, RouteWatcher, SocketKiller};
pub use state::NamespaceState;
