//! `mptcp get URL`: a curl-like client over a multipath session.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use http::header::CONTENT_TYPE;
use http::Method;
use multipath::{ServiceType, TlsOptions};
use multipath_http::content::{Sha256, HASH_HEADER};
use multipath_http::{DecodeLimits, HttpError, HttpVersion, Response, Session, SessionConfig, TransactionMetrics};
use serde::Serialize;

/// How to connect: what `mptcp get` and `mptcp check` share.
#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// Multipath service type of the connection: none, handover, interactive or aggregate.
    #[arg(long, default_value = "handover")]
    pub service: ServiceType,
    /// Fail instead of falling back to TCP when the connection cannot be multipath.
    #[arg(long)]
    pub require_multipath: bool,
    /// Also trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate (encrypted, not authenticated).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// HTTP/1.1 only.
    #[arg(long = "http1.1", conflicts_with = "http2")]
    pub http1: bool,
    /// HTTP/2 only (prior knowledge over plain HTTP).
    #[arg(long)]
    pub http2: bool,
    /// Limit on getting the response head, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Limit on connecting, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Redirects followed at most.
    #[arg(long, default_value_t = 10)]
    pub max_redirects: usize,
    /// Longest wait for the next piece of the body, in seconds (0: none).
    #[arg(long, default_value_t = 60.0)]
    pub read_timeout: f64,
    /// Receive buffer: `kernel` (autotuning; also `0`), a size such as `8M`, or
    /// `auto`: fixed at max(4 MiB, tcp_rmem's maximum) where net.core.rmem_max
    /// allows 4 MiB, else the kernel's.
    #[arg(long, value_name = "SIZE", default_value = "auto")]
    pub recv_buffer: String,
}

#[derive(Args, Clone)]
pub struct GetArgs {
    /// The URL (http:// or https://).
    pub url: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Write the body to FILE (through a temporary file renamed only when complete);
    /// `-o -` writes it to stdout even when that is a terminal and the body is binary.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Request method (default GET, or POST with --data).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// Request body; `@FILE` reads it from a file.
    #[arg(long)]
    pub data: Option<String>,
    /// Print one JSON object at the end (status, bytes, duration, throughput, multipath
    /// metrics); the body then goes only to -o, if given.
    #[arg(long)]
    pub json: bool,
    /// Exit with 22 on an HTTP status of 400 or more.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// No progress bar, even on a terminal.
    #[arg(short = 's', long)]
    pub silent: bool,
    /// Ask for a gzip or deflate body and decode it.
    #[arg(long)]
    pub compressed: bool,
    /// With --compressed: most bytes the body may decode to (e.g. `2G`).
    #[arg(long, value_name = "SIZE")]
    pub max_decoded_size: Option<String>,
    /// With --compressed: most decoded bytes per compressed byte, checked
    /// beyond the first 16 MiB (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_decoded_ratio: u32,
    /// Limit on the whole transfer, in seconds (0: none), as curl's -m.
    #[arg(short = 'm', long, default_value_t = 0.0)]
    pub max_time: f64,
    /// Do not check the body against the server's x-content-sha256 (saves
    /// the hashing, about a second of CPU per GB).
    #[arg(long)]
    pub no_verify: bool,
}

/// Exit codes, one per kind of failure.
pub mod exit {
    /// Writing the output failed.
    pub const IO: i32 = 1;
    /// Malformed URL, unsupported scheme, bad header.
    pub const BAD_REQUEST: i32 = 3;
    /// The host name does not resolve.
    pub const DNS: i32 = 4;
    /// Refused, unreachable, or no connection in time.
    pub const CONNECT: i32 = 5;
    /// TLS failed (certificate, handshake).
    pub const TLS: i32 = 6;
    /// The request timed out.
    pub const TIMEOUT: i32 = 7;
    /// The server broke HTTP (garbage, cut body, oversized headers).
    pub const PROTOCOL: i32 = 8;
    /// Multipath required but unavailable.
    pub const NOT_MULTIPATH: i32 = 9;
    /// The body does not match the server's content hash.
    pub const INTEGRITY: i32 = 11;
    /// Too many redirects.
    pub const REDIRECTS: i32 = 12;
    /// HTTP status of 400 or more with --fail (as curl).
    pub const HTTP_STATUS: i32 = 22;
    /// A binary body refused to a terminal (as curl's write error).
    pub const BINARY_TO_TERMINAL: i32 = 23;
    /// A body beyond a limit (--max-decoded-size, --max-decoded-ratio), as
    /// curl's "maximum file size exceeded".
    pub const TOO_LARGE: i32 = 63;
}

/// The exit code of a failed request.
pub fn exit_code(e: &HttpError) -> i32 {
    match e {
        HttpError::InvalidUrl { .. } | HttpError::UnsupportedScheme(_) | HttpError::InvalidRequest(_) => {
            exit::BAD_REQUEST
        }
        HttpError::Dns { .. } => exit::DNS,
        HttpError::Connect { .. } => exit::CONNECT,
        HttpError::Tls { .. } => exit::TLS,
        HttpError::Timeout(_) => exit::TIMEOUT,
        HttpError::MultipathUnavailable(_) => exit::NOT_MULTIPATH,
        HttpError::TooManyRedirects(_) => exit::REDIRECTS,
        HttpError::TooLarge(_) => exit::TOO_LARGE,
        HttpError::Io(_) => exit::IO,
        _ => exit::PROTOCOL,
    }
}

/// The session `args` describe; `compressed` asks for gzip/deflate bodies.
pub fn session(args: &ConnectArgs, compressed: bool) -> Result<Session> {
    session_with(args, compressed, DecodeLimits::default())
}

/// [`session`], with bounds on decoding compressed bodies.
fn session_with(args: &ConnectArgs, compressed: bool, limits: DecodeLimits) -> Result<Session> {
    let mut tls = TlsOptions::new();
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        tls = tls.add_root_pem(&pem).with_context(|| format!("in {}", path.display()))?;
    }
    if args.insecure {
        eprintln!(
            "WARNING: --insecure: the server's certificate is NOT verified; anyone on the path can impersonate it"
        );
        tls = tls.danger_accept_invalid_certificates(true);
    }
    let version = match (args.http1, args.http2) {
        (true, _) => HttpVersion::Http1Only,
        (_, true) => HttpVersion::Http2Only,
        _ => HttpVersion::Auto,
    };
    let secs = |s: f64| Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero());
    Ok(Session::new(
        SessionConfig::default()
            .multipath_service_type(args.service)
            .require_multipath(args.require_multipath)
            .http_version(version)
            .tls(tls)
            .timeout(secs(args.timeout))
            .connect_timeout(secs(args.connect_timeout))
            .max_redirects(args.max_redirects)
            .read_timeout(secs(args.read_timeout))
            .decompress(compressed)
            .decode_limits(limits)
            .recv_buffer_size(recv_buffer(&args.recv_buffer)?)
            .user_agent(concat!("mptcp-get/", env!("CARGO_PKG_VERSION"))),
    ))
}

/// A fixed receive buffer for a download, because the kernel's MPTCP
/// autotuning collapses when the body is consumed more slowly than it
/// arrives over a fast path (see `Parameters::recv_buffer_size`): hashing a
/// 1 GB download on loopback went from 0.1-2 to 7-8 Gbit/s.
fn recv_buffer(spec: &str) -> Result<Option<usize>> {
    match spec {
        "kernel" | "0" => Ok(None),
        "auto" => {
            let read = |path: &str| std::fs::read_to_string(path).ok();
            let rmem_max = read("/proc/sys/net/core/rmem_max").and_then(|m| m.trim().parse().ok());
            let tcp_rmem_max = read("/proc/sys/net/ipv4/tcp_rmem")
                .and_then(|t| t.split_whitespace().nth(2).and_then(|m| m.parse().ok()));
            Ok(auto_recv_buffer(rmem_max, tcp_rmem_max))
        }
        size => {
            let bad = |why: String| anyhow::anyhow!("--recv-buffer {size:?}: {why}; or `auto` or `kernel`");
            let bytes = multipath_http::content::parse_size(size).map_err(|e| bad(e.to_string()))?;
            match usize::try_from(bytes) {
                Ok(b) if b <= multipath::MAX_RECV_BUFFER => Ok(Some(b)),
                _ => Err(bad(format!("at most {} bytes", multipath::MAX_RECV_BUFFER))),
            }
        }
    }
}

/// `auto`: at least 4 MiB and as large as autotuning could grow
/// (`tcp_rmem`'s maximum), within `rmem_max`, so the fixed buffer never
/// caps the window below what the kernel would have reached. Nothing where
/// rmem_max is under 4 MiB (often 208 KiB): there the cap would bite.
fn auto_recv_buffer(rmem_max: Option<usize>, tcp_rmem_max: Option<usize>) -> Option<usize> {
    const FLOOR: usize = 4 << 20;
    let rmem_max = rmem_max.filter(|&m| m >= FLOOR)?;
    Some(tcp_rmem_max.unwrap_or(FLOOR).max(FLOOR).min(rmem_max).min(multipath::MAX_RECV_BUFFER))
}

#[derive(Serialize)]
struct Summary {
    status: u16,
    bytes: u64,
    duration_s: f64,
    throughput_mbit_s: f64,
    /// Whether the body matched the server's `x-content-sha256`; absent
    /// when the server sent none.
    verified: Option<bool>,
    output: Option<PathBuf>,
    metrics: TransactionMetrics,
}

pub fn run(args: GetArgs) -> Result<()> {
    let limit = Duration::try_from_secs_f64(args.max_time).ok().filter(|d| !d.is_zero());
    exit_with(async {
        match limit {
            // On expiry the transfer's future is dropped, and with it the
            // temporary file.
            Some(limit) => tokio::time::timeout(limit, get(&args)).await.unwrap_or_else(|_| {
                eprintln!("error: the transfer took longer than --max-time {}", args.max_time);
                Ok(exit::TIMEOUT)
            }),
            None => get(&args).await,
        }
    })
}

/// Runs `work` on this thread and exits with the code it returns, unless 0.
///
/// The runtime has one worker thread, where hyper's connection task reads
/// the socket while this thread consumes the body (hash, file): the socket
/// is drained during the consumer's work, not after it. Measured on
/// loopback against a single-thread runtime: 16.2 against 14.8 Gbit/s.
pub fn exit_with(work: impl std::future::Future<Output = Result<i32>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let code = rt.block_on(work)?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Runs the request; the process exit code.
async fn get(args: &GetArgs) -> Result<i32> {
    let bad_request = |why: String| {
        eprintln!("error: {why}");
        Ok(exit::BAD_REQUEST)
    };
    let max_size = match args.max_decoded_size.as_deref().map(multipath_http::content::parse_size).transpose() {
        Ok(size) => size,
        Err(e) => return bad_request(format!("--max-decoded-size: {e}")),
    };
    let limits = DecodeLimits { max_size, max_ratio: Some(args.max_decoded_ratio).filter(|&r| r > 0) };
    let session = session_with(&args.connect, args.compressed, limits)?;
    let body = match &args.data {
        Some(d) => Some(match d.strip_prefix('@') {
            Some(path) => std::fs::read(path).with_context(|| format!("reading {path}"))?,
            None => d.clone().into_bytes(),
        }),
        None => None,
    };
    let method = match &args.method {
        Some(m) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => return bad_request(format!("{m:?} is not an HTTP method")),
        },
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut request = session.request(method, &args.url);
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return bad_request(format!("header {h:?} is not `Name: value`"));
        };
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let started = Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Ok(failed(&e)),
    };
    let status = response.status().as_u16();
    if args.fail && status >= 400 {
        // As curl's -f: nothing of the error page is written, and an
        // existing output file stays as it was.
        eprintln!("error: the server answered {}", response.status());
        return Ok(exit::HTTP_STATUS);
    }
    let to_terminal = args.output.is_none() && !args.json && std::io::stdout().is_terminal();
    if to_terminal && !is_text(response.headers()) {
        // As curl: binary bytes would garble the terminal and the progress bar.
        let kind = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("no content type");
        eprintln!(
            "error: the body is binary ({kind}) and stdout is a terminal; use -o FILE, or -o - to print it anyway"
        );
        return Ok(exit::BINARY_TO_TERMINAL);
    }
    let mut sink = Sink::open(args.output.as_deref(), !args.json)?;
    let expected = response.headers().get(HASH_HEADER).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let expected = expected.filter(|_| !args.no_verify);
    let progress = !args.silent && !args.json && std::io::stderr().is_terminal();
    let (bytes, hash, response) = match receive(response, &mut sink, progress, expected.is_some()).await {
        Ok(r) => r,
        Err(e) => return Ok(failed(&e)), // the sink's drop removes the partial file
    };
    let verified = expected.map(|e| Some(e) == hash.map(Sha256::finish_hex));
    let elapsed = started.elapsed();
    // A body that fails its hash never appears under the final name.
    let output = if verified == Some(false) { None } else { sink.finish()? };
    let metrics = response.metrics();
    let summary = Summary {
        status,
        bytes,
        duration_s: elapsed.as_secs_f64(),
        throughput_mbit_s: bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6,
        verified,
        output,
        metrics,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        report(&summary);
    }
    if verified == Some(false) {
        eprintln!("error: the body does not match the server's {HASH_HEADER}");
        return Ok(exit::INTEGRITY);
    }
    Ok(0)
}

/// Whether the body is declared text a terminal can show.
fn is_text(headers: &http::HeaderMap) -> bool {
    let Some(kind) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let kind = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    kind.starts_with("text/") || ["json", "xml", "javascript", "x-www-form-urlencoded"].iter().any(|t| kind.contains(t))
}

fn failed(e: &HttpError) -> i32 {
    eprintln!("error: {e}");
    if let Some(hint) = hint(e) {
        eprintln!("hint: {hint}");
    }
    exit_code(e)
}

/// What the user can do about `e`, when there is something.
pub fn hint(e: &HttpError) -> Option<&'static str> {
    match e {
        HttpError::Tls { failure: multipath::tls::TlsFailure::Certificate, .. } => Some(
            "the server's certificate is not trusted here: pass its CA with --cacert FILE \
             (`mptcp serve --cert-out FILE` writes its own), or -k to skip verification",
        ),
        _ => None,
    }
}

/// Streams the body into the sink, hashing it when asked; the byte count,
/// the hash and the response (for its metrics, read after the body).
async fn receive(
    mut response: Response,
    sink: &mut Sink,
    progress: bool,
    verify: bool,
) -> Result<(u64, Option<Sha256>, Response), HttpError> {
    let total = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let mut bar = progress.then(|| Progress::new(total));
    let mut hash = verify.then(Sha256::default);
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        if let Some(h) = &mut hash {
            h.update(&chunk);
        }
        sink.write(&chunk)?;
        bytes += chunk.len() as u64;
        if let Some(bar) = &mut bar {
            bar.update(bytes);
        }
    }
    if let Some(bar) = &mut bar {
        bar.done(bytes);
    }
    Ok((bytes, hash, response))
}

fn report(s: &Summary) {
    let m = &s.metrics;
    let transport = m.status.as_ref().map_or("unknown".to_owned(), |st| st.to_string());
    eprintln!(
        "{} {} in {:.2} s ({:.1} Mbit/s), {}{}",
        s.status,
        human(s.bytes),
        s.duration_s,
        s.throughput_mbit_s,
        m.http_version,
        m.tls_version.as_deref().map(|v| format!(" over {v}")).unwrap_or_default(),
    );
    eprintln!("connection: {transport}");
    if !m.is_multipath {
        // A TCP socket's own figures, not a subflow's.
        if let Some(sf) = m.subflows.first() {
            eprintln!(
                "  TCP, no subflows: {} -> {}: received {}, sent {}",
                sf.local,
                sf.remote,
                human(sf.tcp.bytes_received.unwrap_or(0)),
                human(sf.tcp.bytes_acked.unwrap_or(0))
            );
        }
    }
    for sf in m.subflows.iter().filter(|_| m.is_multipath) {
        eprintln!(
            "  subflow {} {} -> {}{}: received {}, sent {}",
            sf.id,
            sf.local,
            sf.remote,
            sf.interface.as_deref().map(|i| format!(" ({i})")).unwrap_or_default(),
            human(sf.tcp.bytes_received.unwrap_or(0)),
            human(sf.tcp.bytes_acked.unwrap_or(0)),
        );
    }
    if s.verified == Some(true) {
        eprintln!("content hash verified");
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.2} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// Where the body goes: stdout, nowhere, a device or pipe named by `-o`
/// (written in place, as curl does: `-o /dev/null` must never replace
/// `/dev/null`), or a temporary file next to the target that becomes the
/// target only when complete.
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    Discard,
    Stream { file: std::io::BufWriter<std::fs::File>, target: PathBuf },
    File { file: std::io::BufWriter<std::fs::File>, temp: PathBuf, target: PathBuf, done: bool },
}

impl Sink {
    fn open(output: Option<&Path>, stdout: bool) -> Result<Sink> {
        Ok(match output {
            Some(dash) if dash == Path::new("-") => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
            Some(target) => match special_file(target)? {
                Some(file) => Sink::Stream { file: std::io::BufWriter::new(file), target: target.to_owned() },
                None => {
                    let (file, temp) = create_temp_beside(target)?;
                    Sink::File { file: std::io::BufWriter::new(file), temp, target: target.to_owned(), done: false }
                }
            },
            None if stdout => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
            None => Sink::Discard,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(bytes),
            Sink::Discard => Ok(()),
            Sink::Stream { file, .. } | Sink::File { file, .. } => file.write_all(bytes),
        }
    }

    /// Flushes; renames a complete file into place.
    fn finish(mut self) -> Result<Option<PathBuf>> {
        match &mut self {
            Sink::Stdout(w) => {
                w.flush()?;
                Ok(None)
            }
            Sink::Discard => Ok(None),
            Sink::Stream { file, target } => {
                file.flush()?;
                Ok(Some(target.clone()))
            }
            Sink::File { file, temp, target, done } => {
                file.flush()?;
                file.get_ref().sync_all()?;
                std::fs::rename(&*temp, &*target).with_context(|| format!("renaming to {}", target.display()))?;
                *done = true;
                Ok(Some(target.clone()))
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::File { temp, done: false, .. } = self {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Opens `target` for writing in place if it is a character device or a
/// FIFO (`/dev/null`, `/dev/stdout`, a named pipe): renaming a file over
/// those would destroy them. A symbolic link is followed only if root or
/// the caller owns it, so a link planted in a shared directory can't aim
/// the download at a device; block devices are refused outright.
fn special_file(target: &Path) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let link = match std::fs::symlink_metadata(target) {
        Ok(link) => link,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("-o {}", target.display())),
    };
    let kind = if link.file_type().is_symlink() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if link.uid() != 0 && link.uid() != me {
            // Not followed: the rename replaces the link itself.
            return Ok(None);
        }
        match std::fs::metadata(target) {
            Ok(meta) => meta.file_type(),
            Err(_) => return Ok(None),
        }
    } else {
        link.file_type()
    };
    if kind.is_block_device() {
        anyhow::bail!("-o {} is a block device; refusing to write a download onto it", target.display());
    }
    if !(kind.is_char_device() || kind.is_fifo()) {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .with_context(|| format!("opening {}", target.display()))?;
    Ok(Some(file))
}

/// Creates the temporary file for `target` in its directory, exclusively
/// (an existing file or symbolic link of that name is never opened) and
/// under a name nobody can predict.
fn create_temp_beside(target: &Path) -> Result<(std::fs::File, PathBuf)> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::OpenOptionsExt;
    let name = target.file_name().context("-o needs a file name")?.to_string_lossy();
    let mut last = None;
    for _ in 0..8 {
        // RandomState is seeded from the OS's random source.
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let temp = target.with_file_name(format!(".{name}.part-{}-{nonce:016x}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(&temp) {
            Ok(file) => return Ok((file, temp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e).with_context(|| format!("creating {}", temp.display())),
        }
    }
    Err(last.expect("tried")).context("no free temporary name beside the output file")
}

/// A one-line progress bar on stderr, redrawn at most 5 times a second.
struct Progress {
    total: Option<u64>,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let now = Instant::now();
        Progress { total, started: now, drawn: now }
    }

    fn update(&mut self, bytes: u64) {
        if self.drawn.elapsed() >= Duration::from_millis(200) {
            self.draw(bytes);
            self.drawn = Instant::now();
        }
    }

    fn draw(&self, bytes: u64) {
        let rate = bytes as f64 * 8.0 / self.started.elapsed().as_secs_f64().max(1e-9) / 1e6;
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (bytes as f64 / total as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                format!(
                    "[{}{}] {:5.1}% {} {:.1} Mbit/s",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    human(bytes),
                    rate
                )
            }
            _ => format!("{} {:.1} Mbit/s", human(bytes), rate),
        };
        eprint!("\r{line}\x1b[K");
    }

    fn done(&self, bytes: u64) {
        self.draw(bytes);
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::{auto_recv_buffer, recv_buffer};

    #[test]
    fn receive_buffer_specs() {
        assert_eq!(recv_buffer("kernel").unwrap(), None);
        assert_eq!(recv_buffer("0").unwrap(), None);
        assert_eq!(recv_buffer("8M").unwrap(), Some(8_000_000));
        assert_eq!(recv_buffer("65536").unwrap(), Some(65_536));
        assert_eq!(recv_buffer("1000M").unwrap(), Some(1_000_000_000));
        for bad in ["", "big", "4T", "-1", "2G", "100G"] {
            let e = recv_buffer(bad).unwrap_err().to_string();
            assert!(e.contains("--recv-buffer"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn auto_receive_buffer_never_undercuts_autotuning() {
        const MIB: usize = 1 << 20;
        // A stock rmem_max (208 KiB): leave autotuning alone.
        assert_eq!(auto_recv_buffer(Some(212_992), Some(6 * MIB)), None);
        assert_eq!(auto_recv_buffer(None, Some(6 * MIB)), None);
        // This machine: rmem_max 4 MiB, tcp_rmem up to 32 MiB.
        assert_eq!(auto_recv_buffer(Some(4 * MIB), Some(32 * MIB)), Some(4 * MIB));
        // A raised rmem_max: as far as autotuning would go, and no further.
        assert_eq!(auto_recv_buffer(Some(64 * MIB), Some(32 * MIB)), Some(32 * MIB));
        assert_eq!(auto_recv_buffer(Some(64 * MIB), Some(MIB)), Some(4 * MIB));
        assert_eq!(auto_recv_buffer(Some(usize::MAX), Some(usize::MAX)), Some(multipath::MAX_RECV_BUFFER));
    }
}
