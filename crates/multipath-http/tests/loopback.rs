//! Session and server on loopback: MPTCP without a lab (no root needed; one
//! subflow, the kernel's path manager). Bad input of every kind gets its
//! own clear error, bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use multipath::tls::TlsFailure;
use multipath::{ServiceType, TlsOptions, Transport};
use multipath_http::content::{Sha256, HASH_HEADER};
use multipath_http::server::{CheckServer, ServerTls};
use multipath_http::{HttpError, HttpVersion, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A check server on loopback, stopped when the returned sender drops.
async fn server(tls: Option<ServerTls>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = CheckServer::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn self_signed() -> ServerTls {
    ServerTls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap()
}

fn session(service: ServiceType, version: HttpVersion, tls: &ServerTls) -> Session {
    let trust =
        TlsOptions::new().roots(multipath::tls::Roots::None).add_root_pem(tls.certificate_pem().as_bytes()).unwrap();
    Session::new(
        SessionConfig::default()
            .multipath_service_type(service)
            .http_version(version)
            .tls(trust)
            .timeout(Some(Duration::from_secs(10)))
            .read_timeout(Some(Duration::from_secs(5))),
    )
}

/// Downloads `url`, checking the body against the server's hash header.
async fn verified_download(session: &Session, url: &str) -> (u64, multipath_http::TransactionMetrics) {
    let mut response = session.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let expected = response.headers().get(HASH_HEADER).unwrap().to_str().unwrap().to_owned();
    let mut hash = Sha256::default();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        hash.update(&chunk);
        bytes += chunk.len() as u64;
    }
    assert_eq!(hash.finish_hex(), expected, "{url}: body does not match its hash");
    (bytes, response.metrics())
}

#[tokio::test]
async fn check_endpoint_and_files_over_http_and_https_in_both_versions() {
    let tls = self_signed();
    let (plain, _stop1) = server(None).await;
    let (secure, _stop2) = server(Some(tls.clone())).await;
    for (version, expect_h2) in [(HttpVersion::Http1Only, false), (HttpVersion::Http2Only, true)] {
        for (base, secure) in
            [(format!("http://{plain}"), false), (format!("https://localhost:{}", secure.port()), true)]
        {
            for service in [ServiceType::Handover, ServiceType::None] {
                let s = session(service, version, &tls);
                let what = format!("{service} {version:?} {base}");
                let r = s.get(&format!("{base}/")).header("user-agent", "curl/8.5.0").send().await.unwrap();
                let metrics = r.metrics();
                assert_eq!(metrics.http_version, if expect_h2 { "HTTP/2.0" } else { "HTTP/1.1" }, "{what}");
                assert_eq!(metrics.is_multipath, service != ServiceType::None, "{what}: {metrics:?}");
                assert_eq!(metrics.tls_version.is_some(), secure, "{what}");
                let text = r.text().await.unwrap();
                let line =
                    if service == ServiceType::None { "You are not using MPTCP.\n" } else { "You are using MPTCP.\n" };
                assert_eq!(text, line, "{what}");

                // JSON: the server's truth matches the client's.
                let r = s.get(&format!("{base}/")).header("accept", "application/json").send().await.unwrap();
                let client_says = r.metrics().is_multipath;
                let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                assert_eq!(v["mptcp"], serde_json::json!(client_says), "{what}: {v}");
                assert_eq!(v["tls"], serde_json::json!(secure), "{what}");
            }
        }
    }
    // A 10 MB file, hash verified, over HTTPS/2 and plain HTTP/1.1.
    let s = session(ServiceType::Handover, HttpVersion::Auto, &tls);
    let (bytes, metrics) = verified_download(&s, &format!("https://localhost:{}/files/10M", secure.port())).await;
    assert_eq!(bytes, 10_000_000);
    assert_eq!(metrics.alpn.as_deref(), Some("h2"), "ALPN picks HTTP/2 when offered");
    assert!(metrics.subflows.iter().map(|s| s.tcp.bytes_received.unwrap_or(0)).sum::<u64>() >= 10_000_000);
    let (bytes, _) = verified_download(&s, &format!("http://{plain}/files/10M")).await;
    assert_eq!(bytes, 10_000_000);
}

#[tokio::test]
async fn connections_are_reused_and_html_is_the_default() {
    let tls = self_signed();
    let (plain, _stop) = server(None).await;
    let s = session(ServiceType::Interactive, HttpVersion::Http1Only, &tls);
    let first = s.get(&format!("http://{plain}/")).send().await.unwrap();
    let local = first.metrics().local;
    let page = first.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("You are using MPTCP."), "{page}");
    let second = s.get(&format!("http://{plain}/files/")).send().await.unwrap();
    assert_eq!(second.metrics().local, local, "keep-alive: the same connection");
    assert!(second.text().await.unwrap().contains("/files/1000M"));
    let missing = s.get(&format!("http://{plain}/files/12X")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// A TCP server (no MPTCP) answering every request with `reply`, or doing
/// whatever `reply` describes: the bad servers of the tests below.
async fn raw_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                // The end of the request's head, or a TLS ClientHello (0x16).
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.first() != Some(&0x16) {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(reply).await;
                if reply.starts_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n") {
                    // A good server: keep the connection for the next request.
                    let _ = sock.read(&mut buf).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_plain_tcp_server_works_and_says_fell_back_unless_multipath_is_required() {
    let addr = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let s = Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover));
    let r = s.get(&format!("http://{addr}/")).send().await.unwrap();
    let m = r.metrics();
    assert!(!m.is_multipath);
    assert_eq!(m.status.unwrap().transport, Transport::FellBackToTcp);
    assert_eq!(r.text().await.unwrap(), "ok");

    let strict =
        Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover).require_multipath(true));
    let err = strict.get(&format!("http://{addr}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::MultipathUnavailable(_)), "{err}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_of_its_own_kind() {
    let quick = Session::new(
        SessionConfig::default()
            .multipath_service_type(ServiceType::Handover)
            .timeout(Some(Duration::from_secs(10)))
            .read_timeout(Some(Duration::from_secs(3))),
    );
    let err = quick.get("http://exa mple.com/").send().await.unwrap_err();
    assert!(matches!(err, HttpError::InvalidUrl { .. }), "{err}");
    let err = quick.get("ftp://example.com/").send().await.unwrap_err();
    assert!(matches!(err, HttpError::UnsupportedScheme(ref s) if s == "ftp"), "{err}");
    let err = quick.get("http://no-such-host.invalid/").send().await.unwrap_err();
    assert!(matches!(err, HttpError::Dns { .. } | HttpError::Timeout(_)), "{err}");
    let err = quick.get("http://x/").header("bad header", "v").send().await.unwrap_err();
    assert!(matches!(err, HttpError::InvalidRequest(_)), "{err}");

    // A refused port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = quick.get(&format!("http://{closed}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Connect { ref message, .. } if message.contains("refused")), "{err}");
    // The cause is kept for programs, not only flattened into the text.
    let cause = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<multipath::Error>());
    assert!(matches!(cause, Some(multipath::Error::Connect { .. })), "{cause:?}");

    // TLS: a name the certificate does not cover, and a CA nobody trusts.
    let tls = self_signed();
    let (secure, _stop) = server(Some(tls.clone())).await;
    let trusting = session(ServiceType::Handover, HttpVersion::Auto, &tls);
    let wrong_name = Session::new(
        SessionConfig::default().tls(
            TlsOptions::new()
                .roots(multipath::tls::Roots::None)
                .add_root_pem(tls.certificate_pem().as_bytes())
                .unwrap()
                .server_name("wrong.example"),
        ),
    );
    let err = wrong_name.get(&format!("https://localhost:{}/", secure.port())).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Tls { failure: TlsFailure::Certificate, .. }), "{err}");
    let untrusting = Session::new(SessionConfig::default());
    let err = untrusting.get(&format!("https://localhost:{}/", secure.port())).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Tls { failure: TlsFailure::Certificate, .. }), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // A server that closes mid-body: an error, not a short body.
    let cut = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this").await;
    let r = quick.get(&format!("http://{cut}/")).send().await.unwrap();
    let err = r.bytes().await.unwrap_err();
    assert!(matches!(err, HttpError::Protocol { .. }), "{err}");

    // Garbage instead of HTTP.
    let garbage = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let err = quick.get(&format!("http://{garbage}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Protocol { .. }), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "hyper's error is kept: {err:?}");

    // Oversized headers.
    static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let huge = HUGE.get_or_init(|| {
        let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', 1 << 20));
        r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        r
    });
    let big = raw_server(huge).await;
    let err = quick.get(&format!("http://{big}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Protocol { .. }), "{err}");

    // TLS to a server that does not speak it.
    let plain = raw_server(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    let err = trusting.get(&format!("https://localhost:{}/", plain.port())).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Tls { failure: TlsFailure::Handshake, .. }), "{err}");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let (check, _stop) = server(None).await;
    let away = format!("HTTP/1.1 301 Moved\r\nlocation: http://{check}/files/\r\ncontent-length: 0\r\n\r\n");
    let away = raw_server(Box::leak(away.into_bytes().into_boxed_slice())).await;
    let s = Session::new(SessionConfig::default().max_redirects(3));
    let r = s.get(&format!("http://{away}/")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.metrics().redirects), (200, 1));
    assert_eq!(r.url().to_string(), format!("http://{check}/files/"));
    let to_check = raw_server(b"HTTP/1.1 302 Found\r\nlocation: /files/\r\ncontent-length: 0\r\n\r\n").await;
    let s = Session::new(SessionConfig::default().max_redirects(3));
    let err = s.get(&format!("http://{to_check}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::TooManyRedirects(3)), "{err}");
    let none = Session::new(SessionConfig::default().max_redirects(0));
    let r = none.get(&format!("http://{to_check}/")).send().await.unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_then_stops_accepting() {
    let server = CheckServer::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let s = Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover));
    let mut response = s.get(&format!("http://{addr}/files/10M")).send().await.unwrap();
    let expected = response.headers().get(HASH_HEADER).unwrap().to_str().unwrap().to_owned();
    let mut hash = Sha256::default();
    let first = response.chunk().await.unwrap().unwrap();
    hash.update(&first);
    stop.send(()).unwrap();
    let mut bytes = first.len();
    while let Some(chunk) = response.chunk().await.unwrap() {
        hash.update(&chunk);
        bytes += chunk.len();
    }
    assert_eq!((bytes, hash.finish_hex()), (10_000_000, expected), "the download in flight completes");
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("serve returns").unwrap().unwrap();
    let fresh = Session::new(SessionConfig::default());
    let err = fresh.get(&format!("http://{addr}/")).send().await.unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn compressed_bodies_are_decoded_when_asked() {
    use std::io::Write;
    let text = b"You are using MPTCP.\n".repeat(100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    let mut reply =
        format!("HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n", gz.len()).into_bytes();
    reply.extend_from_slice(&gz);
    let addr = raw_server(Box::leak(reply.into_boxed_slice())).await;
    let asking = Session::new(SessionConfig::default().decompress(true));
    assert_eq!(asking.get(&format!("http://{addr}/")).send().await.unwrap().bytes().await.unwrap(), text);
    let plain = Session::new(SessionConfig::default());
    assert_eq!(plain.get(&format!("http://{addr}/")).send().await.unwrap().bytes().await.unwrap(), gz, "as sent");
}

/// A hyper server that answers every request with its method and the
/// length of the body it received: "POST 12345".
async fn body_counting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    use http_body_util::BodyExt;
                    let method = req.method().clone();
                    let body = req.into_body().collect().await?.to_bytes();
                    let reply = format!("{method} {}", body.len());
                    Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(reply))))
                });
                let io = hyper_util::rt::TokioIo::new(sock);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn request_bodies_go_out_whole_as_bytes_or_as_a_stream() {
    let addr = body_counting_server().await;
    let s = Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover));
    let url = format!("http://{addr}/upload");
    let r = s.request(http::Method::PUT, &url).body(vec![7u8; 123_456]).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "PUT 123456");
    // A stream of 100 chunks of 10 kB, produced as it is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..100 {
            tx.send(Ok(http_body::Frame::data(bytes::Bytes::from(vec![1u8; 10_000])))).await.unwrap();
        }
    });
    let stream = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let r = s.request(http::Method::POST, &url).body(multipath_http::RequestBody::stream(stream)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "POST 1000000");
}

/// An mpsc receiver as a `futures_core::Stream`, without a stream crate.
fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> ReceiverStream<T> {
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn head_gives_the_headers_without_the_body_and_other_methods_are_refused() {
    let (addr, _stop) = server(None).await;
    let s = Session::new(SessionConfig::default().multipath_service_type(ServiceType::Handover));
    let head = || s.request(http::Method::HEAD, &format!("http://{addr}/files/1M")).send();
    let r = head().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "1000000");
    // A HEAD costs the server no hashing: the hash comes once a GET made it.
    assert!(!r.headers().contains_key(HASH_HEADER));
    assert!(r.bytes().await.unwrap().is_empty());
    let got = s.get(&format!("http://{addr}/files/1M")).send().await.unwrap();
    assert!(got.headers().contains_key(HASH_HEADER));
    drop(got);
    assert!(head().await.unwrap().headers().contains_key(HASH_HEADER));
    let r = s.request(http::Method::POST, &format!("http://{addr}/")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}
