//! One managed connection as the core sees it: its subflows, the health of
//! each path for it, and its timers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multipath::ServiceType;

use super::probe::Prober;
use super::{contribution, select, servable, LocalPath, PolicyConfig, SubflowSample};

/// Where a subflow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SubflowState {
    /// SUBFLOW_CREATE sent at this time; no SUB_ESTABLISHED yet.
    Joining(Instant),
    Established,
}

#[derive(Clone, Debug)]
pub(super) struct Subflow {
    pub(super) path: String,
    /// Its interface: a join is bound to it, and the kernel finds a bound
    /// socket only by its interface too.
    pub(super) ifindex: u32,
    pub(super) loc_id: u8,
    /// Port 0 until established. As the kernel reports it (an IPv6
    /// socket's IPv4 subflow: mapped).
    pub(super) local: SocketAddr,
    /// The peer's address it goes to: the connection's, or one the peer
    /// announced. As the kernel reports it.
    pub(super) remote: SocketAddr,
    pub(super) backup: bool,
    pub(super) state: SubflowState,
    /// The kernel refused to change the backup flag (a join not fully
    /// established yet): ask again only after this.
    pub(super) flag_retry_at: Option<Instant>,
    /// Refusals of a backup-flag change in a row: each doubles the wait.
    pub(super) flag_refusals: u8,
    /// When a join of ours was asked for; `None` for the initial subflow
    /// and for subflows found already open.
    pub(super) created: Option<Instant>,
    /// Known to be fully established (the peer acknowledged the join): a
    /// join the kernel reports established may still be dropped by the
    /// peer, and until a measurement confirms it, it replaces nothing.
    pub(super) confirmed: bool,
}

/// Per path, per connection: failures and when to try again.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PathHealth {
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    /// A handover's secondary, withdrawn when traffic went back to the
    /// primary, gets its fresh backup subflow then (sooner if the
    /// connection is left without an active path).
    pub(super) rejoin_at: Option<Instant>,
    /// Declared failed from measurements (RTO with data outstanding) while
    /// the path itself stays up; cleared when a new subflow on it works.
    pub(super) failed: bool,
    /// The kernel refused a join on this path for good: not tried again
    /// until the path changes (a fresh [`Input::PathUp`]).
    pub(super) refused: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Conn {
    pub(super) service: ServiceType,
    /// The peer's first address (IPv4-mapped ones as plain IPv4).
    pub(super) remote: SocketAddr,
    /// An IPv6 socket: subflows of both families may join (the kernel
    /// refuses IPv6 ones on an IPv4 socket, and IPv4 ones on an IPv6-only
    /// socket, which is then marked refused for that path).
    pub(super) dual: bool,
    /// Addresses the peer announced (ADD_ADDR), by its id; at most
    /// `MAX_ANNOUNCED`.
    pub(super) announced: Vec<(u8, SocketAddr)>,
    pub(super) subflows: Vec<Subflow>,
    pub(super) health: BTreeMap<String, PathHealth>,
    pub(super) next_id: u8,
    /// The path carrying data.
    pub(super) active: Option<String>,
    pub(super) interactive: select::InteractiveState,
    pub(super) prober: Prober,
    /// Cached [`deadline`], refreshed whenever the connection changes.
    pub(super) deadline: Option<Instant>,
    /// No joins before this: the kernel has not reported the connection
    /// established yet.
    pub(super) joins_from: Option<Instant>,
    /// The latest measurements and when they were taken: aged by
    /// [`Input::Still`] instead of measured again while nothing moves.
    pub(super) last_samples: Option<(Instant, Vec<SubflowSample>)>,
    /// A handover holds its active path until the peer completes the join
    /// of a better one: measured at every look meanwhile.
    pub(super) waits_for_join: bool,
    /// It waits on a join's confirmation (see `Core::awaits_confirmation`),
    /// as of the last reconcile: a sweep asks every parked connection each
    /// second, and this answers without walking its subflows.
    pub(super) awaits: bool,
    /// Usable paths the kernel's subflow limit leaves without a subflow, as
    /// last said in the log.
    pub(super) held_back: Vec<String>,
    /// Aggregate: which paths add to the connection's goodput.
    pub(super) guard: contribution::Guard,
    /// Aggregate: found to need more receive buffer than the host allows.
    pub(super) receive_buffer: Option<super::ReceiveBufferShort>,
}

/// Addresses a peer may announce that a connection keeps.
pub(super) const MAX_ANNOUNCED: usize = 8;

/// `addr` with an IPv4-mapped IPv6 address as plain IPv4.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A connection found open, if every subflow is on a known path and the
/// connection is one the core can serve: all its subflows as established,
/// ids after the highest in use. An IPv6 socket's IPv4 subflows come
/// mapped (the initial one) or plain (joins); a subflow of the other family
/// went to an address the peer announced, which is not known here: it is
/// left as it is, untracked.
pub(super) fn adopt(
    paths: &[LocalPath],
    service: ServiceType,
    remote: SocketAddr,
    found: &[(SocketAddr, u8, bool)],
) -> Option<Conn> {
    let mut subflows = Vec::with_capacity(found.len());
    for &(local, loc_id, backup) in found {
        let (plain_local, plain_remote) = (local.ip().to_canonical(), remote.ip().to_canonical());
        if plain_local.is_ipv4() != plain_remote.is_ipv4() {
            continue;
        }
        let path = servable(paths, plain_local, plain_remote).ok()?;
        // The peer's address as the kernel shows it beside this local one.
        let sf_remote = if plain_local == local.ip() { canonical(remote) } else { remote };
        subflows.push(Subflow {
            path: path.name.clone(),
            ifindex: path.ifindex,
            loc_id,
            local,
            remote: sf_remote,
            backup,
            state: SubflowState::Established,
            flag_retry_at: None,
            flag_refusals: 0,
            created: None,
            confirmed: true,
        });
    }
    subflows.first()?;
    let next_id = found.iter().map(|s| s.1).max()?.checked_add(1)?;
    Some(Conn {
        service,
        remote: canonical(remote),
        dual: remote.is_ipv6(),
        announced: Vec::new(),
        subflows,
        health: BTreeMap::new(),
        next_id,
        active: None,
        interactive: select::InteractiveState::default(),
        prober: Prober::default(),
        deadline: None,
        joins_from: None,
        last_samples: None,
        waits_for_join: false,
        awaits: false,
        held_back: Vec::new(),
        guard: contribution::Guard::grown(),
        receive_buffer: None,
    })
}

/// Silence for this long on the active path makes a connection idle rather
/// than stalled: nothing was arriving before the path could have failed.
pub(super) const IDLE_SILENCE: Duration = Duration::from_secs(1);

/// Whether nothing has arrived on the connection's active path for
/// [`IDLE_SILENCE`], by its last measurements aged to `now`.
pub(super) fn long_idle(conn: &Conn, now: Instant) -> bool {
    let (Some(active), Some((at, samples))) = (&conn.active, &conn.last_samples) else { return false };
    let Some(sf) = conn.subflows.iter().find(|s| &s.path == active) else { return false };
    let Some(sample) = samples.iter().find(|s| s.local == sf.local) else { return false };
    let heard = Duration::from_millis(u64::from(sample.last_data_recv_ms.min(sample.last_ack_recv_ms)));
    heard + now.duration_since(*at) >= IDLE_SILENCE
}

/// When something last arrived on the active path of `conn`, by `samples`
/// taken at `taken`.
pub(super) fn active_heard_at(conn: &Conn, samples: &[SubflowSample], taken: Instant) -> Option<Instant> {
    let active = conn.active.as_ref()?;
    let sf = conn.subflows.iter().find(|s| &s.path == active)?;
    let sample = samples.iter().find(|s| s.local == sf.local)?;
    taken.checked_sub(Duration::from_millis(u64::from(sample.last_data_recv_ms.min(sample.last_ack_recv_ms))))
}

/// How long joins of a connection registered before the kernel reported
/// it established wait for that report before they are tried anyway.
pub(super) const READY_WITHIN: Duration = Duration::from_secs(1);

/// How long after withdrawing a dead path's address the new active path
/// is un-backed (MP_PRIO), so the peer handles the RM_ADDR first.
pub(super) const UNBACKUP_AFTER_WITHDRAWAL: Duration = Duration::from_millis(30);

/// Wait before asking again for a backup-flag change the kernel refused,
/// doubling with each refusal in a row up to 32 times this.
pub(super) const FLAG_RETRY: Duration = Duration::from_millis(20);

/// The earliest time one connection has something to do: a join timing
/// out, a retry (or a withdrawn secondary's fresh join), a probe's answer
/// due, a flag to ask again.
pub(super) fn deadline(config: &PolicyConfig, c: &Conn) -> Option<Instant> {
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
pub(super) fn backoff(config: &PolicyConfig, health: &mut PathHealth, now: Instant) {
    health.failures = health.failures.saturating_add(1);
    let exp = health.failures.saturating_sub(1).min(16);
    let delay = config.retry_min.saturating_mul(1 << exp).min(config.retry_max);
    health.retry_at = Some(now + delay);
}
