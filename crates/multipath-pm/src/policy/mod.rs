//! The path manager's deterministic core: one state machine per managed
//! connection, fed inputs (path changes, path-manager events, periodic
//! subflow measurements) and the current time, producing the netlink
//! commands that make the connection's subflows match its service type.
//!
//! No I/O and no clock inside, as in quinn's protocol core: the driver
//! calls [`Core::handle`] and [`Core::handle_timeout`], then drains
//! [`Core::poll_command`]. Tests step it in simulated time.
//!
//! Each step *reconciles*: from the paths that are up and healthy, the
//! service type decides which path carries data (the *active* one) and
//! which subflows should exist; the difference to the subflows that do
//! exist becomes commands, in the order the kernel needs (withdraw a dead
//! address before destroying its subflow, un-backup the new active path
//! before backing up the old one).

mod events;
mod rank;
pub mod sampling;
mod select;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use multipath::ServiceType;

use crate::netlink::mptcp_pm::{flags, Command, LocalAddr};
pub use events::input_for_event;
pub use rank::PathPreference;
pub use select::Hysteresis;

/// A local path: an interface with usable addresses and default routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPath {
    /// Interface name, e.g. "wifi0".
    pub name: String,
    /// The addresses subflows on this path may leave from: one per family
    /// that has a default route through the interface (IPv4 first).
    pub addrs: Vec<IpAddr>,
    /// Interface index.
    pub ifindex: u32,
    /// Preference: lower is better (default-route metric by default).
    pub rank: u32,
}

impl LocalPath {
    /// The address a subflow to `peer` leaves from: the path's address of
    /// the peer's family (the kernel refuses a join across families).
    pub fn addr_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.addrs.iter().copied().find(|a| a.is_ipv4() == peer.is_ipv4())
    }

    /// Whether `ip` is one of the path's addresses.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&ip)
    }
}

/// Measurements of one subflow, sampled periodically by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubflowSample {
    /// Local address and port: which subflow.
    pub local: SocketAddr,
    /// Smoothed RTT, µs.
    pub rtt_us: u32,
    /// Lowest RTT seen, µs: the path's own delay without queueing.
    pub min_rtt_us: u32,
    /// Exponential backoff of the retransmission timer: above 0 after an RTO.
    pub backoff: u8,
    /// Segments sent and not acknowledged.
    pub unacked: u32,
    /// Retransmitted segments over the subflow's life.
    pub total_retrans: u32,
    /// Since data last arrived on the subflow, ms.
    pub last_data_recv_ms: u32,
    /// Since an acknowledgement last arrived on the subflow, ms: a sender
    /// hears its path through these.
    pub last_ack_recv_ms: u32,
    /// The subflow is established (not still joining).
    pub established: bool,
}

/// An ICMP echo the driver should send from a path to the peer, to tell a
/// silent path from a dead one (a download's receiver has no retransmission
/// timer of its own to notice a blackhole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The connection that asks.
    pub token: u32,
    /// The path to probe.
    pub path: String,
    /// Source address: the path's.
    pub from: IpAddr,
    /// Destination: the peer.
    pub to: IpAddr,
}

/// What the core is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A path became usable (or changed address or rank).
    PathUp(LocalPath),
    /// A path is gone: link down, address or route removed.
    PathDown {
        /// Its name.
        name: String,
    },
    /// A connection to manage is established (path-manager ESTABLISHED,
    /// or a registration).
    Established {
        /// Connection token.
        token: u32,
        /// Service type to enforce.
        service: ServiceType,
        /// Local address and port of the initial subflow.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
        /// Whether the kernel accepts joins yet. A program registers its
        /// connection before data has flowed, and the kernel refuses joins
        /// (ENOTCONN) until its ESTABLISHED event; joins then wait for
        /// [`Input::Ready`], or `READY_WITHIN` should that event be lost.
        ready: bool,
    },
    /// A connection found open with its subflows (a path manager starting
    /// beside connections a crashed predecessor managed), as the kernel
    /// lists them. Adopted like [`Input::Established`], if it can be served.
    Adopt {
        /// Connection token.
        token: u32,
        /// Service type to enforce.
        service: ServiceType,
        /// The peer.
        remote: SocketAddr,
        /// Every open subflow: local address and port, local address id
        /// (the initial subflow's is 0), backup flag.
        subflows: Vec<(SocketAddr, u8, bool)>,
    },
    /// The kernel reports a managed connection fully established: from now
    /// on it accepts joins. Creates it refused before (a program registers
    /// its connection before any data has flowed) are retried at once.
    Ready {
        /// Connection token.
        token: u32,
    },
    /// A subflow is established (SUB_ESTABLISHED).
    SubflowEstablished {
        /// Connection token.
        token: u32,
        /// Local address and port.
        local: SocketAddr,
        /// Local address id.
        loc_id: u8,
    },
    /// A subflow closed or failed to establish (SUB_CLOSED).
    SubflowClosed {
        /// Connection token.
        token: u32,
        /// Local address and port.
        local: SocketAddr,
        /// Local address id.
        loc_id: u8,
    },
    /// The kernel refused a command the core issued; the core undoes what
    /// it assumed and, unless the refusal is final, tries again later.
    CommandFailed {
        /// The command.
        command: Command,
        /// What the refusal means.
        refusal: Refusal,
    },
    /// The peer answered the probe of `path`: the path works.
    ProbeAnswered {
        /// Connection token.
        token: u32,
        /// The probed path.
        path: String,
    },
    /// Fresh measurements of a connection's subflows.
    Samples {
        /// Connection token.
        token: u32,
        /// One per open subflow.
        subflows: Vec<SubflowSample>,
    },
    /// Nothing moved on the connection since its last [`Input::Samples`]
    /// (its counters say so): the core ages those measurements instead of
    /// asking for new ones.
    Still {
        /// Connection token.
        token: u32,
    },
    /// The connection closed (CLOSED).
    Closed {
        /// Connection token.
        token: u32,
    },
}

/// What a refusal from the kernel means for the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Asking again cannot help (`families mismatch`, an address that is
    /// not local): the path is not tried again for this connection until
    /// it changes.
    Final,
    /// The kernel does not know the connection (any more).
    UnknownConnection,
    /// Worth another try later (a join not established yet, a connection
    /// not ready yet, a full queue).
    Transient,
}

impl Refusal {
    /// Reads a refusal: its errno and the kernel's extended-ack text.
    pub fn classify(errno: i32, message: Option<&str>) -> Refusal {
        let message = message.unwrap_or("");
        match errno {
            libc::EINVAL if message.contains("invalid token") => Refusal::UnknownConnection,
            // Created under the kernel's path manager: never ours.
            libc::EINVAL if message.contains("userspace PM not selected") => Refusal::UnknownConnection,
            libc::EINVAL if message.contains("families mismatch") => Refusal::Final,
            libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT | libc::ENETUNREACH => Refusal::Final,
            _ => Refusal::Transient,
        }
    }
}

/// Why the path manager leaves a connection to the kernel as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unservable {
    /// An IPv6 socket talking IPv4 through mapped addresses.
    #[error("{0} is an IPv4-mapped IPv6 address")]
    Mapped(IpAddr),
    /// Local and peer addresses of different families.
    #[error("local {local} and peer {remote} are of different families")]
    MixedFamilies {
        /// The connection's local address.
        local: IpAddr,
        /// The peer's.
        remote: IpAddr,
    },
    /// A link-local or loopback peer: only its own interface reaches it.
    #[error("peer {0} is reachable through one interface only (link-local or loopback)")]
    LinkScoped(IpAddr),
    /// The connection left from an address on no known path.
    #[error("local address {0} is on no path with a default route of its family")]
    UnknownAddress(IpAddr),
}

impl Unservable {
    /// A short name for the kind of reason, to log each kind once.
    pub fn kind(&self) -> &'static str {
        match self {
            Unservable::Mapped(_) => "mapped",
            Unservable::MixedFamilies { .. } => "mixed-families",
            Unservable::LinkScoped(_) => "link-scoped",
            Unservable::UnknownAddress(_) => "unknown-address",
        }
    }
}

/// The path a connection from `local` to `remote` starts on, if the path
/// manager can serve it at all: same family both ends, a peer other paths
/// can reach, and a local address on a known path. Anything else is left
/// to the kernel untouched.
pub fn servable(paths: &[LocalPath], local: IpAddr, remote: IpAddr) -> Result<&LocalPath, Unservable> {
    for ip in [local, remote] {
        if let IpAddr::V6(v6) = ip {
            if v6.to_ipv4_mapped().is_some() {
                return Err(Unservable::Mapped(ip));
            }
        }
    }
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(Unservable::MixedFamilies { local, remote });
    }
    let link_scoped = match remote {
        IpAddr::V4(a) => a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => a.is_loopback() || a.is_unicast_link_local(),
    };
    if link_scoped {
        return Err(Unservable::LinkScoped(remote));
    }
    paths.iter().find(|p| p.holds(local)).ok_or(Unservable::UnknownAddress(local))
}

/// Tunables, with defaults that suit the lab's 20 ms / 60 ms paths.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Which paths are primary, metered or never used.
    pub paths: PathPreference,
    /// While a path's interface is down, refuse packets from its address
    /// (an `unreachable` policy rule, tagged `proto 77`, removed when the
    /// interface returns and when the manager stops) instead of letting
    /// them leave through another interface. Applied by the manager, not
    /// the core.
    pub quarantine_down_paths: bool,
    /// Handover: open secondary subflows only once the primary degrades
    /// (Apple's behaviour) instead of at once as standby backups.
    pub lazy_secondary: bool,
    /// A join not established within this long is abandoned and retried.
    pub join_timeout: Duration,
    /// First retry delay after a failed join; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Interactive: how much better and for how long another path must be.
    pub hysteresis: Hysteresis,
    /// Handover: when traffic returns to the primary, the secondary's
    /// subflow is withdrawn (the peer resends what was queued on it over the
    /// primary); a fresh backup subflow on it follows this much later.
    pub demote_after: Duration,
    /// Silence on the active path after which it is probed.
    pub silence: Duration,
    /// A probe unanswered this long declares the path dead.
    pub probe_timeout: Duration,
    /// Service type for connections nobody registered, seen through the
    /// kernel's events. The daemon uses `aggregate` (all paths active, as the
    /// kernel's path manager would) so other MPTCP programs keep working;
    /// `None` leaves them with their initial subflow only.
    pub default_service: Option<ServiceType>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            paths: PathPreference::default(),
            quarantine_down_paths: true,
            lazy_secondary: false,
            join_timeout: Duration::from_secs(3),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(8),
            hysteresis: Hysteresis::default(),
            demote_after: Duration::from_millis(300),
            silence: Duration::from_millis(40),
            probe_timeout: Duration::from_millis(60),
            default_service: None,
        }
    }
}

/// The core: all managed connections and the paths they may use.
#[derive(Debug)]
pub struct Core {
    config: PolicyConfig,
    paths: Vec<LocalPath>,
    conns: BTreeMap<u32, Conn>,
    /// Every connection's next deadline, earliest first: the timer queue.
    deadlines: BTreeSet<(Instant, u32)>,
    /// The latest probe from each path to each peer, shared by all the
    /// connections between the two: one echo answers for all of them.
    path_probes: HashMap<(String, IpAddr), PathProbe>,
    out: VecDeque<Command>,
    probes: VecDeque<Probe>,
}

/// Where a subflow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubflowState {
    /// SUBFLOW_CREATE sent at this time; no SUB_ESTABLISHED yet.
    Joining(Instant),
    Established,
}

#[derive(Clone, Debug)]
struct Subflow {
    path: String,
    /// Its interface: a join is bound to it, and the kernel finds a bound
    /// socket only by its interface too.
    ifindex: u32,
    loc_id: u8,
    /// Port 0 until established.
    local: SocketAddr,
    backup: bool,
    state: SubflowState,
    /// The kernel refused to change the backup flag (a join not fully
    /// established yet): ask again only after this.
    flag_retry_at: Option<Instant>,
}

/// Per path, per connection: failures and when to try again.
#[derive(Clone, Copy, Debug, Default)]
struct PathHealth {
    failures: u32,
    retry_at: Option<Instant>,
    /// A handover's secondary, withdrawn when traffic went back to the
    /// primary, gets its fresh backup subflow then (sooner if the
    /// connection is left without an active path).
    rejoin_at: Option<Instant>,
    /// Declared failed from measurements (RTO with data outstanding) while
    /// the path itself stays up; cleared when a new subflow on it works.
    failed: bool,
    /// The kernel refused a join on this path for good: not tried again
    /// until the path changes (a fresh [`Input::PathUp`]).
    refused: bool,
}

#[derive(Clone, Debug)]
struct Conn {
    service: ServiceType,
    remote: SocketAddr,
    subflows: Vec<Subflow>,
    health: BTreeMap<String, PathHealth>,
    next_id: u8,
    /// The path carrying data.
    active: Option<String>,
    interactive: select::InteractiveState,
    prober: Prober,
    /// Cached [`deadline`], refreshed whenever the connection changes.
    deadline: Option<Instant>,
    /// No joins before this: the kernel has not reported the connection
    /// established yet.
    joins_from: Option<Instant>,
    /// The latest measurements and when they were taken: aged by
    /// [`Input::Still`] instead of measured again while nothing moves.
    last_samples: Option<(Instant, Vec<SubflowSample>)>,
}

/// A probe of one path to one peer, whichever connection sent it.
#[derive(Clone, Copy, Debug)]
struct PathProbe {
    sent: Instant,
    wait: Duration,
    answered: Option<Instant>,
}

/// Probing of the active path when it falls silent.
#[derive(Clone, Debug, Default)]
struct Prober {
    /// Path probed, when, and how long to wait for the answer.
    outstanding: Option<(String, Instant, Duration)>,
    /// When the current active path became active: silence before that
    /// (as a standby backup) means nothing.
    active_since: Option<(String, Instant)>,
    /// An idle connection's path answered: probe again only after this.
    quiet_until: Option<Instant>,
    quiet_backoff: Duration,
    /// A long-idle connection's probe went unanswered once: the next
    /// unanswered one decides.
    struck: bool,
}

impl Prober {
    /// The path answered: it is alive, the connection merely idle. Probe
    /// less and less often while silence lasts (250 ms, 500 ms, ... up to a
    /// minute), so that thousands of idle connections send few probes. Not
    /// slower at first: an answer can come just before a blackhole starts,
    /// and the next probe must catch it.
    fn answered(&mut self, now: Instant) {
        self.outstanding = None;
        self.struck = false;
        self.quiet_backoff = (self.quiet_backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(60));
        self.quiet_until = Some(now + self.quiet_backoff);
    }
}

impl Core {
    /// A core with no paths and no connections.
    pub fn new(config: PolicyConfig) -> Self {
        Core {
            config,
            paths: Vec::new(),
            conns: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            path_probes: HashMap::new(),
            out: VecDeque::new(),
            probes: VecDeque::new(),
        }
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Feeds one input at time `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        // Only the connection an input concerns is reconciled (ten thousand
        // connections each sampled every few milliseconds would otherwise
        // cost a full sweep per sample); path changes concern all.
        let touched = match &input {
            Input::PathUp(_) | Input::PathDown { .. } => None,
            Input::CommandFailed { command, .. } => Some(command.token()),
            Input::Established { token, .. }
            | Input::Adopt { token, .. }
            | Input::SubflowEstablished { token, .. }
            | Input::SubflowClosed { token, .. }
            | Input::Ready { token }
            | Input::ProbeAnswered { token, .. }
            | Input::Samples { token, .. }
            | Input::Still { token }
            | Input::Closed { token } => Some(*token),
        };
        match input {
            Input::PathUp(path) => {
                self.paths.retain(|p| p.name != path.name);
                for conn in self.conns.values_mut() {
                    // A path that comes back gets a fresh chance at once.
                    conn.health.remove(&path.name);
                }
                self.paths.push(path);
                self.paths.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.name.cmp(&b.name)));
            }
            Input::PathDown { name } => self.paths.retain(|p| p.name != name),
            Input::Established { token, service, local, remote, ready } => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    // A registration after the kernel's event: the program's
                    // own choice replaces the default.
                    conn.service = service;
                } else if service == ServiceType::None {
                    return;
                }
                if self.conns.contains_key(&token) {
                    self.reconcile_one(token, now);
                    return;
                }
                // Do no harm: a connection the core cannot serve is never
                // touched (the driver says why, from the same function).
                let Ok(path) = servable(&self.paths, local.ip(), remote.ip()) else { return };
                let initial = Subflow {
                    path: path.name.clone(),
                    ifindex: path.ifindex,
                    loc_id: 0,
                    local,
                    backup: false,
                    state: SubflowState::Established,
                    flag_retry_at: None,
                };
                let conn = Conn {
                    service,
                    remote,
                    subflows: vec![initial],
                    health: BTreeMap::new(),
                    next_id: 1,
                    active: None,
                    interactive: select::InteractiveState::default(),
                    prober: Prober::default(),
                    deadline: None,
                    joins_from: (!ready).then(|| now + READY_WITHIN),
                    last_samples: None,
                };
                self.conns.insert(token, conn);
            }
            Input::Adopt { token, service, remote, subflows } => {
                if self.conns.contains_key(&token) || service == ServiceType::None {
                    return;
                }
                let Some(conn) = adopt(&self.paths, service, remote, &subflows) else { return };
                self.conns.insert(token, conn);
            }
            Input::SubflowEstablished { token, local, loc_id } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                if let Some(sf) = conn.subflows.iter_mut().find(|s| s.loc_id == loc_id && s.local.ip() == local.ip()) {
                    sf.local = local;
                    sf.state = SubflowState::Established;
                    let health = conn.health.entry(sf.path.clone()).or_default();
                    *health = PathHealth::default();
                }
            }
            Input::SubflowClosed { token, local, loc_id } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                let closed = |s: &Subflow| s.loc_id == loc_id && s.local.ip() == local.ip();
                if let Some(sf) = conn.subflows.iter().find(|s| closed(s)) {
                    let path = sf.path.clone();
                    backoff(&self.config, conn.health.entry(path).or_default(), now);
                }
                conn.subflows.retain(|s| !closed(s));
            }
            Input::Ready { token } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                conn.joins_from = None;
                for (path, health) in conn.health.iter_mut() {
                    let joined = conn.subflows.iter().any(|s| &s.path == path);
                    if !health.failed && !joined {
                        *health = PathHealth::default();
                    }
                }
            }
            Input::CommandFailed { command, refusal } => self.command_failed(command, refusal, now),
            Input::ProbeAnswered { token, path } => {
                let Some(peer) = self.conns.get(&token).map(|c| c.remote.ip()) else { return };
                if let Some(probe) = self.path_probes.get_mut(&(path.clone(), peer)) {
                    probe.answered = Some(now);
                }
                // Every connection waiting on this path and peer has its answer.
                let waiting: Vec<u32> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.remote.ip() == peer && c.prober.outstanding.as_ref().is_some_and(|o| o.0 == path)
                    })
                    .map(|(&t, _)| t)
                    .collect();
                for t in waiting {
                    let conn = self.conns.get_mut(&t).expect("token listed");
                    conn.prober.answered(now);
                    if t != token {
                        self.reschedule(t);
                    }
                }
            }
            Input::Samples { token, subflows } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                sync(&self.config, conn, &subflows, now);
                observe(&self.config, conn, &subflows, now);
                let probes = &mut self.path_probes;
                if let Some(probe) = silence_probe(&self.config, &self.paths, probes, token, conn, &subflows, now) {
                    self.probes.push_back(probe);
                }
                conn.last_samples = Some((now, subflows));
            }
            Input::Still { token } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                let Some((at, samples)) = &conn.last_samples else { return };
                // Nothing arrived since: every silence is that much longer.
                let since = u32::try_from(now.duration_since(*at).as_millis()).unwrap_or(u32::MAX);
                let aged: Vec<SubflowSample> = samples
                    .iter()
                    .map(|s| SubflowSample {
                        last_data_recv_ms: s.last_data_recv_ms.saturating_add(since),
                        last_ack_recv_ms: s.last_ack_recv_ms.saturating_add(since),
                        ..*s
                    })
                    .collect();
                let probes = &mut self.path_probes;
                match silence_probe(&self.config, &self.paths, probes, token, conn, &aged, now) {
                    Some(probe) => self.probes.push_back(probe),
                    // Nothing else changes for a still connection: no
                    // reconciling (a sweep brings thousands of these).
                    None => return,
                }
            }
            Input::Closed { token } => {
                if let Some(at) = self.conns.remove(&token).and_then(|c| c.deadline) {
                    self.deadlines.remove(&(at, token));
                }
            }
        }
        match touched {
            Some(token) => self.reconcile_one(token, now),
            None => self.reconcile_all(now),
        }
    }

    /// Runs what was waiting for time to pass (retries, join timeouts,
    /// probes), for the connections whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self.deadlines.iter().take_while(|(at, _)| *at <= now).map(|&(_, t)| t).collect();
        for token in due {
            let conn = self.conns.get_mut(&token).expect("token listed");
            if let Some((path, sent, wait)) = conn.prober.outstanding.clone() {
                if now >= sent + wait {
                    if long_idle(conn, now) && !conn.prober.struck {
                        // One late echo (a loaded host, a lost packet) must
                        // not move every idle connection on the path at
                        // once: an idle one asks again first. A connection
                        // that was receiving moments ago does not wait.
                        conn.prober.outstanding = None;
                        conn.prober.quiet_until = None;
                        conn.prober.struck = true;
                    } else {
                        // No answer: the path is dead, whatever its link says.
                        conn.prober = Prober::default();
                        let health = conn.health.entry(path).or_default();
                        health.failed = true;
                        backoff(&self.config, health, now);
                    }
                }
            }
            let timeout = self.config.join_timeout;
            let expired: Vec<(String, u8)> = conn
                .subflows
                .iter()
                .filter(|s| matches!(s.state, SubflowState::Joining(at) if now >= at + timeout))
                .map(|s| (s.path.clone(), s.loc_id))
                .collect();
            for (path, loc_id) in expired {
                // Withdraw the half-open join; the kernel drops its SYN.
                conn.subflows.retain(|s| s.loc_id != loc_id);
                self.out.push_back(Command::Remove { token, loc_id });
                backoff(&self.config, conn.health.entry(path).or_default(), now);
            }
            reconcile(&self.config, &self.paths, token, conn, now, &mut self.out);
            // Retries that fell due had their chance (their path may be
            // down): forget them so time moves on. So does a wait for the
            // kernel's ESTABLISHED that ran out.
            if conn.joins_from.is_some_and(|at| at <= now) {
                conn.joins_from = None;
            }
            for sf in &mut conn.subflows {
                if sf.flag_retry_at.is_some_and(|at| at <= now) {
                    sf.flag_retry_at = None;
                }
            }
            for h in conn.health.values_mut() {
                if h.rejoin_at.is_some_and(|at| at <= now) {
                    h.rejoin_at = None;
                }
                if h.retry_at.is_some_and(|at| at <= now) {
                    h.retry_at = None;
                }
            }
            self.reschedule(token);
        }
    }

    /// When [`Core::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// The next probe to send.
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.probes.pop_front()
    }

    /// The echo of `probe` really went out at `at` (later than the core
    /// asked for it when the driver was busy): its wait counts from then,
    /// for every connection that shares it.
    pub fn probe_sent(&mut self, probe: &Probe, at: Instant) {
        let key = (probe.path.clone(), probe.to);
        let Some(shared) = self.path_probes.get_mut(&key) else { return };
        if shared.answered.is_some() || at <= shared.sent {
            return;
        }
        let asked = shared.sent;
        shared.sent = at;
        let waiting: Vec<u32> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.remote.ip() == probe.to)
            .filter_map(|(&t, c)| match &mut c.prober.outstanding {
                Some((path, sent, _)) if *path == probe.path && *sent == asked => {
                    *sent = at;
                    Some(t)
                }
                _ => None,
            })
            .collect();
        for t in waiting {
            self.reschedule(t);
        }
    }

    /// The next command to send, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// The path carrying a connection's data, for status and monitoring.
    pub fn active_path(&self, token: u32) -> Option<&str> {
        self.conns.get(&token)?.active.as_deref()
    }

    /// Whether measurements of connection `token` can tell the core
    /// anything while nothing on the connection moves: not for aggregate
    /// (it watches no path), nor while an answered probe has shown the
    /// active path alive and the connection merely idle.
    pub fn needs_samples(&self, token: u32, now: Instant) -> bool {
        let Some(conn) = self.conns.get(&token) else { return false };
        match conn.service {
            ServiceType::Aggregate | ServiceType::None => false,
            _ => conn.prober.quiet_until.is_none_or(|t| now >= t),
        }
    }

    /// The peer and the local ends (address and port, interface) of the
    /// established subflows of `token`: what the driver measures.
    pub fn subflow_ends(&self, token: u32) -> Option<(SocketAddr, Vec<(SocketAddr, u32)>)> {
        let conn = self.conns.get(&token)?;
        let locals = conn
            .subflows
            .iter()
            .filter(|s| s.state == SubflowState::Established && s.local.port() != 0)
            .map(|s| (s.local, s.ifindex))
            .collect();
        Some((conn.remote, locals))
    }

    /// The service type enforced on `token`.
    pub fn service_of(&self, token: u32) -> Option<ServiceType> {
        self.conns.get(&token).map(|c| c.service)
    }

    /// Whether the core manages connection `token`.
    pub fn manages(&self, token: u32) -> bool {
        self.conns.contains_key(&token)
    }

    /// Connections under management.
    pub fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.conns.keys().copied()
    }

    fn command_failed(&mut self, command: Command, refusal: Refusal, now: Instant) {
        if refusal == Refusal::UnknownConnection {
            // Closed before its CLOSED event reached us: forget it.
            let token = command.token();
            if let Some(at) = self.conns.remove(&token).and_then(|c| c.deadline) {
                self.deadlines.remove(&(at, token));
            }
            return;
        }
        match command {
            Command::SubflowCreate { token, local, .. } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                if let Some(sf) = conn.subflows.iter().find(|s| s.loc_id == local.id) {
                    let health = conn.health.entry(sf.path.clone()).or_default();
                    health.refused |= refusal == Refusal::Final;
                    backoff(&self.config, health, now);
                }
                conn.subflows.retain(|s| s.loc_id != local.id);
            }
            // E.g. MP_PRIO before the join is fully established: the next
            // reconcile asks again.
            Command::SetBackup { token, local, backup, .. } => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                if let Some(sf) = conn.subflows.iter_mut().find(|s| s.local == local) {
                    sf.backup = !backup;
                    sf.flag_retry_at = Some(now + FLAG_RETRY);
                }
            }
            // The subflow or address is already gone: nothing to undo.
            Command::SubflowDestroy { .. } | Command::Remove { .. } | Command::Announce { .. } => {}
        }
    }

    /// Whether the core would serve a connection from `local` to `remote`
    /// now, and why not.
    pub fn servable(&self, local: IpAddr, remote: IpAddr) -> Result<(), Unservable> {
        servable(&self.paths, local, remote).map(drop)
    }

    fn reconcile_all(&mut self, now: Instant) {
        let tokens: Vec<u32> = self.conns.keys().copied().collect();
        for token in tokens {
            self.reconcile_one(token, now);
        }
    }

    fn reconcile_one(&mut self, token: u32, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        reconcile(&self.config, &self.paths, token, conn, now, &mut self.out);
        self.reschedule(token);
    }

    /// Refreshes a connection's place in the timer queue.
    fn reschedule(&mut self, token: u32) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let next = deadline(&self.config, conn);
        if next == conn.deadline {
            return;
        }
        if let Some(old) = std::mem::replace(&mut conn.deadline, next) {
            self.deadlines.remove(&(old, token));
        }
        if let Some(at) = next {
            self.deadlines.insert((at, token));
        }
    }
}

/// A connection found open, if every subflow is on a known path and the
/// connection is one the core can serve: all its subflows as established,
/// ids after the highest in use.
fn adopt(
    paths: &[LocalPath],
    service: ServiceType,
    remote: SocketAddr,
    found: &[(SocketAddr, u8, bool)],
) -> Option<Conn> {
    let mut subflows = Vec::with_capacity(found.len());
    for &(local, loc_id, backup) in found {
        let path = servable(paths, local.ip(), remote.ip()).ok()?;
        subflows.push(Subflow {
            path: path.name.clone(),
            ifindex: path.ifindex,
            loc_id,
            local,
            backup,
            state: SubflowState::Established,
            flag_retry_at: None,
        });
    }
    let next_id = subflows.iter().map(|s| s.loc_id).max()?.checked_add(1)?;
    Some(Conn {
        service,
        remote,
        subflows,
        health: BTreeMap::new(),
        next_id,
        active: None,
        interactive: select::InteractiveState::default(),
        prober: Prober::default(),
        deadline: None,
        joins_from: None,
        last_samples: None,
    })
}

/// Silence for this long on the active path makes a connection idle rather
/// than stalled: nothing was arriving before the path could have failed.
const IDLE_SILENCE: Duration = Duration::from_secs(1);

/// Whether nothing has arrived on the connection's active path for
/// [`IDLE_SILENCE`], by its last measurements aged to `now`.
fn long_idle(conn: &Conn, now: Instant) -> bool {
    let (Some(active), Some((at, samples))) = (&conn.active, &conn.last_samples) else { return false };
    let Some(sf) = conn.subflows.iter().find(|s| &s.path == active) else { return false };
    let Some(sample) = samples.iter().find(|s| s.local == sf.local) else { return false };
    let heard = Duration::from_millis(u64::from(sample.last_data_recv_ms.min(sample.last_ack_recv_ms)));
    heard + now.duration_since(*at) >= IDLE_SILENCE
}

/// How long joins of a connection registered before the kernel reported
/// it established wait for that report before they are tried anyway.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// How long after withdrawing a dead path's address the new active path
/// is un-backed (MP_PRIO), so the peer handles the RM_ADDR first.
const UNBACKUP_AFTER_WITHDRAWAL: Duration = Duration::from_millis(30);

/// Wait before asking again for a backup-flag change the kernel refused.
const FLAG_RETRY: Duration = Duration::from_millis(20);

/// The earliest time one connection has something to do: a join timing
/// out, a retry (or a withdrawn secondary's fresh join), a probe's answer
/// due, a flag to ask again.
fn deadline(config: &PolicyConfig, c: &Conn) -> Option<Instant> {
    let joins = c.subflows.iter().filter_map(|s| match s.state {
        SubflowState::Joining(at) => Some(at + config.join_timeout),
        SubflowState::Established => None,
    });
    let retries = c.health.values().flat_map(|h| [h.retry_at, h.rejoin_at]).flatten();
    let probe = c.prober.outstanding.as_ref().map(|(_, at, wait)| *at + *wait);
    let flags = c.subflows.iter().filter_map(|s| s.flag_retry_at);
    joins.chain(retries).chain(probe).chain(flags).chain(c.joins_from).min()
}

/// Records a failure on a path and when to try it again.
fn backoff(config: &PolicyConfig, health: &mut PathHealth, now: Instant) {
    health.failures = health.failures.saturating_add(1);
    let exp = health.failures.saturating_sub(1).min(16);
    let delay = config.retry_min.saturating_mul(1 << exp).min(config.retry_max);
    health.retry_at = Some(now + delay);
}

/// Samples are the kernel's truth about which subflows exist: they repair
/// what lost events (a netlink overrun) left stale. A join reported
/// established is promoted; a subflow the kernel no longer lists is gone.
fn sync(config: &PolicyConfig, conn: &mut Conn, samples: &[SubflowSample], now: Instant) {
    for sample in samples.iter().filter(|s| s.established) {
        if conn.subflows.iter().any(|s| s.local == sample.local) {
            continue;
        }
        let joining = conn.subflows.iter_mut().find(|s| {
            matches!(s.state, SubflowState::Joining(_)) && s.local.ip() == sample.local.ip() && s.local.port() == 0
        });
        if let Some(sf) = joining {
            sf.local = sample.local;
            sf.state = SubflowState::Established;
        }
    }
    let listed = |sf: &Subflow| samples.iter().any(|s| s.local == sf.local);
    let gone: Vec<String> = conn
        .subflows
        .iter()
        .filter(|s| s.state == SubflowState::Established && !listed(s))
        .map(|s| s.path.clone())
        .collect();
    if gone.is_empty() {
        return;
    }
    conn.subflows.retain(|s| s.state != SubflowState::Established || listed(s));
    for path in gone {
        backoff(config, conn.health.entry(path).or_default(), now);
    }
}

/// Reads measurements: failure of the active path, RTTs and loss for the
/// interactive choice.
fn observe(config: &PolicyConfig, conn: &mut Conn, samples: &[SubflowSample], now: Instant) {
    for sample in samples {
        let Some(sf) = conn.subflows.iter().find(|s| s.local == sample.local) else { continue };
        let path = sf.path.clone();
        let carrying = conn.active.as_deref() == Some(path.as_str()) || conn.service == ServiceType::Aggregate;
        // An RTO with data outstanding on a path that carries data: do not
        // wait for the kernel's stale detection (several RTOs).
        if carrying && sample.backoff > 0 && sample.unacked > 0 && conn.service != ServiceType::Aggregate {
            let health = conn.health.entry(path.clone()).or_default();
            if !health.failed {
                tracing::debug!(%path, backoff = sample.backoff, unacked = sample.unacked, "retransmission timeout on the active path");
                health.failed = true;
                backoff(config, health, now);
            }
        }
        conn.interactive.observe(&path, sample);
    }
}

/// A probe of the active path if it has been silent too long. Only for the
/// types with one active path; aggregate leaves loss to the kernel.
fn silence_probe(
    config: &PolicyConfig,
    paths: &[LocalPath],
    path_probes: &mut HashMap<(String, IpAddr), PathProbe>,
    token: u32,
    conn: &mut Conn,
    samples: &[SubflowSample],
    now: Instant,
) -> Option<Probe> {
    if !matches!(conn.service, ServiceType::Handover | ServiceType::Interactive) {
        return None;
    }
    let active = conn.active.clone()?;
    let sf = conn.subflows.iter().find(|s| s.path == active && s.state == SubflowState::Established)?;
    let sample = samples.iter().find(|s| s.local == sf.local)?;
    let p = &mut conn.prober;
    let since = match &p.active_since {
        Some((path, at)) if *path == active => *at,
        _ => now,
    };
    // Silence is relative to the path: a 60 ms path is quiet for 60 ms
    // between bursts without anything being wrong. Its base delay, not the
    // smoothed RTT that queueing inflates, sets the scale.
    let rtt = Duration::from_micros(u64::from(if sample.min_rtt_us > 0 { sample.min_rtt_us } else { sample.rtt_us }));
    let threshold = config.silence.max(rtt * 2);
    // Anything arriving, data (a download) or acknowledgements (an upload),
    // shows the path works.
    let heard = sample.last_data_recv_ms.min(sample.last_ack_recv_ms);
    let silent_for = Duration::from_millis(u64::from(heard)).min(now.duration_since(since));
    if silent_for < threshold {
        // Data flows: the next silence is probed at once.
        p.quiet_until = None;
        p.quiet_backoff = Duration::ZERO;
        return None;
    }
    if p.outstanding.is_some() || p.quiet_until.is_some_and(|t| now < t) {
        return None;
    }
    let path = paths.iter().find(|p| p.name == active)?;
    let key = (active.clone(), conn.remote.ip());
    match path_probes.get(&key) {
        // Another connection's probe was just answered: the path works.
        Some(probe) if probe.answered.is_some_and(|at| now.duration_since(at) < config.silence) => {
            p.answered(now);
            return None;
        }
        // Another connection's probe is on its way: share its verdict.
        Some(probe) if probe.answered.is_none() && now < probe.sent + probe.wait => {
            p.outstanding = Some((active, probe.sent, probe.wait));
            return None;
        }
        _ => {}
    }
    let wait = config.probe_timeout.max(rtt * 2 + Duration::from_millis(20));
    if path_probes.len() >= 4096 {
        // Paths times peers: forget the peers not probed for a while.
        path_probes.retain(|_, probe| now.duration_since(probe.sent) < Duration::from_secs(60));
    }
    path_probes.insert(key, PathProbe { sent: now, wait, answered: None });
    p.outstanding = Some((active.clone(), now, wait));
    let from = path.addr_for(conn.remote.ip())?;
    Some(Probe { token, path: active, from, to: conn.remote.ip() })
}

/// The paths a connection may use now: up, and either healthy or due for
/// another try.
fn usable<'a>(paths: &'a [LocalPath], conn: &Conn, now: Instant) -> Vec<&'a LocalPath> {
    paths
        .iter()
        // Only paths with an address of the peer's family can join.
        .filter(|p| p.addr_for(conn.remote.ip()).is_some())
        // A failed path is out while it waits for its next try; then a
        // fresh join probes it. A refused one is out until it changes.
        .filter(|p| {
            !conn.health.get(&p.name).is_some_and(|h| h.refused || (h.failed && h.retry_at.is_some_and(|at| now < at)))
        })
        .collect()
}

/// Makes one connection's subflows match its service type.
fn reconcile(
    config: &PolicyConfig,
    paths: &[LocalPath],
    token: u32,
    conn: &mut Conn,
    now: Instant,
    out: &mut VecDeque<Command>,
) {
    let usable = usable(paths, conn, now);
    let is_usable = |name: &str| usable.iter().any(|p| p.name == name);
    let is_failed = |conn: &Conn, name: &str| conn.health.get(name).is_some_and(|h| h.failed);
    let remote = conn.remote;

    // 1. Subflows on dead or failed paths go: withdraw the address first,
    // over a working subflow, so the peer stops using the dead one at once
    // (it would otherwise wait for its own timeouts), then destroy.
    // Never the last established subflow, though, before another one is
    // established to take over: until then it stays, as the kernel would
    // keep it (its path may come back), and the replacement joins below.
    let (dead, mut alive): (Vec<Subflow>, Vec<Subflow>) = std::mem::take(&mut conn.subflows)
        .into_iter()
        .partition(|s| !is_usable(&s.path) || (is_failed(conn, &s.path) && s.state == SubflowState::Established));
    let (dead, alive) = if alive.iter().any(|s| s.state == SubflowState::Established) {
        (dead, alive)
    } else {
        let (last, dead): (Vec<Subflow>, Vec<Subflow>) =
            dead.into_iter().partition(|s| s.state == SubflowState::Established);
        alive.extend(last);
        (dead, alive)
    };
    conn.subflows = alive;
    let withdrew = !dead.is_empty();
    for sf in dead {
        out.push_back(Command::Remove { token, loc_id: sf.loc_id });
        if sf.state == SubflowState::Established {
            out.push_back(Command::SubflowDestroy { token, local: sf.local, remote });
        }
    }

    // 2. Which path carries data.
    let established: Vec<&str> = usable
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| conn.subflows.iter().any(|s| s.path == *name && s.state == SubflowState::Established))
        .filter(|name| !is_failed(conn, name))
        .collect();
    let active = match conn.service {
        ServiceType::Aggregate | ServiceType::None => None,
        ServiceType::Handover => established.first().map(|s| s.to_string()),
        ServiceType::Interactive => {
            conn.interactive.choose(conn.active.as_deref(), &established, &config.hysteresis, now)
        }
    };
    // 2b. A handover back on its primary withdraws the secondary that
    // carried the data instead of flagging it backup. The peer then resends
    // what it had queued there over the primary, in order, where draining
    // that backlog over the slower path would leave the receiver waiting on
    // it, a full secondary RTT at each of its losses. A fresh backup
    // subflow follows `demote_after` later. (Only a better path becoming
    // established moves a handover off a live active path.)
    let mut withdrew = withdrew;
    if let (ServiceType::Handover, Some(old), Some(new)) = (conn.service, conn.active.clone(), active.as_ref()) {
        let carrying = |s: &Subflow| s.path == old && s.state == SubflowState::Established && !s.backup;
        if &old != new {
            if let Some(i) = conn.subflows.iter().position(carrying) {
                let sf = conn.subflows.remove(i);
                out.push_back(Command::Remove { token, loc_id: sf.loc_id });
                out.push_back(Command::SubflowDestroy { token, local: sf.local, remote });
                conn.health.entry(old).or_default().rejoin_at = Some(now + config.demote_after);
                withdrew = true;
            }
        }
    }
    let wants_backup = |conn: &Conn, path: &str| match conn.service {
        ServiceType::Aggregate | ServiceType::None => false,
        _ => active.as_deref() != Some(path),
    };

    // 3. The new active path stops being backup before anything else is.
    // Right after a withdrawal, a moment later: the peer must act on the
    // RM_ADDR first, resending what the dead path lost, before MP_PRIO
    // invites it to push new data onto this path ahead of that hole.
    let flag_ready = |s: &Subflow| s.state == SubflowState::Established && s.flag_retry_at.is_none_or(|at| now >= at);
    if let Some(name) = &active {
        if withdrew {
            for sf in conn.subflows.iter_mut().filter(|s| &s.path == name && s.backup && flag_ready(s)) {
                sf.flag_retry_at = Some(now + UNBACKUP_AFTER_WITHDRAWAL);
            }
        }
        for sf in conn.subflows.iter_mut().filter(|s| &s.path == name && s.backup && flag_ready(s)) {
            sf.backup = false;
            sf.flag_retry_at = None;
            out.push_back(Command::SetBackup { token, local: sf.local, remote, backup: false });
        }
    }

    // 4. Subflows on usable paths that have none.
    let wanted: Vec<&LocalPath> = match conn.service {
        ServiceType::Handover if config.lazy_secondary => {
            // Apple's way: the secondary only once the primary is gone.
            usable.iter().copied().take(1).collect()
        }
        _ => usable.clone(),
    };
    for path in wanted {
        let has = conn.subflows.iter().any(|s| s.path == path.name);
        // A withdrawn secondary waits for its fresh join, unless the
        // connection has nothing else left.
        let pending = |at: Option<Instant>| at.is_some_and(|at| now < at);
        let waiting = conn
            .health
            .get(&path.name)
            .is_some_and(|h| pending(h.retry_at) || (pending(h.rejoin_at) && active.is_some()))
            || conn.joins_from.is_some_and(|at| now < at);
        if has || waiting || conn.next_id == u8::MAX {
            continue;
        }
        // Handover joins as backup, a recovering primary too: nothing may be
        // queued on it before the secondary is withdrawn (2b), so that the
        // peer's resending of the secondary's backlog comes first on it.
        // With no active path there is nothing to protect.
        let backup = match conn.service {
            ServiceType::Handover => active.is_some(),
            _ => wants_backup(conn, &path.name),
        };
        let Some(addr) = path.addr_for(remote.ip()) else { continue };
        let loc_id = conn.next_id;
        conn.next_id += 1;
        if let Some(h) = conn.health.get_mut(&path.name) {
            h.retry_at = None; // this join is the try
            h.rejoin_at = None;
        }
        let local = LocalAddr {
            id: loc_id,
            addr,
            port: 0,
            ifindex: path.ifindex as i32,
            flags: if backup { flags::BACKUP } else { 0 },
        };
        out.push_back(Command::SubflowCreate { token, local, remote });
        let joining = Subflow {
            path: path.name.clone(),
            ifindex: path.ifindex,
            loc_id,
            local: SocketAddr::new(addr, 0),
            backup,
            state: SubflowState::Joining(now),
            flag_retry_at: None,
        };
        conn.subflows.push(joining);
    }

    // 5. Every other established subflow gets the flag its role wants.
    // (Not one kept on a dead path for want of a replacement: its MP_PRIO
    // would go nowhere.)
    for i in 0..conn.subflows.len() {
        let sf = &conn.subflows[i];
        let want = wants_backup(conn, &sf.path);
        if flag_ready(sf) && sf.backup != want && is_usable(&sf.path) {
            let sf = &mut conn.subflows[i];
            sf.backup = want;
            sf.flag_retry_at = None;
            out.push_back(Command::SetBackup { token, local: sf.local, remote, backup: want });
        }
    }
    if active != conn.active {
        conn.prober.active_since = active.clone().map(|a| (a, now));
        conn.prober.outstanding = None;
    }
    conn.active = active;
}
