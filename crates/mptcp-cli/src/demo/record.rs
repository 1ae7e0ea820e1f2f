//! One run of the demo: a fresh lab, `mptcp serve` in its server
//! namespace, a path manager for the client, and a download that plays the
//! scenario while it is measured.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use multipath::{MultipathStatus, ServiceType};
use multipath_http::{content, Session, SessionConfig};
use multipath_lab::{Lab, LabConfig, LinkShape};
use multipath_pm::policy::PolicyConfig;
use multipath_pm::Manager;

use super::live::Live;
use super::scenario::{Action, Event, Scenario};
use crate::bench::lab::Family;

/// Who runs the connection's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// A service type, enforced by `multipath`'s path manager.
    Service(ServiceType),
    /// The kernel's own path manager, every other path a backup endpoint:
    /// what Linux offers without this project.
    Kernel,
}

impl Contender {
    /// Short name, for tables, JSON and file names.
    pub fn name(self) -> String {
        match self {
            Contender::Service(s) => s.to_string(),
            Contender::Kernel => "kernel".into(),
        }
    }

    /// What it is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Contender::Service(ServiceType::None) => "plain TCP on the first path",
            Contender::Service(ServiceType::Handover) => "multipath handover: the first path, another when it fails",
            Contender::Service(ServiceType::Interactive) => "multipath interactive: the path with the lowest delay",
            Contender::Service(ServiceType::Aggregate) => "multipath aggregate: every path at once",
            Contender::Kernel => "the kernel's path manager, other paths as backup endpoints",
        }
    }
}

/// The counters of one moment of the run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the first byte.
    pub t: f64,
    /// Bytes the client's interface of each path has received so far.
    pub rx: Vec<u64>,
    /// Body bytes verified so far.
    pub verified: u64,
}

/// Everything one run saw.
#[derive(Clone, Debug)]
pub struct Recording {
    pub contender: Contender,
    /// The lab's path names, in preference order.
    pub paths: Vec<String>,
    /// Every `SAMPLE_EVERY`.
    pub samples: Vec<Sample>,
    /// Gaps between body reads of at least `GAP`, in seconds since the
    /// first byte: (last byte before, first byte after). A gap still open
    /// when the run ended ends at the end.
    pub gaps: Vec<(f64, f64)>,
    /// The scenario's events, each with when it was applied.
    pub events: Vec<(f64, Event)>,
    /// Body bytes received and found equal to the file's.
    pub verified: u64,
    /// Seconds from the first byte to the end.
    pub seconds: f64,
    /// Why the download ended early, if it did.
    pub error: Option<String>,
    /// What the connection said about itself once the body was flowing.
    pub status: Option<MultipathStatus>,
}

/// How often the interface counters are read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The shortest gap between reads that is kept.
const GAP: Duration = Duration::from_millis(40);
/// The file the client asks for: far more than any run can fetch; the run
/// stops at the scenario's end.
const FILE: &str = "/files/50G";
/// The port `mptcp serve` listens on, inside the lab's server namespace.
const PORT: u16 = 8080;

/// Runs `contender` through `scenario` in a fresh lab of `config`. Returns
/// early, with the lab torn down, when `stop` turns true.
pub fn record(
    config: &LabConfig,
    contender: Contender,
    scenario: &Scenario,
    family: Family,
    stop: &AtomicBool,
    live: &mut Live,
) -> Result<Recording> {
    let lab = Lab::up(config).context("building the lab")?;
    let paths: Vec<String> = lab.paths().iter().map(|p| p.name().to_owned()).collect();
    let service = match contender {
        Contender::Service(s) => s,
        Contender::Kernel => {
            for p in &paths[1..] {
                lab.add_kernel_endpoint(p, true)?;
            }
            ServiceType::Handover
        }
    };
    let manager = match contender {
        Contender::Kernel => None,
        Contender::Service(_) => {
            // The userspace path manager inside the lab's client namespace
            // only: never the host's.
            lab.client().sysctl("net.mptcp.pm_type", "1")?;
            Some(Arc::new(lab.client().run(|| Manager::start(PolicyConfig::default()))?))
        }
    };
    let server = match family {
        Family::V4 => IpAddr::from(lab.server_addr()),
        Family::V6 => IpAddr::from(lab.server_addr6()),
    };
    let _serve = ServeProcess::start(&lab, SocketAddr::new(server, PORT))?;
    let url = format!("http://{}{FILE}", SocketAddr::new(server, PORT));
    let mut session = SessionConfig::default().multipath_service_type(service).decompress(false);
    if let Some(m) = &manager {
        session = session.path_manager(m.clone());
    }

    let (started_tx, started_rx) = mpsc::channel::<Instant>();
    let (events_tx, events_rx) = mpsc::channel::<(f64, Event)>();
    let download = std::thread::scope(|s| {
        // The scenario plays on a thread of its own: `ip` and `tc` take
        // tens of milliseconds, which must not delay the reads.
        let player = s.spawn(|| play(&lab, scenario, started_rx, events_tx, stop));
        let download = lab.client().run(|| -> Result<Download> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(download(&url, session, &paths, scenario.duration, started_tx, events_rx, stop, live))
        });
        let played = player.join().expect("scenario thread");
        (download, played)
    });
    let (download, played) = download;
    let download = download?;
    played?;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; the lab is torn down");
    }
    Ok(Recording {
        contender,
        paths,
        samples: download.samples,
        gaps: download.gaps,
        events: download.events,
        verified: download.verified,
        seconds: download.seconds,
        error: download.error,
        status: download.status,
    })
}

/// `mptcp serve` in the lab's server namespace, killed when dropped (and
/// by the kernel if this process dies first).
pub(crate) struct ServeProcess(Child);

impl ServeProcess {
    pub(crate) fn start(lab: &Lab, addr: SocketAddr) -> Result<ServeProcess> {
        ServeProcess::start_with(lab, addr, &[])
    }

    /// With more `mptcp serve` options.
    pub(crate) fn start_with(lab: &Lab, addr: SocketAddr, options: &[&str]) -> Result<ServeProcess> {
        let exe = std::env::current_exe().context("finding the mptcp binary")?;
        let mut command = lab.server().command(&exe.to_string_lossy());
        command.args(["serve", "--http", &addr.to_string()]).args(options);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; the child dies with the
        // thread that started it, this program's main thread.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().context("starting mptcp serve in the lab")?;
        let stderr = child.stderr.take().expect("piped");
        let mut serve = ServeProcess(child);
        let mut lines = BufReader::new(stderr).lines();
        let mut said = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("serving http://") => break,
                Some(Ok(line)) => said.push(line),
                _ => {
                    let status = serve.0.wait()?;
                    bail!("mptcp serve exited ({status}) before listening: {}", said.join("; "));
                }
            }
        }
        // Keep draining what it says, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Ok(serve)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Applies the scenario's events at their times, from the first byte on.
fn play(
    lab: &Lab,
    scenario: &Scenario,
    started: mpsc::Receiver<Instant>,
    applied: mpsc::Sender<(f64, Event)>,
    stop: &AtomicBool,
) -> Result<()> {
    // No start: the download failed before its first byte.
    let Ok(start) = started.recv() else { return Ok(()) };
    for event in &scenario.events {
        while start.elapsed() < event.at {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep((event.at - start.elapsed()).min(Duration::from_millis(20)));
        }
        let at = start.elapsed().as_secs_f64();
        apply(lab, event).with_context(|| format!("applying {event}"))?;
        if applied.send((at, event.clone())).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn apply(lab: &Lab, event: &Event) -> Result<()> {
    let path = lab.path(&event.path)?;
    let (mut up, mut down) = path.shape();
    let mut reshape = |f: &dyn Fn(&mut LinkShape)| {
        f(&mut up);
        f(&mut down);
        lab.set_shape(&event.path, up, down)
    };
    match &event.action {
        Action::Down => lab.set_link(&event.path, false)?,
        Action::Up => lab.set_link(&event.path, true)?,
        Action::Blackhole => lab.set_blackhole(&event.path, true)?,
        Action::Clear => lab.set_blackhole(&event.path, false)?,
        Action::Rate(mbit) => reshape(&|s| s.rate_bps = mbit.map(|m| (m * 1e6) as u64))?,
        Action::Delay(rtt) => reshape(&|s| s.delay = *rtt / 2)?,
        Action::Loss(p) => reshape(&|s| s.loss = *p)?,
    }
    Ok(())
}

/// What the download saw.
struct Download {
    samples: Vec<Sample>,
    gaps: Vec<(f64, f64)>,
    events: Vec<(f64, Event)>,
    verified: u64,
    seconds: f64,
    error: Option<String>,
    status: Option<MultipathStatus>,
}

/// Fetches the file until the scenario ends, verifying every byte and
/// sampling each path's interface counters.
#[allow(clippy::too_many_arguments)]
async fn download(
    url: &str,
    config: SessionConfig,
    paths: &[String],
    duration: Duration,
    started: mpsc::Sender<Instant>,
    events: mpsc::Receiver<(f64, Event)>,
    stop: &AtomicBool,
    live: &mut Live,
) -> Result<Download> {
    let session = Session::new(config);
    let mut response = session.get(url).send().await.with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    let start = Instant::now();
    let _ = started.send(start);
    let mut out = Download {
        samples: vec![Sample { t: 0.0, rx: interface_counters(paths)?, verified: 0 }],
        gaps: Vec::new(),
        events: Vec::new(),
        verified: 0,
        seconds: 0.0,
        error: None,
        status: None,
    };
    let mut expected = Vec::new();
    let mut last_read = start;
    let end = tokio::time::Instant::from_std(start + duration);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let since = |t: Instant| (t - start).as_secs_f64();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => {
                    let now = Instant::now();
                    if now - last_read >= GAP {
                        out.gaps.push((since(last_read), since(now)));
                    }
                    last_read = now;
                    expected.resize(bytes.len(), 0);
                    content::fill(out.verified, &mut expected);
                    if let Some(i) = bytes.iter().zip(&expected).position(|(a, b)| a != b) {
                        out.error = Some(format!("byte {} differs from the file's", out.verified + i as u64));
                        break;
                    }
                    out.verified += bytes.len() as u64;
                    if out.status.is_none() {
                        out.status = response.metrics().status;
                    }
                }
                Ok(None) => {
                    out.error = Some("the server ended the file early".into());
                    break;
                }
                Err(e) => {
                    out.error = Some(format!("{e:#}"));
                    break;
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                out.samples.push(Sample { t: since(now), rx: interface_counters(paths)?, verified: out.verified });
                while let Ok(event) = events.try_recv() {
                    live.event(&event.1, event.0);
                    out.events.push(event);
                }
                live.progress(out.samples.as_slice(), paths, duration.as_secs_f64());
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    let now = Instant::now();
    if now - last_read >= GAP {
        out.gaps.push((since(last_read), since(now)));
    }
    out.seconds = since(now);
    out.samples.push(Sample { t: out.seconds, rx: interface_counters(paths)?, verified: out.verified });
    // Events applied in the last instant.
    while let Ok(event) = events.try_recv() {
        live.event(&event.1, event.0);
        out.events.push(event);
    }
    if out.status.is_none() {
        out.status = response.metrics().status;
    }
    Ok(out)
}

/// Bytes each path's interface has received (see
/// [`multipath_lab::traffic::rx_bytes`]), from this thread's namespace.
fn interface_counters(paths: &[String]) -> Result<Vec<u64>> {
    Ok(multipath_lab::traffic::rx_bytes(paths)?)
}
