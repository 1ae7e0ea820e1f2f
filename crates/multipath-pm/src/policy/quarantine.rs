//! Which addresses get a quarantine rule: a decision, so it is made here
//! and tested without a kernel; the driver adds and removes the rules.
//!
//! An address that was a path and is now stranded on an interface that went
//! down is quarantined. Without it, packets from that address (the dead
//! subflow's retransmissions, its FIN) fall through to another interface's
//! default route: a carrier drops them for their foreign source address,
//! after they cost the new path uplink time (and metered data). Addresses
//! that were never paths here are someone else's business.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::LocalPath;

/// The addresses that were paths, remembered while they stay on the host.
#[derive(Debug, Default)]
pub struct Quarantine {
    path_addrs: BTreeSet<IpAddr>,
}

impl Quarantine {
    /// From a fresh look at the paths and the stranded addresses, the rule
    /// changes to make to `current` (the addresses with a rule now): each
    /// address, and whether it gets a rule (`true`) or loses it. Nothing
    /// is quarantined when `enabled` is false.
    pub fn changes(
        &mut self,
        paths: &[LocalPath],
        stranded: &BTreeSet<IpAddr>,
        current: &BTreeSet<IpAddr>,
        enabled: bool,
    ) -> Vec<(IpAddr, bool)> {
        // An address that left the host is forgotten, so the set stays small.
        self.path_addrs.retain(|a| stranded.contains(a));
        self.path_addrs.extend(paths.iter().flat_map(|p| p.addrs.iter().copied()));
        let want: BTreeSet<IpAddr> =
            if enabled { stranded.intersection(&self.path_addrs).copied().collect() } else { BTreeSet::new() };
        want.symmetric_difference(current).map(|&addr| (addr, want.contains(&addr))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn path(name: &str, addrs: &[&str]) -> LocalPath {
        LocalPath { name: name.into(), addrs: addrs.iter().map(|a| ip(a)).collect(), ifindex: 2, rank: 100 }
    }

    #[test]
    fn a_path_stranded_by_its_interface_is_quarantined_until_it_returns() {
        let mut q = Quarantine::default();
        let wifi = path("wifi", &["10.1.0.2", "fd00:1::2"]);
        let cell = path("cell", &["10.2.0.2"]);
        let none = BTreeSet::new();
        assert!(q.changes(&[wifi.clone(), cell.clone()], &none, &none, true).is_empty());
        // Wifi's link goes down: its IPv4 address stays, stranded (IPv6
        // addresses go with the link).
        let stranded: BTreeSet<IpAddr> = [ip("10.1.0.2")].into();
        let changes = q.changes(std::slice::from_ref(&cell), &stranded, &none, true);
        assert_eq!(changes, vec![(ip("10.1.0.2"), true)]);
        let current: BTreeSet<IpAddr> = [ip("10.1.0.2")].into();
        assert!(q.changes(std::slice::from_ref(&cell), &stranded, &current, true).is_empty(), "nothing new");
        // Back: the rule goes.
        assert_eq!(q.changes(&[wifi, cell], &none, &current, true), vec![(ip("10.1.0.2"), false)]);
    }

    #[test]
    fn only_addresses_that_were_paths_and_only_when_enabled() {
        let mut q = Quarantine::default();
        let stranded: BTreeSet<IpAddr> = [ip("192.168.9.9")].into();
        let none = BTreeSet::new();
        assert!(q.changes(&[], &stranded, &none, true).is_empty(), "never a path here");
        let wifi = path("wifi", &["10.1.0.2"]);
        q.changes(&[wifi], &none, &none, true);
        let stranded: BTreeSet<IpAddr> = [ip("10.1.0.2")].into();
        assert!(q.changes(&[], &stranded, &none, false).is_empty(), "disabled");
        // Disabled with a rule in place (a crashed predecessor's): it goes.
        let current: BTreeSet<IpAddr> = [ip("10.1.0.2")].into();
        assert_eq!(q.changes(&[], &stranded, &current, false), vec![(ip("10.1.0.2"), false)]);
    }
}
