//! The netlink driver: codecs (no I/O) and the sockets that use them.

pub mod codec;
pub mod ctrl;
pub mod mptcp_pm;
pub mod route;
pub mod sock_diag;
pub mod socket;
