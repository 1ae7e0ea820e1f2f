//! Aggregate's contribution guard: whether each path besides the best one
//! adds to a connection's goodput or takes from it.
//!
//! A slow or lossy path beside a good one can make an MPTCP connection
//! slower than the good path alone: data the scheduler put on it arrives
//! late or is lost, and the receiver holds everything the good path
//! delivered after it until it comes (head-of-line blocking), so the good
//! path's window fills and it stalls. The guard measures instead of
//! modelling:
//!
//! - A path carrying less than [`ContributionGuard::share_floor`] of a busy
//!   connection's bytes for [`SUSPECT_FOR`] is suspect: it can add little,
//!   and its delays can cost the other paths more.
//! - A suspect is put on trial: flagged backup (MP_PRIO: the peer's
//!   scheduler stops sending on it, so this steers downloads too), and the
//!   connection's goodput measured without it, once the data it still had
//!   has arrived (it delivered nothing for two of its RTTs). It is active
//!   again only if goodput with it was more than
//!   [`ContributionGuard::margin`] above goodput without it, and then
//!   trusted for a while (twice as long after each trial it passes);
//!   otherwise it stays backup. Goodput with it counts from when the
//!   connection grew up, so that the young connection's ramp-up is not held
//!   against it.
//! - A backed-off path is tried again after [`ContributionGuard::retry_first`],
//!   doubling up to [`ContributionGuard::retry_max`] while it keeps failing:
//!   active for a ramp-up (its window restarts after idling) and a
//!   measurement, kept active if goodput rose by more than the margin.
//! - A path that passed a trial is trusted (not suspected again) until its
//!   retry interval has passed, so that a path near the floor does not flap.
//!
//! A young connection uses only its fastest paths (by RTT, within 4x of
//! the fastest; the initial subflow's path until RTTs are known). Another
//! path joins as backup and carries data once the connection has been
//! busy for four of its RTTs (at least 250 ms): a short transfer would be
//! done before the slow path's data arrived, and waits for it instead
//! (measurement studies of MPTCP found short flows slower than TCP on the
//! better path for this reason). After 2 s busy a connection is grown up.
//!
//! Nothing is judged while the connection is not busy (an application
//! sending little has the same goodput either way); a trial the connection
//! went quiet during is abandoned. A backed-off path stays joined: it is a
//! backup the kernel uses when the other paths fail, and the path manager
//! never flags the last active path backup.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::SubflowSample;

/// The guard's tunables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContributionGuard {
    /// Judge paths at all; `false`: every path of an aggregate connection
    /// stays active, as under the kernel's path manager.
    pub enabled: bool,
    /// A path carrying less than this share of a busy connection's bytes is
    /// suspect.
    pub share_floor: f64,
    /// A path on trial stays active, and a backed-off path returns, only if
    /// goodput with it exceeds goodput without it by more than this
    /// fraction.
    pub margin: f64,
    /// A backed-off path's first retry. Each retry of a path that still
    /// hurts costs the connection about a second of goodput (the lossy
    /// 3 Mbit/s, 200 ms cell beside 20 Mbit/s wifi): 10 s made that a tenth
    /// of the time, 30 s a thirtieth.
    pub retry_first: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for ContributionGuard {
    fn default() -> Self {
        ContributionGuard {
            enabled: true,
            share_floor: 0.10,
            margin: 0.03,
            retry_first: Duration::from_secs(30),
            retry_max: Duration::from_secs(80),
        }
    }
}

/// A connection below this goodput is not busy enough to judge, bit/s.
pub(super) const BUSY_BPS: f64 = 1e6;
/// Goodput for [`BUSY_BPS`] is taken over this long, and shares of it for
/// the share floor. A lossy 200 ms path's stalls (its retransmission timer
/// backing off) hold the whole connection for over a second at times: a
/// shorter span took them for the application pausing, and the guard,
/// never seeing the connection busy for long, never judged the path
/// (bench, 20/3 Mbit/s 20/200 ms 1%: 0.39 of wifi alone in one run of
/// four).
const BUSY_OVER: Duration = Duration::from_secs(3);
/// How long a path must stay under the share floor to be suspect.
pub(super) const SUSPECT_FOR: Duration = Duration::from_secs(1);
/// How much goodput a trial measures, after the settling time.
pub(super) const MEASURE_FOR: Duration = Duration::from_secs(2);
/// Goodput with a suspect path is taken over this long before its trial:
/// a lossy path's stalls come a few times a second, and a second can
/// miss them.
pub(super) const WITH_OVER: Duration = Duration::from_secs(3);
/// Windows shorter than this are merged into the next.
const MIN_WINDOW: Duration = Duration::from_millis(200);
/// Windows kept: enough for the longest measurement.
const KEEP_FOR: Duration = Duration::from_secs(5);
/// A trial that has not reached a verdict in this long (the connection went
/// quiet) is abandoned.
const TRIAL_GIVES_UP: Duration = Duration::from_secs(10);

/// Busy this long, a connection is no longer young: every path may carry
/// data (as the guard judges them).
pub(super) const GROWN_AFTER: Duration = Duration::from_secs(2);
/// A young connection's path within this factor of the fastest path's RTT
/// carries data at once. In the lab, a 60 ms path beside a 20 ms one made
/// 1 MB downloads faster from the start (0.90 of the 20 ms path alone); a
/// 200 ms one made them slower (1.3-1.8 times).
const SIMILAR_RTT: f64 = 4.0;

/// Bytes delivered between two samples of a connection.
#[derive(Clone, Debug)]
struct Window {
    end: Instant,
    span: Duration,
    per_path: BTreeMap<String, u64>,
}

impl Window {
    fn total(&self) -> u64 {
        self.per_path.values().sum()
    }

    fn bps(&self) -> f64 {
        self.total() as f64 * 8.0 / self.span.as_secs_f64()
    }
}

/// Where a path stands with the guard.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Standing {
    /// Carrying data; `low_since`: under the share floor since then;
    /// `trusted_until`: passed a trial, not suspected before then.
    Active { low_since: Option<Instant>, trusted_until: Option<Instant>, interval: Duration },
    /// Backup while goodput without it is measured against `with_bps`,
    /// from `settled` on: once the data it still had has arrived.
    TrialWithout { since: Instant, settle: Duration, settled: Option<Instant>, with_bps: f64, interval: Duration },
    /// Backup until `until`: it did not help.
    BackedOff { until: Instant, interval: Duration },
    /// Active again while goodput with it is measured against `without_bps`.
    TrialWith { since: Instant, settle: Duration, without_bps: f64, interval: Duration },
}

impl Standing {
    fn active(interval: Duration) -> Standing {
        Standing::Active { low_since: None, trusted_until: None, interval }
    }
}

/// A decision the guard took, for the log and the connection's view.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Verdict {
    pub(super) path: String,
    /// Now backup (true) or active again.
    pub(super) backed_off: bool,
    pub(super) with_bps: f64,
    pub(super) without_bps: f64,
}

/// One aggregate connection's guard.
#[derive(Clone, Debug, Default)]
pub(super) struct Guard {
    /// The initial subflow's path: the one a young connection uses until
    /// RTTs are measured.
    initial: Option<String>,
    /// No longer young (or the guard is off): nothing is held for slowness.
    grown: bool,
    /// When it grew up here (`None`: found grown): goodput "with" a path
    /// counts from then, not from while the young rule held the path back.
    grown_at: Option<Instant>,
    /// Young: the paths that may carry data, by their measured RTTs and
    /// how long the connection has been busy; a path not measured yet is
    /// not among them.
    fast: Vec<String>,
    /// Young: each path's delay, from this connection's samples or, until
    /// it measures the path itself, from other connections'.
    delays: BTreeMap<String, Duration>,
    /// Since when the connection has been busy without a pause.
    busy_since: Option<Instant>,
    /// Bytes delivered per subflow (received + acknowledged) at the last
    /// window's end.
    last: Option<(Instant, BTreeMap<SocketAddr, u64>)>,
    windows: VecDeque<Window>,
    standing: BTreeMap<String, Standing>,
}

impl Guard {
    /// The guard of a new connection whose initial subflow is on
    /// `initial`; `known`: the paths' RTTs as other connections measured
    /// them lately (a path not among them waits for its own measurement).
    pub(super) fn young(initial: &str, g: &ContributionGuard, known: &BTreeMap<String, Duration>) -> Guard {
        let mut guard = Guard { initial: Some(initial.to_owned()), grown: !g.enabled, ..Guard::default() };
        guard.classify(known, Duration::ZERO);
        guard
    }

    /// The guard of a connection found open: not young.
    pub(super) fn grown() -> Guard {
        Guard { grown: true, ..Guard::default() }
    }

    /// Whether `path` should be backup now.
    pub(super) fn holds_back(&self, path: &str) -> bool {
        self.backed_off(path) || self.too_slow_yet(path)
    }

    fn backed_off(&self, path: &str) -> bool {
        matches!(self.standing.get(path), Some(Standing::TrialWithout { .. } | Standing::BackedOff { .. }))
    }

    fn too_slow_yet(&self, path: &str) -> bool {
        if self.grown || self.fast.iter().any(|p| p == path) {
            return false;
        }
        // Nothing measured yet: the initial subflow's path carries data.
        !(self.fast.is_empty() && self.initial.as_deref() == Some(path))
    }

    /// The paths backed off for costing goodput, for the connection's view
    /// (not those a young connection holds for a moment).
    pub(super) fn held_back(&self) -> Vec<String> {
        self.standing.keys().filter(|p| self.backed_off(p)).cloned().collect()
    }

    /// The connection has no other path to carry data: `path` is active
    /// again, tried afresh.
    pub(super) fn release(&mut self, path: &str) {
        self.grown = true;
        if let Some(standing) = self.standing.get_mut(path) {
            if let Standing::TrialWithout { interval, .. } | Standing::BackedOff { interval, .. } = *standing {
                *standing = Standing::active(interval);
            }
        }
    }

    /// A path went away: its standing goes with it (a new interface under
    /// the same name is judged afresh).
    pub(super) fn forget(&mut self, path: &str) {
        self.standing.remove(path);
    }

    /// Takes a connection's fresh samples; `path_of` names each subflow's
    /// path, `rtt_of` a path's smoothed RTT. Returns the decisions taken.
    pub(super) fn observe(
        &mut self,
        g: &ContributionGuard,
        samples: &[SubflowSample],
        path_of: impl Fn(SocketAddr) -> Option<String>,
        now: Instant,
    ) -> Vec<Verdict> {
        if !g.enabled {
            self.standing.clear();
            self.grown = true;
            return Vec::new();
        }
        let delivered: BTreeMap<SocketAddr, u64> =
            samples.iter().map(|s| (s.local, s.bytes_received.saturating_add(s.bytes_acked))).collect();
        let rtt: BTreeMap<String, Duration> = samples
            .iter()
            .filter(|s| s.rtt_us > 0)
            .filter_map(|s| Some((path_of(s.local)?, Duration::from_micros(u64::from(s.rtt_us)))))
            .collect();
        // Young connections are sorted by the paths' own delays, without
        // the queueing a transfer adds.
        let delay: BTreeMap<String, Duration> =
            samples.iter().filter_map(|s| Some((path_of(s.local)?, s.delay()?))).collect();
        let Some((since, before)) = &self.last else {
            self.last = Some((now, delivered));
            self.classify(&delay, Duration::ZERO);
            return Vec::new();
        };
        let span = now.saturating_duration_since(*since);
        if span < MIN_WINDOW {
            return Vec::new();
        }
        let mut per_path: BTreeMap<String, u64> = BTreeMap::new();
        for (local, bytes) in &delivered {
            // A subflow new since the last window counts from the next one.
            let (Some(old), Some(path)) = (before.get(local), path_of(*local)) else { continue };
            *per_path.entry(path).or_default() += bytes.saturating_sub(*old);
        }
        for path in per_path.keys() {
            self.standing.entry(path.clone()).or_insert_with(|| Standing::active(g.retry_first));
        }
        self.windows.push_back(Window { end: now, span, per_path });
        while self.windows.front().is_some_and(|w| now.saturating_duration_since(w.end) > KEEP_FOR) {
            self.windows.pop_front();
        }
        self.last = Some((now, delivered));
        self.grow(&delay, now);
        self.judge(g, &rtt, now)
    }

    /// A young connection: which paths are too slow for it yet, from the
    /// RTTs and how long it has been busy.
    fn grow(&mut self, rtt: &BTreeMap<String, Duration>, now: Instant) {
        let last = self.windows.back().map(|w| w.end - w.span).expect("a window was just added");
        if self.busy() {
            self.busy_since.get_or_insert(last);
        } else {
            self.busy_since = None;
        }
        let busy = self.busy_since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if self.grown || busy >= GROWN_AFTER {
            if !self.grown {
                self.grown_at = Some(now);
            }
            self.grown = true;
            self.fast.clear();
            return;
        }
        self.classify(rtt, busy);
    }

    /// A young connection's paths that may carry data: within
    /// [`SIMILAR_RTT`] of the fastest, or busy long enough for them.
    fn classify(&mut self, rtt: &BTreeMap<String, Duration>, busy: Duration) {
        // A sample without a path (its join not yet established) keeps
        // what was known of it.
        self.delays.extend(rtt.iter().map(|(p, r)| (p.clone(), *r)));
        let Some(fastest) = self.delays.values().min().copied() else { return };
        self.fast = self
            .delays
            .iter()
            .filter(|(_, r)| {
                r.as_secs_f64() <= fastest.as_secs_f64() * SIMILAR_RTT
                    || busy >= (**r * 4).max(Duration::from_millis(250))
            })
            .map(|(p, _)| p.clone())
            .collect();
    }

    /// Goodput over the windows that began after `from`, once they cover
    /// `at_least`, bit/s: `Some(None)` if the connection is not busy (the
    /// application, not the paths, sets the pace now).
    fn rate_since(&self, from: Instant, at_least: Duration) -> Option<Option<f64>> {
        if !self.busy() {
            return Some(None);
        }
        let span: Duration = self.windows_since(from).map(|w| w.span).sum();
        (span >= at_least).then(|| self.average_since(from))
    }

    /// Busy: the goodput over the last [`BUSY_OVER`] is at least
    /// [`BUSY_BPS`]. (Not a window: a lossy path's stalls are what is
    /// measured, not a pause of the application.)
    fn busy(&self) -> bool {
        self.recent(BUSY_OVER).0 >= BUSY_BPS
    }

    /// The connection's goodput over the last second while busy, bit/s.
    pub(super) fn goodput(&self) -> Option<f64> {
        self.busy().then(|| self.recent(BUSY_OVER).0)
    }

    /// Since when `path` has delivered nothing (`None`: it did in the last
    /// window).
    fn quiet_since(&self, path: &str) -> Option<Instant> {
        let mut since = None;
        for w in self.windows.iter().rev() {
            if w.per_path.get(path).is_some_and(|b| *b > 0) {
                break;
            }
            since = Some(w.end - w.span);
        }
        since
    }

    /// Goodput over the windows that began after `from`, quiet or not.
    fn average_since(&self, from: Instant) -> Option<f64> {
        let span: Duration = self.windows_since(from).map(|w| w.span).sum();
        let bytes: u64 = self.windows_since(from).map(Window::total).sum();
        (!span.is_zero()).then(|| bytes as f64 * 8.0 / span.as_secs_f64())
    }

    fn windows_since(&self, from: Instant) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(move |w| w.end - w.span >= from)
    }

    /// Goodput and each path's bytes over about the last `span`.
    fn recent(&self, span: Duration) -> (f64, BTreeMap<String, u64>) {
        let (mut covered, mut bytes, mut per_path) = (Duration::ZERO, 0u64, BTreeMap::<String, u64>::new());
        for w in self.windows.iter().rev() {
            if covered >= span {
                break;
            }
            covered += w.span;
            bytes += w.total();
            for (p, b) in &w.per_path {
                *per_path.entry(p.clone()).or_default() += b;
            }
        }
        let bps = if covered.is_zero() { 0.0 } else { bytes as f64 * 8.0 / covered.as_secs_f64() };
        (bps, per_path)
    }

    fn judge(&mut self, g: &ContributionGuard, rtt: &BTreeMap<String, Duration>, now: Instant) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let (bps, per_path) = self.recent(BUSY_OVER);
        let busy = bps >= BUSY_BPS;
        let total: u64 = per_path.values().sum();
        // The path carrying the most: never judged.
        let best = per_path.iter().max_by_key(|(_, b)| **b).map(|(p, _)| p.clone());
        let mut on_trial =
            self.standing.values().any(|s| matches!(s, Standing::TrialWithout { .. } | Standing::TrialWith { .. }));
        let names: Vec<String> = self.standing.keys().cloned().collect();
        // Goodput with every path, busy throughout the last WITH_OVER.
        let busy_over = |span: Duration| self.busy_since.is_some_and(|t| now.saturating_duration_since(t) >= span);
        let grown_for = self.grown_at.map_or(WITH_OVER, |t| now.saturating_duration_since(t));
        let with_over = (busy_over(WITH_OVER) && grown_for >= WITH_OVER).then(|| self.recent(WITH_OVER).0);
        for path in names {
            let standing = self.standing[&path].clone();
            let previous = standing.clone();
            let settle_for =
                |extra: Duration| extra + 2 * rtt.get(&path).copied().unwrap_or(Duration::from_millis(200));
            let next = match standing {
                Standing::Active { low_since, trusted_until, interval } => {
                    let share = per_path.get(&path).copied().unwrap_or(0) as f64 / total.max(1) as f64;
                    let low = busy
                        && self.grown
                        && best.as_deref() != Some(path.as_str())
                        && per_path.contains_key(&path)
                        && share < g.share_floor
                        && trusted_until.is_none_or(|t| now >= t);
                    match (low, low_since) {
                        (false, _) => Standing::Active { low_since: None, trusted_until, interval },
                        (true, Some(t))
                            if now.saturating_duration_since(t) >= SUSPECT_FOR && !on_trial && with_over.is_some() =>
                        {
                            let with_bps = with_over.unwrap_or_default();
                            on_trial = true;
                            Standing::TrialWithout {
                                since: now,
                                settle: settle_for(Duration::from_millis(300)),
                                settled: None,
                                with_bps,
                                interval,
                            }
                        }
                        (true, t) => Standing::Active { low_since: Some(t.unwrap_or(now)), trusted_until, interval },
                    }
                }
                // Quiet for a second once the path's queued data drained:
                // the application paused (the path, backup, stalls nothing
                // now). No verdict; the path returns as it was.
                Standing::TrialWithout { since, settle, interval, .. }
                    if now.saturating_duration_since(since) >= settle + SUSPECT_FOR
                        && self.recent(SUSPECT_FOR).0 < BUSY_BPS =>
                {
                    Standing::active(interval)
                }
                // Settled once the path has delivered nothing for two of its
                // RTTs: what the peer had queued on it (and its
                // retransmissions) has arrived. Until then the receiver
                // still waits on it, and goodput "without" it is not that.
                // A fixed 300 ms plus two RTTs was not always enough: the
                // 1 Mbit/s, 300 ms cell beside 50 Mbit/s wifi once measured
                // 35.7 Mbit/s "without" it against 40.8 with it, kept it,
                // and the download ran at 0.55 of wifi alone.
                Standing::TrialWithout { since, settle, settled: None, with_bps, interval } => {
                    let quiet_for = settle_for(Duration::ZERO).max(MIN_WINDOW);
                    let quiet = self.quiet_since(&path).is_some_and(|t| now.saturating_duration_since(t) >= quiet_for);
                    if now.saturating_duration_since(since) > TRIAL_GIVES_UP {
                        // Still delivering: the peer does not honour the
                        // backup flag. Not tried again before `interval`.
                        Standing::Active { low_since: None, trusted_until: Some(now + interval), interval }
                    } else if now.saturating_duration_since(since) >= settle && quiet {
                        Standing::TrialWithout { since, settle, settled: Some(now), with_bps, interval }
                    } else {
                        standing
                    }
                }
                Standing::TrialWithout { since, settled: Some(settled), with_bps, interval, .. } => {
                    match self.rate_since(settled, MEASURE_FOR) {
                        Some(Some(without_bps)) => {
                            // Kept only if it helps, as a backed-off path
                            // returns only if it helps: a path that adds
                            // less than the margin (the 1 Mbit/s cell
                            // beside 50 Mbit/s wifi, 2%) cannot show it
                            // helps, and in the lab its stalls cost the
                            // connection far more at times (18.1 Mbit/s
                            // with it against 46.7 without).
                            let helps = with_bps > without_bps * (1.0 + g.margin);
                            verdicts.push(Verdict { path: path.clone(), backed_off: !helps, with_bps, without_bps });
                            if helps {
                                let trust = (interval * 2).min(g.retry_max);
                                Standing::Active { low_since: None, trusted_until: Some(now + trust), interval: trust }
                            } else {
                                Standing::BackedOff { until: now + g.retry_first, interval: g.retry_first }
                            }
                        }
                        // Quiet: no verdict; the path returns as it was.
                        Some(None) => Standing::active(interval),
                        None if now.saturating_duration_since(since) > TRIAL_GIVES_UP => Standing::active(interval),
                        None => standing,
                    }
                }
                Standing::BackedOff { until, interval } if now >= until => {
                    if busy && !on_trial {
                        let (without_bps, _) = self.recent(SUSPECT_FOR);
                        on_trial = true;
                        Standing::TrialWith {
                            since: now,
                            settle: settle_for(Duration::from_secs(1)),
                            without_bps,
                            interval,
                        }
                    } else {
                        standing
                    }
                }
                Standing::BackedOff { .. } => standing,
                Standing::TrialWith { since, settle, without_bps, interval } => {
                    // A window without data while the path is back is taken
                    // as what it is most of the time: the stall the path
                    // causes (an application pausing right then loses
                    // nothing by the path staying backup a while longer).
                    // Once what the path was sent had time to arrive, a
                    // window under half the goodput without it is harm
                    // enough: the trial ends there instead of costing its
                    // whole length.
                    let arrived = since + 2 * rtt.get(&path).copied().unwrap_or(Duration::from_millis(200));
                    let collapsed = self.windows_since(arrived).any(|w| w.bps() < without_bps / 2.0);
                    let measured = match self.rate_since(since + settle, MEASURE_FOR) {
                        _ if collapsed => Some(self.average_since(since).unwrap_or(0.0)),
                        Some(Some(bps)) => Some(bps),
                        Some(None) => Some(self.average_since(since + settle).unwrap_or(0.0)),
                        None if now.saturating_duration_since(since) > TRIAL_GIVES_UP => Some(0.0),
                        None => None,
                    };
                    match measured {
                        Some(with_bps) => {
                            let helps = with_bps > without_bps * (1.0 + g.margin);
                            verdicts.push(Verdict { path: path.clone(), backed_off: !helps, with_bps, without_bps });
                            if helps {
                                Standing::Active {
                                    low_since: None,
                                    trusted_until: Some(now + g.retry_first),
                                    interval: g.retry_first,
                                }
                            } else {
                                let interval = (interval * 2).min(g.retry_max);
                                Standing::BackedOff { until: now + interval, interval }
                            }
                        }
                        None => standing,
                    }
                }
            };
            if std::mem::discriminant(&next) != std::mem::discriminant(&previous) {
                tracing::debug!(%path, from = ?previous, to = ?next, bps, "contribution guard");
            }
            self.standing.insert(path, next);
        }
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIFI: &str = "10.1.0.2:40000";
    const CELL: &str = "10.2.0.2:40001";

    /// A connection whose paths deliver what `world` says for whether cell
    /// is active, sampled every 250 ms.
    struct Run {
        guard: Guard,
        config: ContributionGuard,
        now: Instant,
        bytes: [u64; 2],
        verdicts: Vec<(Duration, Verdict)>,
        start: Instant,
    }

    impl Run {
        fn new(config: ContributionGuard) -> Run {
            let now = Instant::now();
            Run { guard: Guard::default(), config, now, bytes: [0, 0], verdicts: Vec::new(), start: now }
        }

        /// Runs for `secs` with per-path rates (Mbit/s) from `world(cell_active)`.
        fn run(&mut self, secs: f64, world: impl Fn(bool) -> (f64, f64)) {
            let step = Duration::from_millis(250);
            let end = self.now + Duration::from_secs_f64(secs);
            while self.now < end {
                let (wifi, cell) = world(!self.guard.holds_back("cell"));
                self.bytes[0] += (wifi * 1e6 / 8.0 * 0.25) as u64;
                self.bytes[1] += (cell * 1e6 / 8.0 * 0.25) as u64;
                self.now += step;
                let samples = [sample(WIFI, 20, self.bytes[0]), sample(CELL, 200, self.bytes[1])];
                let path_of = |a: SocketAddr| Some(if a == WIFI.parse().unwrap() { "wifi" } else { "cell" }.to_owned());
                for v in self.guard.observe(&self.config, &samples, path_of, self.now) {
                    self.verdicts.push((self.now - self.start, v));
                }
            }
        }
    }

    fn sample(local: &str, rtt_ms: u32, bytes: u64) -> SubflowSample {
        SubflowSample {
            local: local.parse().unwrap(),
            rtt_us: rtt_ms * 1000,
            min_rtt_us: rtt_ms * 1000,
            backoff: 0,
            unacked: 0,
            total_retrans: 0,
            last_data_recv_ms: 1,
            last_ack_recv_ms: 1,
            bytes_received: bytes,
            bytes_acked: 0,
            established: true,
            fully_established: true,
        }
    }

    /// Lossy slow cell: 17 Mbit/s together, 19 on wifi alone.
    fn lossy(cell_active: bool) -> (f64, f64) {
        if cell_active {
            (16.0, 1.0)
        } else {
            (19.0, 0.0)
        }
    }

    #[test]
    fn a_path_that_costs_goodput_is_backed_off_and_retried_with_growing_intervals() {
        let mut run = Run::new(ContributionGuard::default());
        run.run(9.0, lossy);
        assert!(run.guard.holds_back("cell"), "{:?}", run.guard.standing);
        assert_eq!(run.guard.held_back(), ["cell"]);
        let (at, first) = &run.verdicts[0];
        assert!(first.backed_off && first.path == "cell", "{first:?}");
        // Grown up at 2 s, then 3 s of goodput with it, 1 s settling, 2 s
        // without.
        assert!(*at <= Duration::from_millis(8500), "decided after {at:?}");
        // "With" counts only from when the connection grew up: all of it
        // with the cell active.
        assert!((first.with_bps - 17e6).abs() < 0.5e6 && (first.without_bps - 19e6).abs() < 0.5e6, "{first:?}");
        // Retried after 30 s, still hurting: backed off for 60 s.
        run.run(28.0, lossy);
        assert_eq!(run.verdicts.len(), 1, "retried too soon: {:?}", run.verdicts);
        run.run(10.0, lossy);
        let retries: Vec<_> = run.verdicts.iter().skip(1).collect();
        assert_eq!(retries.len(), 1, "{retries:?}");
        assert!(retries[0].1.backed_off);
        assert!(
            matches!(run.guard.standing["cell"], Standing::BackedOff { interval, .. } if interval == Duration::from_secs(60))
        );
        // Intervals stop growing at retry_max.
        run.run(400.0, lossy);
        assert!(
            matches!(run.guard.standing["cell"], Standing::BackedOff { interval, .. } if interval == Duration::from_secs(80))
        );
    }

    #[test]
    fn a_backed_off_path_returns_when_it_adds_goodput() {
        let mut run = Run::new(ContributionGuard::default());
        run.run(7.0, lossy);
        assert!(run.guard.holds_back("cell"));
        // Cell's loss stops and its rate rises: at the next retry it adds.
        run.run(40.0, |cell_active| if cell_active { (19.0, 15.0) } else { (19.0, 0.0) });
        assert!(!run.guard.holds_back("cell"), "{:?}", run.guard.standing);
        let last = &run.verdicts.last().unwrap().1;
        assert!(!last.backed_off && last.with_bps > 30e6, "{last:?}");
        // And it stays: a share of 44% is never suspect.
        let n = run.verdicts.len();
        run.run(60.0, |_| (19.0, 15.0));
        assert_eq!(run.verdicts.len(), n);
    }

    #[test]
    fn paths_that_share_the_load_are_never_put_on_trial() {
        let mut run = Run::new(ContributionGuard::default());
        // 20/10 Mbit/s; and the cell as the better path (wifi 5, cell 20).
        run.run(60.0, |_| (19.0, 9.5));
        run.run(60.0, |_| (4.8, 19.0));
        assert!(run.verdicts.is_empty(), "{:?}", run.verdicts);
        assert!(!run.guard.holds_back("cell") && !run.guard.holds_back("wifi"));
    }

    #[test]
    fn a_small_path_that_adds_goodput_stays_and_is_trusted_for_a_while() {
        let mut run = Run::new(ContributionGuard::default());
        // 1.5 Mbit/s on top, at no cost: 7% more.
        let world = |cell_active: bool| if cell_active { (19.0, 1.5) } else { (19.0, 0.0) };
        run.run(8.0, world);
        assert_eq!(run.verdicts.len(), 1, "{:?}", run.verdicts);
        assert!(!run.verdicts[0].1.backed_off);
        assert!(!run.guard.holds_back("cell"));
        // Trusted for the retry interval: no second trial within it.
        run.run(8.0, world);
        assert_eq!(run.verdicts.len(), 1);
    }

    #[test]
    fn a_path_too_small_to_show_it_helps_is_backed_off_and_retried_less_and_less() {
        // 50/1 Mbit/s where the slow path costs nothing: 1% more at best,
        // under the margin.
        let mut run = Run::new(ContributionGuard::default());
        let world = |cell_active: bool| if cell_active { (49.0, 1.0) } else { (49.5, 0.0) };
        run.run(8.0, world);
        assert_eq!(run.verdicts.len(), 1, "{:?}", run.verdicts);
        assert!(run.verdicts[0].1.backed_off && run.guard.holds_back("cell"));
        // Retried after 30 s, then 60, then 80 (retry_max).
        run.run(190.0, world);
        let times: Vec<Duration> = run.verdicts.iter().map(|(at, _)| *at).collect();
        assert_eq!(times.len(), 4, "{times:?}");
        let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert!(gaps[0] >= 30 && gaps[1] >= 60 && gaps[2] >= 80, "{times:?}");
        assert!(run.verdicts.iter().all(|(_, v)| v.backed_off) && run.guard.holds_back("cell"));
    }

    #[test]
    fn goodput_without_a_path_is_measured_once_its_data_has_arrived() {
        // The cell's queued data keeps arriving for 2 s after it is backup,
        // and the wifi waits on it meanwhile: measured from the fixed
        // settling time, "without" would be 30 Mbit/s and the cell kept.
        let mut run = Run::new(ContributionGuard::default());
        let mut backup_at = None::<Duration>;
        let start = run.start;
        run.run(5.0, |_| (40.0, 1.0));
        for _ in 0..60 {
            let t = run.now - start;
            let held = run.guard.holds_back("cell");
            if held && backup_at.is_none() {
                backup_at = Some(t);
            }
            let draining = backup_at.is_some_and(|b| held && t < b + Duration::from_secs(2));
            run.run(0.25, |active| match (active, draining) {
                (true, _) => (40.0, 1.0),
                (false, true) => (30.0, 0.5),
                (false, false) => (47.0, 0.0),
            });
        }
        let (_, v) = run.verdicts.first().expect("a verdict");
        assert!(v.backed_off && v.without_bps > 45e6, "{v:?}");
    }

    #[test]
    fn a_path_costing_more_than_the_margin_is_backed_off() {
        // 50/1 Mbit/s where the slow path stalls the fast one (a small send
        // buffer): 5% less with it.
        let mut run = Run::new(ContributionGuard::default());
        run.run(8.0, |cell_active| if cell_active { (46.0, 1.0) } else { (49.5, 0.0) });
        assert!(run.guard.holds_back("cell"));
    }

    #[test]
    fn nothing_is_judged_while_the_connection_is_not_busy_and_a_quiet_trial_is_abandoned() {
        let mut run = Run::new(ContributionGuard::default());
        run.run(30.0, |cell_active| if cell_active { (0.5, 0.01) } else { (0.6, 0.0) });
        // Never busy, the connection stays young: cell is held for its RTT
        // alone, not backed off.
        assert!(run.verdicts.is_empty() && run.guard.held_back().is_empty());
        // Busy: grown up after 2 s, 3 s of goodput with the cell, on trial;
        // then the application stops sending.
        run.run(6.0, lossy);
        assert!(run.guard.holds_back("cell"), "{:?}", run.guard.standing);
        run.run(12.0, |_| (0.0, 0.0));
        assert!(!run.guard.holds_back("cell"), "{:?}", run.guard.standing);
        assert!(run.verdicts.is_empty(), "{:?}", run.verdicts);
    }

    #[test]
    fn a_path_the_peer_keeps_using_as_backup_is_not_tried_over_and_over() {
        // The peer ignores MP_PRIO: the cell delivers as much backup as not.
        let mut run = Run::new(ContributionGuard::default());
        let mut trials = 0;
        let mut was_held = false;
        // (A young connection holds the 200 ms cell back at first: not a trial.)
        for _ in 0..240 {
            run.run(0.25, |_| (19.0, 1.0));
            let on_trial = matches!(run.guard.standing.get("cell"), Some(Standing::TrialWithout { .. }));
            trials += usize::from(on_trial && !was_held);
            was_held = on_trial;
        }
        // 60 s: a trial given up after 10 s, trusted 30 s, a second one.
        assert!(run.verdicts.is_empty(), "{:?}", run.verdicts);
        assert_eq!(trials, 2, "{:?}", run.guard.standing);
    }

    #[test]
    fn switched_off_it_keeps_every_path_active() {
        let mut run = Run::new(ContributionGuard { enabled: false, ..ContributionGuard::default() });
        run.run(30.0, lossy);
        assert!(run.verdicts.is_empty() && !run.guard.holds_back("cell"));
    }
}
