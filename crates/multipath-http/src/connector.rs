//! The MPTCP connector: a `tower::Service<Uri>` that opens a multipath
//! connection (TLS for `https`) for any hyper-util client, the way a
//! `HttpConnector` opens a TCP one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use multipath::{Parameters, ServiceType};
//! use multipath_http::MptcpConnector;
//!
//! let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
//! let client: Client<_, Empty<bytes::Bytes>> =
//!     Client::builder(TokioExecutor::new()).build(MptcpConnector::new(params));
//! let response = client.get("http://check.mptcp.dev/".parse()?).await?;
//! let info = response.extensions().get::<multipath_http::ConnectionInfo>();
//! println!("multipath: {:?}", info.map(|i| i.status.is_multipath()));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection as HyperConnection};
use hyper_util::rt::TokioIo;
use multipath::{Connection, Endpoint, MultipathStatus, Parameters, Telemetry, TlsConnection, TlsOptions};

use crate::HttpError;

/// Opens multipath connections for HTTP clients: plain for `http://`, TLS
/// for `https://` (ALPN offers `h2` and `http/1.1` unless the TLS options
/// name other protocols). Cheap to clone.
#[derive(Clone, Debug)]
pub struct MptcpConnector {
    params: Parameters,
    tls: TlsOptions,
}

impl MptcpConnector {
    /// A connector opening connections with `params` (service type, strict
    /// mode, timeouts, path manager), and its TLS options for `https`.
    pub fn new(params: Parameters) -> Self {
        let tls = params.get_tls().cloned().unwrap_or_default();
        let tls = if tls.alpn_protocols().is_empty() { tls.alpn(["h2", "http/1.1"]) } else { tls };
        MptcpConnector { params, tls }
    }

    /// The parameters connections are opened with.
    pub fn parameters(&self) -> &Parameters {
        &self.params
    }

    /// Opens a connection to the URI's host and port. The parameters'
    /// connect timeout covers the TLS handshake too: a server that accepts
    /// and then says nothing is as unreachable as one that never answers.
    pub async fn connect(&self, uri: &Uri) -> Result<MptcpStream, HttpError> {
        let (endpoint, secure) = target(uri)?;
        if secure {
            let started = tokio::time::Instant::now();
            let conn = Connection::connect(endpoint.clone(), &self.params).await?;
            let handshake = TlsConnection::handshake(conn, &endpoint, &self.tls);
            let tls = match self.params.get_connect_timeout() {
                Some(limit) => tokio::time::timeout_at(started + limit, handshake)
                    .await
                    .map_err(|_| HttpError::Timeout(limit))??,
                None => handshake.await?,
            };
            Ok(MptcpStream::new(Inner::Tls(Box::new(TokioIo::new(tls)))))
        } else {
            let conn = Connection::connect(endpoint, &self.params).await?;
            Ok(MptcpStream::new(Inner::Plain(TokioIo::new(conn))))
        }
    }
}

/// The endpoint a URI names and whether it wants TLS.
pub(crate) fn target(uri: &Uri) -> Result<(Endpoint, bool), HttpError> {
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(HttpError::UnsupportedScheme(other.to_owned())),
        None => return Err(HttpError::InvalidUrl { url: uri.to_string(), reason: "no scheme (http:// or https://)" }),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| HttpError::InvalidUrl { url: uri.to_string(), reason: "no host" })?;
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    // An IPv6 literal comes bracketed in URIs.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let endpoint = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Endpoint::Addr(SocketAddr::new(ip, port)),
        Err(_) => Endpoint::Host { host: bare.to_owned(), port },
    };
    Ok((endpoint, secure))
}

impl tower_service::Service<Uri> for MptcpConnector {
    type Response = MptcpStream;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<MptcpStream, HttpError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect(&uri).await })
    }
}

/// What a response's connection was, attached to every response a
/// hyper-util client gets through [`MptcpConnector`] (its extensions).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// Multipath or not, why, service type asked for and enforced, as the
    /// connection was when it was opened.
    pub status: MultipathStatus,
    /// Local address of the initial subflow.
    pub local: Option<SocketAddr>,
    /// The server's address.
    pub remote: Option<SocketAddr>,
    /// TLS version, when TLS.
    pub tls_version: Option<String>,
    /// ALPN protocol, when TLS negotiated one.
    pub alpn: Option<String>,
    /// Reads the connection's status and subflows now, while it is open.
    pub telemetry: Telemetry,
}

enum Inner {
    Plain(TokioIo<Connection>),
    /// Boxed: a TLS session is over a kilobyte.
    Tls(Box<TokioIo<TlsConnection>>),
}

/// A connection opened by [`MptcpConnector`], plain or TLS: what hyper reads
/// and writes.
pub struct MptcpStream {
    inner: Inner,
    info: ConnectionInfo,
    /// Dropped with the stream: tells [`IoLife`] that hyper let go of it.
    _alive: tokio::sync::watch::Sender<()>,
    life: IoLife,
}

/// Ends when hyper drops a connection's stream (its connection task is
/// over): a request it has not answered by then never will be.
#[derive(Clone, Debug)]
pub(crate) struct IoLife(tokio::sync::watch::Receiver<()>);

impl IoLife {
    /// Waits until the stream is dropped.
    pub(crate) async fn ended(&mut self) {
        // Nothing is ever sent: `changed` returns only when the sender goes.
        while self.0.changed().await.is_ok() {}
    }

    /// Whether both watch the same connection.
    pub(crate) fn same(&self, other: &IoLife) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl std::fmt::Debug for MptcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MptcpStream").field("info", &self.info).finish()
    }
}

impl MptcpStream {
    fn new(inner: Inner) -> Self {
        let conn = match &inner {
            Inner::Plain(io) => io.inner(),
            Inner::Tls(io) => io.inner().get_ref(),
        };
        let (tls_version, alpn) = match &inner {
            Inner::Plain(_) => (None, None),
            Inner::Tls(io) => (
                io.inner().protocol_version(),
                io.inner().alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            ),
        };
        let info = ConnectionInfo {
            status: conn.multipath_status(),
            local: conn.local_addr().ok(),
            remote: conn.peer_addr().ok(),
            tls_version,
            alpn,
            telemetry: conn.telemetry(),
        };
        let (_alive, life) = tokio::sync::watch::channel(());
        MptcpStream { inner, info, _alive, life: IoLife(life) }
    }

    /// What the connection is.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }
}

impl HyperConnection for MptcpStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.info.clone()).extra(self.life.clone());
        if self.info.alpn.as_deref() == Some("h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for MptcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for MptcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(io) => io.is_write_vectored(),
            Inner::Tls(io) => io.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(io) => Pin::new(io).poll_flush(cx),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_endpoint() {
        let t = |s: &str| target(&s.parse().unwrap());
        assert_eq!(
            t("http://example.com/x").unwrap(),
            (Endpoint::Host { host: "example.com".into(), port: 80 }, false)
        );
        assert_eq!(
            t("https://example.com:8443/").unwrap().0,
            Endpoint::Host { host: "example.com".into(), port: 8443 }
        );
        assert_eq!(t("https://[::1]/").unwrap(), (Endpoint::Addr("[::1]:443".parse().unwrap()), true));
        assert_eq!(t("http://10.0.0.2:8080").unwrap().0, Endpoint::Addr("10.0.0.2:8080".parse().unwrap()));
        assert!(matches!(t("ftp://example.com/"), Err(HttpError::UnsupportedScheme(s)) if s == "ftp"));
        assert!(matches!(t("/relative"), Err(HttpError::InvalidUrl { .. })));
    }
}
