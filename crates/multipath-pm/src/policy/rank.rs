//! Which local path is primary: by configuration (interface name patterns,
//! metered marks), then by default-route metric.

use super::LocalPath;

/// How local paths are ranked and which are used at all. Patterns match
/// interface names; `*` matches any run of characters (`wl*`, `*cell*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathPreference {
    /// Preferred interfaces, best first: a path matching an earlier pattern
    /// outranks one matching a later pattern or none.
    pub primary: Vec<String>,
    /// Metered interfaces (cellular): ranked after every unmetered path, so
    /// they carry data only when nothing else can.
    pub metered: Vec<String>,
    /// Interfaces never used for subflows (VPNs, container bridges).
    pub exclude: Vec<String>,
}

/// Bits left for the route metric inside a rank; the class goes above.
const METRIC_BITS: u32 = 24;

impl PathPreference {
    /// Drops excluded paths and re-ranks the rest: first by class (primary
    /// pattern index, then unmatched, then metered), then by the route
    /// metric the path came with. The result is sorted best first.
    pub fn apply(&self, paths: Vec<LocalPath>) -> Vec<LocalPath> {
        let mut out: Vec<LocalPath> = paths
            .into_iter()
            .filter(|p| !self.exclude.iter().any(|pat| matches(pat, &p.name)))
            .map(|mut p| {
                let class = match self.primary.iter().position(|pat| matches(pat, &p.name)) {
                    Some(i) => i,
                    None if self.metered.iter().any(|pat| matches(pat, &p.name)) => self.primary.len() + 1,
                    None => self.primary.len(),
                };
                let class = u32::try_from(class).unwrap_or(u32::MAX).min(u32::MAX >> METRIC_BITS);
                p.rank = (class << METRIC_BITS) | p.rank.min((1 << METRIC_BITS) - 1);
                p
            })
            .collect();
        out.sort_by(|a, b| a.rank.cmp(&b.rank).then_with(|| a.name.cmp(&b.name)));
        out
    }
}

/// Glob match with `*` only: interface names have no other metacharacters.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, metric: u32) -> LocalPath {
        LocalPath { name: name.into(), addrs: vec!["10.0.0.1".parse().unwrap()], ifindex: 1, rank: metric }
    }

    fn names(paths: &[LocalPath]) -> Vec<&str> {
        paths.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn glob() {
        assert!(matches("wlan0", "wlan0"));
        assert!(!matches("wlan0", "wlan01"));
        assert!(matches("wl*", "wlan0"));
        assert!(matches("*", ""));
        assert!(matches("*cell*", "rmnet_cell3"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXcYb"));
        assert!(!matches("ab*ba", "aba"), "prefix and suffix must not overlap");
        assert!(!matches("eth*", "veth0"));
    }

    #[test]
    fn metric_alone_when_unconfigured() {
        let out = PathPreference::default().apply(vec![path("cell", 200), path("wifi", 100)]);
        assert_eq!(names(&out), ["wifi", "cell"]);
    }

    #[test]
    fn metered_goes_last_whatever_its_metric() {
        let pref = PathPreference { metered: vec!["rmnet*".into()], ..Default::default() };
        let out = pref.apply(vec![path("rmnet0", 10), path("eth0", 600), path("wlan0", 300)]);
        assert_eq!(names(&out), ["wlan0", "eth0", "rmnet0"]);
    }

    #[test]
    fn primary_patterns_in_order_then_metric() {
        let pref = PathPreference {
            primary: vec!["wl*".into(), "eth*".into()],
            metered: vec!["wl-hotspot".into()],
            exclude: vec!["docker*".into()],
        };
        let out = pref.apply(vec![
            path("eth0", 1),
            path("wl-hotspot", 50),
            path("docker0", 0),
            path("usb0", 0),
            path("wlan0", 900),
        ]);
        // An explicit primary pattern wins over the metered mark.
        assert_eq!(names(&out), ["wl-hotspot", "wlan0", "eth0", "usb0"]);
    }

    #[test]
    fn huge_metrics_do_not_cross_classes() {
        let pref = PathPreference { metered: vec!["cell".into()], ..Default::default() };
        let out = pref.apply(vec![path("cell", 0), path("wifi", u32::MAX)]);
        assert_eq!(names(&out), ["wifi", "cell"]);
    }
}
