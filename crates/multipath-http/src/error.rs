//! What can go wrong with a request, one variant per kind of failure.

use std::time::Duration;

use multipath::tls::TlsFailure;
use multipath::MultipathStatus;

/// The cause an [`HttpError`] keeps: shared, so an error seen through a
/// reference can be rebuilt with it. `HttpError::source()` gives the cause
/// itself (this dereferences to it), ready to downcast.
#[derive(Clone, Debug)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub(crate) fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(std::sync::Arc::new(cause))
    }
}

/// Not an error itself (an `Arc` of one would hide the cause's type from
/// `source()`): it dereferences to the cause.
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

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
    #[error("{message}")]
    Connect {
        /// What happened, its cause included.
        message: String,
        /// The cause, for programs that inspect it (a [`multipath::Error`],
        /// an I/O error, hyper's).
        #[source]
        source: Option<Cause>,
    },
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
    #[error("HTTP protocol error: {message}")]
    Protocol {
        /// What happened, its cause included.
        message: String,
        /// The cause, for programs that inspect it.
        #[source]
        source: Option<Cause>,
    },
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
            e @ E::Connect { .. } => HttpError::connect(e.to_string(), Some(Cause::new(e))),
            other => HttpError::connect(format!("cannot connect: {other}"), Some(Cause::new(other))),
        }
    }
}

/// hyper's words and its cause's.
fn hyper_text(e: &hyper::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl HttpError {
    /// Sorts an error from hyper or hyper-util: the connector's own error
    /// when it is in the chain, else by what hyper says.
    pub(crate) fn from_client(e: hyper_util::client::legacy::Error) -> Self {
        let mut hyper_says = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<HttpError>() {
                // Rebuild: the connector's error is behind a shared reference.
                return HttpError::reclassify(s.downcast_ref::<HttpError>().expect("checked"));
            }
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                hyper_says = Some(hyper_text(h));
                break;
            }
            source = s.source();
        }
        let connect = e.is_connect();
        let message = match hyper_says {
            Some(text) => text,
            None if connect => format!("cannot connect: {e}"),
            None => e.to_string(),
        };
        // The whole chain stays reachable through `source()`.
        let source = Cause::new(e);
        if connect {
            HttpError::connect(message, Some(source))
        } else {
            HttpError::protocol(message, Some(source))
        }
    }

    /// A connection failure, with its cause.
    pub(crate) fn connect(message: String, source: Option<Cause>) -> Self {
        HttpError::Connect { message, source }
    }

    /// A broken exchange, with its cause.
    pub(crate) fn protocol(message: String, source: Option<Cause>) -> Self {
        HttpError::Protocol { message, source }
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

    pub(crate) fn from_hyper(e: hyper::Error) -> Self {
        let text = hyper_text(&e);
        HttpError::protocol(text, Some(Cause::new(e)))
    }

    fn reclassify(e: &HttpError) -> HttpError {
        match e {
            HttpError::InvalidUrl { url, reason } => HttpError::InvalidUrl { url: url.clone(), reason },
            HttpError::UnsupportedScheme(s) => HttpError::UnsupportedScheme(s.clone()),
            HttpError::Dns { host, reason } => HttpError::Dns { host: host.clone(), reason: reason.clone() },
            HttpError::Tls { failure, reason } => HttpError::Tls { failure: *failure, reason: reason.clone() },
            HttpError::MultipathUnavailable(s) => HttpError::MultipathUnavailable(s.clone()),
            HttpError::Timeout(d) => HttpError::Timeout(*d),
            HttpError::Connect { message, source } => HttpError::connect(message.clone(), source.clone()),
            other => HttpError::connect(format!("cannot connect: {other}"), None),
        }
    }
}
