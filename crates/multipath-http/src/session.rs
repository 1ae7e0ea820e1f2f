//! `Session`: the URLSession of multipath. Every request from a session uses
//! its service type; connections are reused across requests (HTTP/1.1
//! keep-alive, HTTP/2 streams), and every response says whether the
//! connection that served it was multipath.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE,
    LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{capture_connection, Connected};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use multipath::{Enforcer, Parameters, ServiceType, SubflowInfo, TlsOptions};
use serde::Serialize;

use crate::connector::IoLife;
use crate::{ConnectionInfo, HttpError, MptcpConnector};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which HTTP versions a session speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/2 when the server picks it by ALPN (TLS), HTTP/1.1 otherwise.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/2 only: by ALPN over TLS, with prior knowledge over plain HTTP.
    Http2Only,
}

/// How a [`Session`] connects and behaves, like `URLSessionConfiguration`.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How every connection is opened: service type, strict mode, connect
    /// timeout, TLS, path manager, and the socket options (keepalive, local
    /// address, device, congestion control, mark, receive buffer).
    params: Parameters,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    max_redirects: usize,
    http_version: HttpVersion,
    user_agent: String,
    decompress: bool,
    decode_limits: DecodeLimits,
}

/// Bounds on decoding a compressed body: a few megabytes of gzip can
/// decode to gigabytes (a "gzip bomb").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most bytes a body may decode to; `None`: no limit.
    pub max_size: Option<u64>,
    /// Most decoded bytes per compressed byte, checked once
    /// [`DecodeLimits::RATIO_AFTER`] bytes are decoded (text compresses 3 to
    /// 10 times, repetitive logs rarely beyond 100; deflate's ceiling is
    /// about 1,030); `None`: no limit.
    pub max_ratio: Option<u32>,
}

impl DecodeLimits {
    /// Decoded bytes before the ratio is checked: small bodies never trip it.
    pub const RATIO_AFTER: u64 = 16 << 20;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_size: None, max_ratio: Some(200) }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            params: Parameters::tcp().nodelay(true).connect_timeout(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(60)),
            read_timeout: Some(Duration::from_secs(60)),
            max_redirects: 10,
            http_version: HttpVersion::Auto,
            user_agent: concat!("multipath/", env!("CARGO_PKG_VERSION")).into(),
            decompress: false,
            decode_limits: DecodeLimits::default(),
        }
    }
}

impl SessionConfig {
    /// Every connection's [`Parameters`], replacing the current ones: the
    /// way to set what has no shortcut here (keepalive, local address,
    /// device, congestion control, mark). TLS ALPN is still chosen by the
    /// session from [`http_version`](Self::http_version). The default is
    /// `Parameters::tcp().nodelay(true).connect_timeout(30 s)`.
    pub fn parameters(mut self, params: Parameters) -> Self {
        self.params = params;
        self
    }
    /// Every connection's [`Parameters`].
    pub fn get_parameters(&self) -> &Parameters {
        &self.params
    }
    /// The service type of every connection (default `none`, as Apple's):
    /// [`Parameters::multipath_service_type`].
    pub fn multipath_service_type(mut self, service_type: ServiceType) -> Self {
        self.params = self.params.multipath_service_type(service_type);
        self
    }
    /// Fail with [`HttpError::MultipathUnavailable`] instead of falling back
    /// to TCP: [`Parameters::require_multipath`].
    pub fn require_multipath(mut self, required: bool) -> Self {
        self.params = self.params.require_multipath(required);
        self
    }
    /// Limit on connecting (every address tried), TLS included; `None` waits
    /// for the kernel. Default 30 s. [`Parameters::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.params = self.params.connect_timeout(timeout);
        self
    }
    /// Limit on getting a response's head, connecting included. Default
    /// 60 s.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// Longest wait for the next piece of a response body. Default 60 s.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }
    /// Redirects followed before giving up (0: none followed; the 3xx
    /// response is returned). Default 10.
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }
    /// HTTP versions spoken.
    pub fn http_version(mut self, version: HttpVersion) -> Self {
        self.http_version = version;
        self
    }
    /// TLS options for `https` (roots, CA, client certificate). ALPN is set
    /// by the session from [`http_version`](Self::http_version).
    /// [`Parameters::tls`].
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.params = self.params.tls(tls);
        self
    }
    /// The `User-Agent` sent unless a request sets its own.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }
    /// A path manager enforcing the service type (in-process `Manager` or
    /// the daemon's client).
    /// [`Parameters::path_manager`].
    pub fn path_manager(mut self, manager: Arc<dyn Enforcer>) -> Self {
        self.params = self.params.path_manager(manager);
        self
    }

    /// Ask for gzip or deflate (`Accept-Encoding`, unless a request sets
    /// its own) and decode a compressed body as it streams. Off by default,
    /// as in curl (`--compressed`).
    pub fn decompress(mut self, on: bool) -> Self {
        self.decompress = on;
        self
    }

    /// Bounds on decoding compressed bodies (default: at most 200 decoded
    /// bytes per compressed byte beyond the first 16 MiB).
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.decode_limits = limits;
        self
    }

    /// A fixed receive buffer for every connection
    /// ([`Parameters::recv_buffer_size`]); `None` (the default) leaves the
    /// kernel's autotuning.
    pub fn recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.params = self.params.recv_buffer_size(bytes);
        self
    }

    /// The parameters connections are opened with: the session's, with the
    /// ALPN its HTTP versions need.
    fn connection_parameters(&self) -> Parameters {
        let alpn: &[&str] = match self.http_version {
            HttpVersion::Auto => &["h2", "http/1.1"],
            HttpVersion::Http1Only => &["http/1.1"],
            HttpVersion::Http2Only => &["h2"],
        };
        let tls = self.params.get_tls().cloned().unwrap_or_default().alpn(alpn);
        self.params.clone().tls(tls)
    }
}

/// A request body: bytes (which a 307/308 redirect can resend) or a stream.
pub struct RequestBody {
    body: BoxBody<Bytes, BoxError>,
    replay: Option<Bytes>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").field("bytes", &self.replay.as_ref().map(Bytes::len)).finish()
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        RequestBody::from(Bytes::new())
    }

    /// A streaming body (any `http_body::Body`), sent as it is produced.
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody { body: body.map_err(Into::into).boxed(), replay: None }
    }

    fn again(&self) -> Option<RequestBody> {
        self.replay.clone().map(RequestBody::from)
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        let body = Full::new(bytes.clone()).map_err(|never| match never {}).boxed();
        RequestBody { body, replay: Some(bytes) }
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(v: Vec<u8>) -> Self {
        RequestBody::from(Bytes::from(v))
    }
}

impl From<String> for RequestBody {
    fn from(s: String) -> Self {
        RequestBody::from(Bytes::from(s))
    }
}

impl From<&'static str> for RequestBody {
    fn from(s: &'static str) -> Self {
        RequestBody::from(Bytes::from_static(s.as_bytes()))
    }
}

/// Sends requests over multipath connections, reusing them.
///
/// ```no_run
/// # async fn demo() -> Result<(), multipath_http::HttpError> {
/// use multipath::ServiceType;
/// use multipath_http::{Session, SessionConfig};
///
/// let session = Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover));
/// let response = session.get("https://check.mptcp.dev/").send().await?;
/// println!("{} multipath: {}", response.status(), response.metrics().is_multipath);
/// println!("{}", response.text().await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    client: Client<MptcpConnector, BoxBody<Bytes, BoxError>>,
    config: Arc<SessionConfig>,
}

impl Session {
    /// A session with `config`. Needs a tokio runtime to send requests.
    pub fn new(config: SessionConfig) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90));
        // Large reads: an MPTCP recvmsg costs more than a TCP one, and
        // bulk downloads are what a session's throughput is judged on.
        builder.http1_read_buf_exact_size(256 * 1024);
        if config.http_version == HttpVersion::Http2Only {
            builder.http2_only(true);
        }
        let client = builder.build(MptcpConnector::new(config.connection_parameters()));
        Session { client, config: Arc::new(config) }
    }

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// A GET request.
    pub fn get(&self, url: &str) -> RequestBuilder<'_> {
        self.request(Method::GET, url)
    }

    /// A request of any method.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder<'_> {
        let uri = url.parse::<Uri>().map_err(|_| HttpError::InvalidUrl { url: url.to_owned(), reason: "not a URL" });
        RequestBuilder {
            session: self,
            method,
            uri,
            headers: HeaderMap::new(),
            body: RequestBody::empty(),
            timeout: self.config.timeout,
            invalid: None,
        }
    }
}

/// A request being put together; [`send`](Self::send) sends it.
#[derive(Debug)]
pub struct RequestBuilder<'s> {
    session: &'s Session,
    method: Method,
    uri: Result<Uri, HttpError>,
    headers: HeaderMap,
    body: RequestBody,
    timeout: Option<Duration>,
    /// A mistake found while building, reported by `send`.
    invalid: Option<String>,
}

impl RequestBuilder<'_> {
    /// Adds a header; an invalid name or value makes [`send`](Self::send)
    /// fail with [`HttpError::InvalidRequest`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.invalid = Some(format!("invalid header {name:?}: {value:?}")),
        }
        self
    }

    /// The body.
    pub fn body(mut self, body: impl Into<RequestBody>) -> Self {
        self.body = body.into();
        self
    }

    /// This request's limit on getting the response head.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request, following redirects, and returns the response
    /// once its head has arrived.
    pub async fn send(self) -> Result<Response, HttpError> {
        let RequestBuilder { session, mut method, uri, mut headers, body, timeout, invalid } = self;
        if let Some(reason) = invalid {
            return Err(HttpError::InvalidRequest(reason));
        }
        let mut uri = uri?;
        crate::connector::target(&uri)?;
        let mut body = Some(body);
        let config = &session.config;
        let work = async {
            let mut redirects = 0;
            // Whether this hop was already sent again on a fresh connection.
            let mut retried = false;
            loop {
                let this_body = body.take().unwrap_or_else(RequestBody::empty);
                let again = this_body.again();
                let mut request = http::Request::builder().method(method.clone()).uri(uri.clone());
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                if !headers.contains_key(USER_AGENT) {
                    request = request.header(USER_AGENT, config.user_agent.as_str());
                }
                if config.decompress && !headers.contains_key(ACCEPT_ENCODING) {
                    request = request.header(ACCEPT_ENCODING, "gzip, deflate");
                }
                if config.http_version == HttpVersion::Http2Only && uri.scheme_str() == Some("http") {
                    // Prior knowledge: no Host header in HTTP/2 (":authority").
                    request = request.version(Version::HTTP_2);
                }
                let request = request.body(this_body.body).map_err(|e| HttpError::Body(e.to_string()))?;
                let outcome = unless_lost(&session.client, request).await;
                // A pooled connection the server had closed: once more on a
                // fresh one, if the request can be sent again without harm
                // (idempotent, its body kept).
                let stale = match &outcome {
                    Some(Ok(_)) => false,
                    Some(Err(e)) => HttpError::is_stale_connection(e),
                    None => true,
                };
                if stale && !retried && method.is_idempotent() {
                    if let Some(b) = again {
                        tracing::debug!(%uri, "the connection was closed under the request; once more");
                        retried = true;
                        body = Some(b);
                        continue;
                    }
                }
                let response = match outcome {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => return Err(HttpError::from_client(e)),
                    None => {
                        let message = "the connection closed before the request was answered".to_owned();
                        return Err(HttpError::protocol(message, None));
                    }
                };
                retried = false;
                let status = response.status();
                let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
                if let (true, Some(location)) = (status.is_redirection(), location) {
                    if config.max_redirects == 0 {
                        return Ok((response, uri, redirects));
                    }
                    if redirects == config.max_redirects {
                        return Err(HttpError::TooManyRedirects(config.max_redirects));
                    }
                    let next = resolve(&uri, &location)?;

                    // 303 (and 301/302 after a POST, as browsers do) become
                    // GET without a body; 307/308 resend the same request,
                    // which needs a body that can be sent again.
                    let keep = matches!(status, StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT);
                    if keep {
                        match again {
                            Some(b) => body = Some(b),
                            None => return Ok((response, uri, redirects)),
                        }
                    } else if status == StatusCode::SEE_OTHER || method == Method::POST {
                        method = Method::GET;
                        // The body is gone, and what described it.
                        headers.remove(CONTENT_TYPE);
                        headers.remove(CONTENT_LENGTH);
                    }
                    if origin(&next) != origin(&uri) {
                        // Credentials were given for the host asked, not for
                        // wherever it points (curl does the same).
                        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                            headers.remove(name);
                        }
                    }
                    // Read what little the redirect says, so its connection
                    // goes back to the pool only if the server kept it open
                    // (a pooled connection the server had closed made the
                    // next request fail with a broken pipe).
                    drain(response).await;
                    redirects += 1;
                    uri = next;
                    continue;
                }
                return Ok((response, uri, redirects));
            }
        };
        let (response, uri, redirects) = match timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| HttpError::Timeout(t))??,
            None => work.await?,
        };
        let (parts, body) = response.into_parts();
        let encoding = parts.headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
        let decoder = match encoding.as_deref() {
            Some("gzip" | "x-gzip") if config.decompress => {
                Some(Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())))
            }
            Some("deflate") if config.decompress => Some(Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new()))),
            _ => None,
        };
        Ok(Response {
            decoder,
            pending: Bytes::new(),
            limits: config.decode_limits,
            decoded_from: 0,
            decoded: 0,
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            info: parts.extensions.get::<ConnectionInfo>().cloned(),
            body,
            url: uri,
            redirects,
            read_timeout: session.config.read_timeout,
            idle: None,
            waiting: false,
        })
    }
}

/// Scheme, host and port: what credentials are given for.
fn origin(uri: &Uri) -> (Option<&str>, Option<&str>, Option<u16>) {
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    (uri.scheme_str(), uri.host(), port)
}

/// How long a request may stay unanswered after its connection is gone
/// before it is taken for lost.
const LOST_AFTER: Duration = Duration::from_millis(500);

/// Sends `request`; `None` if hyper lost it. hyper's HTTP/1 client can lose
/// a request handed to a pooled connection whose task is ending at that
/// moment (the server closed it): tokio's queue lets the send land after
/// the task's last drain, and the pool keeps the queue open, so neither a
/// response nor an error ever comes. In the lab, `mptcp get` following
/// redirects from a server that closes each connection hung until its
/// timeout about once in 3000 requests under load. Once the request's
/// connection is gone, a response not there [`LOST_AFTER`] later never
/// will be.
async fn unless_lost(
    client: &Client<MptcpConnector, BoxBody<Bytes, BoxError>>,
    mut request: http::Request<BoxBody<Bytes, BoxError>>,
) -> Option<Result<http::Response<Incoming>, hyper_util::client::legacy::Error>> {
    let mut captured = capture_connection(&mut request);
    let response = client.request(request);
    let lost = async {
        loop {
            let Some(mut life) = life_of(&*captured.wait_for_connection_metadata().await) else {
                return std::future::pending().await;
            };
            life.ended().await;
            tokio::time::sleep(LOST_AFTER).await;
            // hyper may have sent it again on another connection meanwhile.
            if life_of(&captured.connection_metadata()).is_none_or(|now| now.same(&life)) {
                return;
            }
        }
    };
    tokio::select! {
        biased;
        r = response => Some(r),
        () = lost => None,
    }
}

/// The stream life a connection's metadata carries.
fn life_of(connected: &Option<Connected>) -> Option<IoLife> {
    let mut extensions = http::Extensions::new();
    connected.as_ref()?.get_extras(&mut extensions);
    extensions.get::<IoLife>().cloned()
}

/// Reads and drops a response body of at most 64 KiB within a second;
/// larger or slower ones are dropped unread (their connection is closed).
async fn drain(response: http::Response<Incoming>) {
    let body = http_body_util::Limited::new(response.into_body(), 64 * 1024);
    let _ = tokio::time::timeout(Duration::from_secs(1), body.collect()).await;
}

/// `location` resolved against the URL that answered with it.
fn resolve(base: &Uri, location: &str) -> Result<Uri, HttpError> {
    let bad = || HttpError::protocol(format!("redirect to an invalid location {location:?}"), None);
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if has_scheme {
        let uri: Uri = location.parse().map_err(|_| bad())?;
        crate::connector::target(&uri).map_err(|_| bad())?;
        return Ok(uri);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let text = if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{authority}{dir}{location}")
    };
    let uri: Uri = text.parse().map_err(|_| bad())?;
    crate::connector::target(&uri).map_err(|_| bad())?;
    Ok(uri)
}

/// What the transaction's connection was: `URLSessionTaskTransactionMetrics`
/// with the reasons.
#[derive(Clone, Debug, Serialize)]
pub struct TransactionMetrics {
    /// The final URL (after redirects).
    pub url: String,
    /// Redirects followed.
    pub redirects: usize,
    /// HTTP version of the response.
    pub http_version: String,
    /// Whether the connection was MPTCP (Apple's `isMultipath`).
    pub is_multipath: bool,
    /// Transport, service type asked for, who manages the paths, enforced.
    pub status: Option<multipath::MultipathStatus>,
    /// Local address of the initial subflow.
    pub local: Option<std::net::SocketAddr>,
    /// The server's address.
    pub remote: Option<std::net::SocketAddr>,
    /// TLS version, when TLS.
    pub tls_version: Option<String>,
    /// ALPN protocol.
    pub alpn: Option<String>,
    /// The connection's subflows when the metrics were taken (bytes per
    /// subflow included); empty once the connection is closed.
    pub subflows: Vec<SubflowInfo>,
}

/// A response whose head has arrived; the body streams on demand.
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    info: Option<ConnectionInfo>,
    body: Incoming,
    url: Uri,
    redirects: usize,
    read_timeout: Option<Duration>,
    /// Decodes a compressed body, when the session asked for one.
    decoder: Option<Decoder>,
    /// Compressed bytes received and not decoded yet.
    pending: Bytes,
    limits: DecodeLimits,
    /// Compressed bytes decoded, and what they decoded to.
    decoded_from: u64,
    decoded: u64,
    /// The read timeout's timer, made once.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the timer runs (the body is being waited for).
    waiting: bool,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }
    /// The final URL, after redirects.
    pub fn url(&self) -> &Uri {
        &self.url
    }
    /// The connection that served this response.
    pub fn connection(&self) -> Option<&ConnectionInfo> {
        self.info.as_ref()
    }

    /// The connection's metrics now: its status and subflows are read from
    /// the socket (while it is open), so calling this after the body gives
    /// the bytes each subflow carried.
    pub fn metrics(&self) -> TransactionMetrics {
        let status = self.info.as_ref().map(|i| i.telemetry.multipath_status().unwrap_or_else(|_| i.status.clone()));
        TransactionMetrics {
            url: self.url.to_string(),
            redirects: self.redirects,
            http_version: format!("{:?}", self.version),
            is_multipath: status.as_ref().is_some_and(|s| s.is_multipath()),
            status,
            local: self.info.as_ref().and_then(|i| i.local),
            remote: self.info.as_ref().and_then(|i| i.remote),
            tls_version: self.info.as_ref().and_then(|i| i.tls_version.clone()),
            alpn: self.info.as_ref().and_then(|i| i.alpn.clone()),
            subflows: self.info.as_ref().and_then(|i| i.telemetry.subflows().ok()).unwrap_or_default(),
        }
    }

    /// The next piece of the body; `None` at its end. A body cut short (the
    /// server closed mid-way) is an error, never a silent end.
    /// A compressed body is decoded a kilobyte at a time into pieces of at
    /// most 256 KiB, within the session's [`DecodeLimits`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if self.decoder.is_none() {
            return self.raw_chunk().await;
        }
        loop {
            if self.pending.is_empty() {
                match self.raw_chunk().await? {
                    Some(bytes) => self.pending = bytes,
                    None => {
                        let rest = self.decoder.take().map(|mut d| d.finish()).transpose()?.unwrap_or_default();
                        self.account(0, rest.len())?;
                        return Ok((!rest.is_empty()).then(|| Bytes::from(rest)));
                    }
                }
            }
            let Some(decoder) = &mut self.decoder else { return Ok(None) };
            let mut out = Vec::new();
            let mut used = 0;
            // A kilobyte of deflate decodes to at most ~1 MB: memory stays
            // bounded whatever the ratio.
            while !self.pending.is_empty() && out.len() < DECODED_PIECE {
                let piece = self.pending.split_to(self.pending.len().min(1024));
                used += piece.len();
                out.extend(decoder.write(&piece)?);
            }
            self.account(used, out.len())?;
            if !out.is_empty() {
                return Ok(Some(Bytes::from(out)));
            }
        }
    }

    /// Counts `compressed` bytes decoded to `decoded`, against the limits.
    fn account(&mut self, compressed: usize, decoded: usize) -> Result<(), HttpError> {
        self.decoded_from += compressed as u64;
        self.decoded += decoded as u64;
        if let Some(max) = self.limits.max_size.filter(|&m| self.decoded > m) {
            return Err(HttpError::TooLarge(format!("the compressed body decodes to more than {max} bytes")));
        }
        if let Some(ratio) = self.limits.max_ratio {
            if self.decoded > DecodeLimits::RATIO_AFTER && self.decoded > u64::from(ratio) * self.decoded_from.max(1) {
                return Err(HttpError::TooLarge(format!(
                    "{} compressed bytes decode to {} (more than {ratio} to 1): a decompression bomb?",
                    self.decoded_from, self.decoded
                )));
            }
        }
        Ok(())
    }

    /// The next piece of the body as it came over the wire.
    async fn raw_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = std::future::poll_fn(|cx| self.poll_frame(cx)).await?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(HttpError::from_hyper(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }

    /// The body's next frame, or a timeout once it has been waited for
    /// longer than the read timeout. The timer is armed only while waiting:
    /// a fast body never touches it.
    #[allow(clippy::type_complexity)]
    fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<Result<http_body::Frame<Bytes>, hyper::Error>>, HttpError>> {
        use std::future::Future;
        use std::task::Poll;
        if let Poll::Ready(frame) = http_body::Body::poll_frame(Pin::new(&mut self.body), cx) {
            self.waiting = false;
            return Poll::Ready(Ok(frame));
        }
        let Some(limit) = self.read_timeout else { return Poll::Pending };
        let idle = self.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.waiting {
            idle.as_mut().reset(tokio::time::Instant::now() + limit);
            self.waiting = true;
        }
        match idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(HttpError::Timeout(limit))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, HttpError> {
        let mut all = bytes::BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// The whole body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String, HttpError> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }
}

/// Most bytes of decoded body handed out at once.
const DECODED_PIECE: usize = 256 * 1024;

/// A streaming decoder of `Content-Encoding: gzip` or `deflate`.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Gzip(_) => "Decoder::Gzip",
            Decoder::Deflate(_) => "Decoder::Deflate",
        })
    }
}

impl Decoder {
    /// Feeds compressed bytes; what they decode to so far.
    fn write(&mut self, compressed: &[u8]) -> Result<Vec<u8>, HttpError> {
        use std::io::Write;
        let bad =
            |e: std::io::Error| HttpError::protocol(format!("compressed body: {e}"), Some(crate::error::Cause::new(e)));
        match self {
            Decoder::Gzip(d) => {
                d.write_all(compressed).map_err(bad)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.write_all(compressed).map_err(bad)?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }

    /// The end of the body: the last bytes, or an error if the compressed
    /// stream was cut short.
    fn finish(&mut self) -> Result<Vec<u8>, HttpError> {
        let bad = |e: std::io::Error| {
            HttpError::protocol(format!("compressed body cut short: {e}"), Some(crate::error::Cause::new(e)))
        };
        match self {
            Decoder::Gzip(d) => {
                d.try_finish().map_err(bad)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.try_finish().map_err(bad)?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcuts change the session's parameters and keep the rest;
    /// connections get the ALPN of the session's HTTP versions.
    #[test]
    fn the_session_holds_whole_parameters() {
        let config = SessionConfig::default()
            .parameters(Parameters::tcp().mark(7).congestion_control("cubic").bind_device("wifi"))
            .multipath_service_type(ServiceType::Handover)
            .connect_timeout(None)
            .recv_buffer_size(Some(1 << 20))
            .http_version(HttpVersion::Http1Only);
        let p = config.get_parameters();
        assert_eq!(p.get_multipath_service_type(), ServiceType::Handover);
        assert_eq!(
            (p.get_mark(), p.get_congestion_control(), p.get_bind_device()),
            (Some(7), Some("cubic"), Some("wifi"))
        );
        assert_eq!((p.get_connect_timeout(), p.get_recv_buffer_size()), (None, Some(1 << 20)));
        let opened = config.connection_parameters();
        assert_eq!(opened.get_tls().unwrap().alpn_protocols(), [b"http/1.1".to_vec()]);
        assert_eq!(opened.get_mark(), Some(7));
        let default = SessionConfig::default();
        assert!(default.get_parameters().get_nodelay());
        assert_eq!(default.get_parameters().get_connect_timeout(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn gzip_and_deflate_decode_across_chunks_and_truncation_is_an_error() {
        use std::io::Write;
        let text = b"You are using MPTCP.\n".repeat(500);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        for (mut decoder, compressed) in [
            (Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())), gz.clone()),
            (Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())), z),
        ] {
            let mut out = Vec::new();
            for piece in compressed.chunks(7) {
                out.extend(decoder.write(piece).unwrap());
            }
            out.extend(decoder.finish().unwrap());
            assert_eq!(out, text, "{decoder:?}");
        }
        let mut cut = Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()));
        let _ = cut.write(&gz[..gz.len() / 2]).unwrap();
        assert!(matches!(cut.finish(), Err(HttpError::Protocol { .. })));
        let mut garbage = Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()));
        assert!(garbage.write(b"definitely not gzip").is_err());
    }

    #[test]
    fn redirect_locations_resolve_against_the_answering_url() {
        let base: Uri = "https://a.example:8443/dir/page?q=1".parse().unwrap();
        let r = |l: &str| resolve(&base, l).map(|u| u.to_string());
        assert_eq!(r("http://b.example/x").unwrap(), "http://b.example/x");
        assert_eq!(r("/root").unwrap(), "https://a.example:8443/root");
        assert_eq!(r("other").unwrap(), "https://a.example:8443/dir/other");
        assert_eq!(r("//c.example/y").unwrap(), "https://c.example/y");
        assert!(r("http://").is_err());
        assert!(r("ftp://x/").is_err());
        // Credentials stay within scheme, host and port.
        let o = |u: &str| {
            let uri: Uri = u.parse().unwrap();
            let (scheme, host, port) = origin(&uri);
            (scheme.map(str::to_owned), host.map(str::to_owned), port)
        };
        assert_eq!(o("https://a.example/x"), o("https://a.example:443/y"));
        assert_ne!(o("https://a.example/"), o("http://a.example/"));
        assert_ne!(o("http://a.example/"), o("http://a.example:8080/"));
        assert_ne!(o("http://a.example/"), o("http://b.example/"));
    }
}
