//! A check.mptcp.dev-compatible server: `GET /` tells the caller whether
//! its own connection uses MPTCP, read from the accepted socket itself;
//! `/files/<size>` streams deterministic bytes with their SHA-256 in a
//! header. HTTP/1.1 and HTTP/2, plain or TLS, MPTCP and TCP clients alike.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// SHA-256 of each file size served, computed once (a blocking task:
/// ~0.6 s of CPU per GB) and shared by concurrent first requests. Only
/// sizes up to [`HASHED_UP_TO`] and the listed ones (`/files/1000M`) get a
/// hash: for any other size the wait before the first byte, and the CPU a
/// client could make the server spend, are not worth it. A `HEAD` costs
/// nothing. At most [`HASHES_KEPT`] are kept.
#[derive(Default)]
struct HashCache(Mutex<HashMap<u64, Arc<tokio::sync::OnceCell<String>>>>);

/// The largest file whose hash is sent (~0.15 s of CPU).
pub const HASHED_UP_TO: u64 = 256 << 20;
/// Hashes kept: 64 bytes each, and a size's hash is cheap to make again.
const HASHES_KEPT: usize = 4096;

impl HashCache {
    /// The hash of `size`, computed if need be (and `compute`), or `None`
    /// beyond [`HASHED_UP_TO`] or when not known yet and not to be computed.
    async fn get(&self, size: u64, compute: bool) -> Option<String> {
        let listed = content::LISTED.iter().any(|l| content::parse_size(l) == Ok(size));
        if size > HASHED_UP_TO && !listed {
            return None;
        }
        let cell = {
            let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cell) = cache.get(&size) {
                cell.clone()
            } else if !compute {
                return None;
            } else {
                if cache.len() >= HASHES_KEPT {
                    // Any one: sizes asked for are not a working set worth
                    // tracking, and each is cheap to hash again.
                    let victim = *cache.keys().next().expect("full");
                    cache.remove(&victim);
                }
                cache.entry(size).or_default().clone()
            }
        };
        if !compute {
            return cell.get().cloned();
        }
        // One hash at a time, server-wide: requests for many distinct sizes
        // queue for one core instead of taking them all.
        static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        let hash = cell
            .get_or_init(|| async move {
                let _turn = HASHING.acquire().await;
                tokio::task::spawn_blocking(move || content::sha256_hex(size)).await.unwrap_or_default()
            })
            .await;
        Some(hash.clone())
    }
}

/// What a server allows each client, each with a default that a browser
/// or `mptcp get` never meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// To send a request's head; also the longest an HTTP/1.1 connection
    /// may sit idle between requests. Default 10 s.
    pub header_read: Duration,
    /// To complete the TLS handshake. Default 10 s.
    pub handshake: Duration,
    /// Connections at once; beyond, new ones wait in the kernel's backlog.
    /// Default 10,000.
    pub connections: usize,
    /// Connections at once from one client address. Default 256.
    pub per_client: usize,
    /// No byte in either direction for this long closes a connection: a
    /// client that connects and says nothing, a kept-alive one left idle, a
    /// download nobody reads. Default 60 s.
    pub idle: Duration,
    /// After the server is told to stop, how long requests in flight may
    /// take before their connections are cut. Default 5 s.
    pub grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read: Duration::from_secs(10),
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            connections: 10_000,
            per_client: 256,
            grace: Duration::from_secs(5),
        }
    }
}

/// The server. [`bind`](Self::bind), then [`serve`](Self::serve).
pub struct CheckServer {
    listener: Listener,
    tls: Option<ServerTls>,
    hashes: Arc<HashCache>,
    limits: ServerLimits,
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
        Ok(CheckServer { listener, tls, hashes: Arc::default(), limits: ServerLimits::default() })
    }

    /// Replaces the default [`ServerLimits`].
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish its requests in flight within the grace period
    /// ([`ServerLimits::grace`]), cuts the rest, and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), HttpError> {
        let limits = self.limits;
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = self.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        let per_client: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let mut accept_errors = AcceptErrors::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept(), if tasks.len() < limits.connections => {
                    let (conn, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors or an aborted handshake:
                            // keep serving, backing off, saying so at most
                            // once a second.
                            tokio::time::sleep(accept_errors.failed(&e)).await;
                            continue;
                        }
                    };
                    accept_errors.accepted();
                    let Some(slot) = ClientSlot::take(&per_client, peer.ip(), limits.per_client) else {
                        tracing::debug!(%peer, "too many connections from this client; closed");
                        continue;
                    };
                    let telemetry = conn.telemetry();
                    let hashes = self.hashes.clone();
                    let acceptor = acceptor.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        let _slot = slot;
                        let secure = acceptor.is_some();
                        let service = hyper::service::service_fn(move |req| {
                            let (telemetry, hashes) = (telemetry.clone(), hashes.clone());
                            async move { Ok::<_, Infallible>(answer(req, &telemetry, peer, secure, &hashes).await) }
                        });
                        let (conn, moved) = Watched::new(conn);
                        let serving = async {
                            match acceptor {
                                Some(a) => match tokio::time::timeout(limits.handshake, a.accept(conn)).await {
                                    Ok(Ok(tls)) => serve_one(TokioIo::new(tls), service, stop, &limits).await,
                                    Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                                    Err(_) => Err("TLS handshake: timed out".into()),
                                },
                                None => serve_one(TokioIo::new(conn), service, stop, &limits).await,
                            }
                        };
                        let result = tokio::select! {
                            r = serving => r,
                            _ = idle(&moved, limits.idle) => Err(format!("nothing moved for {:?}", limits.idle)),
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
        let drained = tokio::time::timeout(limits.grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(connections = tasks.len(), grace = ?limits.grace, "connections cut at the end of the grace period");
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// A connection's socket, noting when bytes last moved either way (ms
/// since the server's clock origin).
struct Watched<T> {
    inner: T,
    moved: Arc<std::sync::atomic::AtomicU64>,
}

/// The origin of [`Watched`] times.
fn clock() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

impl<T> Watched<T> {
    fn new(inner: T) -> (Watched<T>, Arc<std::sync::atomic::AtomicU64>) {
        let moved = Arc::new(std::sync::atomic::AtomicU64::new(clock()));
        (Watched { inner, moved: moved.clone() }, moved)
    }

    fn note<R>(&self, moved: bool, r: R) -> R {
        if moved {
            self.moved.store(clock(), std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let moved = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.note(moved, r)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        let moved = matches!(r, Poll::Ready(Ok(n)) if n > 0);
        self.note(moved, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let moved = matches!(r, Poll::Ready(Ok(n)) if n > 0);
        self.note(moved, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes once nothing has moved on a [`Watched`] socket for `limit`.
async fn idle(moved: &std::sync::atomic::AtomicU64, limit: Duration) {
    let limit_ms = limit.as_millis() as u64;
    loop {
        let quiet = clock().saturating_sub(moved.load(std::sync::atomic::Ordering::Relaxed));
        if quiet >= limit_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(limit_ms - quiet)).await;
    }
}

/// A connection counted against its client's address; uncounted on drop.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { counts: counts.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// `accept` failing in a row (out of descriptors, typically): a back-off
/// from 10 ms to 1 s, and a log line at most once a second.
#[derive(Default)]
struct AcceptErrors {
    in_a_row: u32,
    said: Option<std::time::Instant>,
    unsaid: u64,
}

impl AcceptErrors {
    fn failed(&mut self, e: &impl std::fmt::Display) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unsaid += 1;
        if self.said.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(error = %e, failures = self.unsaid, "accept failed");
            self.said = Some(std::time::Instant::now());
            self.unsaid = 0;
        }
        Duration::from_millis(10u64 << self.in_a_row.min(7).saturating_sub(1)).min(Duration::from_secs(1))
    }

    fn accepted(&mut self) {
        self.in_a_row = 0;
    }
}

async fn serve_one<I, S>(
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
    limits: &ServerLimits,
) -> Result<(), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<BoxBody<Bytes, Infallible>>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read)
        .keep_alive_timeout(limits.header_read);
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
    /// Subflows the connection has now (0: plain TCP).
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
            (true, Some(false)) => Some(0),
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
            // A HEAD costs no hashing: it gets the hash only if known.
            Ok(size) => file(size, hashes, !head).await,
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
             <body><h1>{}</h1><p>Your connection from {} {}.</p>\
             <p><a href=\"/files/\">Test files</a></p></body></html>\n",
            verdict.message,
            verdict.client,
            match verdict.subflows {
                Some(0) => "is TCP, no subflows".to_owned(),
                Some(1) => "has 1 subflow".to_owned(),
                Some(n) => format!("has {n} subflows"),
                None => "has an unknown number of subflows".to_owned(),
            },
        );
        full(StatusCode::OK, "text/html; charset=utf-8", html)
    }
}

async fn file(size: u64, hashes: &HashCache, compute_hash: bool) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, size);
    if let Some(hash) = hashes.get(size, compute_hash).await {
        response = response.header(HASH_HEADER, hash);
    }
    response.body(FileBody { offset: 0, size }.boxed()).expect("valid response")
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
