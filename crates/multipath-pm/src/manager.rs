//! The in-process path manager: a thread that owns the netlink sockets and
//! the policy core, and enforces the service type of the connections a
//! program hands it. Needs CAP_NET_ADMIN and the userspace path manager
//! (`net.mptcp.pm_type = 1`) in the network namespace it starts in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use multipath::daemon_client::Origin;
use multipath::icmp::EchoSocket;
use multipath::ServiceType;

use crate::echo::Echoes;
use crate::netlink::sock_diag::{InetDiagMsg, Query, SubflowOf};
use crate::netlink::socket::poll_any;
use crate::netlink::socket::{Diag, DIAG_BATCH};
use crate::policy::quarantine::Quarantine;
use crate::policy::sampling::{full_every, pace, Activity, Look, Sampler, Swept, SAMPLE_EVERY, SWEEP_EVERY};
use crate::policy::{
    input_for_event, ConnView, Core, EarlyAnnouncements, Input, LocalPath, PolicyConfig, Refusal, SubflowSample,
    WhenStill,
};
use crate::{Command, EventSocket, PmError, PmSocket, RouteWatcher, SocketKiller};

/// Connections looked at per turn of the loop, between looks at the events.
const SAMPLE_BATCH: usize = 128;

/// Looks fall due one connection at a time; they are taken together at
/// most this often, so a thousand busy connections cost a few large
/// `sock_diag` batches per tick rather than a wake-up each.
const SAMPLE_TICK: Duration = Duration::from_millis(5);

/// A running path manager. Dropping it stops the thread (connections keep
/// their subflows; nothing manages them any more).
#[derive(Debug)]
pub struct Manager {
    requests: Option<mpsc::Sender<Request>>,
    /// Wakes the thread from its poll when a request is queued.
    doorbell: UnixDatagram,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Request {
    Manage {
        conn: Registration,
        service: ServiceType,
        /// Who registered it (through the daemon).
        owner: Option<Registrant>,
        reply: mpsc::Sender<Result<u32, PmError>>,
    },
    Connections {
        reply: mpsc::Sender<Vec<ManagedConnection>>,
    },
    Adopt {
        registered: HashMap<u32, ServiceType>,
        reply: mpsc::Sender<usize>,
    },
    Managed {
        reply: mpsc::Sender<Vec<(u32, ServiceType)>>,
    },
    ActivePath {
        token: u32,
        reply: mpsc::Sender<Option<String>>,
    },
    Paths {
        reply: mpsc::Sender<Vec<LocalPath>>,
    },
    Tables {
        reply: mpsc::Sender<Tables>,
    },
    FirstPath {
        remote: IpAddr,
        reply: mpsc::Sender<multipath::FirstPath>,
    },
}

/// Who handed a connection to the daemon, as the kernel recorded it when
/// they connected to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registrant {
    /// Their user id.
    pub uid: u32,
    /// Their process.
    pub pid: i32,
    /// Their program (`/proc/<pid>/exe`, checked against a pidfd), if known.
    pub program: Option<PathBuf>,
    /// The program itself, or `mptcp run` on its behalf.
    pub origin: Origin,
    /// Registered connections this user may have open at once.
    pub limit: usize,
}

/// Where a connection's service type came from, as `mptcp ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Registered by the program (or `mptcp run` for it).
    Registered(Origin),
    /// Not registered: a [`Classifier`]'s decision, with its label.
    Classified(String),
    /// Not registered: the manager's default service type.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registered(origin) => f.write_str(origin.as_str()),
            Source::Classified(label) => f.write_str(label),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A managed connection, for `mptcp ls` ([`Manager::connections`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedConnection {
    /// The kernel's token.
    pub token: u32,
    /// What the policy core holds of it.
    pub view: ConnView,
    /// Where its service type came from.
    pub source: Source,
    /// Who registered it, if anyone did.
    pub registrant: Option<Registrant>,
}

/// The sizes of the path manager's tables, to show that nothing
/// accumulates: once every managed connection has closed, all are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// Connections managed by the policy core.
    pub connections: usize,
    /// Of them, pending deadlines (retries, timeouts, probes).
    pub timers: usize,
    /// Latest probes per path and peer.
    pub path_probes: usize,
    /// Peer addresses of managed connections.
    pub peers: usize,
    /// Decisions not yet sent.
    pub queued: usize,
    /// Connections measured.
    pub measured: usize,
    /// Of them, with a look scheduled (the others are parked until a sweep
    /// sees their counters move).
    pub scheduled: usize,
    /// ICMP echoes awaiting an answer (forgotten after a few seconds).
    pub echoes: usize,
    /// Registered connections with an owner.
    pub registered: usize,
    /// Users with registered connections.
    pub users: usize,
    /// Unregistered connections whose service type a classifier (a rule)
    /// decided.
    pub classified: usize,
}

impl Tables {
    /// Each table's name and size.
    pub fn counts(&self) -> [(&'static str, usize); 11] {
        [
            ("connections", self.connections),
            ("timers", self.timers),
            ("path_probes", self.path_probes),
            ("peers", self.peers),
            ("queued", self.queued),
            ("measured", self.measured),
            ("scheduled", self.scheduled),
            ("echoes", self.echoes),
            ("registered", self.registered),
            ("users", self.users),
            ("classified", self.classified),
        ]
    }

    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }
}

/// How a [`Manager`] runs, beyond its policy.
#[derive(Clone, Debug, Default)]
pub struct ManagerOptions {
    /// Where to report every command sent (see [`Manager::start_with_log`]).
    pub log: Option<mpsc::SyncSender<SentCommand>>,
    /// The kernel-event socket's receive buffer, bytes; `None`:
    /// [`EventSocket::DEFAULT_BUFFER`]. Events beyond it are lost in a
    /// burst, and the manager then resynchronises from the kernel's socket
    /// lists.
    pub event_buffer: Option<usize>,
    /// Decides the service type of connections nobody registered (the
    /// daemon's per-program rules); without one, they get the default.
    pub classifier: Option<Arc<dyn Classifier>>,
}

/// What the kernel recorded about a connection nobody registered, when its
/// ESTABLISHED event arrives: what a [`Classifier`] decides from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The connection's token.
    pub token: u32,
    /// Its peer.
    pub remote: SocketAddr,
    /// The user that created the socket.
    pub uid: u32,
    /// The socket's inode (finds the process holding it).
    pub inode: u32,
    /// The cgroup (v2) id the socket was created in.
    pub cgroup: Option<u64>,
}

/// Decides the service type of connections nobody registered.
pub trait Classifier: Send + Sync + std::fmt::Debug {
    /// `None`: the default service type. Otherwise the service type and a
    /// label for where it came from (`mptcp ls` shows it), such as
    /// `rule:browsers`. Called on the manager's thread, once per
    /// connection: it must be quick.
    fn classify(&self, conn: &Recorded) -> Option<(ServiceType, String)>;

    /// Whether it may decide anything now; when not, the manager spares
    /// itself the socket lookup [`Classifier::classify`] needs.
    fn active(&self) -> bool {
        true
    }
}

/// A netlink command the manager sent: its decisions, as observers
/// (benchmarks, monitors) see them.
#[derive(Clone, Debug)]
pub struct SentCommand {
    /// The command.
    pub command: Command,
    /// When it was sent.
    pub at: Instant,
    /// Why the kernel refused it, if it did.
    pub refused: Option<String>,
}

impl Manager {
    /// Starts managing in the calling thread's network namespace.
    pub fn start(config: PolicyConfig) -> Result<Manager, PmError> {
        Manager::start_with_log(config, None)
    }

    /// Like [`Manager::start`], and reports every command sent on `log`.
    /// A full log drops records rather than slow the manager down.
    pub fn start_with_log(
        config: PolicyConfig,
        log: Option<mpsc::SyncSender<SentCommand>>,
    ) -> Result<Manager, PmError> {
        Manager::start_with(config, ManagerOptions { log, ..ManagerOptions::default() })
    }

    /// Like [`Manager::start`], with `options`.
    pub fn start_with(config: PolicyConfig, options: ManagerOptions) -> Result<Manager, PmError> {
        let mut driver = Driver::open(config)?;
        driver.log = options.log;
        driver.classifier = options.classifier;
        if let Some(bytes) = options.event_buffer {
            let granted = driver.events.set_receive_buffer(bytes)?;
            tracing::info!(asked = bytes, granted, "event socket receive buffer");
        }
        let (tx, rx) = mpsc::channel();
        let (doorbell, bell) = UnixDatagram::pair()?;
        doorbell.set_nonblocking(true)?;
        bell.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("multipath-pm".into())
            .spawn(move || driver.run(rx, bell))
            .map_err(PmError::Io)?;
        Ok(Manager { requests: Some(tx), doorbell, thread: Some(thread) })
    }

    /// Enforces `service` on the MPTCP connection behind `socket` from now
    /// on; returns its token. The token and the addresses are read from the
    /// socket here; the manager keeps no descriptor (it measures the
    /// connection through the kernel's socket diagnostics), so the
    /// connection closes when its owner closes it.
    pub fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<u32, PmError> {
        self.manage_for(socket, service, None)
    }

    /// Like [`Manager::manage`], on behalf of `owner`, whose user may have
    /// at most `owner.limit` registered connections open at once.
    pub fn manage_for(
        &self,
        socket: BorrowedFd<'_>,
        service: ServiceType,
        owner: Option<Registrant>,
    ) -> Result<u32, PmError> {
        let conn = Registration::read(socket)?;
        let (reply, answer) = mpsc::channel();
        self.send(Request::Manage { conn, service, owner, reply })?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Finds the client connections already open in the namespace (through
    /// the kernel's socket diagnostics) and manages those it can serve:
    /// with the service type `registered` gives for their token, else the
    /// default one (none: only the registered). How many it took.
    pub fn adopt(&self, registered: HashMap<u32, ServiceType>) -> Result<usize, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Adopt { registered, reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// Every managed connection and its service type.
    pub fn managed(&self) -> Result<Vec<(u32, ServiceType)>, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Managed { reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// Every managed connection: its paths and subflows, and who
    /// registered it.
    pub fn connections(&self) -> Result<Vec<ManagedConnection>, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Connections { reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// The path carrying a managed connection's data.
    pub fn active_path(&self, token: u32) -> Result<Option<String>, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::ActivePath { token, reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// The usable local paths as the manager last saw them, best first.
    pub fn paths(&self) -> Result<Vec<LocalPath>, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Paths { reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// Where a new aggregate or interactive connection to `remote` should
    /// start, by what the manager measured of its paths.
    pub fn first_path(&self, remote: IpAddr) -> Result<multipath::FirstPath, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::FirstPath { remote, reply })?;
        answer.recv().map_err(|_| stopped())
    }

    /// Whether the manager's thread is still running (it stops only when
    /// dropped, or on a bug).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The sizes of the manager's tables.
    pub fn tables(&self) -> Result<Tables, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::Tables { reply })?;
        answer.recv().map_err(|_| stopped())
    }

    fn send(&self, request: Request) -> Result<(), PmError> {
        self.requests.as_ref().expect("sender lives until drop").send(request).map_err(|_| stopped())?;
        // A full doorbell already rings.
        let _ = self.doorbell.send(&[1]);
        Ok(())
    }
}

/// Lets [`multipath::Parameters::path_manager`] hand connections over.
impl multipath::Enforcer for Manager {
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), multipath::EnforceError> {
        Manager::manage(self, socket, service).map(drop).map_err(|e| match e {
            PmError::Unservable(_) | PmError::TooMany { .. } | PmError::NotManageable(_) => {
                multipath::EnforceError::refused(e.to_string())
            }
            other => multipath::EnforceError::failed(other),
        })
    }

    fn kind(&self) -> multipath::PathManager {
        multipath::PathManager::InProcess
    }

    fn first_path(&self, remote: IpAddr, _service: ServiceType) -> multipath::FirstPath {
        Manager::first_path(self, remote).unwrap_or(multipath::FirstPath::Routed)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.requests.take(); // the thread sees the channel close
        let _ = self.doorbell.send(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> PmError {
    PmError::Io(std::io::Error::other("the path manager thread has stopped"))
}

/// What a registration needs of a connection, read from its socket.
#[derive(Clone, Copy, Debug)]
struct Registration {
    token: u32,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Registration {
    fn read(socket: BorrowedFd<'_>) -> Result<Registration, PmError> {
        let unfit = |e: &dyn std::fmt::Display| PmError::NotManageable(e.to_string());
        let token = multipath::raw::mptcp_info(socket).map_err(|e| unfit(&e))?.token;
        let sock = socket2::SockRef::from(&socket);
        let addr = |a: std::io::Result<socket2::SockAddr>| -> Result<SocketAddr, PmError> {
            a.map_err(|e| unfit(&e))?.as_socket().ok_or_else(|| unfit(&"not an IP socket"))
        };
        let (local, remote) = match sock.peer_addr() {
            Ok(peer) => (addr(sock.local_addr())?, addr(Ok(peer))?),
            // Still connecting (a registration right after a non-blocking
            // `connect`): the connection has no peer name yet, its first
            // subflow has both ends.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                let subflows = multipath::raw::subflows(socket).map_err(|e| unfit(&e))?;
                let first = subflows.first().ok_or_else(|| unfit(&"no subflow yet"))?;
                (first.local, first.remote)
            }
            Err(e) => return Err(unfit(&e)),
        };
        if token == 0 {
            return Err(unfit(&"no token yet"));
        }
        // As the kernel's events show them: an IPv6 socket's IPv4 ends
        // mapped (the library's subflow list shows them plain). The core
        // tells from this that joins of both families may be added.
        let (local, remote) = if sock.domain().is_ok_and(|d| d == socket2::Domain::IPV6) {
            let mapped = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
                v6 => v6,
            };
            (mapped(local), mapped(remote))
        } else {
            (local, remote)
        };
        Ok(Registration { token, local, remote })
    }
}

/// `TCP_CLOSE`: the state of a connection that is over, as `sock_diag`
/// lists it until the kernel frees it.
const TCP_CLOSE: u8 = 7;

/// Connections gone through per turn of the loop, from a sweep.
const SWEEP_BATCH: usize = 512;

/// Every MPTCP connection's counters at one moment.
struct Snapshot {
    taken: Instant,
    seen: HashMap<u32, Activity>,
}

/// A sweep being gone through, a batch per turn.
struct SweepInProgress {
    seen: HashMap<u32, Activity>,
    left: Vec<u32>,
}

/// The address families of the connections measured, as bits: a sweep
/// dumps only those (each dump walks the kernel's whole token table).
#[derive(Clone, Debug, Default)]
struct Families(Arc<AtomicU8>);

impl Families {
    const V4: u8 = 1;
    const V6: u8 = 2;

    fn saw(&self, addr: &SocketAddr) {
        self.0.fetch_or(if addr.is_ipv6() { Self::V6 } else { Self::V4 }, Ordering::Relaxed);
    }

    fn has(&self, v6: bool) -> bool {
        self.0.load(Ordering::Relaxed) & if v6 { Self::V6 } else { Self::V4 } != 0
    }
}

/// Starts the sweeper: a thread with a `sock_diag` socket of the calling
/// thread's namespace that dumps the counters of every connection of the
/// `families` in use each `SWEEP_EVERY`, until the driver is gone.
fn start_sweeper(families: Families) -> Result<mpsc::Receiver<Snapshot>, PmError> {
    let mut diag = Diag::open()?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("multipath-sweep".into())
        .spawn(move || 'sweep: loop {
            std::thread::sleep(SWEEP_EVERY);
            let taken = Instant::now();
            let mut seen = HashMap::new();
            for v6 in [false, true].into_iter().filter(|&v6| families.has(v6)) {
                let result = diag.dump(Query::AllConnections { v6 }, |msg| {
                    if msg.state == TCP_CLOSE {
                        return;
                    }
                    if let Some(info) = msg.info.and_then(|b| multipath::MptcpInfo::decode(b).ok()) {
                        seen.insert(info.token, Activity::of(&info));
                    }
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "sweeping the connections");
                    continue 'sweep;
                }
            }
            // Only a whole snapshot: a connection missing from it counts.
            match tx.try_send(Snapshot { taken, seen }) {
                Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        })
        .map_err(PmError::Io)?;
    Ok(rx)
}

/// A subflow's measurements from its `sock_diag` entry; `None` for one
/// that is closing (a destroyed subflow stays listed a while) or whose
/// `tcp_info` is missing.
fn subflow_sample(msg: &InetDiagMsg<'_>) -> Option<SubflowSample> {
    let tcp = multipath::TcpInfo::decode(msg.info?).ok()?;
    tcp.state.is_open().then(|| SubflowSample {
        local: msg.local,
        rtt_us: tcp.rtt_us,
        min_rtt_us: tcp.min_rtt_us.unwrap_or(0),
        backoff: tcp.backoff,
        unacked: tcp.unacked,
        total_retrans: tcp.total_retrans,
        last_data_recv_ms: tcp.last_data_recv_ms,
        last_ack_recv_ms: tcp.last_ack_recv_ms,
        bytes_received: tcp.bytes_received.unwrap_or(0),
        bytes_acked: tcp.bytes_acked.unwrap_or(0),
        established: tcp.state == multipath::TcpState::Established,
        fully_established: msg.subflow_of.is_none_or(|s| s.fully_established),
    })
}

/// Counts of the kernel's answers taken to measure connections.
#[derive(Debug)]
struct MeasuringCost {
    since: Instant,
    /// Connections' counters (`mptcp_info`) read.
    looks: u64,
    /// Of them, those that sufficed: no subflow measured.
    counters_only: u64,
    /// Subflows' `tcp_info` read.
    subflows: u64,
}

impl MeasuringCost {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(now: Instant) -> MeasuringCost {
        MeasuringCost { since: now, looks: 0, counters_only: 0, subflows: 0 }
    }

    fn log_now_and_then(&mut self, now: Instant, managed: usize) {
        let secs = now.duration_since(self.since);
        if secs < Self::EVERY {
            return;
        }
        let per_s = |n: u64| (n as f64 / secs.as_secs_f64()).round();
        tracing::debug!(
            managed,
            looks_per_s = per_s(self.looks),
            counters_only_per_s = per_s(self.counters_only),
            subflows_per_s = per_s(self.subflows),
            "measuring"
        );
        *self = MeasuringCost::new(now);
    }
}

struct Driver {
    core: Core,
    pm: PmSocket,
    /// Aborts destroyed subflows the kernel keeps (the first one); `None`
    /// where the kernel cannot (no `CONFIG_INET_DIAG_DESTROY`).
    killer: Option<SocketKiller>,
    events: EventSocket,
    routes: RouteWatcher,
    paths: Vec<LocalPath>,
    /// Measures managed connections through the kernel's socket diagnostics.
    diag: Diag,
    /// When each managed connection is measured next.
    sampler: Sampler,
    /// Every connection's counters, dumped each `SWEEP_EVERY` by a thread
    /// of its own (a dump of ten thousand takes milliseconds).
    sweeps: mpsc::Receiver<Snapshot>,
    /// Families of the connections measured, for the sweeper.
    families: Families,
    /// The sweep being gone through.
    sweep: Option<SweepInProgress>,
    /// Addresses announced for connections not managed yet.
    early: EarlyAnnouncements,
    /// What measuring cost lately, logged (at debug) every few seconds.
    cost: MeasuringCost,
    /// Who registered each connection the daemon handed over.
    owners: HashMap<u32, Registrant>,
    /// How many of them each user has.
    per_owner: HashMap<u32, usize>,
    /// Decides unregistered connections' service type, if anything does.
    classifier: Option<Arc<dyn Classifier>>,
    /// The label of each connection the classifier decided.
    classified: HashMap<u32, String>,
    /// ICMP echoes of silent paths: datagram sockets where
    /// `ping_group_range` allows, raw ones (CAP_NET_RAW) otherwise.
    echoes: Echoes,
    log: Option<mpsc::SyncSender<SentCommand>>,
    /// Which addresses get a quarantine rule.
    quarantine: Quarantine,
    /// Addresses with a quarantine rule in place (removed on drop).
    quarantined: BTreeSet<IpAddr>,
    /// Kinds of [`Unservable`](crate::policy::Unservable) reasons logged so far.
    unserved_kinds: BTreeSet<&'static str>,
    /// A probe could not be sent, and that was said.
    probe_failure_said: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        for addr in std::mem::take(&mut self.quarantined) {
            if let Err(e) = self.routes.set_quarantine(addr, false) {
                tracing::warn!(%addr, error = %e, "removing a quarantine rule");
            }
        }
    }
}

impl Driver {
    fn open(config: PolicyConfig) -> Result<Driver, PmError> {
        let families = Families::default();
        let mut driver = Driver {
            core: Core::new(config),
            pm: PmSocket::open()?,
            killer: SocketKiller::open().ok(),
            events: EventSocket::open()?,
            routes: RouteWatcher::open()?,
            paths: Vec::new(),
            diag: Diag::open()?,
            sampler: Sampler::new(),
            cost: MeasuringCost::new(Instant::now()),
            sweeps: start_sweeper(families.clone())?,
            families,
            sweep: None,
            early: EarlyAnnouncements::default(),
            owners: HashMap::new(),
            per_owner: HashMap::new(),
            classifier: None,
            classified: HashMap::new(),
            echoes: Echoes::default(),
            log: None,
            quarantine: Quarantine::default(),
            quarantined: BTreeSet::new(),
            unserved_kinds: BTreeSet::new(),
            probe_failure_said: false,
        };
        // Said once, loudly, at start: without probes a silent path is
        // found only by retransmission timeouts, late, and never in a
        // download, where the receiver has none.
        match EchoSocket::open(std::net::Ipv4Addr::LOCALHOST.into()) {
            Ok(s) => tracing::debug!(kind = ?s.kind(), "path probes by ICMP echo"),
            Err(e) => {
                driver.probe_failure_said = true;
                tracing::error!(
                    error = %e,
                    "path probes are impossible here: a silent (blackholed) path is then detected only by \
                     retransmission timeouts on an upload, not in a download; give the path manager \
                     CAP_NET_RAW or widen net.ipv4.ping_group_range"
                );
            }
        }
        // Rules a crashed predecessor left behind would strand addresses
        // that are fine again.
        for addr in driver.routes.quarantined()? {
            driver.routes.set_quarantine(addr, false)?;
        }
        driver.refresh_paths(Instant::now())?;
        Ok(driver)
    }

    fn run(&mut self, requests: mpsc::Receiver<Request>, bell: UnixDatagram) {
        // Measurements due but not yet taken (more than one batch).
        let mut backlog = false;
        let mut sampled_at = Instant::now();
        loop {
            while bell.recv(&mut [0u8; 16]).is_ok() {}
            loop {
                match requests.try_recv() {
                    Ok(r) => self.request(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            // Pending probes are read every tick.
            let mut wake = now + SAMPLE_EVERY;
            let sampling = self.sampler.next_due().map(|due| due.max(sampled_at + SAMPLE_TICK));
            for t in [self.core.poll_timeout(), sampling].into_iter().flatten() {
                wake = wake.min(t);
            }
            if backlog {
                wake = now; // measurements left over: only look for events
            }
            let fds = [self.events.as_fd(), self.routes.as_fd(), bell.as_fd()];
            let ready = match poll_any(&fds, wake.saturating_duration_since(now)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "poll failed; path manager stops");
                    return;
                }
            };
            let now = Instant::now();
            if ready[0] {
                // Kernel events first, and their commands out at once: how
                // soon a new connection gets its subflows must not depend on
                // how many others are being measured.
                self.kernel_events(now);
                self.flush(now);
            }
            if ready[1] {
                if let Err(e) = self.routes.changed().and_then(|_| self.refresh_paths(now)) {
                    tracing::warn!(error = %e, "reading links and routes");
                }
            }
            self.probe_answers(now);
            self.sweep(now);
            if backlog || now >= sampled_at + SAMPLE_TICK {
                backlog = self.sample(now);
                sampled_at = now;
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.flush(now);
        }
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::Manage { conn, service, owner, reply } => {
                let _ = reply.send(self.manage(conn, service, owner));
            }
            Request::Adopt { registered, reply } => {
                let _ = reply.send(self.adopt(&registered, Instant::now()));
            }
            Request::Managed { reply } => {
                let mut managed: Vec<(u32, ServiceType)> =
                    self.sampler.tokens().filter_map(|t| Some((t, self.core.service_of(t)?))).collect();
                managed.sort_unstable();
                let _ = reply.send(managed);
            }
            Request::Connections { reply } => {
                let mut list: Vec<ManagedConnection> = self
                    .core
                    .tokens()
                    .filter_map(|token| {
                        let registrant = self.owners.get(&token).cloned();
                        let source = match (&registrant, self.classified.get(&token)) {
                            (Some(r), _) => Source::Registered(r.origin),
                            (None, Some(label)) => Source::Classified(label.clone()),
                            (None, None) => Source::Default,
                        };
                        Some(ManagedConnection { token, view: self.core.view(token)?, source, registrant })
                    })
                    .collect();
                list.sort_unstable_by_key(|c| c.token);
                let _ = reply.send(list);
            }
            Request::ActivePath { token, reply } => {
                let _ = reply.send(self.core.active_path(token).map(str::to_owned));
            }
            Request::FirstPath { remote, reply } => {
                let _ = reply.send(self.core.first_path(remote, Instant::now()));
            }
            Request::Paths { reply } => {
                let _ = reply.send(self.paths.clone());
            }
            Request::Tables { reply } => {
                let core = self.core.tables();
                let _ = reply.send(Tables {
                    connections: core.connections,
                    timers: core.timers,
                    path_probes: core.path_probes,
                    peers: core.peers,
                    queued: core.queued,
                    measured: self.sampler.len(),
                    scheduled: self.sampler.scheduled(),
                    echoes: self.echoes.waiting(),
                    registered: self.owners.len(),
                    users: self.per_owner.len(),
                    classified: self.classified.len(),
                });
            }
        }
    }

    fn manage(&mut self, conn: Registration, service: ServiceType, owner: Option<Registrant>) -> Result<u32, PmError> {
        let Registration { token, local, remote } = conn;
        self.core.servable(local.ip(), remote.ip()).map_err(PmError::Unservable)?;
        if let Some(Registrant { uid, limit, .. }) = owner {
            let theirs = self.per_owner.get(&uid).copied().unwrap_or(0);
            if self.owners.get(&token).map(|r| r.uid) != Some(uid) && theirs >= limit {
                return Err(PmError::TooMany { uid, limit });
            }
        }
        let now = Instant::now();
        // With a default service, the kernel's ESTABLISHED has made the core
        // manage the connection already if it came first; if not, it is
        // still to come and joins would be refused until then.
        let ready =
            self.core.manages(token) || self.core.config().default_service.is_none_or(|s| s == ServiceType::None);
        self.core.handle(Input::Established { token, service, local, remote, ready }, now);
        self.replay_announcements(token, now);
        if self.core.manages(token) {
            self.sampler.add(token, now);
            if let Some(owner) = owner {
                let uid = owner.uid;
                if let Some(before) = self.owners.insert(token, owner) {
                    self.disown(before.uid);
                }
                *self.per_owner.entry(uid).or_default() += 1;
            }
        }
        self.flush(now);
        Ok(token)
    }

    /// What the peer announced before the core managed `token` (it comes
    /// right after the kernel's ESTABLISHED, before a program registers).
    fn replay_announcements(&mut self, token: u32, now: Instant) {
        if !self.core.manages(token) {
            return;
        }
        for (rem_id, addr) in self.early.take(token) {
            self.core.handle(Input::Announced { token, rem_id, addr }, now);
        }
    }

    /// Every event pending, a datagram at a time: a burst of connections
    /// must not wait behind a turn of measuring per datagram.
    fn kernel_events(&mut self, now: Instant) {
        for _ in 0..1024 {
            if !self.kernel_datagram(now) {
                return;
            }
        }
    }

    /// One datagram of events; whether there may be more.
    fn kernel_datagram(&mut self, now: Instant) -> bool {
        let events = match self.events.try_recv() {
            Ok(Some(e)) => e,
            Ok(None) => return false,
            Err(PmError::EventsLost) => {
                tracing::warn!("path-manager events lost; resynchronising from the kernel's socket lists");
                self.resync(now);
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading path-manager events");
                return false;
            }
        };
        let default = self.core.config().default_service;
        for event in events {
            let managed = event.token().is_some_and(|t| self.core.manages(t));
            self.early.hear(&event, managed);
            let Some(mut input) = input_for_event(&event, managed, default) else { continue };
            match &mut input {
                Input::Established { token, local, remote, service, .. } => {
                    if let Err(why) = self.core.servable(local.ip(), remote.ip()) {
                        // Left to the kernel as it is. Said once per kind of
                        // reason: a host full of such connections must not
                        // flood the log.
                        if self.unserved_kinds.insert(why.kind()) {
                            tracing::info!(token, reason = %why, "connection left to the kernel (said once per reason)");
                        } else {
                            tracing::debug!(token, reason = %why, "connection left to the kernel");
                        }
                        continue;
                    }
                    if let Some((decided, label)) = self.classify(*token, *remote) {
                        *service = decided;
                        self.classified.insert(*token, label);
                    }
                    self.sampler.add(*token, now);
                }
                Input::Closed { token } => self.forget(*token),
                _ => {}
            }
            let joined = match input {
                Input::SubflowEstablished { token, .. } => Some(token),
                _ => None,
            };
            let established = match input {
                Input::Established { token, .. } => Some(token),
                _ => None,
            };
            self.core.handle(input, now);
            if let Some(token) = established {
                self.replay_announcements(token, now);
            }
            // Measured soon where it matters: whether the peer completes
            // the join a handover waits on; an aggregate join's delay,
            // which decides whether it carries data yet.
            let soon = |t: u32| {
                self.core.awaits_confirmation(t) || self.core.service_of(t) == Some(multipath::ServiceType::Aggregate)
            };
            if let Some(token) = joined.filter(|&t| soon(t)) {
                self.sampler.postpone(token, now);
            }
        }
        // This datagram's commands out before the next one is read.
        self.flush(now);
        true
    }

    /// The kernel's limits (no event announces a change: read with the
    /// paths and at every sweep).
    fn read_limits(&mut self, now: Instant) {
        match self.pm.limits() {
            Ok(limits) => self.core.handle(Input::Limits { subflows: limits.subflows }, now),
            Err(e) => tracing::debug!(error = %e, "reading the MPTCP limits"),
        }
        // This thread's namespace's, as the managed sockets'.
        let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").ok();
        if let Some(max) = rmem.as_deref().and_then(|s| s.split_whitespace().nth(2)?.parse().ok()) {
            self.core.handle(Input::ReceiveBufferMax(max), now);
        }
    }

    fn refresh_paths(&mut self, now: Instant) -> Result<(), PmError> {
        self.read_limits(now);
        let snapshot = self.routes.snapshot()?;
        // Before the core's commands: the dead path's queued data must stop
        // leaking out through the new active path at once.
        self.quarantine(&snapshot);
        let fresh = self.core.config().paths.apply(snapshot.paths);
        for old in &self.paths {
            if !fresh.iter().any(|p| p.name == old.name) {
                self.core.handle(Input::PathDown { name: old.name.clone() }, now);
            }
        }
        for p in &fresh {
            if !self.paths.contains(p) {
                self.core.handle(Input::PathUp(p.clone()), now);
            }
        }
        self.paths = fresh;
        Ok(())
    }

    /// Adds and removes quarantine rules as [`Quarantine`] decides.
    fn quarantine(&mut self, snapshot: &crate::RouteSnapshot) {
        let enabled = self.core.config().quarantine_down_paths;
        for (addr, on) in self.quarantine.changes(&snapshot.paths, &snapshot.stranded, &self.quarantined, enabled) {
            match self.routes.set_quarantine(addr, on) {
                Ok(()) if on => {
                    self.quarantined.insert(addr);
                }
                Ok(()) => {
                    self.quarantined.remove(&addr);
                }
                Err(e) => tracing::warn!(%addr, on, error = %e, "quarantine rule"),
            }
        }
    }

    /// Measures the managed connections that are due, at most
    /// `SAMPLE_BATCH`, through `sock_diag`: first every one's counters
    /// (`mptcp_info`, looked up by token) in one batch, then the subflows
    /// of those that moved or that the core is watching (`tcp_info`, looked
    /// up by 4-tuple) in as few batches as fit. A connection the kernel no
    /// longer has is closed. Whether more were due.
    fn sample(&mut self, now: Instant) -> bool {
        self.cost.log_now_and_then(now, self.sampler.len());
        let due = self.sampler.due(now, SAMPLE_BATCH);
        if due.is_empty() {
            return false;
        }
        self.cost.looks += due.len() as u64;
        let queries: Vec<Query> = due.iter().map(|&token| Query::Connection { token }).collect();
        // Per connection: its counters, or whether the kernel said it has no
        // such connection (`None`: no usable answer, look again later).
        let mut infos: Vec<Option<Result<multipath::MptcpInfo, ()>>> = vec![None; due.len()];
        let families = &self.families;
        if let Err(e) = self.diag.query(&queries, |i, answer| {
            infos[i] = match answer {
                // Over, and only waiting out its timer (as an orphan, for
                // up to a minute): closed, whether or not its CLOSED event
                // comes.
                Ok(msg) if msg.state == TCP_CLOSE => Some(Err(())),
                Ok(msg) => {
                    // The socket's own family (a v4 connection may live on
                    // an IPv6 socket): the one its sweeps must dump.
                    families.saw(&msg.local);
                    msg.info.and_then(|b| multipath::MptcpInfo::decode(b).ok()).map(Ok)
                }
                Err(libc::ENOENT) => Some(Err(())),
                Err(_) => None,
            };
        }) {
            tracing::warn!(error = %e, "measuring connections");
            return false;
        }
        let mut measure = Vec::new();
        for (&token, info) in due.iter().zip(infos) {
            let info = match info {
                Some(Ok(info)) if info.token == token => info,
                // The kernel has no such connection: closed, whether or not
                // its CLOSED event comes.
                Some(Err(())) => {
                    self.forget(token);
                    self.core.handle(Input::Closed { token }, now);
                    continue;
                }
                _ => {
                    self.sampler.postpone(token, now);
                    continue;
                }
            };
            let look = Look::of(&info);
            let next_look = |core: &Core| pace(core.silence_watch(token), look.heard_ms, now);
            // A join not yet known to be complete is measured at every
            // look, moving or not, until it is (or is replaced).
            let awaits = self.core.awaits_confirmation(token);
            let needs = self.core.needs_samples(token, now);
            if !awaits && !self.sampler.looked(token, look.activity, needs, || next_look(&self.core), now) {
                continue;
            }
            let full = self.core.service_of(token).map_or(SAMPLE_EVERY, full_every);
            match look.heard_ms {
                Some(heard_ms) if !awaits && !self.sampler.wants_subflows(token, &look, full, now) => {
                    self.cost.counters_only += 1;
                    self.core.handle(Input::Heard { token, heard_ms }, now);
                    self.sampler.looked_quickly(token, look.activity, next_look(&self.core), now);
                }
                _ => measure.push((token, look)),
            }
        }
        let mut asked: Vec<(u32, Query)> = Vec::new();
        for &(token, _) in &measure {
            let Some(ends) = self.core.subflow_ends(token) else { continue };
            asked.extend(
                ends.into_iter().map(|(local, remote, ifindex)| (token, Query::Subflow { local, remote, ifindex })),
            );
        }
        let mut samples: BTreeMap<u32, Vec<SubflowSample>> = measure.iter().map(|&(t, _)| (t, Vec::new())).collect();
        self.cost.subflows += asked.len() as u64;
        for chunk in asked.chunks(DIAG_BATCH) {
            let queries: Vec<Query> = chunk.iter().map(|&(_, q)| q).collect();
            let result = self.diag.query(&queries, |i, answer| {
                let Ok(msg) = answer else { return };
                let token = chunk[i].0;
                // The 4-tuple may have been taken by another connection.
                if msg.subflow_of.is_some_and(|of| of.token == token) {
                    if let Some(sample) = subflow_sample(&msg) {
                        samples.entry(token).or_default().push(sample);
                    }
                }
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "measuring subflows");
                return false;
            }
        }
        for (token, look) in measure {
            let subflows = samples.remove(&token).unwrap_or_default();
            self.sampler.measured_subflows(token, look.retransmits, now);
            tracing::trace!(token, ?subflows, "measured");
            let in_flight = subflows.iter().any(|s| s.unacked > 0 || s.backoff > 0 || !s.established);
            self.core.handle(Input::Samples { token, subflows }, now);
            // After the samples: they may have changed the threshold.
            let next_look = pace(self.core.silence_watch(token), look.heard_ms, now);
            self.sampler.measured(token, look.activity, in_flight, next_look, now);
            // A join the peer has not completed yet: looked at again at
            // once, so a handover back to its path waits one look at most.
            if self.core.awaits_confirmation(token) {
                self.sampler.postpone(token, now);
            }
        }
        self.sampler.due(now, 1).len() == 1
    }

    /// Adopts the client connections open in the namespace (see
    /// [`Manager::adopt`]); how many.
    fn adopt(&mut self, registered: &HashMap<u32, ServiceType>, now: Instant) -> usize {
        const ESTABLISHED: u8 = 1;
        const LISTEN: u8 = 10;
        let (mut listening, mut conns) = (BTreeSet::new(), Vec::new());
        let mut subflows: HashMap<u32, Vec<(SocketAddr, u8, bool)>> = HashMap::new();
        for v6 in [false, true] {
            let found = self.diag.dump(Query::AllConnections { v6 }, |msg| match msg.state {
                LISTEN => {
                    listening.insert(msg.local.port());
                }
                ESTABLISHED => {
                    if let Some(info) = msg.info.and_then(|b| multipath::MptcpInfo::decode(b).ok()) {
                        conns.push((info.token, msg.local, msg.remote));
                    }
                }
                _ => {}
            });
            let found = found.and_then(|()| {
                self.diag.dump(Query::AllSubflows { v6 }, |msg| {
                    if let (Some(of), Some(_)) = (msg.subflow_of, subflow_sample(&msg)) {
                        subflows.entry(of.token).or_default().push((msg.local, of.loc_id, of.backup));
                    }
                })
            });
            if let Err(e) = found {
                tracing::warn!(error = %e, "listing the connections already open");
                return 0;
            }
        }
        let mut adopted = 0;
        for (token, local, remote) in conns {
            // A server's connections came in on a listener: not ours.
            if listening.contains(&local.port()) {
                continue;
            }
            let Some(service) = registered.get(&token).copied().or(self.core.config().default_service) else {
                continue;
            };
            let subflows = subflows.remove(&token).unwrap_or_default();
            self.core.handle(Input::Adopt { token, service, remote, subflows }, now);
            if self.core.manages(token) {
                self.sampler.add(token, now);
                adopted += 1;
            } else {
                tracing::info!(token, %local, %remote, "an open connection is left to the kernel");
            }
        }
        self.flush(now);
        adopted
    }

    fn disown(&mut self, uid: u32) {
        if let Some(n) = self.per_owner.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(&uid);
            }
        }
    }

    /// The classifier's decision for an unregistered connection, from what
    /// the kernel recorded of its socket; `None`: the default.
    fn classify(&mut self, token: u32, remote: SocketAddr) -> Option<(ServiceType, String)> {
        let classifier = self.classifier.clone().filter(|c| c.active())?;
        let mut recorded = None;
        let asked = self.diag.query(&[Query::Connection { token }], |_, found| {
            if let Ok(msg) = found {
                recorded = Some(Recorded { token, remote, uid: msg.uid, inode: msg.inode, cgroup: msg.cgroup });
            }
        });
        if let Err(e) = asked {
            tracing::debug!(token, error = %e, "reading a connection's owner; it gets the default");
        }
        classifier.classify(&recorded?)
    }

    /// A connection closed: no more measuring, and no longer its owner's.
    fn forget(&mut self, token: u32) {
        self.sampler.remove(token);
        self.classified.remove(&token);
        if let Some(owner) = self.owners.remove(&token) {
            self.disown(owner.uid);
        }
    }

    /// Goes on with the latest sweep (taken by the sweeper thread): wakes
    /// the parked connections whose counters moved, ages the measurements
    /// of the still ones the core watches, closes the ones the kernel no
    /// longer lists. At most `SWEEP_BATCH` connections per turn of the loop,
    /// so that events never wait behind ten thousand of them.
    fn sweep(&mut self, now: Instant) {
        if self.sweep.as_ref().is_none_or(|s| s.left.is_empty()) {
            self.sweep = match self.sweeps.try_recv() {
                Ok(snapshot) => {
                    self.read_limits(now);
                    let left = self.sampler.tokens_before(snapshot.taken).collect();
                    Some(SweepInProgress { seen: snapshot.seen, left })
                }
                Err(_) => return,
            };
        }
        let Some(sweep) = self.sweep.as_mut() else { return };
        let take = sweep.left.len().min(SWEEP_BATCH);
        let batch: Vec<u32> = sweep.left.drain(..take).collect();
        for token in batch {
            let seen = self.sweep.as_ref().and_then(|s| s.seen.get(&token).copied());
            match seen {
                // A still connection the core watches (a silent active path
                // to probe) gets its last measurements aged: no kernel query
                // for it.
                Some(activity) if self.sampler.swept(token, activity, now) == Swept::Still => {
                    match self.core.when_still(token, now) {
                        // A join not yet known to be complete: a stalled
                        // connection whose only subflow the peer dropped
                        // moves no counter that would wake it.
                        WhenStill::Measure => self.sampler.postpone(token, now),
                        WhenStill::Age => self.core.handle(Input::Still { token }, now),
                        WhenStill::Nothing => {}
                    }
                }
                Some(_) => {}
                // Not in the dump (closed, or missed while the kernel's
                // table changed under it): looked up by token at once, which
                // tells.
                None => self.sampler.postpone(token, now),
            }
        }
    }

    /// After lost events: every subflow of every managed connection, from
    /// one dump per family, so joins whose SUB_ESTABLISHED was lost are
    /// found too (a lookup by 4-tuple needs the port the event carried).
    fn resync(&mut self, now: Instant) {
        let mut samples: BTreeMap<u32, Vec<SubflowSample>> = self.sampler.tokens().map(|t| (t, Vec::new())).collect();
        for v6 in [false, true] {
            let result = self.diag.dump(Query::AllSubflows { v6 }, |msg| {
                let Some(SubflowOf { token, .. }) = msg.subflow_of else { return };
                if let (Some(list), Some(sample)) = (samples.get_mut(&token), subflow_sample(&msg)) {
                    list.push(sample);
                }
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "resynchronising subflows");
                return;
            }
        }
        for (token, subflows) in samples {
            self.core.handle(Input::Samples { token, subflows }, now);
        }
        // Connections whose ESTABLISHED was among the lost events.
        if self.core.config().default_service.is_some() {
            self.adopt(&HashMap::new(), now);
        }
    }

    /// Collects echo replies.
    fn probe_answers(&mut self, now: Instant) {
        for (token, path) in self.echoes.answers(now) {
            tracing::debug!(token, %path, "probe answered");
            self.core.handle(Input::ProbeAnswered { token, path }, now);
        }
    }

    /// Sends what the core decided. Refusals go back to the core after the
    /// batch, so what it asks again waits for the next turn of the loop
    /// instead of spinning.
    fn flush(&mut self, now: Instant) {
        while let Some(probe) = self.core.poll_probe() {
            let at = Instant::now();
            match self.echoes.send(&probe, at) {
                Ok(()) => {
                    self.core.probe_sent(&probe, at);
                    tracing::debug!(token = probe.token, path = %probe.path, "probe sent");
                }
                // A probe that cannot be sent proves nothing: count the path
                // as alive rather than switch on every silence. Detection
                // then rests on retransmission timeouts alone.
                Err(e) => {
                    if !std::mem::replace(&mut self.probe_failure_said, true) {
                        tracing::warn!(error = %e, path = %probe.path, "cannot send a path probe (said once)");
                    }
                    self.core.handle(Input::ProbeAnswered { token: probe.token, path: probe.path }, now);
                }
            }
        }
        let batch: Vec<_> = std::iter::from_fn(|| self.core.poll_command()).collect();
        let mut refused = Vec::new();
        for command in batch {
            tracing::debug!(?command, "path manager");
            let at = Instant::now();
            let result = self.pm.execute(&command);
            if let Some(log) = &self.log {
                let refused = result.as_ref().err().map(|e| e.to_string());
                let _ = log.try_send(SentCommand { command: command.clone(), at, refused });
            }
            if let Command::SubflowDestroy { local, remote, .. } = &command {
                // The kernel only shuts the first subflow down, and it goes on
                // acknowledging the peer's retransmissions: abort it. (The
                // others are gone already: nothing found.)
                if let Some(Err(e)) = self.killer.as_mut().map(|k| k.abort(*local, *remote)) {
                    tracing::debug!(error = %e, %local, "aborting a destroyed subflow");
                }
            }
            if let Err(e) = result {
                tracing::debug!(error = %e, command = command.name(), "refused");
                let refusal = match &e {
                    PmError::Refused { errno, message, .. } => Refusal::classify(*errno, message.as_deref()),
                    _ => Refusal::Transient,
                };
                refused.push((command, refusal));
            }
        }
        for (command, refusal) in refused {
            self.core.handle(Input::CommandFailed { command, refusal }, now);
        }
    }
}
