//! HTTP over multipath connections: the guide's first promise, "create a
//! session with a multipath service type, and every request from it uses
//! MPTCP if the server supports it".
//!
//! - [`Session`]: URLSession for Rust. HTTP/1.1 and HTTP/2 (by ALPN),
//!   connection reuse, redirects, timeouts, streaming bodies; every
//!   [`Response`] carries [`TransactionMetrics`] (multipath or not, why,
//!   service type asked for and enforced, subflows).
//! - [`MptcpConnector`]: the connector underneath, a `tower::Service<Uri>`
//!   any hyper-util client can use.
//! - [`server::CheckServer`]: a check.mptcp.dev-compatible server.
//!
//! # Layout
//! - `content`: the test files' sizes, bytes and hashes (no I/O).
//! - `connector`: URI to multipath connection, plain or TLS.
//! - `session`: requests, redirects, timeouts, metrics.
//! - `server`: the check endpoint and the test files.
//! - `error`: one variant per kind of failure.
#![warn(missing_docs)]

mod connector;
pub mod content;
mod error;
pub mod server;
mod session;

pub use connector::{ConnectionInfo, MptcpConnector, MptcpStream};
pub use error::{Cause, HttpError};
pub use session::{
    DecodeLimits, HttpVersion, RequestBody, RequestBuilder, Response, Session, SessionConfig, TransactionMetrics,
};
