//! What can go wrong with a request, one variant per kind of failure.

use std::time::Duration;

use multipath::tls::TlsFailure;
use multipath::MultipathStatus;

/// A failed request. Each kind of failure is its own variant, so a program
/// (or `mptcp get`'s exit code) can tell a typo from an outage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL does not parse or lacks a scheme or host.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header name or value that HTTP does not allow.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A scheme other than `http` and `https`.
    #[error("unsupported scheme {0:?}: only http and https")]
    UnsupportedScheme(String),
    /// The host name does not resolve.
    #[error("cannot resolve {host:?}: {reason}")]
    Dns {
        /// The host.
        host: String,
        /// The resolver's words.
        reason: String,
    },
    /// No connection: refused, unreachable, or timed out connecting.
    #[error("{0}")]
    Connect(String),
    /// TLS failed.
    #[error("TLS: {reason}")]
    Tls {
        /// Certificate, handshake or configuration.
        failure: TlsFailure,
        /// What went wrong.
        reason: String,
    },
    /// Multipath was required and the connection is not multipath.
    #[error("multipath required but unavailable: {0}")]
    MultipathUnavailable(Box<MultipathStatus>),
    /// The request did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server broke HTTP: garbage instead of a response, oversized
    /// headers, a connection closed mid-body, a refused stream.
    #[error("HTTP protocol error: {0}")]
    Protocol(String),
    /// A body beyond a configured limit: a compressed body that decodes
    /// to more than the session allows, in size or in ratio.
    #[error("body too large: {0}")]
    TooLarge(String),
    /// Redirects beyond the configured limit.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// The request body could not be read (a stream that failed).
    #[error("request body: {0}")]
    Body(String),
    /// A local I/O error (writing the output, for example).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<multipath::Error> for HttpError {
    fn from(e: multipath::Error) -> Self {
        use multipath::Error as E;
        match e {
            E::Resolve { host, source } => HttpError::Dns { host, reason: source.to_string() },
            E::NoAddresses { host, .. } => HttpError::Dns { host, reason: "no usable address".into() },
            E::MultipathUnavailable { status } => HttpError::MultipathUnavailable(status),
            E::Tls { failure, reason, endpoint } => {
                let reason = if endpoint.is_empty() { reason } else { format!("{endpoint}: {reason}") };
                HttpError::Tls { failure, reason }
            }
            E::InvalidEndpoint { input, reason } => HttpError::InvalidUrl { url: input, reason },
            E::Timeout { after, .. } => HttpError::Timeout(after),
            e @ E::Connect { .. } => HttpError::Connect(e.to_string()),
            other => HttpError::Connect(format!("cannot connect: {other}")),
        }
    }
}

impl HttpError {
    /// Sorts an error from hyper or hyper-util: the connector's own error
    /// when it is in the chain, else by what hyper says.
    pub(crate) fn from_client(e: hyper_util::client::legacy::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<HttpError>() {
                // Rebuild: the connector's error is behind a shared reference.
                return HttpError::reclassify(s.downcast_ref::<HttpError>().expect("checked"));
            }
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                return HttpError::from_hyper(h);
            }
            source = s.source();
        }
        if e.is_connect() {
            HttpError::Connect(format!("cannot connect: {e}"))
        } else {
            HttpError::Protocol(e.to_string())
        }
    }

    /// Whether `e` is a connection the server had closed, found out only
    /// when the request went out on it (a reused keep-alive connection):
    /// a fresh connection may well succeed.
    pub(crate) fn is_stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
        if e.is_connect() {
            return false;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                if h.is_canceled() || h.is_incomplete_message() {
                    return true;
                }
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof);
            }
            source = s.source();
        }
        false
    }

    pub(crate) fn from_hyper(e: &hyper::Error) -> Self {
        let mut text = e.to_string();
        if let Some(cause) = std::error::Error::source(e) {
            text = format!("{text}: {cause}");
        }
        HttpError::Protocol(text)
    }

    fn reclassify(e: &HttpError) -> HttpError {
        match e {
            HttpError::InvalidUrl { url, reason } => HttpError::InvalidUrl { url: url.clone(), reason },
            HttpError::UnsupportedScheme(s) => HttpError::UnsupportedScheme(s.clone()),
            HttpError::Dns { host, reason } => HttpError::Dns { host: host.clone(), reason: reason.clone() },
            HttpError::Tls { failure, reason } => HttpError::Tls { failure: *failure, reason: reason.clone() },
            HttpError::MultipathUnavailable(s) => HttpError::MultipathUnavailable(s.clone()),
            HttpError::Timeout(d) => HttpError::Timeout(*d),
            HttpError::Connect(s) => HttpError::Connect(s.clone()),
            other => HttpError::Connect(format!("cannot connect: {other}")),
        }
    }
}
