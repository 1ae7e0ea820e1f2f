//! `mptcp bench scale`: many concurrent connections, opened at a steady
//! rate, each registered with one path-manager daemon; beside the kernel's
//! path manager doing the same job in the same run.
//!
//! Measured: how long from the kernel's ESTABLISHED event (seen by an
//! observer subscribed to the same multicast group) to the daemon's
//! SUBFLOW_CREATE; from ESTABLISHED to the cell join being established
//! (both contenders); resident memory and CPU time the daemon adds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use multipath::daemon_client::Daemon as DaemonClient;
use multipath::ServiceType;
use multipath_lab::{Lab, LabConfig};
use multipath_pm::{Event, EventSocket};
use socket2::{Domain, Protocol, Socket, Type};

use crate::bench::quantile;
use crate::pmd::monotonic_ns;

/// Threads opening connections: each connect takes about one RTT, so this
/// many keep a rate of a few thousand per second going.
const OPENERS: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    /// The kernel's path manager with cell as a subflow endpoint.
    Kernel,
    /// Every connection registered with one `multipath` daemon.
    Daemon,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    opened: usize,
    failed: usize,
    open_secs: f64,
    /// ESTABLISHED → the daemon's accepted SUBFLOW_CREATE, ms.
    to_command_ms: Vec<f64>,
    /// ESTABLISHED → SUB_ESTABLISHED of the join, ms.
    to_join_ms: Vec<f64>,
    /// Connections with an established join at the end.
    joined: usize,
    rss_growth_kib: i64,
    /// CPU seconds of the daemon's threads while connections opened, and
    /// per second while they sat idle.
    daemon_cpu_open: f64,
    daemon_cpu_idle_per_s: f64,
    refused: usize,
    /// Refused commands by name.
    refused_by: std::collections::BTreeMap<String, usize>,
    /// Busy connections in the busy phase, and the daemon's CPU share then.
    busy: usize,
    daemon_cpu_busy_per_s: f64,
    /// The daemon's open descriptors: before any connection, with all of
    /// them open, and once they closed.
    fds: (usize, usize, usize),
}

pub fn run(connections: usize, rate: f64, busy: usize, service: ServiceType, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the scale benchmark builds labs and runs a daemon: run it as root");
    }
    if connections == 0 || rate.is_nan() || rate <= 0.0 {
        bail!("--connections must be at least 1 and --rate above 0");
    }
    if service == ServiceType::None {
        bail!("--service none manages nothing; pick handover, interactive or aggregate");
    }
    if connections > 19_000 {
        bail!("at most 19,000 connections: each needs a descriptor in this process");
    }
    let kernel = once(Contender::Kernel, connections, rate, 0, service)?;
    let daemon = once(Contender::Daemon, connections, rate, busy.min(connections), service)?;
    report(&kernel, &daemon, connections, rate, service, json);
    Ok(())
}

fn once(contender: Contender, connections: usize, rate: f64, busy: usize, service: ServiceType) -> Result<Run> {
    let lab = Lab::up(&LabConfig::wifi_cell()).context("building the lab")?;
    // The server and the daemon run as processes of their own: each holds a
    // descriptor per connection, and this process's open-file limit (20,000
    // here, and not raisable without CAP_SYS_RESOURCE) must only cover the
    // clients. It also makes the daemon's memory its own.
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let mut server_proc = Child(
        lab.server()
            .command(&exe)
            .args(["bench", "scale-server"])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the greeting server")?,
    );
    let mut port = String::new();
    BufReader::new(server_proc.0.stdout.take().context("server stdout")?).read_line(&mut port)?;
    let server = SocketAddr::new(lab.server_addr().into(), port.trim().parse().context("the server's port")?);

    // The observer joins the events group before any connection exists.
    let observer = lab.client().run(EventSocket::open)?;
    observer.set_timeout(Some(Duration::from_millis(100)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || watch(observer, &seen, &stop))
    };

    let dir = std::env::temp_dir().join(format!("{}-scale", lab.name()));
    std::fs::create_dir_all(&dir)?;
    let (socket, log, config) = (dir.join("pmd.sock"), dir.join("commands.log"), dir.join("pmd.toml"));
    // Every connection is root's here: room for all of them.
    std::fs::write(&config, format!("[limits]\nmax_registrations_per_uid = {}\n", connections.max(1)))?;
    let daemon = match contender {
        Contender::Kernel => {
            lab.add_kernel_endpoint("cell", service == ServiceType::Handover)?;
            None
        }
        Contender::Daemon => {
            let child = lab
                .client()
                .command(&exe)
                .args(["pmd", "--aggregate-uid", "0", "--socket"])
                .arg(&socket)
                .arg("--config")
                .arg(&config)
                .arg("--command-log")
                .arg(&log)
                .spawn()
                .context("starting mptcp pmd")?;
            let child = Child(child);
            let up = Instant::now() + Duration::from_secs(10);
            while !socket.exists() {
                if Instant::now() > up {
                    bail!("mptcp pmd did not open {} within 10 s", socket.display());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(child)
        }
    };
    let pid = daemon.as_ref().map(|c| c.0.id());
    let fds_before = pid.map_or(0, descriptors);
    let rss_before = pid.map_or(0, rss_kib);
    let cpu_start = pid.map_or(0.0, cpu_seconds);
    let started = Instant::now();
    let register = daemon.as_ref().map(|_| DaemonClient::at(&socket));
    let (sockets, failed) = open_all(&lab, server, connections, rate, service, register.as_ref());
    let open_secs = started.elapsed().as_secs_f64();
    let cpu_open = pid.map_or(0.0, cpu_seconds) - cpu_start;

    // Joins still under way finish within a few RTTs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").joined.len() < sockets.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Idle cost once the connections have settled (measured less and less
    // often, probed rarely).
    std::thread::sleep(Duration::from_secs(3));
    let idle_from = (Instant::now(), pid.map_or(0.0, cpu_seconds));
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = (pid.map_or(0.0, cpu_seconds) - idle_from.1) / idle_from.0.elapsed().as_secs_f64();
    let rss_growth = pid.map_or(0, rss_kib) - rss_before;
    let fds_open = pid.map_or(0, descriptors);

    // Busy cost: `busy` connections each send 100 bytes every 50 ms (16
    // kbit/s each, within wifi's 20 Mbit/s for a thousand of them): every
    // one of them moves, so every one is measured at the fast pace.
    let busy_cpu = if busy > 0 {
        let traffic = {
            let (stop, socks): (Arc<AtomicBool>, Vec<Socket>) = (
                Arc::new(AtomicBool::new(false)),
                sockets.iter().take(busy).filter_map(|s| s.try_clone().ok()).collect(),
            );
            let flag = stop.clone();
            let sender = std::thread::spawn(move || {
                for s in &socks {
                    let _ = s.set_nonblocking(true);
                }
                while !flag.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    for s in &socks {
                        let _ = (&*s).write(&[0x2a; 100]);
                    }
                    std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
                }
            });
            (stop, sender)
        };
        std::thread::sleep(Duration::from_secs(1)); // every one of them moving
        let from = (Instant::now(), pid.map_or(0.0, cpu_seconds));
        std::thread::sleep(Duration::from_secs(5));
        let share = (pid.map_or(0.0, cpu_seconds) - from.1) / from.0.elapsed().as_secs_f64();
        traffic.0.store(true, Ordering::Relaxed);
        let _ = traffic.1.join();
        share
    } else {
        0.0
    };
    // All closed: the daemon holds nothing of them.
    let opened = sockets.len();
    drop(sockets);
    let closed_by = Instant::now() + Duration::from_secs(5);
    let mut fds_after = pid.map_or(0, descriptors);
    while fds_after > fds_before && Instant::now() < closed_by {
        std::thread::sleep(Duration::from_millis(100));
        fds_after = pid.map_or(0, descriptors);
    }

    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if let Some(mut d) = daemon {
        // SIGTERM: the daemon restores pm_type and flushes its log.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(d.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = d.0.wait();
    }
    let sent = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let seen = seen.lock().expect("lock");
    let mut run = Run {
        opened,
        busy,
        daemon_cpu_busy_per_s: busy_cpu,
        fds: (fds_before, fds_open, fds_after),
        failed,
        open_secs,
        joined: seen.joined.len(),
        rss_growth_kib: rss_growth,
        daemon_cpu_open: cpu_open,
        daemon_cpu_idle_per_s: idle_cpu,
        ..Run::default()
    };
    let mut first_create: HashMap<u32, u64> = HashMap::new();
    for line in sent.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [at, token, name, verdict] = f[..] else { continue };
        if verdict != "ok" {
            run.refused += 1;
            *run.refused_by.entry(name.to_owned()).or_default() += 1;
            continue;
        }
        if let (Ok(at), Ok(token), "SUBFLOW_CREATE") = (at.parse(), token.parse(), name) {
            first_create.entry(token).or_insert(at);
        }
    }
    for (token, &at) in &seen.established {
        if let Some(&sent) = first_create.get(token) {
            // The observer may hear of the event after the daemon acted on it.
            run.to_command_ms.push(sent.saturating_sub(at) as f64 / 1e6);
        }
        if let Some(&joined) = seen.joined.get(token) {
            run.to_join_ms.push(joined.saturating_sub(at) as f64 / 1e6);
        }
    }
    drop(server_proc);
    Ok(run)
}

/// How many descriptors process `pid` has open.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A child process killed when dropped, even on an early return.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When each client connection's events were seen, by token:
/// CLOCK_MONOTONIC ns, as the daemon's command log.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) created: HashMap<u32, u64>,
    pub(crate) established: HashMap<u32, u64>,
    /// The first subflow established after the initial one.
    pub(crate) joined: HashMap<u32, u64>,
}

/// Records CREATED, ESTABLISHED and the first SUB_ESTABLISHED of client
/// connections until `stop`.
pub(crate) fn watch(mut events: EventSocket, seen: &Mutex<Seen>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(batch) = events.recv() else { continue };
        let now = monotonic_ns();
        let mut seen = seen.lock().expect("lock");
        for event in batch {
            match event {
                Event::Created(c) if !c.server_side => {
                    seen.created.insert(c.token, now);
                }
                Event::Established(c) if !c.server_side => {
                    seen.established.insert(c.token, now);
                }
                Event::SubEstablished(s) => {
                    seen.joined.entry(s.token).or_insert(now);
                }
                _ => {}
            }
        }
    }
}

/// `mptcp bench scale-server`: an MPTCP server that greets each client
/// with one byte (a client's connection is fully established, and may add
/// subflows, only once data has flowed) and holds every connection until
/// killed. Prints its port first.
pub fn serve() -> Result<()> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())?;
    s.listen(4096)?;
    let listener: std::net::TcpListener = s.into();
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut held = Vec::new();
    loop {
        let (conn, _) = listener.accept()?;
        if (&conn).write_all(b"!").is_ok() {
            held.push(conn);
        }
    }
}

/// Opens `n` connections at `rate` per second from the client namespace;
/// each is registered with the daemon, if any, right after connecting (as
/// the library does, before any data), then reads the server's greeting.
fn open_all(
    lab: &Lab,
    server: SocketAddr,
    n: usize,
    rate: f64,
    service: ServiceType,
    daemon: Option<&DaemonClient>,
) -> (Vec<Socket>, usize) {
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let sockets = Mutex::new(Vec::with_capacity(n));
    let t0 = Instant::now();
    lab.client().run(|| {
        std::thread::scope(|scope| {
            for _ in 0..OPENERS {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let slot = t0 + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(slot.saturating_duration_since(Instant::now()));
                    match open_one(server, service, daemon) {
                        Ok(s) => sockets.lock().expect("lock").push(s),
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("connection {i}: {e:#}");
                            }
                        }
                    }
                });
            }
        });
    });
    (sockets.into_inner().expect("lock"), failed.into_inner())
}

fn open_one(server: SocketAddr, service: ServiceType, daemon: Option<&DaemonClient>) -> Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.connect_timeout(&server.into(), Duration::from_secs(10))?;
    if let Some(d) = daemon {
        d.register(s.as_fd(), service).context("registering")?;
    }
    (&s).read_exact(&mut [0u8; 1]).context("reading the greeting")?;
    Ok(s)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(14) + field(15)) as f64 / ticks
}

fn report(kernel: &Run, daemon: &Run, connections: usize, rate: f64, service: ServiceType, json: bool) {
    let q = |v: &[f64], p: f64| if v.is_empty() { f64::NAN } else { quantile(v, p) };
    let row = |name: &str, r: &Run| {
        serde_json::json!({
            "contender": name,
            "opened": r.opened,
            "failed": r.failed,
            "open_rate_per_s": r.opened as f64 / r.open_secs,
            "joined": r.joined,
            "established_to_command_ms": {"p50": q(&r.to_command_ms, 0.5), "p99": q(&r.to_command_ms, 0.99),
                "max": r.to_command_ms.iter().cloned().fold(f64::NAN, f64::max), "n": r.to_command_ms.len()},
            "established_to_join_ms": {"p50": q(&r.to_join_ms, 0.5), "p99": q(&r.to_join_ms, 0.99)},
            "rss_growth_kib": r.rss_growth_kib,
            "daemon_cpu_s_while_opening": r.daemon_cpu_open,
            "daemon_cpu_share_idle": r.daemon_cpu_idle_per_s,
            "refused_commands": r.refused,
            "busy_connections": r.busy,
            "daemon_cpu_share_busy": r.daemon_cpu_busy_per_s,
            "daemon_descriptors": {"before": r.fds.0, "with_all_open": r.fds.1, "after_close": r.fds.2},
            "refused_by_command": r.refused_by,
        })
    };
    if json {
        let runs = [row("kernel", kernel), row("daemon", daemon)];
        println!(
            "{}",
            serde_json::json!({"connections": connections, "rate": rate, "service": service.as_str(), "runs": runs})
        );
        return;
    }
    println!("{connections} connections at {rate:.0}/s, service {service}; lab wifi 20 ms / cell 60 ms");
    for (name, r) in [("kernel PM", kernel), ("multipath daemon", daemon)] {
        println!(
            "{name:<17} opened {} ({} failed) at {:.0}/s; cell joined on {}; ESTABLISHED -> join p50 {:.1} ms p99 {:.1} ms",
            r.opened,
            r.failed,
            r.opened as f64 / r.open_secs,
            r.joined,
            q(&r.to_join_ms, 0.5),
            q(&r.to_join_ms, 0.99)
        );
    }
    let d = daemon;
    println!(
        "daemon: ESTABLISHED -> SUBFLOW_CREATE p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} connections",
        q(&d.to_command_ms, 0.5),
        q(&d.to_command_ms, 0.99),
        d.to_command_ms.iter().cloned().fold(f64::NAN, f64::max),
        d.to_command_ms.len()
    );
    println!(
        "daemon process: resident memory +{} KiB ({:.2} KiB per connection); CPU {:.2} s while opening, {:.1}% of a core while idle; {} commands refused",
        d.rss_growth_kib,
        d.rss_growth_kib as f64 / d.opened.max(1) as f64,
        d.daemon_cpu_open,
        d.daemon_cpu_idle_per_s * 100.0,
        d.refused
    );
    println!(
        "daemon with {} busy connections: {:.1}% of a core; descriptors {} before, {} with all {} open, {} after they closed",
        d.busy,
        d.daemon_cpu_busy_per_s * 100.0,
        d.fds.0,
        d.fds.1,
        d.opened,
        d.fds.2
    );
    if !d.refused_by.is_empty() {
        let by: Vec<String> = d.refused_by.iter().map(|(name, n)| format!("{name} {n}")).collect();
        println!("refused: {}", by.join(", "));
    }
}
