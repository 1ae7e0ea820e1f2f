//! Probing a silent active path: a download's receiver has no
//! retransmission timer to notice a blackhole, so silence is asked about
//! with an ICMP echo, shared by every connection between the same path
//! and peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use multipath::ServiceType;

use super::conn::{Conn, SubflowState};
use super::{LocalPath, PolicyConfig, Probe, SubflowSample};

/// A probe of one path to one peer, whichever connection sent it.
#[derive(Clone, Debug)]
pub(super) struct PathProbe {
    pub(super) sent: Instant,
    pub(super) wait: Duration,
    pub(super) answered: Option<Instant>,
    /// The connections that took this probe's verdict as theirs (some may
    /// have closed or moved on since): told of its departure and answer
    /// without a search through every connection.
    pub(super) waiting: Vec<u32>,
}

/// Probing of the active path when it falls silent.
#[derive(Clone, Debug, Default)]
pub(super) struct Prober {
    /// Path probed, when, and how long to wait for the answer.
    pub(super) outstanding: Option<(String, Instant, Duration)>,
    /// When the current active path became active: silence before that
    /// (as a standby backup) means nothing.
    pub(super) active_since: Option<(String, Instant)>,
    /// An idle connection's path answered: probe again only after this.
    pub(super) quiet_until: Option<Instant>,
    pub(super) quiet_backoff: Duration,
    /// A long-idle connection's probe went unanswered once: the next
    /// unanswered one decides.
    pub(super) struck: bool,
}

impl Prober {
    /// The path answered: it is alive, the connection merely idle. Probe
    /// less and less often while silence lasts (250 ms, 500 ms, ... up to a
    /// minute), so that thousands of idle connections send few probes. Not
    /// slower at first: an answer can come just before a blackhole starts,
    /// and the next probe must catch it.
    pub(super) fn answered(&mut self, now: Instant) {
        self.outstanding = None;
        self.struck = false;
        self.quiet_backoff = (self.quiet_backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(60));
        self.quiet_until = Some(now + self.quiet_backoff);
    }
}

/// A path's base delay: its minimum RTT, not the smoothed one that
/// queueing inflates.
fn base_rtt(sample: &SubflowSample) -> Duration {
    Duration::from_micros(u64::from(if sample.min_rtt_us > 0 { sample.min_rtt_us } else { sample.rtt_us }))
}

/// Silence on the active path from which it is probed. Relative to the
/// path: a 60 ms path is quiet for 60 ms between bursts without anything
/// being wrong.
pub(super) fn silence_threshold(config: &PolicyConfig, active: &SubflowSample) -> Duration {
    config.silence.max(base_rtt(active) * 2)
}

/// A probe of the active path if it has been silent too long. Only for the
/// types with one active path; aggregate leaves loss to the kernel.
pub(super) fn silence_probe(
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
    let threshold = silence_threshold(config, sample);
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
    match path_probes.get_mut(&key) {
        // Another connection's probe was just answered: the path works.
        Some(probe) if probe.answered.is_some_and(|at| now.duration_since(at) < config.silence) => {
            p.answered(now);
            return None;
        }
        // Another connection's probe is on its way: share its verdict.
        Some(probe) if probe.answered.is_none() && now < probe.sent + probe.wait => {
            p.outstanding = Some((active, probe.sent, probe.wait));
            probe.waiting.push(token);
            return None;
        }
        _ => {}
    }
    // To the peer's address the active subflow uses (the path may reach
    // only one the peer announced), from the path's address of its family;
    // none: nothing can be sent, so nothing is waited for.
    let to = conn
        .subflows
        .iter()
        .find(|s| s.path == active && s.state == SubflowState::Established)
        .map_or(conn.remote.ip(), |s| s.remote.ip().to_canonical());
    let from = path.addr_for(to)?;
    // The echo queues behind the connection's own data: its wait follows
    // the smoothed RTT, queueing included (a loaded path answers late, not
    // never), where silence followed the base delay.
    let srtt = Duration::from_micros(u64::from(sample.rtt_us.max(sample.min_rtt_us)));
    let wait = config.probe_timeout.max(srtt * 2 + Duration::from_millis(20));
    if path_probes.len() >= 4096 {
        // Paths times peers: forget the peers not probed for a while.
        path_probes.retain(|_, probe| now.duration_since(probe.sent) < Duration::from_secs(60));
    }
    path_probes.insert(key, PathProbe { sent: now, wait, answered: None, waiting: vec![token] });
    p.outstanding = Some((active.clone(), now, wait));
    Some(Probe { token, path: active, from, to, peer: conn.remote.ip() })
}
