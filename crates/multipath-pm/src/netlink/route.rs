//! rtnetlink, the part a path manager needs: which interfaces are up, their
//! addresses, and the default routes through them. From these the usable
//! local paths follow, ranked by route metric (pure functions, tested
//! without a kernel; the socket is in [`super::socket`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::consts::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use super::codec::{request, Attrs, DecodeError, Header};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const RTM_GETRULE: u16 = 34;
const FRA_SRC: u16 = 2;
const FRA_PRIORITY: u16 = 6;
const FRA_PROTOCOL: u16 = 21;
const FR_ACT_UNREACHABLE: u8 = 7;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;
const IFF_LOOPBACK: u32 = 0x8;
/// Address flags that make an address unusable as a source.
const IFA_F_TENTATIVE_OR_DADFAILED: u8 = 0x40 | 0x08;

/// Multicast groups of link, address and route changes (`RTNLGRP_*`).
pub const GROUPS: [u32; 5] = [1, 5, 7, 9, 11];

/// The three dumps, in the order [`paths`] needs them.
pub const DUMPS: [u16; 3] = [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE];

/// A dump request of `kind` (one of [`DUMPS`]) for all families.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    let fixed: &[u8] = match kind {
        RTM_GETLINK => &[0; 16],
        RTM_GETADDR => &[0; 8],
        _ => &[0; 12],
    };
    request(Header { ty: kind, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, pid: 0 }, fixed, |_| {})
}

/// Priority of the quarantine rules: right after the local table (0), so
/// no other rule can route a stranded address's packets elsewhere first.
pub const QUARANTINE_PRIORITY: u32 = 9;

/// Routing-protocol tag on the quarantine rules (`ip rule` shows
/// `proto 77`): how a path manager finds its own rules, including those a
/// crashed predecessor left behind, and never touches anyone else's.
pub const QUARANTINE_PROTOCOL: u8 = 77;

/// RTM_NEWRULE (`add`) or RTM_DELRULE of the quarantine rule for `addr`:
/// `from addr/32 unreachable` (`/128` for IPv6), our priority and tag.
/// Packets from `addr` then fail with EHOSTUNREACH instead of falling
/// through to another interface's default route.
pub fn quarantine_request(addr: IpAddr, add: bool, seq: u32) -> Vec<u8> {
    let (family, len, octets) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, 32u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, 128u8, a.octets().to_vec()),
    };
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags.
    let fixed = [family, 0, len, 0, 0, 0, 0, FR_ACT_UNREACHABLE, 0, 0, 0, 0];
    let (ty, flags) = if add {
        (RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    } else {
        (RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK)
    };
    request(Header { ty, flags, seq, pid: 0 }, &fixed, |a| {
        a.bytes(FRA_SRC, &octets).u32(FRA_PRIORITY, QUARANTINE_PRIORITY).u8(FRA_PROTOCOL, QUARANTINE_PROTOCOL);
    })
}

/// A dump request of every policy rule (both families).
pub fn rule_dump_request(seq: u32) -> Vec<u8> {
    request(Header { ty: RTM_GETRULE, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, pid: 0 }, &[0; 12], |_| {})
}

/// The source address of a quarantine rule (ours: unreachable action, our
/// tag, one host address); `None` for any other rule.
pub fn parse_quarantine(ty: u16, body: &[u8]) -> Result<Option<IpAddr>, DecodeError> {
    if ty != RTM_NEWRULE {
        return Ok(None);
    }
    if body.len() < 12 {
        return Err(DecodeError::new("rule message too short"));
    }
    let (family, src_len, action) = (i32::from(body[0]), body[2], body[7]);
    let (mut src, mut protocol) = (None, 0);
    for a in Attrs::new(&body[12..]) {
        let a = a?;
        match a.ty {
            FRA_SRC => {
                src = match (family, src_len, a.payload.len()) {
                    (libc::AF_INET, 32, 4) => Some(IpAddr::from(Ipv4Addr::from(a.array::<4>()?))),
                    (libc::AF_INET6, 128, 16) => Some(IpAddr::from(Ipv6Addr::from(a.array::<16>()?))),
                    _ => None,
                }
            }
            FRA_PROTOCOL => protocol = a.u8()?,
            _ => {}
        }
    }
    Ok(src.filter(|_| protocol == QUARANTINE_PROTOCOL && action == FR_ACT_UNREACHABLE))
}

/// A local path: an interface with usable addresses and default routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPath {
    /// Interface name, e.g. "wifi0".
    pub name: String,
    /// The addresses subflows on this path may leave from: one per family
    /// that has a default route through the interface (IPv4 first).
    pub addrs: Vec<IpAddr>,
    /// Interface index.
    pub ifindex: u32,
    /// Preference: lower is better (default-route metric by default).
    pub rank: u32,
}

impl LocalPath {
    /// The address a subflow to `peer` leaves from: the path's address of
    /// the peer's family (the kernel refuses a join across families).
    pub fn addr_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.addrs.iter().copied().find(|a| a.is_ipv4() == peer.is_ipv4())
    }

    /// Whether `ip` is one of the path's addresses.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&ip)
    }
}

/// One row of the kernel's tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An interface.
    Link {
        /// Index.
        index: u32,
        /// Name.
        name: String,
        /// Administratively up with carrier, and not loopback.
        usable: bool,
    },
    /// An address on an interface.
    Addr {
        /// Interface index.
        index: u32,
        /// The address.
        addr: IpAddr,
        /// Global scope and not tentative.
        usable: bool,
    },
    /// A route.
    Route {
        /// Output interface.
        oif: u32,
        /// Metric.
        metric: u32,
        /// Whether it is a default route of the main table.
        default_main: bool,
        /// Address family.
        v6: bool,
    },
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    b.get(at..at + 4)
        .map(|x| u32::from_ne_bytes(x.try_into().expect("4 bytes")))
        .ok_or_else(|| DecodeError::new("rtnetlink header too short"))
}

/// Decodes a NEWLINK/NEWADDR/NEWROUTE message body; other types are `None`.
pub fn parse(ty: u16, body: &[u8]) -> Result<Option<Entry>, DecodeError> {
    Ok(Some(match ty {
        RTM_NEWLINK => {
            let (index, flags) = (u32_at(body, 4)?, u32_at(body, 8)?);
            let mut name = String::new();
            for a in Attrs::new(body.get(16..).unwrap_or(&[])) {
                let a = a?;
                if a.ty == IFLA_IFNAME {
                    name = a.string();
                }
            }
            let usable = flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0 && flags & IFF_LOOPBACK == 0;
            Entry::Link { index, name, usable }
        }
        RTM_NEWADDR => {
            let family = *body.first().ok_or_else(|| DecodeError::new("empty address message"))?;
            let (ifa_flags, scope, index) =
                (body.get(2).copied().unwrap_or(0), body.get(3).copied().unwrap_or(0), u32_at(body, 4)?);
            let (mut local, mut address) = (None, None);
            for a in Attrs::new(body.get(8..).unwrap_or(&[])) {
                let a = a?;
                let ip = match (i32::from(family), a.payload.len()) {
                    (libc::AF_INET, 4) => Some(IpAddr::from(Ipv4Addr::from(a.array::<4>()?))),
                    (libc::AF_INET6, 16) => Some(IpAddr::from(Ipv6Addr::from(a.array::<16>()?))),
                    _ => None,
                };
                match a.ty {
                    IFA_LOCAL => local = ip,
                    IFA_ADDRESS => address = ip,
                    _ => {}
                }
            }
            // IFA_LOCAL is the local address on point-to-point links.
            let Some(addr) = local.or(address) else { return Ok(None) };
            let usable = scope == RT_SCOPE_UNIVERSE && ifa_flags & IFA_F_TENTATIVE_OR_DADFAILED == 0;
            Entry::Addr { index, addr, usable }
        }
        RTM_NEWROUTE => {
            if body.len() < 12 {
                return Err(DecodeError::new("route message too short"));
            }
            let (family, dst_len, header_table) = (body[0], body[1], body[4]);
            let (mut oif, mut metric, mut table) = (0, 0, u32::from(header_table));
            for a in Attrs::new(&body[12..]) {
                let a = a?;
                match a.ty {
                    RTA_OIF => oif = a.u32()?,
                    RTA_PRIORITY => metric = a.u32()?,
                    RTA_TABLE => table = a.u32()?,
                    _ => {}
                }
            }
            Entry::Route {
                oif,
                metric,
                default_main: dst_len == 0 && table == RT_TABLE_MAIN,
                v6: i32::from(family) == libc::AF_INET6,
            }
        }
        _ => return Ok(None),
    }))
}

/// The usable paths: interfaces that are up, hold a global address and
/// carry a default route of the main table. A path has one address per
/// family with a default route through it (IPv4 first), so a dual-stack
/// interface serves IPv4 and IPv6 peers alike. Ranked by the lowest metric
/// of those routes, then by name.
pub fn paths(entries: &[Entry]) -> Vec<LocalPath> {
    let mut links: BTreeMap<u32, &str> = BTreeMap::new();
    for e in entries {
        if let Entry::Link { index, name, usable: true } = e {
            links.insert(*index, name);
        }
    }
    // Per interface: the best metric, and which families have a default route.
    let mut best: BTreeMap<u32, (u32, [bool; 2])> = BTreeMap::new();
    for e in entries {
        if let Entry::Route { oif, metric, default_main: true, v6 } = e {
            let slot = best.entry(*oif).or_insert((*metric, [false; 2]));
            slot.0 = slot.0.min(*metric);
            slot.1[usize::from(*v6)] = true;
        }
    }
    let mut out: Vec<LocalPath> = Vec::new();
    for (&ifindex, &(metric, families)) in &best {
        let Some(name) = links.get(&ifindex) else { continue };
        let first_of = |v6: bool| {
            entries.iter().find_map(|e| match e {
                Entry::Addr { index, addr, usable: true } if *index == ifindex && addr.is_ipv6() == v6 => Some(*addr),
                _ => None,
            })
        };
        let addrs: Vec<IpAddr> =
            [false, true].into_iter().filter(|&v6| families[usize::from(v6)]).filter_map(first_of).collect();
        if !addrs.is_empty() {
            out.push(LocalPath { name: (*name).to_owned(), addrs, ifindex, rank: metric });
        }
    }
    out.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.name.cmp(&b.name)));
    out
}

/// Addresses stranded on an interface that is down or without carrier:
/// nothing can leave from them through their own interface, so whatever
/// does leave from them goes out through another one. (An interface that
/// is up but lost its default route still reaches its own subnet: its
/// addresses are not stranded.)
pub fn stranded(entries: &[Entry]) -> std::collections::BTreeSet<IpAddr> {
    let down: std::collections::BTreeSet<u32> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Link { index, usable: false, .. } => Some(*index),
            _ => None,
        })
        .collect();
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Addr { index, addr, .. } if down.contains(index) && !addr.is_loopback() => Some(*addr),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::codec::{route_messages, Message};

    fn message(ty: u16, fixed: &[u8], attrs: impl FnOnce(&mut crate::netlink::codec::AttrWriter<'_>)) -> Vec<u8> {
        request(Header { ty, flags: 0, seq: 0, pid: 0 }, fixed, attrs)
    }

    fn parse_one(bytes: &[u8]) -> Option<Entry> {
        let Some(Ok(Message::Data { header, body })) = route_messages(bytes).next() else { panic!() };
        parse(header.ty, body).unwrap()
    }

    fn link(index: u32, name: &str, flags: u32) -> Vec<u8> {
        let mut fixed = [0u8; 16];
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        fixed[8..12].copy_from_slice(&flags.to_ne_bytes());
        message(RTM_NEWLINK, &fixed, |a| {
            a.string(IFLA_IFNAME, name);
        })
    }

    fn addr4(index: u32, ip: [u8; 4], scope: u8) -> Vec<u8> {
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET as u8;
        fixed[3] = scope;
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        message(RTM_NEWADDR, &fixed, |a| {
            a.bytes(IFA_LOCAL, &ip).bytes(IFA_ADDRESS, &ip);
        })
    }

    fn default_route(oif: u32, metric: u32) -> Vec<u8> {
        let mut fixed = [0u8; 12];
        fixed[0] = libc::AF_INET as u8;
        fixed[4] = RT_TABLE_MAIN as u8;
        message(RTM_NEWROUTE, &fixed, |a| {
            a.u32(RTA_TABLE, RT_TABLE_MAIN).u32(RTA_OIF, oif).u32(RTA_PRIORITY, metric);
        })
    }

    #[test]
    fn paths_follow_links_addresses_and_default_routes() {
        let up = IFF_UP | IFF_LOWER_UP;
        let rows: Vec<Entry> = [
            link(1, "lo", up | IFF_LOOPBACK),
            link(2, "wifi", up),
            link(3, "cell", up),
            link(4, "eth9", IFF_UP), // no carrier
            addr4(1, [127, 0, 0, 1], 254),
            addr4(2, [10, 1, 0, 2], 0),
            addr4(3, [10, 2, 0, 2], 0),
            addr4(4, [10, 9, 0, 2], 0),
            default_route(3, 200),
            default_route(2, 100),
            default_route(4, 50),
        ]
        .iter()
        .filter_map(|m| parse_one(m))
        .collect();
        let paths = paths(&rows);
        let names: Vec<_> = paths.iter().map(|p| (p.name.as_str(), p.rank, p.addrs.clone())).collect();
        let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
        assert_eq!(names, vec![("wifi", 100, ip("10.1.0.2")), ("cell", 200, ip("10.2.0.2"))]);
        // Wifi's route gone (link down removes it): only cell is left.
        let without: Vec<Entry> = rows.into_iter().filter(|e| !matches!(e, Entry::Route { oif: 2, .. })).collect();
        assert_eq!(super::paths(&without).len(), 1);
    }

    fn addr6(index: u32, ip: &str, scope: u8) -> Vec<u8> {
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET6 as u8;
        fixed[3] = scope;
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        let ip: std::net::Ipv6Addr = ip.parse().unwrap();
        message(RTM_NEWADDR, &fixed, |a| {
            a.bytes(IFA_ADDRESS, &ip.octets());
        })
    }

    fn default_route6(oif: u32, metric: u32) -> Vec<u8> {
        let mut m = default_route(oif, metric);
        m[16] = libc::AF_INET6 as u8;
        m
    }

    #[test]
    fn dual_stack_paths_carry_an_address_per_family_with_a_default_route() {
        let up = IFF_UP | IFF_LOWER_UP;
        let rows: Vec<Entry> = [
            link(2, "wifi", up),
            link(3, "cell", up),
            link(4, "eth", up),
            addr4(2, [10, 1, 0, 2], 0),
            addr6(2, "fe80::1", 253), // link scope: never a source
            addr6(2, "fd00:1::2", 0),
            addr4(3, [10, 2, 0, 2], 0),
            addr6(3, "fd00:2::2", 0), // no IPv6 default route on cell
            addr6(4, "fd00:3::2", 0), // IPv6 only
            default_route(2, 100),
            default_route6(2, 90),
            default_route(3, 200),
            default_route6(4, 300),
        ]
        .iter()
        .filter_map(|m| parse_one(m))
        .collect();
        let got: Vec<(String, u32, Vec<String>)> = paths(&rows)
            .into_iter()
            .map(|p| (p.name, p.rank, p.addrs.iter().map(ToString::to_string).collect()))
            .collect();
        let want = |n: &str, r: u32, a: &[&str]| (n.to_owned(), r, a.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got,
            vec![
                want("wifi", 90, &["10.1.0.2", "fd00:1::2"]),
                want("cell", 200, &["10.2.0.2"]),
                want("eth", 300, &["fd00:3::2"]),
            ]
        );
    }

    #[test]
    fn stranded_addresses_are_those_on_interfaces_without_carrier() {
        let up = IFF_UP | IFF_LOWER_UP;
        let rows: Vec<Entry> = [
            link(1, "lo", up | IFF_LOOPBACK),
            link(2, "wifi", IFF_UP), // carrier lost
            link(3, "cell", up),
            addr4(1, [127, 0, 0, 1], 254),
            addr4(2, [10, 1, 0, 2], 0),
            addr4(3, [10, 2, 0, 2], 0),
        ]
        .iter()
        .filter_map(|m| parse_one(m))
        .collect();
        let want: std::collections::BTreeSet<IpAddr> = ["10.1.0.2".parse().unwrap()].into();
        assert_eq!(stranded(&rows), want);
    }

    /// The kernel echoes a rule in a dump as it was added: the request's
    /// body, typed RTM_NEWRULE.
    fn as_dumped(request: &[u8]) -> Option<IpAddr> {
        let Some(Ok(Message::Data { body, .. })) = route_messages(request).next() else { panic!() };
        parse_quarantine(RTM_NEWRULE, body).unwrap()
    }

    #[test]
    fn quarantine_rules_round_trip_and_only_ours_are_recognised() {
        for addr in ["10.1.0.2", "2001:db8::7"] {
            let addr: IpAddr = addr.parse().unwrap();
            let add = quarantine_request(addr, true, 7);
            assert_eq!(u16::from_ne_bytes([add[4], add[5]]), RTM_NEWRULE);
            assert_eq!(as_dumped(&add), Some(addr));
            let del = quarantine_request(addr, false, 8);
            assert_eq!(u16::from_ne_bytes([del[4], del[5]]), RTM_DELRULE);
            assert_eq!(as_dumped(&del), Some(addr), "deletion names the same rule");
        }
        let rule = |action: u8, src_len: u8, protocol: u8| {
            let fixed = [libc::AF_INET as u8, 0, src_len, 0, 0, 0, 0, action, 0, 0, 0, 0];
            message(RTM_NEWRULE, &fixed, |a| {
                a.bytes(FRA_SRC, &[10, 1, 0, 2]).u8(FRA_PROTOCOL, protocol);
            })
        };
        assert!(as_dumped(&rule(FR_ACT_UNREACHABLE, 32, QUARANTINE_PROTOCOL)).is_some());
        assert_eq!(as_dumped(&rule(FR_ACT_UNREACHABLE, 32, 4)), None, "someone else's rule");
        assert_eq!(as_dumped(&rule(1, 32, QUARANTINE_PROTOCOL)), None, "a lookup, not ours");
        assert_eq!(as_dumped(&rule(FR_ACT_UNREACHABLE, 24, QUARANTINE_PROTOCOL)), None, "a subnet");
        assert!(parse_quarantine(RTM_NEWRULE, &[0; 11]).is_err());
        assert_eq!(parse_quarantine(RTM_NEWROUTE, &[0; 11]).unwrap(), None);
    }

    #[test]
    fn truncated_rtnetlink_bodies_are_errors() {
        assert!(parse(RTM_NEWLINK, &[0; 6]).is_err());
        assert!(parse(RTM_NEWROUTE, &[0; 5]).is_err());
        assert!(parse(RTM_NEWADDR, &[]).is_err());
        assert_eq!(parse(99, &[]).unwrap(), None);
    }
}
