//! rtnetlink, the part a path manager needs: which interfaces are up, their
//! addresses, and the default routes through them. From these the usable
//! local paths follow, ranked by route metric (pure functions, tested
//! without a kernel; the socket is in [`super::socket`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::consts::{NLM_F_DUMP, NLM_F_REQUEST};
use super::codec::{request, Attrs, DecodeError, Header};
use crate::policy::LocalPath;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
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
/// carry a default route of the main table; ranked by that route's metric
/// (the lowest per interface), then by name.
pub fn paths(entries: &[Entry]) -> Vec<LocalPath> {
    let mut links: BTreeMap<u32, &str> = BTreeMap::new();
    for e in entries {
        if let Entry::Link { index, name, usable: true } = e {
            links.insert(*index, name);
        }
    }
    let mut best: BTreeMap<u32, (u32, bool)> = BTreeMap::new();
    for e in entries {
        if let Entry::Route { oif, metric, default_main: true, v6 } = e {
            let slot = best.entry(*oif).or_insert((*metric, *v6));
            if *metric < slot.0 {
                *slot = (*metric, *v6);
            }
        }
    }
    let mut out: Vec<LocalPath> = Vec::new();
    for (&ifindex, &(metric, v6)) in &best {
        let Some(name) = links.get(&ifindex) else { continue };
        let addr = entries.iter().find_map(|e| match e {
            Entry::Addr { index, addr, usable: true } if *index == ifindex && addr.is_ipv6() == v6 => Some(*addr),
            _ => None,
        });
        if let Some(addr) = addr {
            out.push(LocalPath { name: (*name).to_owned(), addr, ifindex, rank: metric });
        }
    }
    out.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.name.cmp(&b.name)));
    out
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
        let names: Vec<_> = paths.iter().map(|p| (p.name.as_str(), p.rank, p.addr.to_string())).collect();
        assert_eq!(names, vec![("wifi", 100, "10.1.0.2".into()), ("cell", 200, "10.2.0.2".into())]);
        // Wifi's route gone (link down removes it): only cell is left.
        let without: Vec<Entry> = rows.into_iter().filter(|e| !matches!(e, Entry::Route { oif: 2, .. })).collect();
        assert_eq!(super::paths(&without).len(), 1);
    }

    #[test]
    fn truncated_rtnetlink_bodies_are_errors() {
        assert!(parse(RTM_NEWLINK, &[0; 6]).is_err());
        assert!(parse(RTM_NEWROUTE, &[0; 5]).is_err());
        assert!(parse(RTM_NEWADDR, &[]).is_err());
        assert_eq!(parse(99, &[]).unwrap(), None);
    }
}
