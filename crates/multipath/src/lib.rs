//! Apple's multipath service types for Linux MPTCP.
//!
//! Pick a [`ServiceType`] on [`Parameters`], open a [`Connection`], and the
//! connection uses MPTCP when this host and the peer support it, plain TCP
//! when they do not, and says which in [`Connection::multipath_status`]:
//!
//! ```no_run
//! use multipath::{Connection, Parameters, ServiceType};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn demo() -> multipath::Result<()> {
//! let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
//! let mut conn = Connection::connect("check.mptcp.dev:80", &params).await?;
//! conn.write_all(b"GET / HTTP/1.0\r\nHost: check.mptcp.dev\r\nUser-Agent: curl\r\n\r\n").await?;
//! let mut reply = String::new();
//! conn.read_to_string(&mut reply).await?;
//!
//! println!("{}", conn.multipath_status()); // multipath; service type handover ...
//! for sf in conn.subflows()? {
//!     println!("{} -> {} rtt {} us", sf.local, sf.remote, sf.tcp.rtt_us);
//! }
//! # Ok(()) }
//! ```
//!
//! What each service type means is on [`ServiceType`]. Without a path
//! manager the kernel's own decides the subflows, so a service type is
//! *requested* but not *enforced*; [`MultipathStatus::enforced`] says so.
//! Give [`Parameters::path_manager`] an [`Enforcer`] (the `multipath-pm`
//! crate's `Manager`) and the service type is enforced.
//!
//! Programs without tokio use [`blocking::Connection`]. Servers use
//! [`Listener`], which accepts MPTCP and plain-TCP clients alike.
//!
//! # Layout
//! - `service`, `params`, `status`: the vocabulary (no I/O).
//! - `info`: the kernel's telemetry structs, decoded from bytes (no I/O).
//! - `sys`: every raw system call, one small function each.
//! - `socket`: opening sockets per service type with TCP fallback, and
//!   reading their status and telemetry.
//! - `connection`, `blocking`: the tokio and std front ends.
//! - `tls` (feature `tls`): rustls over a [`Connection`], `TlsConnection`.
#![warn(missing_docs)]

pub mod blocking;
mod connection;
pub mod daemon_client;
mod endpoint;
mod enforcer;
mod error;
pub mod icmp;
mod info;
mod last_segment;
mod params;
pub mod raw;
mod send_buffer;
mod service;
mod socket;
mod status;
mod sys;
#[cfg(feature = "tls")]
pub mod tls;

pub use connection::{Connection, Listener, ReadHalf, Telemetry, WriteHalf};
pub use endpoint::{Endpoint, ToEndpoint};
pub use enforcer::{EnforceError, Enforcer, FirstPath};
pub use error::{Error, Result};
pub use info::{DecodeError, MptcpInfo, SubflowInfo, TcpInfo, TcpState};
pub use params::{Keepalive, Parameters, MAX_RECV_BUFFER};
pub use service::{ServiceType, UnknownServiceType};
pub use socket::socket_protocol;
pub use status::{MultipathStatus, PathManager, Transport};
#[cfg(feature = "tls")]
pub use tls::{TlsConnection, TlsOptions};

/// `IPPROTO_MPTCP`, the protocol number of MPTCP sockets.
pub const IPPROTO_MPTCP: i32 = sys::IPPROTO_MPTCP;
