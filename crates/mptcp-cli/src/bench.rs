//! `mptcp bench`: measurements taken side by side with their baseline in
//! the same run, reported as ratios.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use multipath::{blocking, Connection, Parameters, ServiceType};
use multipath_lab::{Lab, LabConfig, PathConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Bulk upload through `multipath` connections against raw kernel MPTCP
    /// sockets, on loopback and (as root) across an unshaped lab path.
    Throughput {
        /// Seconds per transfer.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Transfers per contender (alternated).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Skip the lab part.
        #[arg(long)]
        loopback_only: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Throughput { seconds, rounds, loopback_only, json } => {
            if !(seconds > 0.1 && rounds > 0) {
                bail!("--seconds must be over 0.1 and --rounds at least 1");
            }
            let duration = Duration::from_secs_f64(seconds);
            let mut results = vec![("loopback", throughput(None, duration, rounds)?)];
            if !loopback_only {
                if multipath_lab::is_root() {
                    let config = LabConfig::new().path(PathConfig::new("wire"));
                    let lab = Lab::up(&config).context("building the lab")?;
                    results.push(("lab path (unshaped)", throughput(Some(&lab), duration, rounds)?));
                } else {
                    eprintln!("not root: skipping the lab part (use --loopback-only to silence this)");
                }
            }
            report(&results, json);
            Ok(())
        }
    }
}

/// Median receive rates in bits/s of each contender.
struct Rates {
    raw_async: f64,
    lib_async: f64,
    raw_blocking: f64,
    lib_blocking: f64,
}

const CHUNK: usize = 128 * 1024;

fn throughput(lab: Option<&Lab>, duration: Duration, rounds: usize) -> Result<Rates> {
    let (sink, results) = start_sink(lab)?;
    let target = match lab {
        Some(lab) => SocketAddr::new(lab.server_addr().into(), sink.port()),
        None => sink,
    };
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        for (i, samples) in samples.iter_mut().enumerate() {
            let send = || -> Result<()> {
                match i {
                    0 => runtime()?.block_on(raw_async(target, duration)),
                    1 => runtime()?.block_on(lib_async(target, &params, duration)),
                    2 => send_blocking(raw_blocking(target)?, duration),
                    _ => send_blocking(blocking::Connection::connect(target, &params)?, duration),
                }
            };
            match lab {
                Some(lab) => lab.client().run(send)?,
                None => send()?,
            }
            samples.push(results.recv_timeout(Duration::from_secs(30)).context("sink result")?);
        }
    }
    let [a, b, c, d] = samples.map(median);
    Ok(Rates { raw_async: a, lib_async: b, raw_blocking: c, lib_blocking: d })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mptcp_socket() -> Result<Socket> {
    Ok(Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?)
}

/// An MPTCP listener that reads each connection to EOF and reports the
/// rate it received at.
fn start_sink(lab: Option<&Lab>) -> Result<(SocketAddr, mpsc::Receiver<f64>)> {
    let bind = || -> Result<TcpListener> {
        let s = mptcp_socket()?;
        let addr: SocketAddr = if lab.is_some() { "0.0.0.0:0" } else { "127.0.0.1:0" }.parse()?;
        s.bind(&addr.into())?;
        s.listen(16)?;
        Ok(s.into())
    };
    let listener = match lab {
        Some(lab) => lab.server().run(bind)?,
        None => bind()?,
    };
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok((mut conn, _)) = listener.accept() {
            let (mut bytes, mut first) = (0u64, None);
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                first.get_or_insert_with(Instant::now);
                bytes += n as u64;
            }
            let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            if tx.send(if secs > 0.0 { bytes as f64 * 8.0 / secs } else { 0.0 }).is_err() {
                return;
            }
        }
    });
    Ok((addr, rx))
}

async fn raw_async(target: SocketAddr, duration: Duration) -> Result<()> {
    let s = mptcp_socket()?;
    s.set_nonblocking(true)?;
    let stream = tokio::net::TcpSocket::from_std_stream(s.into()).connect(target).await?;
    send_async(stream, duration).await
}

async fn lib_async(target: SocketAddr, params: &Parameters, duration: Duration) -> Result<()> {
    let conn = Connection::connect(target, params).await?;
    if !conn.multipath_status().is_multipath() {
        bail!("benchmark connection is not multipath: {}", conn.multipath_status());
    }
    send_async(conn, duration).await
}

async fn send_async(mut w: impl tokio::io::AsyncWrite + Unpin, duration: Duration) -> Result<()> {
    let chunk = vec![0x3cu8; CHUNK];
    let end = Instant::now() + duration;
    while Instant::now() < end {
        w.write_all(&chunk).await?;
    }
    w.shutdown().await?;
    Ok(())
}

fn raw_blocking(target: SocketAddr) -> Result<TcpStream> {
    let s = mptcp_socket()?;
    s.connect(&target.into())?;
    Ok(s.into())
}

fn send_blocking(mut w: impl Write, duration: Duration) -> Result<()> {
    let chunk = vec![0x3cu8; CHUNK];
    let end = Instant::now() + duration;
    while Instant::now() < end {
        w.write_all(&chunk)?;
    }
    Ok(())
}

fn report(results: &[(&str, Rates)], json: bool) {
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "setup": name,
                    "raw_async_bps": r.raw_async, "multipath_async_bps": r.lib_async,
                    "async_ratio": r.lib_async / r.raw_async,
                    "raw_blocking_bps": r.raw_blocking, "multipath_blocking_bps": r.lib_blocking,
                    "blocking_ratio": r.lib_blocking / r.raw_blocking,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "throughput": rows }));
        return;
    }
    println!("{:<22} {:>14} {:>14} {:>7}", "setup / API", "raw Mbit/s", "multipath", "ratio");
    for (name, r) in results {
        for (api, raw, lib) in [("tokio", r.raw_async, r.lib_async), ("blocking", r.raw_blocking, r.lib_blocking)] {
            println!("{:<22} {:>14.0} {:>14.0} {:>7.3}", format!("{name} / {api}"), raw / 1e6, lib / 1e6, lib / raw);
        }
    }
}
