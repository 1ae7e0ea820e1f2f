//! When each managed connection is measured: a decision, so it lives with
//! the core and is tested in simulated time; the driver only carries out
//! the measurements it is told to.
//!
//! A connection where anything moves is looked at again just before its
//! silence could reach the core's threshold ([`pace`]): its counters
//! only (one small `sock_diag` answer, which says when anything last
//! arrived), its subflows one by one only now and then
//! ([`Sampler::wants_subflows`]). One
//! where nothing has moved for [`IDLE_AFTER`] is looked at ever less often
//! (its counters only, one small `sock_diag` answer, doubling the gap), and
//! once the gap would exceed [`PARK_AFTER`] it is *parked*: not looked at
//! on its own any more. A sweep, one dump of every connection's counters
//! each [`SWEEP_EVERY`], wakes the parked ones whose counters moved (or
//! that the core wants measured again). Ten thousand idle connections cost
//! one dump a second, and any data brings a connection back to the fast
//! pace within a second.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How often busy connections are measured.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// A connection where nothing moved for this long counts as idle. Not
/// sooner: a blackholed download looks exactly like an idle connection, and
/// its silence (from 50 ms, or twice the path's RTT) must be seen, and
/// probed, on time; the probe's verdict then needs no measurements.
pub const IDLE_AFTER: Duration = Duration::from_millis(250);
/// The longest gap between looks at an idle connection before it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(160);
/// How often every connection's counters are swept for parked ones that
/// moved.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What moves on a connection that is used at all: data written, data
/// acknowledged, data received, and its number of subflows (from its
/// `mptcp_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// `write_seq`.
    pub written: u64,
    /// `snd_una`.
    pub acked: u64,
    /// `rcv_nxt`.
    pub received: u64,
    /// `subflows`.
    pub subflows: u8,
}

impl Activity {
    /// The counters of a connection's `mptcp_info`.
    pub fn of(info: &multipath::MptcpInfo) -> Activity {
        Activity { written: info.write_seq, acked: info.snd_una, received: info.rcv_nxt, subflows: info.subflows }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// When the connection was added: a sweep taken before knows nothing
    /// of it.
    added: Instant,
    /// `None`: parked.
    next: Option<Instant>,
    every: Duration,
    /// Since when nothing has moved.
    still_since: Instant,
    /// As of the last full measurement.
    activity: Option<Activity>,
    /// When the subflows were last measured, and the retransmissions then.
    full: Option<(Instant, Option<u32>)>,
}

/// The longest gap between looks at a busy connection: how late a
/// retransmission (an upload's failing path) or a new subflow may be seen.
pub const BUSY_AT_MOST: Duration = Duration::from_millis(100);

/// What a connection's looks must catch (from [`super::Core::silence_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilenceWatch {
    /// Silence on the active path from which the core probes it.
    pub threshold: Duration,
    /// An answered probe vouches for the path until then: silence before
    /// it decides nothing.
    pub quiet_until: Option<Instant>,
}

/// How soon a busy connection is looked at again, after the core heard
/// of this look: when its silence could first reach the threshold if
/// nothing more arrives after `heard_ms` ago. Once silent (the core has
/// seen it, and probed or knows the path works), not before the silence
/// could end and begin again, nor before the path's vouching runs out. A
/// download that never pauses is looked at once per threshold, not every
/// [`SAMPLE_EVERY`]. Without a watch (aggregate, none: silence decides
/// nothing) or without the kernel's times, the bounds.
pub fn pace(watch: Option<SilenceWatch>, heard_ms: Option<u32>, now: Instant) -> Duration {
    let (Some(watch), Some(heard_ms)) = (watch, heard_ms) else {
        return if watch.is_none() { BUSY_AT_MOST } else { SAMPLE_EVERY };
    };
    let heard = Duration::from_millis(u64::from(heard_ms));
    let gap = if heard < watch.threshold {
        watch.threshold - heard
    } else {
        let vouched = watch.quiet_until.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        watch.threshold.max(vouched)
    };
    gap.clamp(SAMPLE_EVERY, BUSY_AT_MOST)
}

/// A busy connection's subflows are measured at least this often; in
/// between, its connection-level counters suffice while they show it
/// healthy ([`Sampler::wants_subflows`]). Interactive ranks paths by their
/// RTTs, and so needs them more often than the types that only watch for
/// failure; aggregate's contribution guard weighs each path's bytes in
/// windows of about a second.
pub fn full_every(service: multipath::ServiceType) -> Duration {
    match service {
        multipath::ServiceType::Interactive => Duration::from_millis(100),
        multipath::ServiceType::Aggregate => Duration::from_millis(250),
        _ => Duration::from_secs(1),
    }
}

/// A connection's counters as one look at its `mptcp_info` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    /// What moves.
    pub activity: Activity,
    /// Since anything (data or acknowledgement) last arrived on any
    /// subflow, ms; `None` where the kernel does not say (before 6.12).
    pub heard_ms: Option<u32>,
    /// Retransmissions at the connection level (a subflow's RTO shows here).
    pub retransmits: Option<u32>,
}

impl Look {
    /// The look an `mptcp_info` gives.
    pub fn of(info: &multipath::MptcpInfo) -> Look {
        let heard_ms = info.last_data_recv_ms.zip(info.last_ack_recv_ms).map(|(d, a)| d.min(a));
        Look { activity: Activity::of(info), heard_ms, retransmits: info.retransmits }
    }
}

/// What a sweep means for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Not parked: measured on its own schedule.
    Busy,
    /// Parked, and nothing moved: the core can age its last measurements
    /// ([`super::Input::Still`]).
    Still,
    /// Parked, and its counters moved: measured again at once.
    Woken,
}

/// The measuring schedule of every managed connection.
#[derive(Debug, Default)]
pub struct Sampler {
    entries: HashMap<u32, Entry>,
    /// When each connection is looked at next, earliest first.
    queue: BTreeSet<(Instant, u32)>,
}

impl Sampler {
    /// An empty schedule.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Starts measuring `token` at once (again, if it was).
    pub fn add(&mut self, token: u32, now: Instant) {
        self.remove(token);
        let entry =
            Entry { added: now, next: Some(now), every: SAMPLE_EVERY, still_since: now, activity: None, full: None };
        self.entries.insert(token, entry);
        self.queue.insert((now, token));
    }

    /// Stops measuring `token`.
    pub fn remove(&mut self, token: u32) {
        if let Some(Entry { next: Some(next), .. }) = self.entries.remove(&token) {
            self.queue.remove(&(next, token));
        }
    }

    /// After a sweep read `token`'s counters: a parked connection whose
    /// counters moved is looked at again at once. What the sweep means for
    /// it.
    pub fn swept(&mut self, token: u32, activity: Activity, now: Instant) -> Swept {
        let Some(e) = self.entries.get_mut(&token) else { return Swept::Busy };
        if e.next.is_some() {
            return Swept::Busy;
        }
        if e.activity == Some(activity) {
            return Swept::Still;
        }
        e.next = Some(now);
        e.every = SAMPLE_EVERY;
        self.queue.insert((now, token));
        Swept::Woken
    }

    /// Connections parked.
    pub fn parked(&self) -> usize {
        self.entries.values().filter(|e| e.next.is_none()).count()
    }

    /// Looks at `token` again within a turn or two: parked or not, it is
    /// due now (a sweep missed it, or its answer was unusable).
    pub fn postpone(&mut self, token: u32, now: Instant) {
        let Some(e) = self.entries.get_mut(&token) else { return };
        if let Some(next) = e.next {
            self.queue.remove(&(next, token));
        }
        let at = now + SAMPLE_EVERY;
        e.next = Some(at);
        self.queue.insert((at, token));
    }

    /// Connections measured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks scheduled (one per connection that is not parked).
    pub fn scheduled(&self) -> usize {
        self.queue.len()
    }

    /// Every connection measured.
    pub fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.keys().copied()
    }

    /// The connections added before `t` (those a sweep taken at `t` must
    /// list, unless they closed).
    pub fn tokens_before(&self, t: Instant) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().filter(move |(_, e)| e.added < t).map(|(&token, _)| token)
    }

    /// When the next look is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|&(at, _)| at)
    }

    /// Up to `max` connections due for a look, earliest first.
    pub fn due(&self, now: Instant, max: usize) -> Vec<u32> {
        self.queue.iter().take_while(|(at, _)| *at <= now).take(max).map(|&(_, t)| t).collect()
    }

    /// After a look at the counters of `token`: whether the core must hear
    /// of it. It need not while nothing moved on a connection that is
    /// idle, or that the core has nothing to learn from while it stands
    /// still (`core_needs` false); it is then rescheduled, `pace()` from
    /// now while it is busy.
    pub fn looked(
        &mut self,
        token: u32,
        activity: Activity,
        core_needs: bool,
        pace: impl FnOnce() -> Duration,
        now: Instant,
    ) -> bool {
        let Some(e) = self.entries.get_mut(&token) else { return false };
        let idle = e.every > SAMPLE_EVERY;
        if e.activity == Some(activity) && (idle || !core_needs) {
            let e = *e;
            self.reschedule(token, e, pace(), now);
            return false;
        }
        true
    }

    /// Whether a look that calls for measuring `token` needs its subflows,
    /// or whether the connection-level counters suffice: the kernel gives
    /// the connection's times (6.12 and later), no new retransmission, the
    /// same subflows, and subflows measured within `full_every`
    /// ([`full_every`]). A busy connection then costs one small answer per
    /// look, not one per subflow.
    pub fn wants_subflows(&self, token: u32, look: &Look, full_every: Duration, now: Instant) -> bool {
        let Some(e) = self.entries.get(&token) else { return true };
        let Some((at, retransmits)) = e.full else { return true };
        now.duration_since(at) >= full_every
            || look.heard_ms.is_none()
            || look.retransmits != retransmits
            || e.activity.is_none_or(|a| a.subflows != look.activity.subflows)
    }

    /// After a look that did not need the subflows: busy if it moved.
    pub fn looked_quickly(&mut self, token: u32, activity: Activity, pace: Duration, now: Instant) {
        let Some(e) = self.entries.get_mut(&token) else { return };
        if e.activity.is_some_and(|a| a.subflows == activity.subflows) {
            let full = e.full;
            self.measured(token, activity, false, pace, now);
            if let Some(e) = self.entries.get_mut(&token) {
                e.full = full;
            }
        }
    }

    /// After measuring the subflows of `token`, with the connection's
    /// retransmissions at the time.
    pub fn measured_subflows(&mut self, token: u32, retransmits: Option<u32>, now: Instant) {
        if let Some(e) = self.entries.get_mut(&token) {
            e.full = Some((now, retransmits));
        }
    }

    /// After a full measurement of `token`: busy if anything moved or is
    /// in flight (`in_flight`: unacknowledged data, a backed-off timer, a
    /// subflow still joining).
    pub fn measured(&mut self, token: u32, activity: Activity, in_flight: bool, pace: Duration, now: Instant) {
        let Some(e) = self.entries.get_mut(&token) else { return };
        if e.activity != Some(activity) || in_flight {
            e.still_since = now;
        }
        e.activity = Some(activity);
        let e = *e;
        self.reschedule(token, e, pace, now);
    }

    /// `pace` from now while anything moves, ever later once nothing has
    /// for a while, then parked.
    fn reschedule(&mut self, token: u32, mut e: Entry, pace: Duration, now: Instant) {
        if let Some(next) = e.next {
            self.queue.remove(&(next, token));
        }
        let idle = now.duration_since(e.still_since) >= IDLE_AFTER;
        // Bounded: a parked connection looked at again and again (a join
        // it waits on) must not double its way to an overflow.
        e.every = if idle { (e.every * 2).min(PARK_AFTER * 2) } else { SAMPLE_EVERY };
        let gap = if idle { e.every } else { pace.max(SAMPLE_EVERY) };
        e.next = (e.every <= PARK_AFTER).then(|| now + gap);
        if let Some(next) = e.next {
            self.queue.insert((next, token));
        }
        self.entries.insert(token, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(n: u64) -> Activity {
        Activity { written: n, acked: n, received: 0, subflows: 1 }
    }

    #[test]
    fn busy_connections_are_measured_every_tick_and_idle_ones_ever_less_often() {
        let t0 = Instant::now();
        let mut s = Sampler::new();
        s.add(1, t0);
        assert_eq!(s.due(t0, 64), vec![1]);
        // Moving: every 10 ms.
        let mut now = t0;
        for i in 0..10 {
            assert!(s.looked(1, act(i), true, || SAMPLE_EVERY, now), "a new connection is measured");
            s.measured(1, act(i + 1), false, SAMPLE_EVERY, now);
            assert_eq!(s.next_due(), Some(now + SAMPLE_EVERY));
            now += SAMPLE_EVERY;
        }
        // Still from here: after IDLE_AFTER the gaps double up to the cap.
        let still = act(10);
        let mut gaps = Vec::new();
        let mut last = now;
        while now < t0 + Duration::from_secs(10) {
            if s.due(now, 64) == [1] {
                if s.looked(1, still, true, || SAMPLE_EVERY, now) {
                    s.measured(1, still, false, SAMPLE_EVERY, now);
                }
                gaps.push(now - last);
                last = now;
            }
            now += Duration::from_millis(5);
        }
        assert!(gaps.iter().any(|g| *g >= Duration::from_millis(80)), "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= PARK_AFTER + Duration::from_millis(5)), "{gaps:?}");
        let looks = gaps.len();
        assert!(looks < 40, "{looks} looks in ~10 s of idleness");
        assert_eq!((s.parked(), s.next_due()), (1, None), "parked: looked at only by sweeps");
        // A sweep that sees nothing new leaves it parked; one that sees it
        // moved wakes it, back at the fast pace.
        assert_eq!(s.swept(1, still, now), Swept::Still);
        assert_eq!(s.swept(1, act(11), now), Swept::Woken);
        assert_eq!(s.due(now, 64), vec![1]);
        assert!(s.looked(1, act(11), true, || SAMPLE_EVERY, now));
        s.measured(1, act(11), false, SAMPLE_EVERY, now);
        assert_eq!(s.next_due(), Some(now + SAMPLE_EVERY));
        assert_eq!(s.swept(1, act(99), now), Swept::Busy, "not parked: nothing to wake");
    }

    #[test]
    fn a_still_connection_the_core_learns_nothing_from_is_not_measured() {
        let t0 = Instant::now();
        let mut s = Sampler::new();
        s.add(7, t0);
        assert!(s.looked(7, act(1), false, || SAMPLE_EVERY, t0), "never measured yet");
        s.measured(7, act(1), false, SAMPLE_EVERY, t0);
        let t1 = t0 + SAMPLE_EVERY;
        assert!(!s.looked(7, act(1), false, || SAMPLE_EVERY, t1), "nothing moved, nothing to learn");
        assert!(s.looked(7, act(1), true, || SAMPLE_EVERY, t1), "the core wants samples (a silent active path)");
        assert!(s.looked(7, act(2), false, || SAMPLE_EVERY, t1), "it moved");
    }

    #[test]
    fn a_healthy_busy_connection_needs_its_subflows_measured_only_now_and_then() {
        let t0 = Instant::now();
        let mut s = Sampler::new();
        s.add(5, t0);
        let look = |n: u64, heard: u32, retrans: u32| Look {
            activity: Activity { written: n, acked: n, received: n, subflows: 1 },
            heard_ms: Some(heard),
            retransmits: Some(retrans),
        };
        let full = full_every(multipath::ServiceType::Handover);
        assert!(s.wants_subflows(5, &look(1, 0, 0), full, t0), "never measured");
        s.measured(5, look(1, 0, 0).activity, false, SAMPLE_EVERY, t0);
        s.measured_subflows(5, Some(0), t0);
        let t1 = t0 + SAMPLE_EVERY;
        assert!(!s.wants_subflows(5, &look(2, 3, 0), full, t1), "the counters suffice");
        assert!(!s.wants_subflows(5, &look(2, 300, 0), full, t1), "silence too: the core judges it from them");
        s.looked_quickly(5, look(2, 3, 0).activity, Duration::from_millis(37), t1);
        assert_eq!(s.next_due(), Some(t1 + Duration::from_millis(37)), "at the pace asked");
        assert!(s.wants_subflows(5, &look(3, 3, 1), full, t1), "a retransmission");
        assert!(s.wants_subflows(5, &look(3, 3, 0), full, t0 + full), "now and then anyway");
        let interactive = full_every(multipath::ServiceType::Interactive);
        assert!(interactive < full && s.wants_subflows(5, &look(3, 3, 0), interactive, t0 + interactive));
        let two = Look { activity: Activity { subflows: 2, ..look(3, 3, 0).activity }, ..look(3, 3, 0) };
        assert!(s.wants_subflows(5, &two, full, t1), "a subflow came or went");
        let old_kernel = Look { heard_ms: None, ..look(3, 3, 0) };
        assert!(s.wants_subflows(5, &old_kernel, full, t1), "no connection-level times: always");
    }

    /// A busy connection is looked at when its silence could first reach
    /// the core's threshold, at once while it is silent, and never later
    /// than the busy bound.
    #[test]
    fn busy_connections_are_looked_at_before_their_silence_could_matter() {
        let ms = Duration::from_millis;
        let now = Instant::now();
        let watch = |t: u64| Some(SilenceWatch { threshold: ms(t), quiet_until: None });
        assert_eq!(pace(watch(40), Some(5), now), ms(35));
        assert_eq!(pace(watch(40), Some(38), now), SAMPLE_EVERY, "never sooner than the fast pace");
        assert_eq!(pace(watch(40), Some(400), now), ms(40), "silent, and seen: until it could end and begin again");
        let vouched = Some(SilenceWatch { threshold: ms(40), quiet_until: Some(now + ms(70)) });
        assert_eq!(pace(vouched, Some(400), now), ms(70), "silent, and the path vouched for");
        assert_eq!(pace(vouched, Some(5), now), ms(35), "not silent: vouching is dropped once data flows");
        assert_eq!(pace(watch(400), Some(0), now), BUSY_AT_MOST);
        assert_eq!(pace(None, Some(0), now), BUSY_AT_MOST, "aggregate: silence decides nothing");
        assert_eq!(pace(watch(40), None, now), SAMPLE_EVERY, "no connection-level times");
    }

    #[test]
    fn in_flight_data_keeps_a_connection_busy_and_removal_forgets_it() {
        let t0 = Instant::now();
        let mut s = Sampler::new();
        s.add(3, t0);
        let mut now = t0;
        for _ in 0..100 {
            s.measured(3, act(5), true, SAMPLE_EVERY, now);
            now += SAMPLE_EVERY;
        }
        assert_eq!(s.next_due(), Some(now - SAMPLE_EVERY + SAMPLE_EVERY), "never idle while data waits");
        s.remove(3);
        assert!(s.is_empty() && s.next_due().is_none() && s.due(now, 64).is_empty());
        assert!(!s.looked(3, act(5), true, || SAMPLE_EVERY, now));
    }

    #[test]
    fn a_parked_connection_looked_at_again_and_again_never_overflows() {
        let mut s = Sampler::new();
        let mut now = Instant::now();
        s.add(7, now);
        for _ in 0..200 {
            now += Duration::from_secs(1);
            s.postpone(7, now);
            s.measured(7, act(1), false, SAMPLE_EVERY, now);
        }
        assert!(s.entries[&7].every <= PARK_AFTER * 2);
    }
}
