//! `mptcp bench run`: unmodified programs under `mptcp run` against the
//! same programs under `mptcpize run`, in one lab (wifi 2 ms RTT, 200
//! Mbit/s by default; cell 10 Mbit/s 60 ms), `mptcp serve` in the server namespace.
//!
//! - Bulk: curl downloads one file, the contenders alternated: throughput.
//!   Unshaped, the machine's CPU is the bottleneck (the delay line, the
//!   daemon's measuring and curl share two cores); `--wifi-mbit` shapes it.
//! - Setup: python3 connects to the server one connection after another:
//!   how long `connect()` takes (under `mptcp run` it includes handing the
//!   connection to the daemon), p50 and p99.
//! - Rate: one python3 process under `mptcp run --service handover` opens
//!   connections at a steady rate, each one request then held 300 ms:
//!   whether the daemon
//!   keeps up, as the time from the kernel's CREATED event (the SYN-ACK)
//!   to the cell join established, seen by an observer of the same events.
//!
//! `mptcpize run` runs with the kernel's path manager (what it is used
//! with); `mptcp run` with an in-process daemon in the client namespace
//! (`net.mptcp.pm_type = 1` set there only).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use multipath_lab::{Lab, LabConfig, PathConfig};
use multipath_pm::{Daemon, EventSocket};
use serde_json::json;

use crate::bench::quantile;
use crate::bench::scale::{watch, Seen};
use crate::demo::ServeProcess;

const PORT: u16 = 8080;

/// Each connection: `connect`, timed, then closed. Prints one duration in
/// microseconds per line.
const SETUP_CLIENT: &str = r#"
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    s = socket.socket()
    t = time.perf_counter()
    s.connect((host, port))
    print(int((time.perf_counter() - t) * 1e6))
    s.close()
"#;

/// Opens connections at `rate` per second for `seconds` from 64 threads,
/// each making one HTTP request and then held 300 ms; prints how many it
/// opened and how many failed.
const RATE_CLIENT: &str = r#"
import socket, sys, threading, time
host, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
THREADS = 64
counts = {"opened": 0, "failed": 0}
lock = threading.Lock()
start = time.monotonic() + 0.2
def opener(k):
    held, i = [], k
    while True:
        due = start + i / rate
        if due > start + seconds:
            break
        now = time.monotonic()
        while held and held[0][0] <= now:
            held.pop(0)[1].close()
        time.sleep(max(0.0, due - now))
        try:
            s = socket.create_connection((host, port), timeout=10)
            # A request and its answer: an MPTCP connection can add
            # subflows only once data has flowed.
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.recv(65536)
            held.append((time.monotonic() + 0.3, s))
            with lock: counts["opened"] += 1
        except OSError:
            with lock: counts["failed"] += 1
        i += THREADS
    time.sleep(0.3)
    for _, s in held:
        s.close()
threads = [threading.Thread(target=opener, args=(k,)) for k in range(THREADS)]
for t in threads: t.start()
for t in threads: t.join()
print(counts["opened"], counts["failed"])
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Launcher {
    Mptcpize,
    MptcpRun,
}

impl Launcher {
    fn name(self) -> &'static str {
        match self {
            Launcher::Mptcpize => "mptcpize run",
            Launcher::MptcpRun => "mptcp run --service handover",
        }
    }

    /// `program args` under this launcher, in the lab's client namespace.
    fn command(self, lab: &Lab, program: &str, args: &[String]) -> Result<Command> {
        let mut c = match self {
            Launcher::Mptcpize => {
                let mut c = lab.client().command("mptcpize");
                c.args(["run", program]);
                c
            }
            Launcher::MptcpRun => {
                let exe = std::env::current_exe().context("finding the mptcp binary")?;
                let mut c = lab.client().command(&exe.to_string_lossy());
                c.args(["run", "--service", "handover", "--", program]);
                c
            }
        };
        c.args(args).stdin(Stdio::null());
        Ok(c)
    }
}

/// The in-process daemon of `mptcp run`'s turns, in the client namespace.
struct RunDaemon(Option<Daemon>);

impl RunDaemon {
    fn start(lab: &Lab) -> Result<RunDaemon> {
        lab.client().sysctl("net.mptcp.pm_type", "1")?;
        let daemon = lab.client().run(|| Daemon::start(crate::pmd_config::defaults()))?;
        Ok(RunDaemon(Some(daemon)))
    }
}

impl Drop for RunDaemon {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// What the rounds measure and how.
pub struct Options<'a> {
    pub size: &'a str,
    pub rounds: usize,
    pub connects: usize,
    pub rate: f64,
    pub seconds: f64,
    /// Wifi's rate, Mbit/s; 0: unshaped.
    pub wifi_mbit: f64,
    pub json: bool,
}

pub fn run(o: Options<'_>) -> Result<()> {
    let Options { size, rounds, connects, rate, seconds, wifi_mbit, json: json_out } = o;
    if !multipath_lab::is_root() {
        bail!("the run benchmark builds a lab and runs a daemon: run it as root");
    }
    for tool in ["mptcpize", "curl", "python3"] {
        if which(tool).is_none() {
            bail!("{tool} is not installed (the benchmark compares unmodified programs)");
        }
    }
    let mut wifi = PathConfig::new("wifi").rtt(Duration::from_millis(2));
    if wifi_mbit > 0.0 {
        wifi = wifi.rate_mbit(wifi_mbit);
    }
    let config =
        LabConfig::new().path(wifi).path(PathConfig::new("cell").rate_mbit(10.0).rtt(Duration::from_millis(60)));
    let lab = Lab::up(&config)?;
    let server = std::net::SocketAddr::new(lab.server_addr().into(), PORT);
    // One client address opens hundreds of connections at once here.
    let _serve = ServeProcess::start_with(&lab, server, &["--max-per-client", "100000"])?;
    let url = format!("http://{server}/files/{size}");
    let mut bulk: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut setup: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        for launcher in [Launcher::Mptcpize, Launcher::MptcpRun] {
            let _daemon = (launcher == Launcher::MptcpRun).then(|| RunDaemon::start(&lab)).transpose()?;
            if launcher == Launcher::Mptcpize {
                lab.client().sysctl("net.mptcp.pm_type", "0")?;
            }
            let args = ["-sS", "-o", "/dev/null", "-w", "%{speed_download}", &url].map(String::from);
            let out = launcher.command(&lab, "curl", &args)?.output()?;
            if !out.status.success() {
                bail!("curl under {}: {}", launcher.name(), String::from_utf8_lossy(&out.stderr));
            }
            let bytes_per_s: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("curl's speed")?;
            bulk.entry(launcher.name()).or_default().push(bytes_per_s * 8.0 / 1e6);
            let args = ["-c", SETUP_CLIENT, &server.ip().to_string(), &PORT.to_string(), &connects.to_string()]
                .map(String::from);
            let out = launcher.command(&lab, "python3", &args)?.output()?;
            if !out.status.success() {
                bail!("python3 under {}: {}", launcher.name(), String::from_utf8_lossy(&out.stderr));
            }
            let us =
                String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.parse::<f64>().ok()).collect::<Vec<_>>();
            setup.entry(launcher.name()).or_default().extend(us.iter().map(|u| u / 1000.0));
            if !json_out {
                eprintln!("round {}: {} done", round + 1, launcher.name());
            }
        }
    }
    let burst = rate_run(&lab, server, rate, seconds)?;
    let (a, b) = (Launcher::Mptcpize.name(), Launcher::MptcpRun.name());
    let median = |v: &[f64]| crate::bench::stats::median(v);
    let ratio = median(&bulk[b]) / median(&bulk[a]);
    let q = |v: &[f64], p| quantile(v, p);
    if json_out {
        println!(
            "{}",
            json!({
                "bulk_mbit": {a: bulk[a], b: bulk[b]},
                "bulk_ratio": ratio,
                "setup_ms": {
                    a: {"p50": q(&setup[a], 0.5), "p99": q(&setup[a], 0.99)},
                    b: {"p50": q(&setup[b], 0.5), "p99": q(&setup[b], 0.99)},
                },
                "rate": burst.json(rate),
            })
        );
        return Ok(());
    }
    let shape = if wifi_mbit > 0.0 { format!("{wifi_mbit} Mbit/s") } else { "unshaped".into() };
    println!("bulk download (curl, /files/{size}, {rounds} rounds alternated; wifi {shape}, 2 ms):");
    println!("  {a:<30} median {:8.1} Mbit/s", median(&bulk[a]));
    println!("  {b:<30} median {:8.1} Mbit/s   ratio {ratio:.3}", median(&bulk[b]));
    println!("connect() time (python3, {connects} connections a round):");
    for name in [a, b] {
        println!("  {name:<30} p50 {:6.2} ms   p99 {:6.2} ms", q(&setup[name], 0.5), q(&setup[name], 0.99));
    }
    println!(
        "  overhead of mptcp run: p50 {:+.2} ms, p99 {:+.2} ms",
        q(&setup[b], 0.5) - q(&setup[a], 0.5),
        q(&setup[b], 0.99) - q(&setup[a], 0.99)
    );
    burst.print(rate, seconds);
    Ok(())
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// What the rate run saw.
struct Burst {
    opened: usize,
    failed: usize,
    /// CREATED -> the first join established, ms, per connection joined.
    to_join_ms: Vec<f64>,
    created: usize,
}

impl Burst {
    fn json(&self, rate: f64) -> serde_json::Value {
        json!({
            "rate": rate, "opened": self.opened, "failed": self.failed, "created": self.created,
            "joined": self.to_join_ms.len(),
            "to_join_ms": {"p50": quantile(&self.to_join_ms, 0.5), "p99": quantile(&self.to_join_ms, 0.99)},
        })
    }

    fn print(&self, rate: f64, seconds: f64) {
        println!(
            "{rate:.0} connections/s for {seconds} s from one python3 under mptcp run --service handover (one request each, held 300 ms):"
        );
        println!(
            "  opened {}, failed {}; {} of {} got their cell join; CREATED -> join established p50 {:.1} ms, p99 {:.1} ms",
            self.opened,
            self.failed,
            self.to_join_ms.len(),
            self.created,
            quantile(&self.to_join_ms, 0.5),
            quantile(&self.to_join_ms, 0.99)
        );
    }
}

fn rate_run(lab: &Lab, server: std::net::SocketAddr, rate: f64, seconds: f64) -> Result<Burst> {
    let _daemon = RunDaemon::start(lab)?;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let events = lab.client().run(EventSocket::open)?;
    events.set_timeout(Some(Duration::from_millis(100)))?;
    let (seen2, stop2) = (seen.clone(), stop.clone());
    let watcher = std::thread::spawn(move || watch(events, &seen2, &stop2));
    let args =
        ["-c", RATE_CLIENT, &server.ip().to_string(), &PORT.to_string(), &rate.to_string(), &seconds.to_string()]
            .map(String::from);
    let out = Launcher::MptcpRun.command(lab, "python3", &args)?.output()?;
    // Late joins of the last connections.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if !out.status.success() {
        bail!("python3 under mptcp run: {}", String::from_utf8_lossy(&out.stderr));
    }
    let counts: Vec<usize> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let Seen { created, joined, .. } = std::mem::take(&mut *seen.lock().expect("lock"));
    let to_join_ms =
        created.iter().filter_map(|(token, at)| Some(joined.get(token)?.saturating_sub(*at) as f64 / 1e6)).collect();
    Ok(Burst {
        opened: counts.first().copied().unwrap_or(0),
        failed: counts.get(1).copied().unwrap_or(0),
        to_join_ms,
        created: created.len(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_python_helpers_are_valid_python() {
        for script in [super::SETUP_CLIENT, super::RATE_CLIENT] {
            let out = std::process::Command::new("python3")
                .args(["-c", "import ast, sys; ast.parse(sys.argv[1])", script])
                .output()
                .expect("python3 runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
