//! `mptcp bench aggregate --matrix`: aggregate over pairs of unlike paths,
//! each against its baselines in the same run: plain TCP on each path
//! alone, the kernel's path manager with both paths active, and
//! `multipath` aggregate. Bulk goodput as a share of the best path and of
//! the sum; short transfers (100 KB, 1 MB) as a ratio to the best path
//! alone, medians of `rounds`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::{Lab, LabConfig};

use crate::bench::lab::{prepare_with, Contender, Family};
use crate::bench::stats::median;

/// The pairs the issue names: (wifi, cell) path specs.
pub const PAIRS: [(&str, &str); 5] = [
    ("wifi:20mbit:20ms", "cell:10mbit:60ms"),
    ("wifi:20mbit:20ms", "cell:20mbit:200ms"),
    ("wifi:20mbit:20ms", "cell:3mbit:200ms:1%"),
    ("wifi:50mbit:10ms", "cell:1mbit:300ms"),
    ("wifi:5mbit:80ms", "cell:20mbit:30ms"),
];

/// Bulk goodput is counted from this far into the transfer.
const WARMUP: Duration = Duration::from_secs(8);

/// Short transfer sizes.
const SHORT: [usize; 2] = [100_000, 1_000_000];

const CONTENDERS: [Contender; 4] = [
    Contender::Alone("wifi"),
    Contender::Alone("cell"),
    Contender::Kernel { cell_backup: false },
    Contender::Multipath,
];

/// How the MPTCP contenders are set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// A fixed receive buffer (SO_RCVBUF) instead of autotuning.
    pub recv_buffer: Option<usize>,
    /// The path manager's contribution guard on.
    pub guard: bool,
    /// The server's congestion control, else the library's choice.
    pub sender_cc: Option<String>,
}

/// What one contender made of one pair.
#[derive(Clone, Debug, Default)]
struct Outcome {
    /// Bulk goodput, bit/s.
    bulk_bps: f64,
    /// Median completion time per short size; `None` where not measured (a
    /// path alone whose bulk rate alone makes it slower than the other).
    short: Vec<Option<Duration>>,
}

/// Runs the matrix (`only`: one row of it, 1-based).
pub fn run(seconds: f64, rounds: usize, only: Option<usize>, opts: Options, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the aggregate benchmark builds labs: run it as root");
    }
    // Steady state: the contribution guard takes about 6 s to judge a path.
    let duration = Duration::from_secs_f64(seconds).max(WARMUP + Duration::from_secs(4));
    let mut rows = Vec::new();
    for (i, (wifi, cell)) in PAIRS.iter().enumerate() {
        if only.is_some_and(|n| n != i + 1) {
            continue;
        }
        let config = LabConfig::new().path(crate::pathspec::parse(wifi)?).path(crate::pathspec::parse(cell)?);
        let mut outcomes: Vec<Outcome> = Vec::new();
        for contender in CONTENDERS {
            let bulk_bps =
                bulk(&config, contender, duration, &opts).with_context(|| format!("{wifi} {cell}: {contender:?}"))?;
            outcomes.push(Outcome { bulk_bps, short: Vec::new() });
        }
        // The faster path alone is timed first. The other is not timed for a
        // size its bulk rate alone makes slower than the first's median
        // (1 MB over a 1 Mbit/s path takes 8 s a round).
        let faster = if outcomes[0].bulk_bps >= outcomes[1].bulk_bps { 0 } else { 1 };
        for c in [faster, 1 - faster, 2, 3] {
            let mut short = Vec::new();
            for (s, &size) in SHORT.iter().enumerate() {
                if c == 1 - faster {
                    let floor = Duration::from_secs_f64(size as f64 * 8.0 / outcomes[c].bulk_bps);
                    if outcomes[faster].short[s].is_some_and(|t| floor > t) {
                        short.push(None);
                        continue;
                    }
                }
                let times = transfers(&config, CONTENDERS[c], size, rounds, &opts)
                    .with_context(|| format!("{wifi} {cell}: {:?}, {size} B", CONTENDERS[c]))?;
                short.push(Some(median_of(times)));
            }
            outcomes[c].short = short;
        }
        rows.push(Row { wifi, cell, outcomes });
        if !json {
            print_row(rows.last().expect("just pushed"), rows.len() == 1);
        }
    }
    if json {
        let list: Vec<_> = rows.iter().map(Row::json).collect();
        println!("{}", serde_json::json!({ "matrix": list, "seconds": duration.as_secs_f64(), "rounds": rounds }));
    } else {
        println!(
            "bulk: {:.0} s downloads counted after the first {:.0} s; short: median of {rounds} downloads, connect to last byte",
            duration.as_secs_f64(),
            WARMUP.as_secs_f64()
        );
        if !opts.guard {
            println!("multipath aggregate without its contribution guard");
        }
        if let Some(cc) = &opts.sender_cc {
            println!("the server's congestion control: {cc}");
        }
        if let Some(bytes) = opts.recv_buffer {
            println!("MPTCP contenders with SO_RCVBUF {bytes} B (the kernel doubles it, capped by net.core.rmem_max)");
        }
    }
    Ok(())
}

fn median_of(times: Vec<Duration>) -> Duration {
    Duration::from_secs_f64(median(&times.iter().map(Duration::as_secs_f64).collect::<Vec<_>>()))
}

struct Row {
    wifi: &'static str,
    cell: &'static str,
    outcomes: Vec<Outcome>,
}

impl Row {
    fn best_bulk(&self) -> f64 {
        self.outcomes[0].bulk_bps.max(self.outcomes[1].bulk_bps)
    }
    fn sum(&self) -> f64 {
        self.outcomes[0].bulk_bps + self.outcomes[1].bulk_bps
    }
    /// The best single path's median for short size `s`.
    fn best_short(&self, s: usize) -> Option<Duration> {
        self.outcomes[..2].iter().filter_map(|o| o.short.get(s).copied().flatten()).min()
    }
    fn json(&self) -> serde_json::Value {
        let each: Vec<_> = CONTENDERS
            .iter()
            .zip(&self.outcomes)
            .map(|(c, o)| {
                serde_json::json!({
                    "contender": format!("{c:?}"),
                    "bulk_bps": o.bulk_bps,
                    "of_best": o.bulk_bps / self.best_bulk(),
                    "of_sum": o.bulk_bps / self.sum(),
                    "short_s": o.short.iter().map(|t| t.map(|t| t.as_secs_f64())).collect::<Vec<_>>(),
                    "short_of_best": o.short.iter().enumerate()
                        .map(|(s, t)| t.zip(self.best_short(s)).map(|(t, b)| t.as_secs_f64() / b.as_secs_f64()))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({ "wifi": self.wifi, "cell": self.cell, "contenders": each })
    }
}

fn print_row(row: &Row, header: bool) {
    if header {
        println!(
            "{:<40} {:<20} {:>8} {:>7} {:>6} {:>16} {:>16}",
            "paths", "contender", "Mbit/s", "of best", "of sum", "100 KB (×best)", "1 MB (×best)"
        );
    }
    let names = ["wifi alone", "cell alone", "kernel PM, both", "multipath aggregate"];
    for (i, o) in row.outcomes.iter().enumerate() {
        let paths = if i == 0 { format!("{} + {}", row.wifi, row.cell) } else { String::new() };
        let short = |s: usize| match (o.short.get(s).copied().flatten(), row.best_short(s)) {
            (Some(t), Some(b)) => format!("{:.0} ms ({:.2})", t.as_secs_f64() * 1e3, t.as_secs_f64() / b.as_secs_f64()),
            _ => "slower, skipped".into(),
        };
        println!(
            "{paths:<40} {:<20} {:>8.2} {:>7.3} {:>6.3} {:>16} {:>16}",
            names[i],
            o.bulk_bps / 1e6,
            o.bulk_bps / row.best_bulk(),
            o.bulk_bps / row.sum(),
            short(0),
            short(1)
        );
    }
}

/// A fresh lab for `contender`, set up as `opts` say.
fn prepare(
    config: &LabConfig,
    contender: Contender,
    opts: &Options,
) -> Result<(Lab, Parameters, Option<std::sync::Arc<multipath_pm::Manager>>)> {
    let mut policy = multipath_pm::policy::PolicyConfig::default();
    policy.contribution.enabled = opts.guard;
    let (lab, mut params, manager) = prepare_with(config, contender, ServiceType::Aggregate, Family::V4, policy)?;
    if !matches!(contender, Contender::Alone(_)) {
        params = params.recv_buffer_size(opts.recv_buffer);
    }
    Ok((lab, params, manager))
}

/// What the client asks the lab's server for.
#[derive(Clone, Copy)]
enum Ask {
    /// Stream for this long.
    For(Duration),
    /// Send exactly this many bytes, then close.
    Bytes(usize),
}

impl Ask {
    fn encode(self) -> [u8; 9] {
        let (kind, n) = match self {
            Ask::For(d) => (b'f', d.as_millis() as u64),
            Ask::Bytes(n) => (b'b', n as u64),
        };
        let mut out = [0u8; 9];
        out[0] = kind;
        out[1..].copy_from_slice(&n.to_be_bytes());
        out
    }
    fn decode(b: [u8; 9]) -> Option<Ask> {
        let n = u64::from_be_bytes(b[1..].try_into().ok()?);
        match b[0] {
            b'f' => Some(Ask::For(Duration::from_millis(n.min(600_000)))),
            b'b' => Some(Ask::Bytes(n.min(1 << 30) as usize)),
            _ => None,
        }
    }
}

/// A server in the lab's server namespace answering [`Ask`]s, one thread
/// per connection, as an aggregate endpoint (the library's congestion
/// control choice for aggregate, on both ends).
fn serve(lab: &Lab, opts: &Options) -> Result<SocketAddr> {
    let mut params = Parameters::tcp().multipath_service_type(ServiceType::Aggregate);
    if let Some(cc) = &opts.sender_cc {
        params = params.congestion_control(cc.clone());
    }
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().expect("addr"), &params))?;
    let addr = SocketAddr::new(lab.server_addr().into(), listener.local_addr()?.port());
    std::thread::spawn(move || {
        while let Ok((mut conn, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut ask = [0u8; 9];
                if conn.read_exact(&mut ask).is_err() {
                    return;
                }
                let chunk = vec![0x77u8; 128 * 1024];
                match Ask::decode(ask) {
                    Some(Ask::For(d)) => {
                        let end = Instant::now() + d;
                        while Instant::now() < end && conn.write_all(&chunk).is_ok() {}
                    }
                    Some(Ask::Bytes(mut n)) => {
                        while n > 0 {
                            let k = n.min(chunk.len());
                            if conn.write_all(&chunk[..k]).is_err() {
                                return;
                            }
                            n -= k;
                        }
                    }
                    None => {}
                }
            });
        }
    });
    Ok(addr)
}

/// Bulk goodput of one contender in a fresh lab, counted after
/// [`WARMUP`].
fn bulk(config: &LabConfig, contender: Contender, duration: Duration, opts: &Options) -> Result<f64> {
    let (lab, params, _manager) = prepare(config, contender, opts)?;
    let server = serve(&lab, opts)?;
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params))?;
    conn.write_all(&Ask::For(duration).encode())?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let (mut counted, mut window, mut last) = (0u64, None, start);
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        last = Instant::now();
        if last - start >= WARMUP {
            match window {
                None => window = Some(last),
                Some(_) => counted += n as u64,
            }
        }
    }
    let secs = window.map_or(0.0, |w| (last - w).as_secs_f64());
    if secs <= 0.0 {
        bail!("transfer too short to measure");
    }
    Ok(counted as f64 * 8.0 / secs)
}

/// `rounds` downloads of `size` bytes, each on a new connection, in one
/// fresh lab: connect to last byte.
fn transfers(
    config: &LabConfig,
    contender: Contender,
    size: usize,
    rounds: usize,
    opts: &Options,
) -> Result<Vec<Duration>> {
    let (lab, params, _manager) = prepare(config, contender, opts)?;
    let server = serve(&lab, opts)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params))?;
        conn.write_all(&Ask::Bytes(size).encode())?;
        let mut got = 0;
        while got < size {
            match conn.read(&mut buf)? {
                0 => bail!("the server closed after {got} of {size} bytes"),
                n => got += n,
            }
        }
        times.push(started.elapsed());
    }
    Ok(times)
}
