//! What the measurements of a connection's subflows say: which subflows
//! really exist, and whether the path carrying data failed.

use std::time::Instant;

use multipath::ServiceType;

use super::conn::{backoff, Conn, Subflow, SubflowState};
use super::{PolicyConfig, SubflowSample};

/// Samples are the kernel's truth about which subflows exist: they repair
/// what lost events (a netlink overrun) left stale. A join reported
/// established is promoted; a subflow the kernel no longer lists is gone.
/// The local address ids of those gone (the kernel still lists their
/// address under that id until it is removed).
pub(super) fn sync(config: &PolicyConfig, conn: &mut Conn, samples: &[SubflowSample], now: Instant) -> Vec<u8> {
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
    let gone: Vec<(String, u8)> = conn
        .subflows
        .iter()
        .filter(|s| s.state == SubflowState::Established && !listed(s))
        .map(|s| (s.path.clone(), s.loc_id))
        .collect();
    if gone.is_empty() {
        return Vec::new();
    }
    conn.subflows.retain(|s| s.state != SubflowState::Established || listed(s));
    gone.into_iter()
        .map(|(path, loc_id)| {
            backoff(config, conn.health.entry(path).or_default(), now);
            loc_id
        })
        .collect()
}

/// Reads measurements: failure of the active path, RTTs and loss for the
/// interactive choice.
pub(super) fn observe(config: &PolicyConfig, conn: &mut Conn, samples: &[SubflowSample], now: Instant) {
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
