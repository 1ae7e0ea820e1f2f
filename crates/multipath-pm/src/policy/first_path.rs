//! Which path a new aggregate or interactive connection starts on. A short
//! transfer is over before joins on the other paths help, so its first
//! path decides its completion time; the default route's path is not
//! always the fastest (a cell beside a slow wifi).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use multipath::FirstPath;

use crate::netlink::route::LocalPath;

/// How long a path's measured delay is trusted for new connections.
pub(super) const KEPT: Duration = Duration::from_secs(60);

/// A path's delay as its connections last measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PathDelay {
    /// The lowest RTT (no queueing): how unlike two paths are.
    pub(super) base: Duration,
    /// The smoothed RTT (queueing included): what a new connection's
    /// handshake and first window would wait now.
    pub(super) smoothed: Duration,
    /// When it was measured.
    pub(super) at: Instant,
}

/// The delays measured in the last [`KEPT`], per path.
pub(super) fn fresh(delays: &BTreeMap<String, PathDelay>, now: Instant) -> impl Iterator<Item = (&String, &PathDelay)> {
    delays.iter().filter(move |(_, d)| now.saturating_duration_since(d.at) < KEPT)
}

/// Where a connection to `remote` should start, among `paths` (best
/// ranked first), knowing `delays` and which paths are `failing` (their
/// latest probe went unanswered):
/// - if every working path's delay is known, all of them by their
///   smoothed RTT, lowest first (the better ranked on a tie), and the
///   failing ones last;
/// - otherwise a race of handshakes, one from each working path;
/// - a single path, or none working, is left to the routing table.
pub(super) fn choose(
    paths: &[LocalPath],
    remote: IpAddr,
    delays: &BTreeMap<String, PathDelay>,
    failing: impl Fn(&str) -> bool,
    now: Instant,
) -> FirstPath {
    let reachable: Vec<(&LocalPath, IpAddr)> =
        paths.iter().filter_map(|p| p.addr_for(remote).map(|a| (p, a))).collect();
    let (working, failed): (Vec<_>, Vec<_>) = reachable.iter().partition(|(p, _)| !failing(&p.name));
    if reachable.len() < 2 || working.is_empty() {
        return FirstPath::Routed;
    }
    let fresh: BTreeMap<&String, &PathDelay> = fresh(delays, now).collect();
    let known: Option<Vec<(Duration, IpAddr)>> =
        working.iter().map(|(p, a)| fresh.get(&p.name).map(|d| (d.smoothed, *a))).collect();
    match known {
        Some(mut known) => {
            // A stable sort keeps the better ranked first among equals.
            known.sort_by_key(|(rtt, _)| *rtt);
            FirstPath::Ordered(known.into_iter().map(|(_, a)| a).chain(failed.iter().map(|(_, a)| *a)).collect())
        }
        None => FirstPath::Race(working.iter().map(|(_, a)| *a).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, n: u8, rank: u32) -> LocalPath {
        LocalPath {
            name: name.into(),
            addrs: vec![IpAddr::from([10, n, 0, 2]), format!("fd00:{n}::2").parse().unwrap()],
            ifindex: u32::from(n),
            rank,
        }
    }

    fn delay(ms: u64, at: Instant) -> PathDelay {
        PathDelay { base: Duration::from_millis(ms), smoothed: Duration::from_millis(ms), at }
    }

    const SERVER: [u8; 4] = [10, 0, 0, 2];
    const WIFI: [u8; 4] = [10, 1, 0, 2];
    const CELL: [u8; 4] = [10, 2, 0, 2];

    #[test]
    fn unknown_paths_race_and_known_ones_pick_the_fastest() {
        let now = Instant::now();
        let paths = [path("wifi", 1, 100), path("cell", 2, 200)];
        let server = IpAddr::from(SERVER);
        let mut delays = BTreeMap::new();
        let race = FirstPath::Race(vec![WIFI.into(), CELL.into()]);
        assert_eq!(choose(&paths, server, &delays, |_| false, now), race);
        delays.insert("wifi".to_string(), delay(80, now));
        assert_eq!(choose(&paths, server, &delays, |_| false, now), race, "cell still unknown");
        delays.insert("cell".to_string(), delay(30, now));
        assert_eq!(choose(&paths, server, &delays, |_| false, now), FirstPath::Ordered(vec![CELL.into(), WIFI.into()]));
        delays.insert("cell".to_string(), delay(80, now));
        assert_eq!(
            choose(&paths, server, &delays, |_| false, now),
            FirstPath::Ordered(vec![WIFI.into(), CELL.into()]),
            "a tie goes to the better ranked path"
        );
        // A minute later nothing is known any more.
        assert_eq!(choose(&paths, server, &delays, |_| false, now + KEPT), race);
    }

    #[test]
    fn a_failing_path_is_avoided_and_a_lone_path_left_to_routing() {
        let now = Instant::now();
        let paths = [path("wifi", 1, 100), path("cell", 2, 200)];
        let server = IpAddr::from(SERVER);
        let delays = BTreeMap::from([("wifi".to_string(), delay(20, now)), ("cell".to_string(), delay(60, now))]);
        assert_eq!(
            choose(&paths, server, &delays, |p| p == "wifi", now),
            FirstPath::Ordered(vec![CELL.into(), WIFI.into()]),
            "wifi's probe went unanswered: cell first, wifi last"
        );
        let unknown = BTreeMap::from([("wifi".to_string(), delay(20, now))]);
        assert_eq!(
            choose(&paths, server, &unknown, |p| p == "wifi", now),
            FirstPath::Race(vec![CELL.into()]),
            "the failing wifi does not race"
        );
        assert_eq!(choose(&paths, server, &delays, |_| true, now), FirstPath::Routed, "nothing works: no opinion");
        assert_eq!(choose(&paths[..1], server, &delays, |_| false, now), FirstPath::Routed);
    }

    #[test]
    fn only_paths_of_the_peers_family_count() {
        let now = Instant::now();
        let mut v4_only = path("cell", 2, 200);
        v4_only.addrs.truncate(1);
        let paths = [path("wifi", 1, 100), v4_only];
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(choose(&paths, v6, &BTreeMap::new(), |_| false, now), FirstPath::Routed);
        let delays = BTreeMap::from([("wifi".to_string(), delay(80, now)), ("cell".to_string(), delay(30, now))]);
        assert_eq!(
            choose(&paths, IpAddr::from(SERVER), &delays, |_| false, now),
            FirstPath::Ordered(vec![CELL.into(), WIFI.into()])
        );
    }
}
