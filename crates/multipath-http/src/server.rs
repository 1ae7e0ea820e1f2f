//! A check.mptcp.dev-compatible server: `GET /` tells the caller whether
//! its own connection uses MPTCP, read from the accepted socket itself;
//! `/files/<size>` streams deterministic bytes with their SHA-256 in a
//! header. HTTP/1.1 and HTTP/2, plain or TLS, MPTCP and TCP clients alike.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use multipath::{Listener, Parameters, ServiceType, Telemetry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use tokio::sync::watch;

use crate::content::{self, Hex, HASH_HEADER};
use crate::HttpError;

/// TLS for the server: a certificate chain and key.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    fingerprint: String,
    chain_pem: String,
}

impl ServerTls {
    /// From PEM files: the chain (leaf first) and its private key.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<ServerTls, HttpError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| tls_error(format!("{}: {e}", p.display())));
        ServerTls::from_pem(&read(chain)?, &read(key)?)
    }

    /// From PEM data.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerTls, HttpError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_error(format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(tls_error("certificate: no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_error(format!("private key: {e}")))?;
        let fingerprint = fingerprint(&chain[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let chain_pem = String::from_utf8_lossy(chain_pem).into_owned();
        Ok(ServerTls { config: Arc::new(config), fingerprint, chain_pem })
    }

    /// A self-signed certificate for `names` (host names or IP addresses),
    /// made now.
    pub fn self_signed(names: &[String]) -> Result<ServerTls, HttpError> {
        let (cert, key) = self_signed_pem(names)?;
        ServerTls::from_pem(cert.as_bytes(), key.as_bytes())
    }

    /// The certificate chain in PEM, for clients to trust (a self-signed
    /// certificate is its own CA).
    pub fn certificate_pem(&self) -> &str {
        &self.chain_pem
    }

    /// SHA-256 of the leaf certificate, `AB:CD:...`, as browsers show it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A self-signed certificate for `names` and its private key, both PEM.
pub fn self_signed_pem(names: &[String]) -> Result<(String, String), HttpError> {
    let cert = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| tls_error(e.to_string()))?;
    Ok((cert.cert.pem(), cert.signing_key.serialize_pem()))
}

fn tls_error(reason: String) -> HttpError {
    HttpError::Tls { failure: multipath::tls::TlsFailure::Config, reason }
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex = Hex(digest.as_ref()).to_string().to_uppercase();
    hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(":")
}

/// SHA-256 of each file size served, computed once (a blocking task: 1 GB
/// takes about a second) and shared by concurrent first requests.
#[derive(Default)]
struct HashCache(Mutex<HashMap<u64, Arc<tokio::sync::OnceCell<String>>>>);

impl HashCache {
    async fn get(&self, size: u64) -> String {
        let cell = self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(size).or_default().clone();
        cell.get_or_init(|| async move {
            tokio::task::spawn_blocking(move || content::sha256_hex(size)).await.unwrap_or_default()
        })
        .await
        .clone()
    }
}

/// The server. [`bind`](Self::bind), then [`serve`](Self::serve).
pub struct CheckServer {
    listener: Listener,
    tls: Option<ServerTls>,
    hashes: Arc<HashCache>,
}

impl std::fmt::Debug for CheckServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckServer").field("addr", &self.listener.local_addr().ok()).finish()
    }
}

impl CheckServer {
    /// Listens on `addr` (MPTCP, accepting TCP clients too), with TLS when
    /// given. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, tls: Option<ServerTls>) -> Result<CheckServer, HttpError> {
        let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).nodelay(true);
        let listener = Listener::bind(addr, &params)?;
        Ok(CheckServer { listener, tls, hashes: Arc::default() })
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish its requests in flight, and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), HttpError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = self.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (conn, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors or an aborted handshake: keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let telemetry = conn.telemetry();
                    let hashes = self.hashes.clone();
                    let acceptor = acceptor.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        let secure = acceptor.is_some();
                        let service = hyper::service::service_fn(move |req| {
                            let (telemetry, hashes) = (telemetry.clone(), hashes.clone());
                            async move { Ok::<_, Infallible>(answer(req, &telemetry, peer, secure, &hashes).await) }
                        });
                        let result = match acceptor {
                            Some(a) => match a.accept(conn).await {
                                Ok(tls) => serve_one(TokioIo::new(tls), service, stop).await,
                                Err(e) => Err(format!("TLS handshake: {e}")),
                            },
                            None => serve_one(TokioIo::new(conn), service, stop).await,
                        };
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                // Reap finished connections so the set stays small.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

async fn serve_one<I, S>(io: I, service: S, mut stop: watch::Receiver<bool>) -> Result<(), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<BoxBody<Bytes, Infallible>>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r.map_err(|e| e.to_string()),
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await.map_err(|e| e.to_string())
        }
    }
}

/// Completes once the server is told to stop (never, if it is dropped
/// without saying so).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What `GET /` tells a client, from its own socket.
#[derive(Debug, Serialize)]
struct Verdict {
    /// `true`, `false`, or `null` when the socket could not be read.
    mptcp: Option<bool>,
    message: &'static str,
    /// Subflows the connection has now.
    subflows: Option<usize>,
    /// The client's address as the server sees it.
    client: SocketAddr,
    /// Whether the request came over TLS.
    tls: bool,
}

impl Verdict {
    /// Reads the socket: one getsockopt for the verdict, one more for the
    /// subflow count when `count` (cheap enough for every request).
    fn of(telemetry: &Telemetry, client: SocketAddr, tls: bool, count: bool) -> Verdict {
        let mptcp = telemetry.multipath_status().ok().map(|s| s.is_multipath());
        let message = match mptcp {
            Some(true) => "You are using MPTCP.",
            Some(false) => "You are not using MPTCP.",
            None => "You are maybe, or maybe not (internal error) using MPTCP.",
        };
        // MPTCP_INFO counts the joined subflows; the initial one makes one more.
        let subflows = match (count, mptcp) {
            (true, Some(true)) => telemetry.mptcp_info().ok().map(|i| 1 + usize::from(i.subflows)),
            (true, Some(false)) => Some(1),
            _ => None,
        };
        Verdict { mptcp, message, subflows, client, tls }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, body.len())
        .body(Full::new(body).boxed())
        .expect("valid response")
}

async fn answer(
    req: Request<Incoming>,
    telemetry: &Telemetry,
    peer: SocketAddr,
    tls: bool,
    hashes: &HashCache,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n");
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let head = req.method() == Method::HEAD;
    let path = req.uri().path();
    let mut response = if path == "/" {
        check(&req, telemetry, peer, tls)
    } else if path == "/files" || path == "/files/" {
        let list: String = content::LISTED.iter().map(|s| format!("/files/{s}\n")).collect();
        full(StatusCode::OK, "text/plain; charset=utf-8", list)
    } else if let Some(size) = path.strip_prefix("/files/") {
        match content::parse_size(size) {
            Ok(size) => file(size, hashes).await,
            Err(e) => full(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("{e}\n")),
        }
    } else {
        full(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n")
    };
    if head {
        // Same headers, no body.
        *response.body_mut() = Full::new(Bytes::new()).boxed();
    }
    response
}

fn check(req: &Request<Incoming>, telemetry: &Telemetry, peer: SocketAddr, tls: bool) -> Response<Body> {
    let header = |name| req.headers().get(name).and_then(|v: &http::HeaderValue| v.to_str().ok()).unwrap_or("");
    let curl = header(USER_AGENT).starts_with("curl") && !header(ACCEPT).contains("application/json");
    let verdict = Verdict::of(telemetry, peer, tls, !curl);
    if header(ACCEPT).contains("application/json") {
        let json = serde_json::to_vec(&verdict).expect("serialisable");
        full(StatusCode::OK, "application/json", json)
    } else if curl {
        full(StatusCode::OK, "text/plain; charset=utf-8", format!("{}\n", verdict.message))
    } else {
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>MPTCP check</title></head>\
             <body><h1>{}</h1><p>Your connection from {} has {} subflow(s).</p>\
             <p><a href=\"/files/\">Test files</a></p></body></html>\n",
            verdict.message,
            verdict.client,
            verdict.subflows.map_or("an unknown number of".into(), |n| n.to_string()),
        );
        full(StatusCode::OK, "text/html; charset=utf-8", html)
    }
}

async fn file(size: u64, hashes: &HashCache) -> Response<Body> {
    let hash = hashes.get(size).await;
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, size)
        .header(HASH_HEADER, hash)
        .body(FileBody { offset: 0, size }.boxed())
        .expect("valid response")
}

/// The bytes of `/files/<size>`, made as they are sent.
struct FileBody {
    offset: u64,
    size: u64,
}

/// Bytes made per frame.
const FRAME: u64 = 256 * 1024;

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.offset >= self.size {
            return Poll::Ready(None);
        }
        let n = (self.size - self.offset).min(FRAME) as usize;
        let mut buf = vec![0u8; n];
        content::fill(self.offset, &mut buf);
        self.offset += n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.size
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.size - self.offset)
    }
}
