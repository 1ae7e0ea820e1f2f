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

mod config;
mod conn;
mod contribution;
mod events;
mod first_path;
mod input;
mod measure;
mod probe;
pub mod quarantine;
mod rank;
mod reconcile;
pub mod sampling;
mod select;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use multipath::ServiceType;

use crate::netlink::mptcp_pm::Command;
pub use crate::netlink::route::LocalPath;
pub use config::PolicyConfig;
use conn::{
    active_heard_at, adopt, backoff, deadline, long_idle, Conn, PathHealth, Subflow, SubflowState, FLAG_RETRY,
    READY_WITHIN,
};
pub use contribution::ContributionGuard;
pub use events::{input_for_event, EarlyAnnouncements};
use first_path::PathDelay;
pub use input::{servable, Input, Probe, Refusal, SubflowSample, Unservable};
use measure::{observe, sync};
use probe::{silence_probe, PathProbe, Prober};
pub use rank::PathPreference;
use reconcile::reconcile;
use sampling::SilenceWatch;
pub use select::Hysteresis;

/// A managed connection as the core sees it ([`Core::view`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnView {
    /// The service type enforced.
    pub service: ServiceType,
    /// The peer.
    pub remote: SocketAddr,
    /// The path carrying its data.
    pub active: Option<String>,
    /// Its subflows, the initial one first.
    pub subflows: Vec<SubflowView>,
    /// Usable paths left without a subflow by the kernel's subflow limit.
    pub held_back: Vec<String>,
    /// Aggregate: paths kept as backup because they did not add to the
    /// connection's goodput (the contribution guard).
    pub backed_off: Vec<String>,
    /// Aggregate: the host's receive-buffer limit was found too small for
    /// the connection's paths (once found, kept).
    pub receive_buffer: Option<ReceiveBufferShort>,
}

/// An aggregate connection whose paths need more receive buffer than the
/// kernel's autotuning may give it: the sum of their rates times the
/// largest RTT, twice (about half a buffer is window), is over
/// `net.ipv4.tcp_rmem`'s maximum. The slow path's data then stalls the
/// fast one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveBufferShort {
    /// What the paths measured need, bytes.
    pub need: u64,
    /// The namespace's limit, bytes.
    pub cap: u64,
    /// The goodput measured, bit/s.
    pub bps: u64,
    /// The largest smoothed RTT among the subflows, microseconds.
    pub rtt_us: u32,
}

/// One subflow of a [`ConnView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubflowView {
    /// The path it runs on.
    pub path: String,
    /// Its local address (port 0 while joining).
    pub local: SocketAddr,
    /// Whether it is flagged backup.
    pub backup: bool,
    /// Whether the kernel reported it established (else joining).
    pub established: bool,
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
    /// Managed connections per peer address: a peer's probes are forgotten
    /// with its last connection.
    peers: HashMap<IpAddr, usize>,
    out: VecDeque<Command>,
    probes: VecDeque<Probe>,
    /// Each path's delay as its connections last measured it: a new
    /// aggregate connection's joins start from it, and new connections
    /// choose their first path by it.
    path_rtt: BTreeMap<String, PathDelay>,
    /// The kernel's subflow limit, joins per connection (`None` until the
    /// driver says).
    join_limit: Option<u32>,
    /// The namespace's receive-buffer limit (`None` until the driver says).
    recv_buffer_max: Option<u64>,
}

/// What a sweep does with a connection whose counters stood still (see
/// [`Core::when_still`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenStill {
    /// Measure its subflows now.
    Measure,
    /// Age its last measurements ([`Input::Still`]).
    Age,
    /// Nothing.
    Nothing,
}

/// See [`Core::needs_samples`].
fn needs_samples(conn: &Conn, now: Instant) -> bool {
    match conn.service {
        ServiceType::Aggregate | ServiceType::None => false,
        _ => conn.prober.quiet_until.is_none_or(|t| now >= t),
    }
}

/// Whether a busy aggregate connection's paths (goodput `bps`, subflows'
/// RTTs) need more receive buffer than `cap`.
fn receive_buffer_short(bps: Option<f64>, subflows: &[SubflowSample], cap: u64) -> Option<ReceiveBufferShort> {
    let rtt_us = subflows.iter().filter(|s| s.established).map(|s| s.rtt_us).max()?;
    let bps = bps?;
    let need = (bps / 8.0 * f64::from(rtt_us) / 1e6 * 2.0) as u64;
    (need > cap).then_some(ReceiveBufferShort { need, cap, bps: bps as u64, rtt_us })
}

/// See [`Core::awaits_confirmation`]: as of the last reconcile.
fn awaits_confirmation(conn: &Conn) -> bool {
    conn.awaits
}

/// The sizes of the core's tables (see [`Core::tables`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreTables {
    /// Managed connections.
    pub connections: usize,
    /// Connections with a deadline pending (retries, timeouts, probes).
    pub timers: usize,
    /// Latest probes, per path and peer.
    pub path_probes: usize,
    /// Peer addresses of managed connections.
    pub peers: usize,
    /// Commands and probes decided and not yet taken by the driver.
    pub queued: usize,
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
            peers: HashMap::new(),
            out: VecDeque::new(),
            probes: VecDeque::new(),
            path_rtt: BTreeMap::new(),
            join_limit: None,
            recv_buffer_max: None,
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
        // cost a full sweep per sample); path changes concern all. Each
        // input's own step says whether anything is left to reconcile.
        let reconcile = match input {
            Input::PathUp(path) => {
                self.path_up(path);
                Some(None)
            }
            Input::PathDown { name } => {
                self.paths.retain(|p| p.name != name);
                for conn in self.conns.values_mut() {
                    conn.guard.forget(&name);
                }
                self.path_rtt.remove(&name);
                Some(None)
            }
            Input::Limits { subflows } => (self.join_limit.replace(subflows) != Some(subflows)).then_some(None),
            Input::ReceiveBufferMax(bytes) => {
                self.recv_buffer_max = Some(bytes);
                None
            }
            Input::Established { token, service, local, remote, ready } => {
                self.established(token, service, local, remote, ready, now).then_some(Some(token))
            }
            Input::Adopt { token, service, remote, subflows } => {
                if !self.conns.contains_key(&token) && service != ServiceType::None {
                    if let Some(conn) = adopt(&self.paths, service, remote, &subflows) {
                        self.insert_conn(token, conn);
                    }
                }
                Some(Some(token))
            }
            Input::SubflowEstablished { token, local, loc_id } => {
                self.subflow_established(token, local, loc_id);
                Some(Some(token))
            }
            Input::SubflowClosed { token, local, loc_id } => {
                self.subflow_closed(token, local, loc_id, now);
                Some(Some(token))
            }
            Input::Ready { token } => {
                self.ready(token);
                Some(Some(token))
            }
            Input::CommandFailed { command, refusal } => {
                let token = command.token();
                self.command_failed(command, refusal, now);
                Some(Some(token))
            }
            Input::ProbeAnswered { token, path } => {
                self.probe_answered(token, path, now);
                Some(Some(token))
            }
            Input::Samples { token, subflows } => {
                self.samples(token, subflows, now);
                Some(Some(token))
            }
            Input::Still { token } => self.still(token, None, now).then_some(Some(token)),
            Input::Heard { token, heard_ms } => self.still(token, Some(heard_ms), now).then_some(Some(token)),
            Input::Closed { token } => {
                self.remove_conn(token);
                Some(Some(token))
            }
            Input::Announced { token, rem_id, addr } => self.announced(token, rem_id, addr).then_some(Some(token)),
            Input::Withdrawn { token, rem_id } => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.announced.retain(|(id, _)| *id != rem_id);
                }
                None
            }
        };
        match reconcile {
            Some(Some(token)) => self.reconcile_one(token, now),
            Some(None) => self.reconcile_all(now),
            None => {}
        }
    }

    fn path_up(&mut self, path: LocalPath) {
        self.paths.retain(|p| p.name != path.name);
        for conn in self.conns.values_mut() {
            // A path that comes back gets a fresh chance at once.
            conn.health.remove(&path.name);
        }
        self.paths.push(path);
        self.paths.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.name.cmp(&b.name)));
    }

    /// A connection to manage (or one managed already, registered now);
    /// whether the core has it.
    fn established(
        &mut self,
        token: u32,
        service: ServiceType,
        local: SocketAddr,
        remote: SocketAddr,
        ready: bool,
        now: Instant,
    ) -> bool {
        if let Some(conn) = self.conns.get_mut(&token) {
            // A registration after the kernel's event: the program's own
            // choice replaces the default.
            conn.service = service;
            return true;
        }
        if service == ServiceType::None {
            return false;
        }
        // Do no harm: a connection the core cannot serve is never touched
        // (the driver says why, from the same function).
        let Ok(path) = servable(&self.paths, local.ip(), remote.ip()) else { return false };
        let known_rtts: BTreeMap<String, Duration> = match service {
            ServiceType::Aggregate => {
                first_path::fresh(&self.path_rtt, now).map(|(p, d)| (p.clone(), d.base)).collect()
            }
            _ => BTreeMap::new(),
        };
        let initial = Subflow {
            path: path.name.clone(),
            ifindex: path.ifindex,
            loc_id: 0,
            local,
            remote,
            backup: false,
            state: SubflowState::Established,
            flag_retry_at: None,
            flag_refusals: 0,
            created: None,
            confirmed: true,
        };
        let conn = Conn {
            service,
            remote: conn::canonical(remote),
            dual: remote.is_ipv6(),
            announced: Vec::new(),
            subflows: vec![initial],
            health: BTreeMap::new(),
            next_id: 1,
            active: None,
            interactive: select::InteractiveState::default(),
            prober: Prober::default(),
            deadline: None,
            joins_from: (!ready).then(|| now + READY_WITHIN),
            last_samples: None,
            waits_for_join: false,
            awaits: false,
            held_back: Vec::new(),
            guard: contribution::Guard::young(&path.name, &self.config.contribution, &known_rtts),
            receive_buffer: None,
        };
        self.insert_conn(token, conn);
        true
    }

    fn insert_conn(&mut self, token: u32, conn: Conn) {
        *self.peers.entry(conn.remote.ip()).or_default() += 1;
        if let Some(old) = self.conns.insert(token, conn) {
            self.forget(token, old);
        }
    }

    fn remove_conn(&mut self, token: u32) {
        if let Some(conn) = self.conns.remove(&token) {
            self.forget(token, conn);
        }
    }

    /// What `conn` (no longer under `token`) left in the other tables.
    fn forget(&mut self, token: u32, conn: Conn) {
        if let Some(at) = conn.deadline {
            self.deadlines.remove(&(at, token));
        }
        let peer = conn.remote.ip();
        let last = match self.peers.get_mut(&peer) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.peers.remove(&peer);
                true
            }
        };
        if last {
            self.path_probes.retain(|(_, to), _| *to != peer);
        } else {
            for (_, probe) in self.path_probes.iter_mut().filter(|((_, to), _)| *to == peer) {
                probe.waiting.retain(|&t| t != token);
            }
        }
    }

    /// The sizes of the core's tables: all zero once every connection is
    /// gone and the driver took what was decided.
    pub fn tables(&self) -> CoreTables {
        CoreTables {
            connections: self.conns.len(),
            timers: self.deadlines.len(),
            path_probes: self.path_probes.len(),
            peers: self.peers.len(),
            queued: self.out.len() + self.probes.len(),
        }
    }

    /// An address the peer announced: kept (the first `MAX_ANNOUNCED`);
    /// whether it is new. Reconciling decides whether a path uses it.
    fn announced(&mut self, token: u32, rem_id: u8, addr: SocketAddr) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else { return false };
        let addr = conn::canonical(addr);
        // With the connection's port where the peer gave none.
        let addr = if addr.port() == 0 { SocketAddr::new(addr.ip(), conn.remote.port()) } else { addr };
        let unusable = match addr.ip() {
            IpAddr::V4(a) => a.is_unspecified() || a.is_loopback() || a.is_link_local() || a.is_multicast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_unicast_link_local() || a.is_multicast(),
        };
        if unusable || addr == conn.remote || conn.announced.iter().any(|(id, a)| *id == rem_id || *a == addr) {
            return false;
        }
        if conn.announced.len() >= conn::MAX_ANNOUNCED {
            return false;
        }
        tracing::debug!(token, rem_id, %addr, "the peer announced an address");
        conn.announced.push((rem_id, addr));
        true
    }

    fn subflow_established(&mut self, token: u32, local: SocketAddr, loc_id: u8) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let same = |a: SocketAddr, b: SocketAddr| a.ip().to_canonical() == b.ip().to_canonical();
        if let Some(sf) = conn.subflows.iter_mut().find(|s| s.loc_id == loc_id && same(s.local, local)) {
            sf.local = local;
            sf.state = SubflowState::Established;
            // The failures in a row stay until the peer confirms the join:
            // a server at its subflow limit lets a join establish and then
            // resets it, and the retries must still back off.
            let health = conn.health.entry(sf.path.clone()).or_default();
            *health = PathHealth { failures: health.failures, ..PathHealth::default() };
            return;
        }
        // A subflow the core is not waiting for: a join it gave up on (a
        // timeout, its path down) whose SYN got through once the path came
        // back. Left alone, such joins piled up under a flapping wifi (8
        // established subflows, each a path the connection never uses).
        // It goes, unless it is the connection's only working subflow.
        if conn.subflows.iter().any(|s| s.state == SubflowState::Established) {
            tracing::debug!(token, %local, loc_id, "a subflow the core gave up on came up: destroyed");
            // Its peer address is not known here: the connection's, in the
            // local address's family, or the announced one of that family.
            let remote = std::iter::once(conn.remote)
                .chain(conn.announced.iter().map(|(_, a)| *a))
                .find(|r| r.is_ipv4() == local.ip().to_canonical().is_ipv4());
            if let Some(remote) = remote {
                self.out.push_back(Command::SubflowDestroy { token, local, remote });
            }
        }
    }

    fn subflow_closed(&mut self, token: u32, local: SocketAddr, loc_id: u8, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let closed = |s: &Subflow| s.loc_id == loc_id && s.local.ip().to_canonical() == local.ip().to_canonical();
        let Some(sf) = conn.subflows.iter().find(|s| closed(s)) else { return };
        let path = sf.path.clone();
        backoff(&self.config, conn.health.entry(path).or_default(), now);
        conn.subflows.retain(|s| !closed(s));
        forget_address(token, conn, loc_id, &mut self.out);
    }

    fn ready(&mut self, token: u32) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        conn.joins_from = None;
        for (path, health) in conn.health.iter_mut() {
            let joined = conn.subflows.iter().any(|s| &s.path == path);
            if !health.failed && !joined {
                *health = PathHealth::default();
            }
        }
    }

    fn probe_answered(&mut self, token: u32, path: String, now: Instant) {
        let Some(peer) = self.conns.get(&token).map(|c| c.remote.ip()) else { return };
        let waiting = match self.path_probes.get_mut(&(path.clone(), peer)) {
            Some(probe) => {
                probe.answered = Some(now);
                std::mem::take(&mut probe.waiting)
            }
            None => Vec::new(),
        };
        // Every connection waiting on this path and peer has its answer.
        for t in waiting.into_iter().chain([token]) {
            let Some(conn) = self.conns.get_mut(&t) else { continue };
            if conn.remote.ip() != peer || conn.prober.outstanding.as_ref().is_none_or(|o| o.0 != path) {
                continue;
            }
            conn.prober.answered(now);
            if t != token {
                self.reschedule(t);
            }
        }
    }

    /// Something arrived on the active path of `token` at `arrived`: if
    /// that was after its probe left, the path answered (for every
    /// connection sharing the probe). Under load an echo waits in the same
    /// queue as the data, and the data may come first.
    fn heard_on_active(&mut self, token: u32, arrived: Instant, now: Instant) {
        let Some(conn) = self.conns.get(&token) else { return };
        let Some((path, sent, _)) = &conn.prober.outstanding else { return };
        if conn.active.as_ref() == Some(path) && arrived > *sent {
            let path = path.clone();
            self.probe_answered(token, path, now);
        }
    }

    fn samples(&mut self, token: u32, subflows: Vec<SubflowSample>, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        for loc_id in sync(&self.config, conn, &subflows, now) {
            forget_address(token, conn, loc_id, &mut self.out);
        }
        for sf in &mut conn.subflows {
            if !sf.confirmed && subflows.iter().any(|s| s.local == sf.local && s.fully_established) {
                sf.confirmed = true;
                // The path works for this connection: retries start afresh.
                conn.health.entry(sf.path.clone()).or_default().failures = 0;
            }
        }
        observe(&self.config, conn, &subflows, now);
        for s in subflows.iter().filter(|s| s.established) {
            let (Some(delay), Some(sf)) = (s.delay(), conn.subflows.iter().find(|sf| sf.local == s.local)) else {
                continue;
            };
            let smoothed = if s.rtt_us > 0 { Duration::from_micros(u64::from(s.rtt_us)) } else { delay };
            let measured = PathDelay { base: delay, smoothed, at: now };
            match self.path_rtt.get_mut(&sf.path) {
                Some(known) => *known = measured,
                None => drop(self.path_rtt.insert(sf.path.clone(), measured)),
            }
        }
        if conn.service == ServiceType::Aggregate {
            let paths_of: Vec<(SocketAddr, String)> = conn.subflows.iter().map(|s| (s.local, s.path.clone())).collect();
            let path_of = |local: SocketAddr| paths_of.iter().find(|(l, _)| *l == local).map(|(_, p)| p.clone());
            for v in conn.guard.observe(&self.config.contribution, &subflows, path_of, now) {
                let (with, without) = (v.with_bps / 1e6, v.without_bps / 1e6);
                if v.backed_off {
                    tracing::info!(token, path = %v.path, with_mbps = with, without_mbps = without,
                        "aggregate: a path that does not add to the connection's goodput is backup now");
                } else {
                    tracing::info!(token, path = %v.path, with_mbps = with, without_mbps = without,
                        "aggregate: a path that adds to the connection's goodput is active");
                }
            }
        }
        if let (ServiceType::Aggregate, Some(cap), None) = (conn.service, self.recv_buffer_max, conn.receive_buffer) {
            conn.receive_buffer = receive_buffer_short(conn.guard.goodput(), &subflows, cap);
            if let Some(short) = conn.receive_buffer {
                tracing::warn!(token, need = short.need, cap, mbps = short.bps as f64 / 1e6, rtt_ms = short.rtt_us / 1000,
                    "aggregate: the paths need more receive buffer than net.ipv4.tcp_rmem allows; the slowest path's data will hold up the others");
            }
        }
        broken_joins(&self.config, token, conn, &subflows, now, &mut self.out);
        if let Some(arrived) = active_heard_at(conn, &subflows, now) {
            self.heard_on_active(token, arrived, now);
        }
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let probes = &mut self.path_probes;
        if let Some(probe) = silence_probe(&self.config, &self.paths, probes, token, conn, &subflows, now) {
            self.probes.push_back(probe);
        }
        conn.last_samples = Some((now, subflows));
    }

    /// A connection's last measurements, aged to `now`: whether they called
    /// for a probe (nothing else changes for it, so nothing else is
    /// reconciled: a sweep brings thousands of these). `heard_ms`: since
    /// anything arrived on any subflow, if the connection moved; `None`
    /// if it stood still.
    fn still(&mut self, token: u32, heard_ms: Option<u32>, now: Instant) -> bool {
        if let Some(arrived) = heard_ms.and_then(|ms| now.checked_sub(Duration::from_millis(u64::from(ms)))) {
            self.heard_on_active(token, arrived, now);
        }
        let Some(conn) = self.conns.get_mut(&token) else { return false };
        // Aged in place: thousands of these a second.
        let Some((at, mut samples)) = conn.last_samples.take() else { return false };
        // Nothing arrived since the samples: every silence is that much
        // longer. Something did: at most that long ago.
        let since = u32::try_from(now.duration_since(at).as_millis()).unwrap_or(u32::MAX);
        let aged = |ms: u32| ms.saturating_add(since).min(heard_ms.unwrap_or(u32::MAX));
        for s in &mut samples {
            s.last_data_recv_ms = aged(s.last_data_recv_ms);
            s.last_ack_recv_ms = aged(s.last_ack_recv_ms);
        }
        let probe = silence_probe(&self.config, &self.paths, &mut self.path_probes, token, conn, &samples, now);
        conn.last_samples = Some((now, samples));
        probe.map(|p| self.probes.push_back(p)).is_some()
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
            reconcile(&self.config, &self.paths, self.join_limit, token, conn, now, &mut self.out);
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
        let key = (probe.path.clone(), probe.peer);
        let Some(shared) = self.path_probes.get_mut(&key) else { return };
        if shared.answered.is_some() || at <= shared.sent {
            return;
        }
        let asked = shared.sent;
        shared.sent = at;
        let waiting = shared.waiting.clone();
        for t in waiting {
            let Some(conn) = self.conns.get_mut(&t) else { continue };
            match &mut conn.prober.outstanding {
                Some((path, sent, _)) if conn.remote.ip() == probe.peer && *path == probe.path && *sent == asked => {
                    *sent = at;
                }
                _ => continue,
            }
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
        self.conns.get(&token).is_some_and(|c| needs_samples(c, now))
    }

    /// What the driver's looks at `token` must catch: how long its active
    /// path may stay silent before the core probes it, and until when an
    /// answered probe vouches for it. `None` where silence decides nothing
    /// (aggregate, none).
    pub fn silence_watch(&self, token: u32) -> Option<SilenceWatch> {
        let conn = self.conns.get(&token)?;
        if !matches!(conn.service, ServiceType::Handover | ServiceType::Interactive) {
            return None;
        }
        let active = conn.active.as_ref().and_then(|a| conn.subflows.iter().find(|s| &s.path == a));
        let sample = active
            .zip(conn.last_samples.as_ref())
            .and_then(|(sf, (_, samples))| samples.iter().find(|s| s.local == sf.local));
        let threshold = sample.map_or(self.config.silence, |s| probe::silence_threshold(&self.config, s));
        Some(SilenceWatch { threshold, quiet_until: conn.prober.quiet_until })
    }

    /// The ends (local address and port, peer address and port, local
    /// interface) of the established subflows of `token`, as the kernel
    /// reports them: what the driver measures.
    pub fn subflow_ends(&self, token: u32) -> Option<Vec<(SocketAddr, SocketAddr, u32)>> {
        let conn = self.conns.get(&token)?;
        let ends = conn
            .subflows
            .iter()
            .filter(|s| s.state == SubflowState::Established && s.local.port() != 0)
            .map(|s| (s.local, s.remote, s.ifindex))
            .collect();
        Some(ends)
    }

    /// Whether `token` waits on a join the kernel reports established that
    /// no measurement has shown fully established yet: a handover holding
    /// its active path for a better one's join, or an active path whose
    /// only subflow is such a join (the peer may have dropped it). The
    /// driver then measures its subflows at every look, moving or not.
    /// (A backup join waits for the regular measurements.)
    pub fn awaits_confirmation(&self, token: u32) -> bool {
        self.conns.get(&token).is_some_and(awaits_confirmation)
    }

    /// What a sweep that found `token` still should do: measure it (it
    /// awaits a join's confirmation), age its last measurements (the core
    /// watches its silence), or nothing. One lookup: a sweep asks this of
    /// every parked connection each second.
    pub fn when_still(&self, token: u32, now: Instant) -> WhenStill {
        match self.conns.get(&token) {
            Some(c) if awaits_confirmation(c) => WhenStill::Measure,
            Some(c) if needs_samples(c, now) => WhenStill::Age,
            _ => WhenStill::Nothing,
        }
    }

    /// What `mptcp ls` shows of connection `token`.
    pub fn view(&self, token: u32) -> Option<ConnView> {
        let conn = self.conns.get(&token)?;
        let subflows = conn
            .subflows
            .iter()
            .map(|s| SubflowView {
                path: s.path.clone(),
                local: s.local,
                backup: s.backup,
                established: s.state == SubflowState::Established,
            })
            .collect();
        Some(ConnView {
            service: conn.service,
            remote: conn.remote,
            active: conn.active.clone(),
            subflows,
            held_back: conn.held_back.clone(),
            backed_off: conn.guard.held_back(),
            receive_buffer: conn.receive_buffer,
        })
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
            self.remove_conn(command.token());
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
                // "Subflow not found" for a join of ours past its join
                // timeout: the peer never completed it (a stalled
                // connection gives no fresh samples to tell).
                let timeout = self.config.join_timeout;
                if let Some(sf) = conn.subflows.iter().find(|s| {
                    s.local == local
                        && s.state == SubflowState::Established
                        && s.created.is_some_and(|t| now >= t + timeout)
                }) {
                    let loc_id = sf.loc_id;
                    withdraw_join(&self.config, token, conn, loc_id, now, &mut self.out);
                    return;
                }
                if let Some(sf) = conn.subflows.iter_mut().find(|s| s.local == local) {
                    sf.backup = !backup;
                    // Doubling: a join that never becomes fully established
                    // must not be asked every turn (it is replaced after
                    // the join timeout, see `broken_joins`).
                    let doubling = 1u32 << sf.flag_refusals.min(5);
                    sf.flag_refusals = sf.flag_refusals.saturating_add(1);
                    sf.flag_retry_at = Some(now + FLAG_RETRY * doubling);
                }
            }
            // The subflow or address is already gone: nothing to undo.
            Command::SubflowDestroy { .. } | Command::Remove { .. } | Command::Announce { .. } => {}
        }
    }

    /// Where a new aggregate or interactive connection to `remote` should
    /// start: every path by the smoothed RTT its connections measured in
    /// the last minute, fastest first, a failing path last; a race of
    /// handshakes where a path is not measured; the routing table's choice
    /// with a single path.
    ///
    /// A path fails when its latest lost probe (unanswered past its wait),
    /// to any peer, came after its latest answer. A path's state, not a
    /// peer's: the daemon answers anyone, and whether some connection to
    /// `remote` exists is not theirs to learn.
    pub fn first_path(&self, remote: IpAddr, now: Instant) -> multipath::FirstPath {
        let failing = |path: &str| {
            let (mut lost, mut heard) = (None, None);
            for ((p, _), probe) in &self.path_probes {
                if p != path {
                    continue;
                }
                match probe.answered {
                    Some(at) => heard = heard.max(Some(at)),
                    None if now >= probe.sent + probe.wait => lost = lost.max(Some(probe.sent)),
                    None => {}
                }
            }
            lost.is_some_and(|lost| heard.is_none_or(|heard| heard < lost))
        };
        first_path::choose(&self.paths, remote.to_canonical(), &self.path_rtt, failing, now)
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
        reconcile(&self.config, &self.paths, self.join_limit, token, conn, now, &mut self.out);
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

/// Joins of ours still not fully established a join timeout after they
/// were asked for: the peer dropped them (a SYN-cookie collision under a
/// burst of connections, a middlebox), so they carry nothing and take no
/// backup flag. Withdrawn (the address first, so the peer drops its side
/// too, then the socket) and asked for again after a backoff: counted on,
/// such a join leaves the connection with nothing when the other path
/// fails.
fn broken_joins(
    config: &PolicyConfig,
    token: u32,
    conn: &mut Conn,
    samples: &[SubflowSample],
    now: Instant,
    out: &mut VecDeque<Command>,
) {
    let broken: Vec<u8> = conn
        .subflows
        .iter()
        .filter(|sf| {
            sf.state == SubflowState::Established && sf.created.is_some_and(|t| now >= t + config.join_timeout)
        })
        .filter(|sf| samples.iter().any(|s| s.local == sf.local && !s.fully_established))
        .map(|sf| sf.loc_id)
        .collect();
    for loc_id in broken {
        withdraw_join(config, token, conn, loc_id, now, out);
    }
}

/// Withdraws a join the peer never completed, and backs its path off.
fn withdraw_join(
    config: &PolicyConfig,
    token: u32,
    conn: &mut Conn,
    loc_id: u8,
    now: Instant,
    out: &mut VecDeque<Command>,
) {
    let Some(i) = conn.subflows.iter().position(|s| s.loc_id == loc_id) else { return };
    let sf = conn.subflows.remove(i);
    tracing::info!(token, path = %sf.path, local = %sf.local, "a join was never completed by the peer; replacing it");
    out.push_back(Command::Remove { token, loc_id });
    out.push_back(Command::SubflowDestroy { token, local: sf.local, remote: sf.remote });
    backoff(config, conn.health.entry(sf.path).or_default(), now);
}

/// A subflow closed by the kernel or the peer (a reset, a dead path): the
/// kernel still lists its local address under `loc_id` for the connection,
/// and refuses a join from that address under any other id ("did not match
/// address and id") until the id is removed. Removed, unless another
/// subflow still uses the id (the peer then hears RM_ADDR for an address
/// that no longer works, which is true).
fn forget_address(token: u32, conn: &Conn, loc_id: u8, out: &mut VecDeque<Command>) {
    if !conn.subflows.iter().any(|s| s.loc_id == loc_id) {
        out.push_back(Command::Remove { token, loc_id });
    }
}
