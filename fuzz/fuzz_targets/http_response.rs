//! Whatever a server sends back to `mptcp get`: the input is the whole
//! response stream (status line, headers, body, or HTTP/2 frames), sent by
//! a server on loopback, read by a `Session` as `get` reads it, compressed
//! bodies decoded within limits. The first byte chooses HTTP/1.1 or HTTP/2
//! and whether to ask for compression. Redirects are not followed (a
//! fuzzed Location could name any host); `resolve`'s unit tests cover them.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multipath_http::{DecodeLimits, HttpVersion, Session, SessionConfig};

/// Most bytes a body may decode to here.
const MAX_DECODED: u64 = 8 << 20;

struct Harness {
    runtime: tokio::runtime::Runtime,
    server: SocketAddr,
    response: Arc<Mutex<Vec<u8>>>,
    sessions: [Session; 4],
}

/// One loopback server answering every connection with the current input.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let server = listener.local_addr().unwrap();
        let response = Arc::new(Mutex::new(Vec::new()));
        let answer = response.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let bytes = answer.lock().unwrap().clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(&bytes);
                    let _ = stream.shutdown(Shutdown::Write);
                    // Read until the client closes, so that closing here
                    // never resets the connection under unread data.
                    while matches!(stream.read(&mut request), Ok(n) if n > 0) {}
                });
            }
        });
        let session = |version, decompress| {
            Session::new(
                SessionConfig::default()
                    .http_version(version)
                    .decompress(decompress)
                    .decode_limits(DecodeLimits { max_size: Some(MAX_DECODED), max_ratio: Some(200) })
                    .max_redirects(0)
                    .connect_timeout(Some(Duration::from_secs(2)))
                    .timeout(Some(Duration::from_secs(2)))
                    .read_timeout(Some(Duration::from_secs(2))),
            )
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sessions = runtime.block_on(async {
            [
                session(HttpVersion::Auto, false),
                session(HttpVersion::Auto, true),
                session(HttpVersion::Http2Only, false),
                session(HttpVersion::Http2Only, true),
            ]
        });
        Harness { runtime, server, response, sessions }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, response)) = data.split_first() else { return };
    let h = harness();
    *h.response.lock().unwrap() = response.to_vec();
    let session = &h.sessions[usize::from(how % 4)];
    let url = format!("http://{}/files/1M", h.server);
    h.runtime.block_on(async {
        let Ok(mut response) = session.get(&url).send().await else { return };
        let _ = (response.status(), response.headers().len(), response.metrics());
        let mut total = 0u64;
        while let Ok(Some(chunk)) = response.chunk().await {
            total += chunk.len() as u64;
            assert!(total <= MAX_DECODED, "decoded {total} bytes past the limit of {MAX_DECODED}");
        }
    });
});
