//! `mptcp bench throughput`: bulk upload through `multipath` connections
//! against raw kernel MPTCP sockets, on loopback and across a lab path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use multipath::{blocking, Connection, Parameters, ServiceType};
use multipath_lab::{Lab, LabConfig, PathConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;

use super::stats::quantile;

/// `mptcp bench throughput`.
pub fn run(seconds: f64, rounds: usize, loopback_only: bool, json: bool) -> Result<()> {
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

/// One transfer: rate at the receiver, sender CPU per byte.
#[derive(Clone, Copy, Debug)]
struct Sample {
    bps: f64,
    cpu_ns_per_byte: f64,
}

/// Raw kernel socket against `multipath`, for one API, one sample each per
/// round.
#[derive(Default)]
struct Pair {
    raw: Vec<Sample>,
    lib: Vec<Sample>,
}

impl Pair {
    fn median(samples: &[Sample], f: fn(&Sample) -> f64) -> f64 {
        quantile(&samples.iter().map(f).collect::<Vec<_>>(), 0.5)
    }
    fn raw_bps(&self) -> f64 {
        Self::median(&self.raw, |s| s.bps)
    }
    fn lib_bps(&self) -> f64 {
        Self::median(&self.lib, |s| s.bps)
    }
    /// Throughput, multipath / raw, of the medians.
    fn ratio(&self) -> f64 {
        self.lib_bps() / self.raw_bps()
    }
    /// Sender CPU per byte, raw / multipath, of the medians: below 1 when
    /// the library costs more per byte.
    fn cpu_ratio(&self) -> f64 {
        Self::median(&self.raw, |s| s.cpu_ns_per_byte) / Self::median(&self.lib, |s| s.cpu_ns_per_byte)
    }
}

/// The tokio and the blocking comparison of one setup.
struct Rates {
    tokio: Pair,
    blocking: Pair,
}

const CHUNK: usize = 128 * 1024;

/// Rounds alternate which sender goes first. Throughput is measured at the
/// receiver; the sender's CPU time (user + system, of its thread) per byte
/// is measured too, because on a shared VM back-to-back transfers vary by
/// ±30% in throughput, while the work the library adds per byte is what
/// could make it slower than a raw socket.
fn throughput(lab: Option<&Lab>, duration: Duration, rounds: usize) -> Result<Rates> {
    let (sink, results) = start_sink(lab)?;
    let target = match lab {
        Some(lab) => SocketAddr::new(lab.server_addr().into(), sink.port()),
        None => sink,
    };
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let mut rates = Rates { tokio: Pair::default(), blocking: Pair::default() };
    for round in 0..rounds {
        for (raw, lib, pair) in [
            (Sender::RawTokio, Sender::LibTokio, &mut rates.tokio),
            (Sender::RawBlocking, Sender::LibBlocking, &mut rates.blocking),
        ] {
            let order = if round % 2 == 0 { [raw, lib] } else { [lib, raw] };
            for sender in order {
                let send = || sender.send(target, &params, duration);
                // A thread of its own either way, so CPU time is the sender's alone.
                let sent = match lab {
                    Some(lab) => lab.client().run(send),
                    None => std::thread::scope(|s| s.spawn(send).join()).expect("sender thread"),
                }?;
                let (peer, bytes, bps) = results.recv_timeout(Duration::from_secs(30)).context("sink result")?;
                if peer != sent.local {
                    bail!("the sink saw {peer}, the sender was {}", sent.local);
                }
                let sample = Sample { bps, cpu_ns_per_byte: sent.cpu.as_nanos() as f64 / bytes.max(1) as f64 };
                match sender {
                    Sender::RawTokio | Sender::RawBlocking => pair.raw.push(sample),
                    _ => pair.lib.push(sample),
                }
            }
        }
    }
    Ok(rates)
}

/// What one sender did.
struct Sent {
    local: SocketAddr,
    /// CPU time of the sending thread.
    cpu: Duration,
}

#[derive(Clone, Copy)]
enum Sender {
    RawTokio,
    LibTokio,
    RawBlocking,
    LibBlocking,
}

impl Sender {
    /// Sends for `duration` on the calling thread; returns the connection's
    /// local address (to match the sink's report) and the thread's CPU time.
    fn send(self, target: SocketAddr, params: &Parameters, duration: Duration) -> Result<Sent> {
        let cpu_before = thread_cpu_time();
        let local = match self {
            Sender::RawTokio => runtime()?.block_on(async {
                let s = mptcp_socket()?;
                s.set_nonblocking(true)?;
                let stream = tokio::net::TcpSocket::from_std_stream(s.into()).connect(target).await?;
                let local = stream.local_addr()?;
                send_async(stream, duration).await.map(|_| local)
            }),
            Sender::LibTokio => runtime()?.block_on(async {
                let conn = Connection::connect(target, params).await?;
                if !conn.multipath_status().is_multipath() {
                    bail!("benchmark connection is not multipath: {}", conn.multipath_status());
                }
                let local = conn.local_addr()?;
                send_async(conn, duration).await.map(|_| local)
            }),
            Sender::RawBlocking => {
                let s = mptcp_socket()?;
                s.connect(&target.into())?;
                let stream: TcpStream = s.into();
                let local = stream.local_addr()?;
                send_blocking(stream, duration).map(|_| local)
            }
            Sender::LibBlocking => {
                let conn = blocking::Connection::connect(target, params)?;
                if !conn.multipath_status().is_multipath() {
                    bail!("benchmark connection is not multipath: {}", conn.multipath_status());
                }
                let local = conn.local_addr()?;
                send_blocking(conn, duration).map(|_| local)
            }
        }?;
        Ok(Sent { local, cpu: thread_cpu_time() - cpu_before })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn mptcp_socket() -> Result<Socket> {
    Ok(Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?)
}

/// Peer address, bytes and bits/s of one received connection.
type SinkReport = (SocketAddr, u64, f64);

/// An MPTCP listener that reads each connection to EOF on a thread of its
/// own and reports (peer address, bytes, bits/s received).
fn start_sink(lab: Option<&Lab>) -> Result<(SocketAddr, mpsc::Receiver<SinkReport>)> {
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
        while let Ok((mut conn, peer)) = listener.accept() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let (mut bytes, mut first) = (0u64, None);
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    first.get_or_insert_with(Instant::now);
                    bytes += n as u64;
                }
                let secs = first.map_or(0.0, |f: Instant| f.elapsed().as_secs_f64());
                let _ = tx.send((peer, bytes, if secs > 0.0 { bytes as f64 * 8.0 / secs } else { 0.0 }));
            });
        }
    });
    Ok((addr, rx))
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

fn send_blocking(mut w: impl Write, duration: Duration) -> Result<()> {
    let chunk = vec![0x3cu8; CHUNK];
    let end = Instant::now() + duration;
    while Instant::now() < end {
        w.write_all(&chunk)?;
    }
    Ok(())
}

fn report(results: &[(&str, Rates)], json: bool) {
    let rows = results.iter().flat_map(|(setup, r)| [(*setup, "tokio", &r.tokio), (*setup, "blocking", &r.blocking)]);
    if json {
        let rows: Vec<_> = rows
            .map(|(setup, api, p)| {
                serde_json::json!({
                    "setup": setup, "api": api, "rounds": p.raw.len(),
                    "raw_median_bps": p.raw_bps(), "multipath_median_bps": p.lib_bps(),
                    "throughput_ratio": p.ratio(), "cpu_per_byte_ratio": p.cpu_ratio(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "throughput": rows }));
        return;
    }
    println!(
        "{:<32} {:>11} {:>11} {:>11} {:>14}",
        "setup / API", "raw Mbit/s", "multipath", "throughput", "sender CPU/B"
    );
    for (setup, api, p) in rows {
        let name = format!("{setup} / {api}");
        println!(
            "{name:<32} {:>11.0} {:>11.0} {:>11.3} {:>14.3}",
            p.raw_bps() / 1e6,
            p.lib_bps() / 1e6,
            p.ratio(),
            p.cpu_ratio()
        );
    }
    let rounds = results.first().map_or(0, |r| r.1.tokio.raw.len());
    println!("medians of {rounds} transfers each; ratios are multipath relative to raw (1.0 = equal, below = worse)");
}

/// CPU time (user + system) the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
