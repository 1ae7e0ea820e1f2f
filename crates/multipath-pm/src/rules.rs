//! Per-program rules: which service type a connection gets from what is
//! known of its program (executable, user, cgroup) and where it goes. The
//! first rule that matches wins; none matching leaves the daemon's default.
//! No I/O: the daemon gathers the [`Subject`], this decides.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use multipath::ServiceType;

/// What is known of a connection when a rule is looked for. A field that
/// is unknown matches no rule that asks for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    /// The program's executable, as `/proc/<pid>/exe` names it.
    pub exe: Option<&'a Path>,
    /// The user id the kernel recorded for the socket.
    pub uid: Option<u32>,
    /// The program's cgroup (v2) path, from the cgroup root: `/user.slice/...`.
    pub cgroup: Option<&'a str>,
    /// The connection's remote end.
    pub remote: Option<SocketAddr>,
}

/// An address and the length of its prefix, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network's address.
    pub addr: IpAddr,
    /// Leading bits that must be equal.
    pub len: u8,
}

impl Prefix {
    /// Parses `ADDR` or `ADDR/LEN`.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an address or ADDR/LEN"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => {
                l.parse().ok().filter(|l| *l <= max).ok_or_else(|| format!("{text:?}: prefix length 0 to {max}"))?
            }
        };
        Ok(Prefix { addr, len })
    }

    /// Whether `ip` lies in the prefix (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
        bits(ip) & mask == bits(self.addr) & mask
    }
}

/// One rule: every condition it gives must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// A name for logs and `--check-config` (default: its position).
    pub name: Option<String>,
    /// The executable, exactly.
    pub exe: Option<PathBuf>,
    /// The user id.
    pub uid: Option<u32>,
    /// A cgroup and everything below it (`/user.slice` matches
    /// `/user.slice/user-1000.slice/app.scope`, not `/user.slice2`).
    pub cgroup: Option<String>,
    /// Remote ports.
    pub ports: Option<RangeInclusive<u16>>,
    /// Remote addresses.
    pub address: Option<Prefix>,
    /// What a matching connection gets.
    pub service: ServiceType,
}

impl Rule {
    /// Whether the rule holds for `s`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let exe = self.exe.as_deref().is_none_or(|want| s.exe == Some(want));
        let uid = self.uid.is_none_or(|want| s.uid == Some(want));
        let cgroup = self.cgroup.as_deref().is_none_or(|want| s.cgroup.is_some_and(|have| under(have, want)));
        let ports = self.ports.as_ref().is_none_or(|want| s.remote.is_some_and(|r| want.contains(&r.port())));
        let address = self.address.is_none_or(|want| s.remote.is_some_and(|r| want.contains(r.ip())));
        exe && uid && cgroup && ports && address
    }
}

impl Rule {
    /// Whether the rule could hold for `s` once its program and cgroup are
    /// known: every other condition holds.
    pub fn matches_ignoring_process(&self, s: &Subject<'_>) -> bool {
        Rule { exe: None, cgroup: None, ..self.clone() }.matches(s)
    }
}

/// Whether cgroup path `have` is `want` or below it.
fn under(have: &str, want: &str) -> bool {
    let want = want.trim_end_matches('/');
    want.is_empty() || have == want || have.strip_prefix(want).is_some_and(|rest| rest.starts_with('/'))
}

/// What the rules decided for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Rule number `index` (from 0) matched and gives `service`.
    Rule {
        /// Which rule.
        index: usize,
        /// Its service type.
        service: ServiceType,
    },
    /// Rule `index` matched and asks for aggregate, which the subject is
    /// not entitled to: the default applies instead.
    NotEntitled {
        /// Which rule.
        index: usize,
    },
    /// No rule matched: the default applies.
    Default,
}

/// The rules in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    /// The first matching rule's decision. A rule can't grant aggregate to
    /// a subject that `entitled` says no to: that connection gets the
    /// default, as if it had asked for aggregate itself and been refused.
    pub fn decide(&self, s: &Subject<'_>, entitled: impl Fn(&Subject<'_>) -> bool) -> Decision {
        match self.0.iter().position(|r| r.matches(s)) {
            None => Decision::Default,
            Some(index) if self.0[index].service == ServiceType::Aggregate && !entitled(s) => {
                Decision::NotEntitled { index }
            }
            Some(index) => Decision::Rule { index, service: self.0[index].service },
        }
    }

    /// A rule's name for logs: its own, or `rule N` (from 1, as in the file).
    pub fn name(&self, index: usize) -> String {
        self.0.get(index).and_then(|r| r.name.clone()).unwrap_or_else(|| format!("rule {}", index + 1))
    }

    /// Where a connection's service type came from, as `mptcp ls` shows
    /// it: `rule:<name>`, or `rule:<N>` for a rule without a name.
    pub fn label(&self, index: usize) -> String {
        match self.0.get(index).and_then(|r| r.name.as_deref()) {
            Some(name) => format!("rule:{name}"),
            None => format!("rule:{}", index + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(service: ServiceType) -> Rule {
        Rule { name: None, exe: None, uid: None, cgroup: None, ports: None, address: None, service }
    }

    #[test]
    fn the_first_matching_rule_wins_and_unknowns_match_nothing() {
        let curl = Rule { exe: Some("/usr/bin/curl".into()), ..rule(ServiceType::Handover) };
        let web = Rule { ports: Some(443..=443), ..rule(ServiceType::Interactive) };
        let user = Rule { uid: Some(1000), cgroup: Some("/user.slice/".into()), ..rule(ServiceType::None) };
        let rules = Rules(vec![curl, web, user]);
        let yes = |_: &Subject<'_>| true;
        let to = |port| Some(SocketAddr::from(([192, 0, 2, 1], port)));
        let curl_443 = Subject { exe: Some(Path::new("/usr/bin/curl")), remote: to(443), ..Subject::default() };
        assert_eq!(rules.decide(&curl_443, yes), Decision::Rule { index: 0, service: ServiceType::Handover });
        let other_443 = Subject { exe: Some(Path::new("/usr/bin/wget")), remote: to(443), ..Subject::default() };
        assert_eq!(rules.decide(&other_443, yes), Decision::Rule { index: 1, service: ServiceType::Interactive });
        let in_slice = Subject {
            uid: Some(1000),
            cgroup: Some("/user.slice/user-1000.slice/x.scope"),
            remote: to(80),
            ..Subject::default()
        };
        assert_eq!(rules.decide(&in_slice, yes), Decision::Rule { index: 2, service: ServiceType::None });
        // A cgroup that only starts with the same letters, an unknown uid.
        let beside = Subject { uid: Some(1000), cgroup: Some("/user.slice2/x"), ..in_slice };
        assert_eq!(rules.decide(&beside, yes), Decision::Default);
        let unknown_uid = Subject { uid: None, ..in_slice };
        assert_eq!(rules.decide(&unknown_uid, yes), Decision::Default);
        assert_eq!(rules.decide(&Subject::default(), yes), Decision::Default);
        assert_eq!(rules.name(1), "rule 2");
        assert_eq!(rules.label(1), "rule:2");
        let bare = Subject { remote: to(443), ..Subject::default() };
        assert!(rules.0[0].matches_ignoring_process(&bare) && !rules.0[0].matches(&bare));
        assert!(!rules.0[2].matches_ignoring_process(&bare), "uid 1000 is not known to hold");
    }

    #[test]
    fn a_rule_cannot_grant_aggregate_to_the_unentitled() {
        let rules = Rules(vec![Rule { uid: Some(1000), ..rule(ServiceType::Aggregate) }, rule(ServiceType::Handover)]);
        let s = Subject { uid: Some(1000), ..Subject::default() };
        assert_eq!(rules.decide(&s, |_| false), Decision::NotEntitled { index: 0 });
        assert_eq!(
            rules.decide(&s, |s| s.uid == Some(1000)),
            Decision::Rule { index: 0, service: ServiceType::Aggregate }
        );
        let other = Subject { uid: Some(7), ..Subject::default() };
        assert_eq!(rules.decide(&other, |_| false), Decision::Rule { index: 1, service: ServiceType::Handover });
    }

    #[test]
    fn prefixes_of_both_families() {
        let p = Prefix::parse("10.0.0.0/8").unwrap();
        assert!(p.contains("10.200.1.1".parse().unwrap()));
        assert!(p.contains("::ffff:10.1.2.3".parse().unwrap()), "a mapped address is its IPv4 one");
        assert!(!p.contains("11.0.0.1".parse().unwrap()) && !p.contains("fd00::1".parse().unwrap()));
        let p6 = Prefix::parse("2001:db8::/32").unwrap();
        assert!(p6.contains("2001:db8:1::5".parse().unwrap()) && !p6.contains("2001:db9::1".parse().unwrap()));
        assert!(Prefix::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        assert_eq!(Prefix::parse("192.0.2.7").unwrap().len, 32);
        for bad in ["10.0.0.0/33", "fd00::/129", "x/8", "10.0.0.0/", "10.0.0.0/-1", ""] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }
}
