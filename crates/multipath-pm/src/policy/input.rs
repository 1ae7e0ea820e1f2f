//! What the core is told and what it asks the driver for: inputs, probes,
//! the kernel's refusals, and which connections it can serve at all.

use std::net::{IpAddr, SocketAddr};

use multipath::ServiceType;

use super::LocalPath;
use crate::netlink::mptcp_pm::Command;

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
    /// Bytes received on the subflow over its life.
    pub bytes_received: u64,
    /// Bytes the peer acknowledged on the subflow over its life.
    pub bytes_acked: u64,
    /// The subflow is established (not still joining).
    pub established: bool,
    /// The peer acknowledged the handshake's last ACK (MPTCP's "fully
    /// established"): only then does a join carry data or take a backup
    /// flag change. True where the kernel does not say.
    pub fully_established: bool,
}

impl SubflowSample {
    /// The path's own delay: the lowest RTT seen (no queueing), else the
    /// smoothed one; `None` before any RTT sample.
    pub fn delay(&self) -> Option<std::time::Duration> {
        let us = if self.min_rtt_us > 0 { self.min_rtt_us } else { self.rtt_us };
        (us > 0).then(|| std::time::Duration::from_micros(u64::from(us)))
    }
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
    /// Destination: the peer's address the path reaches (its first one, or
    /// one it announced).
    pub to: IpAddr,
    /// The connection's peer (its first address): probes are shared per
    /// path and peer.
    pub peer: IpAddr,
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
    /// The kernel's MPTCP limits (`ip mptcp limits`), read now and then.
    Limits {
        /// Joins a connection may have besides its initial subflow.
        subflows: u32,
    },
    /// The largest receive buffer the kernel's autotuning grows a socket's
    /// to in this namespace (`net.ipv4.tcp_rmem`'s third field), bytes.
    ReceiveBufferMax(u64),
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
    /// The connection's counters were read, not its subflows: something
    /// (data or an acknowledgement) arrived on one of them `heard_ms` ago.
    /// The core takes it for the active path (the others carry nothing
    /// while it works) and judges its silence by it; the subflows'
    /// own measurements follow now and then.
    Heard {
        /// Connection token.
        token: u32,
        /// Since anything arrived on any subflow, ms.
        heard_ms: u32,
    },
    /// The peer announced another address of its own (ANNOUNCED).
    Announced {
        /// Connection token.
        token: u32,
        /// The peer's id for the address.
        rem_id: u8,
        /// The address, with the port (0: the connection's).
        addr: SocketAddr,
    },
    /// The peer withdrew an address it announced (REMOVED).
    Withdrawn {
        /// Connection token.
        token: u32,
        /// The peer's id for the address.
        rem_id: u8,
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
    /// One end IPv4-mapped, the other not.
    #[error("{0} is an IPv4-mapped IPv6 address, and the other end is not")]
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
///
/// An IPv6 socket talking IPv4 (both ends IPv4-mapped) is served as IPv4:
/// such a socket can also join over IPv6.
pub fn servable(paths: &[LocalPath], local: IpAddr, remote: IpAddr) -> Result<&LocalPath, Unservable> {
    let mapped = |ip: IpAddr| ip.to_canonical() != ip;
    match (mapped(local), mapped(remote)) {
        (true, false) => return Err(Unservable::Mapped(local)),
        (false, true) => return Err(Unservable::Mapped(remote)),
        _ => {}
    }
    let (local, remote) = (local.to_canonical(), remote.to_canonical());
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
