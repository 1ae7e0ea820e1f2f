//! `mptcp serve`: the check.mptcp.dev-compatible server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use multipath_http::server::{CheckServer, ServerLimits, ServerTls};

#[derive(Args)]
pub struct ServeArgs {
    /// Plain HTTP on this address (repeatable). Default 0.0.0.0:8080 when
    /// no --https is given either.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Vec<SocketAddr>,
    /// HTTPS on this address (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    https: Vec<SocketAddr>,
    /// Certificate chain (PEM) for HTTPS; without it a self-signed
    /// certificate is made at start and its fingerprint printed.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Write the HTTPS certificate (PEM) to FILE, for clients' --cacert
    /// (created exclusively: an existing file is never replaced).
    #[arg(long, value_name = "FILE")]
    cert_out: Option<PathBuf>,
    /// A name the self-signed certificate covers (repeatable; localhost,
    /// 127.0.0.1 and ::1 always are).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds a client has to send a request's head; also the longest an
    /// HTTP/1.1 connection may sit idle between requests.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds without a byte in either direction after which a connection
    /// is closed (a silent client, an idle one, a download nobody reads).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Connections at once; beyond, new ones wait in the kernel's backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Connections at once from one client address; beyond, they are closed.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_per_client: usize,
    /// Seconds requests in flight may take after SIGINT/SIGTERM before their
    /// connections are cut (a second signal stops at once).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    grace: f64,
}

impl ServeArgs {
    fn limits(&self) -> Result<ServerLimits> {
        let secs = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("--{name} {s}: a positive number of seconds"))
        };
        if self.max_connections == 0 || self.max_per_client == 0 {
            bail!("--max-connections and --max-per-client must be at least 1");
        }
        Ok(ServerLimits {
            header_read: secs("header-timeout", self.header_timeout)?,
            handshake: secs("handshake-timeout", self.handshake_timeout)?,
            idle: secs("idle-timeout", self.idle_timeout)?,
            connections: self.max_connections,
            per_client: self.max_per_client,
            grace: Duration::try_from_secs_f64(self.grace).context("--grace: a number of seconds")?,
        })
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?;
    rt.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let limits = args.limits()?;
    let http = if args.http.is_empty() && args.https.is_empty() {
        vec!["0.0.0.0:8080".parse().expect("valid")]
    } else {
        args.http.clone()
    };
    let tls = if args.https.is_empty() {
        None
    } else if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        Some(ServerTls::from_pem_files(cert, key).context("loading the certificate")?)
    } else {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        names.extend(args.names.iter().cloned());
        let tls = ServerTls::self_signed(&names).context("making a self-signed certificate")?;
        eprintln!("self-signed certificate for {}; SHA-256 fingerprint {}", names.join(", "), tls.fingerprint());
        Some(tls)
    };
    if let Some(out) = &args.cert_out {
        let Some(tls) = &tls else { bail!("--cert-out needs --https") };
        write_certificate(out, tls.certificate_pem())?;
        eprintln!("certificate written to {} (mptcp get --cacert {0} https://...)", out.display());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let listeners = http.iter().map(|a| (*a, None)).chain(args.https.iter().map(|a| (*a, tls.clone())));
    for (addr, tls) in listeners {
        let secure = tls.is_some();
        let server = CheckServer::bind(addr, tls).with_context(|| format!("listening on {addr}"))?.limits(limits);
        let scheme = if secure { "https" } else { "http" };
        eprintln!("serving {scheme}://{}", server.local_addr()?);
        let mut stop = stop_rx.clone();
        servers.spawn(server.serve(async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        Some(r) = servers.join_next() => {
            // A server stopped on its own: report it.
            r.context("server task")?.context("server")?;
        }
    }
    eprintln!("stopping: finishing requests in flight for at most {:?} (signal again to stop now)", limits.grace);
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(r) = servers.join_next().await {
            r.context("server task")?.context("server")?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = drain => r,
        _ = int.recv() => now(),
        _ = term.recv() => now(),
    }
}

/// Writes the certificate to a new file: exclusively, so neither an
/// existing file nor a planted symlink is followed or replaced.
fn write_certificate(path: &std::path::Path, pem: &str) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).with_context(|| {
            format!("--cert-out {}: creating it (an existing file is never replaced)", path.display())
        })?;
    f.write_all(pem.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// A second signal: stop at once.
fn now() -> Result<()> {
    eprintln!("stopped at once");
    std::process::exit(130)
}
