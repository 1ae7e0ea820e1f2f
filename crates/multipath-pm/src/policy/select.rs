//! Choosing the path that carries an interactive connection's data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::SubflowSample;

/// When another path takes over: it must be `margin` better (as a fraction
/// of the current path's RTT) for `hold` without interruption. Loss or an
/// RTO on the current path switches at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hysteresis {
    /// Fraction, e.g. 0.2: the leader's RTT must be under 80% of the current one's.
    pub margin: f64,
    /// How long the leader must stay that much better.
    pub hold: Duration,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis { margin: 0.2, hold: Duration::from_millis(500) }
    }
}

/// What the interactive choice remembers between samples.
#[derive(Clone, Debug, Default)]
pub(super) struct InteractiveState {
    rtt_us: BTreeMap<String, u32>,
    retrans: BTreeMap<String, u32>,
    /// Paths that lost packets or took an RTO since the last choice.
    troubled: Vec<String>,
    /// A path that has been clearly better since this time.
    leader_since: Option<(String, Instant)>,
}

impl InteractiveState {
    pub(super) fn observe(&mut self, path: &str, sample: &SubflowSample) {
        if sample.rtt_us > 0 {
            self.rtt_us.insert(path.to_owned(), sample.rtt_us);
        }
        let before = self.retrans.insert(path.to_owned(), sample.total_retrans);
        let lost = before.is_some_and(|b| sample.total_retrans > b);
        if (lost || (sample.backoff > 0 && sample.unacked > 0)) && !self.troubled.iter().any(|p| p == path) {
            self.troubled.push(path.to_owned());
        }
    }

    /// The path to carry data among `candidates` (established, healthy,
    /// in rank order), given the current one.
    pub(super) fn choose(
        &mut self,
        current: Option<&str>,
        candidates: &[&str],
        h: &Hysteresis,
        now: Instant,
    ) -> Option<String> {
        let troubled = std::mem::take(&mut self.troubled);
        let rtts = self.rtt_us.clone();
        let rtt = |p: &str| rtts.get(p).copied().unwrap_or(u32::MAX);
        let fastest = |except: Option<&str>| {
            candidates.iter().copied().filter(|c| Some(*c) != except).min_by_key(|c| rtt(c)).map(str::to_owned)
        };
        let Some(current) = current.filter(|c| candidates.contains(c)) else {
            self.leader_since = None;
            return fastest(None);
        };
        if troubled.iter().any(|t| t == current) {
            if let Some(other) = fastest(Some(current)) {
                self.leader_since = None;
                return Some(other);
            }
        }
        let leader = fastest(None)?;
        let clearly_better = leader != current && (rtt(&leader) as f64) < rtt(current) as f64 * (1.0 - h.margin);
        if !clearly_better {
            self.leader_since = None;
            return Some(current.to_owned());
        }
        match &self.leader_since {
            Some((name, since)) if *name == leader => {
                if now.duration_since(*since) >= h.hold {
                    self.leader_since = None;
                    return Some(leader);
                }
            }
            _ => self.leader_since = Some((leader, now)),
        }
        Some(current.to_owned())
    }
}
