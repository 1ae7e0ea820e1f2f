//! The crate's error type.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::info::DecodeError;
use crate::MultipathStatus;

/// Everything that can go wrong opening or inspecting a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint text is not `host:port`, `ip:port` or `[ipv6]:port`.
    #[error("invalid endpoint {input:?}: {reason}")]
    InvalidEndpoint {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Name resolution failed.
    #[error("cannot resolve {host:?}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The name resolved to no usable address.
    #[error("{host:?} has no address{}", if *.family_filtered { " of the local address's family" } else { "" })]
    NoAddresses {
        /// The host name.
        host: String,
        /// Addresses existed but none matched the bound local address.
        family_filtered: bool,
    },
    /// Every address was tried and refused or unreachable.
    #[error("cannot connect to {endpoint}: {}", format_attempts(.endpoint, .attempts))]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// Each address tried and why it failed.
        attempts: Vec<(SocketAddr, io::Error)>,
    },
    /// The connect timeout expired.
    #[error("connecting to {endpoint} timed out after {after:?}{}", earlier_failures(.attempts))]
    Timeout {
        /// The endpoint as given.
        endpoint: String,
        /// The timeout.
        after: Duration,
        /// Addresses that failed before the timeout, and why.
        attempts: Vec<(SocketAddr, io::Error)>,
    },
    /// Strict mode was asked for and the connection is not multipath.
    #[error("multipath required but unavailable: {status}")]
    MultipathUnavailable {
        /// What the connection is instead (or would have been).
        status: Box<MultipathStatus>,
    },
    /// TLS failed (feature `tls`): its options, the server's certificate,
    /// or the handshake.
    #[cfg(feature = "tls")]
    #[error("TLS{}: {reason}", if endpoint.is_empty() { String::new() } else { format!(" with {endpoint}") })]
    Tls {
        /// The endpoint, empty for a configuration error found before
        /// connecting.
        endpoint: String,
        /// Which kind of failure.
        failure: crate::tls::TlsFailure,
        /// What went wrong, in rustls's words.
        reason: String,
    },
    /// A socket could not be created or configured.
    #[error("{what}: {source}")]
    Socket {
        /// The step that failed, e.g. "setsockopt TCP_CONGESTION".
        what: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// MPTCP telemetry was asked of a connection that is not MPTCP.
    #[error("not an MPTCP connection ({0})")]
    NotMultipath(crate::Transport),
    /// The kernel returned a struct this crate cannot read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn earlier_failures(attempts: &[(SocketAddr, io::Error)]) -> String {
    if attempts.is_empty() {
        return String::new();
    }
    format!(" (before that: {})", format_attempts("", attempts))
}

/// Each address with its error; the address left out when it is the
/// endpoint itself, already named.
fn format_attempts(endpoint: &str, attempts: &[(SocketAddr, io::Error)]) -> String {
    match attempts {
        [] => return "no address tried".into(),
        [(a, e)] if a.to_string() == endpoint => return e.to_string(),
        _ => {}
    }
    let parts: Vec<String> = attempts.iter().map(|(a, e)| format!("{a}: {e}")).collect();
    parts.join("; ")
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn socket(what: impl Into<String>, source: io::Error) -> Self {
        Error::Socket { what: what.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address that is the endpoint itself is named once.
    #[test]
    fn a_refused_address_is_named_once() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = Error::Connect {
            endpoint: "127.0.0.1:1".into(),
            attempts: vec![("127.0.0.1:1".parse().unwrap(), refused())],
        };
        assert_eq!(e.to_string(), format!("cannot connect to 127.0.0.1:1: {}", refused()));
        let e = Error::Connect {
            endpoint: "localhost:1".into(),
            attempts: vec![("127.0.0.1:1".parse().unwrap(), refused()), ("[::1]:1".parse().unwrap(), refused())],
        };
        assert_eq!(e.to_string(), format!("cannot connect to localhost:1: 127.0.0.1:1: {0}; [::1]:1: {0}", refused()));
    }
}
