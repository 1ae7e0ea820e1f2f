//! `sock_diag` (NETLINK_SOCK_DIAG): how the path manager measures every
//! connection it manages from the kernel, without holding a descriptor of
//! any of them, and how it aborts a destroyed first subflow (pure
//! functions; the socket is in [`super::socket`]).
//!
//! - A connection (the MPTCP socket) is looked up by its token, with its
//!   `mptcp_info`: [`Query::Connection`].
//! - A subflow (a TCP socket) by its 4-tuple, with its `tcp_info` and its
//!   MPTCP ULP info, which names its connection's token: [`Query::Subflow`].
//! - Dumps of either list everything of one family (resynchronisation,
//!   adoption at start).
//!
//! SOCK_DESTROY, why: the kernel never disposes of a connection's first
//! subflow. Destroyed through the path manager it is only shut down, so it
//! keeps acknowledging whatever the peer still retransmits on it; when its
//! path returns, the peer's stale retransmissions take that path's capacity
//! from the new subflow for as long as its queue lasts. Aborted, the
//! subflow is gone, and the peer's first retransmission meets a reset.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::codec::consts::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use super::codec::{request, Attrs, DecodeError, Header};

/// The netlink protocol number of `sock_diag`.
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// `SOCK_DIAG_BY_FAMILY`: queries and their replies.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `SOCK_DESTROY`.
const SOCK_DESTROY: u16 = 21;
/// `INET_DIAG_NOCOOKIE`: match by address alone (both cookie words).
const NO_COOKIE: u32 = u32::MAX;
/// `INET_DIAG_REQ_PROTOCOL`: the protocol when it does not fit the
/// request's `u8` (MPTCP is 262).
const INET_DIAG_REQ_PROTOCOL: u16 = 3;
/// `IPPROTO_MPTCP`.
const IPPROTO_MPTCP: u32 = 262;
/// `INET_DIAG_INFO`: `mptcp_info` of a connection, `tcp_info` of a subflow.
const INET_DIAG_INFO: u16 = 2;
/// `INET_DIAG_ULP_INFO`: a subflow's upper-layer (MPTCP) state.
const INET_DIAG_ULP_INFO: u16 = 19;
/// `INET_DIAG_CGROUP_ID`: the id (inode) of the cgroup v2 the socket was
/// created in; sent unasked.
const INET_DIAG_CGROUP_ID: u16 = 21;
/// `INET_ULP_INFO_MPTCP` inside the ULP info.
const INET_ULP_INFO_MPTCP: u16 = 3;
/// `MPTCP_SUBFLOW_ATTR_TOKEN_LOC`: the token of the subflow's connection.
const SUBFLOW_ATTR_TOKEN_LOC: u16 = 2;
/// `MPTCP_SUBFLOW_ATTR_ID_LOC`: its local address id.
const SUBFLOW_ATTR_ID_LOC: u16 = 10;
/// `MPTCP_SUBFLOW_ATTR_FLAGS`: the subflow's state bits.
const SUBFLOW_ATTR_FLAGS: u16 = 8;
/// `MPTCP_SUBFLOW_FLAG_BKUP_LOC`: this end marked the subflow backup.
const SUBFLOW_FLAG_BKUP_LOC: u32 = 1 << 5;
/// `MPTCP_SUBFLOW_FLAG_FULLY_ESTABLISHED`: the peer acknowledged the
/// handshake's last ACK (for a join, its HMAC checked out).
const SUBFLOW_FLAG_FULLY_ESTABLISHED: u32 = 1 << 6;
/// `idiag_ext` bit asking for `INET_DIAG_INFO` (and, for TCP, ULP info).
const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);
/// Every TCP state.
const ALL_STATES: u32 = u32::MAX;
/// `struct inet_diag_msg` before its attributes.
const DIAG_MSG_LEN: usize = 72;

/// What to ask `sock_diag` for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// The MPTCP connection with this token (any family).
    Connection {
        /// Its token.
        token: u32,
    },
    /// The TCP socket (a subflow) `local` -> `remote`.
    Subflow {
        /// Local address and port.
        local: SocketAddr,
        /// Remote address and port.
        remote: SocketAddr,
        /// The interface it is bound to (a join is bound to its path's;
        /// the kernel's lookup finds a bound socket only by it). An unbound
        /// socket is found whatever this says.
        ifindex: u32,
    },
    /// Every MPTCP connection of one family.
    AllConnections {
        /// IPv6 (an IPv6 socket talking IPv4-mapped is listed here too).
        v6: bool,
    },
    /// Every TCP socket of one family (subflows among them).
    AllSubflows {
        /// IPv6.
        v6: bool,
    },
}

impl Query {
    /// The request, with sequence number `seq`. `None` for a subflow
    /// whose two ends are of different families.
    pub fn request(&self, seq: u32) -> Option<Vec<u8>> {
        let (family, mptcp, sockid, dump) = match *self {
            Query::Connection { token } => {
                // The kernel looks the connection up by `idiag_cookie[0]`.
                let mut id = SockId::ANY;
                id.cookie = [token, 0];
                (libc::AF_INET, true, id, false)
            }
            Query::Subflow { local, remote, ifindex } => {
                let id = SockId { interface: ifindex, ..SockId::exact(local, remote) };
                (family_of(local, remote)?, false, id, false)
            }
            Query::AllConnections { v6 } => (family(v6), true, SockId::ANY, true),
            Query::AllSubflows { v6 } => (family(v6), false, SockId::ANY, true),
        };
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        let protocol = if mptcp { 0 } else { libc::IPPROTO_TCP as u8 };
        let body = req_v2(family, protocol, EXT_INFO, &sockid);
        Some(request(Header { ty: SOCK_DIAG_BY_FAMILY, flags, seq, pid: 0 }, &body, |a| {
            if mptcp {
                a.u32(INET_DIAG_REQ_PROTOCOL, IPPROTO_MPTCP);
            }
        }))
    }
}

fn family(v6: bool) -> i32 {
    if v6 {
        libc::AF_INET6
    } else {
        libc::AF_INET
    }
}

fn family_of(local: SocketAddr, remote: SocketAddr) -> Option<i32> {
    match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Some(libc::AF_INET),
        (IpAddr::V6(_), IpAddr::V6(_)) => Some(libc::AF_INET6),
        _ => None,
    }
}

/// `struct inet_diag_sockid`.
#[derive(Clone, Copy, Debug)]
struct SockId {
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

impl SockId {
    const ANY: SockId = SockId { sport: 0, dport: 0, src: [0; 16], dst: [0; 16], interface: 0, cookie: [NO_COOKIE; 2] };

    fn exact(local: SocketAddr, remote: SocketAddr) -> SockId {
        SockId {
            sport: local.port(),
            dport: remote.port(),
            src: words(local.ip()),
            dst: words(remote.ip()),
            ..SockId::ANY
        }
    }

    /// Ports and addresses in network order, IPv4 in the first word.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.interface.to_ne_bytes());
        out.extend_from_slice(&self.cookie[0].to_ne_bytes());
        out.extend_from_slice(&self.cookie[1].to_ne_bytes());
    }
}

fn words(ip: IpAddr) -> [u8; 16] {
    let mut w = [0u8; 16];
    match ip {
        IpAddr::V4(a) => w[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => w = a.octets(),
    }
    w
}

/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
fn req_v2(family: i32, protocol: u8, ext: u8, id: &SockId) -> Vec<u8> {
    let mut body = Vec::with_capacity(56);
    body.extend_from_slice(&[family as u8, protocol, ext, 0]);
    body.extend_from_slice(&ALL_STATES.to_ne_bytes());
    id.encode(&mut body);
    body
}

/// A SOCK_DESTROY request for the TCP socket `local` -> `remote`, or `None`
/// when the two are of different families.
pub fn destroy_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Option<Vec<u8>> {
    let family = family_of(local, remote)?;
    let body = req_v2(family, libc::IPPROTO_TCP as u8, 0, &SockId::exact(local, remote));
    Some(request(Header { ty: SOCK_DESTROY, flags: NLM_F_REQUEST | NLM_F_ACK, seq, pid: 0 }, &body, |_| {}))
}

/// One socket of a `sock_diag` reply: a view of `struct inet_diag_msg` and
/// the attributes that follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetDiagMsg<'a> {
    /// `idiag_state` (TCP states; 10 is listening).
    pub state: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Inode: a subflow's is its connection's. 0 while an accepted
    /// connection waits in its listener's queue.
    pub inode: u32,
    /// The user that created the socket (for an accepted connection, the
    /// listener's).
    pub uid: u32,
    /// The cgroup (v2) the socket was created in: its directory's inode.
    pub cgroup: Option<u64>,
    /// The interface the socket is bound to (0: none).
    pub interface: u32,
    /// `INET_DIAG_INFO`: `mptcp_info` of a connection, `tcp_info` of a TCP
    /// socket, as many bytes as this kernel's struct has.
    pub info: Option<&'a [u8]>,
    /// What its ULP info says of an MPTCP subflow; `None` for anything
    /// that is not one.
    pub subflow_of: Option<SubflowOf>,
}

/// An MPTCP subflow's place in its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubflowOf {
    /// The connection's token.
    pub token: u32,
    /// The subflow's local address id.
    pub loc_id: u8,
    /// This end marked it backup.
    pub backup: bool,
    /// The peer acknowledged the handshake's last ACK. A join the peer
    /// dropped (its SYN-cookie state lost, say) stays established here
    /// without ever becoming fully established, and carries nothing.
    pub fully_established: bool,
}

impl<'a> InetDiagMsg<'a> {
    /// Parses the body of a `SOCK_DIAG_BY_FAMILY` reply.
    pub fn parse(body: &'a [u8]) -> Result<InetDiagMsg<'a>, DecodeError> {
        let fixed = body.get(..DIAG_MSG_LEN).ok_or_else(|| DecodeError::new("inet_diag_msg too short"))?;
        let family = i32::from(fixed[0]);
        let port = |at: usize| u16::from_be_bytes([fixed[at], fixed[at + 1]]);
        let ip = |at: usize| -> Result<IpAddr, DecodeError> {
            let w: [u8; 16] = fixed[at..at + 16].try_into().expect("16 bytes");
            match family {
                libc::AF_INET => Ok(Ipv4Addr::new(w[0], w[1], w[2], w[3]).into()),
                libc::AF_INET6 => Ok(Ipv6Addr::from(w).into()),
                other => Err(DecodeError::new(format!("inet_diag_msg of family {other}"))),
            }
        };
        let (local, remote) = (SocketAddr::new(ip(8)?, port(4)), SocketAddr::new(ip(24)?, port(6)));
        let word = |at: usize| u32::from_ne_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
        let (inode, interface, uid) = (word(68), word(40), word(64));
        let (mut info, mut subflow_of, mut cgroup) = (None, None, None);
        for attr in Attrs::new(&body[DIAG_MSG_LEN..]) {
            let attr = attr?;
            match attr.ty {
                INET_DIAG_INFO => info = Some(attr.payload),
                INET_DIAG_ULP_INFO => subflow_of = parse_ulp(attr.nested())?,
                INET_DIAG_CGROUP_ID => cgroup = Some(attr.u64()?),
                _ => {}
            }
        }
        Ok(InetDiagMsg { state: fixed[1], local, remote, inode, uid, cgroup, interface, info, subflow_of })
    }
}

/// A subflow's ULP info (the kernel's order of the attributes varies, so
/// they are read by type).
fn parse_ulp(attrs: Attrs<'_>) -> Result<Option<SubflowOf>, DecodeError> {
    for attr in attrs {
        let attr = attr?;
        if attr.ty == INET_ULP_INFO_MPTCP {
            let (mut token, mut loc_id, mut flags) = (None, 0, 0);
            for a in attr.nested() {
                let a = a?;
                match a.ty {
                    SUBFLOW_ATTR_TOKEN_LOC => token = Some(a.u32()?),
                    SUBFLOW_ATTR_ID_LOC => loc_id = a.u8()?,
                    SUBFLOW_ATTR_FLAGS => flags = a.u32()?,
                    _ => {}
                }
            }
            let backup = flags & SUBFLOW_FLAG_BKUP_LOC != 0;
            let fully_established = flags & SUBFLOW_FLAG_FULLY_ESTABLISHED != 0;
            return Ok(token.map(|token| SubflowOf { token, loc_id, backup, fully_established }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::codec::{route_messages, Message};

    #[test]
    fn destroy_names_the_socket_in_network_order() {
        let local: SocketAddr = "10.1.0.2:40000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let m = destroy_request(local, remote, 5).unwrap();
        assert_eq!(m.len(), 16 + 56);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DESTROY);
        let body = &m[16..];
        assert_eq!(&body[..2], &[libc::AF_INET as u8, libc::IPPROTO_TCP as u8]);
        assert_eq!(&body[8..12], &[0x9c, 0x40, 0x01, 0xbb], "ports 40000 and 443, big-endian");
        assert_eq!(&body[12..16], &[10, 1, 0, 2]);
        assert_eq!(&body[28..32], &[10, 0, 0, 2]);
        assert_eq!(&body[48..56], &[0xff; 8], "no cookie");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert!(destroy_request(local, v6, 1).is_none(), "mixed families");
        assert_eq!(destroy_request("[2001:db8::2]:1".parse().unwrap(), v6, 1).unwrap().len(), 72);
    }

    /// The bytes a real kernel (6.18) accepted, checked against a
    /// hand-made request (see the project's notes on sock_diag).
    #[test]
    fn a_connection_is_asked_for_by_token_with_the_mptcp_protocol_attribute() {
        let m = Query::Connection { token: 0xac74_d7ca }.request(7).unwrap();
        assert_eq!(m.len(), 16 + 56 + 8);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST, "one socket, not a dump");
        let body = &m[16..];
        assert_eq!(&body[..4], &[libc::AF_INET as u8, 0, EXT_INFO, 0]);
        assert_eq!(&body[48..52], &0xac74_d7cau32.to_ne_bytes(), "the token in cookie[0]");
        assert_eq!(&body[52..56], &[0; 4]);
        assert_eq!(&body[56..], &[8, 0, 3, 0, 0x06, 0x01, 0, 0], "INET_DIAG_REQ_PROTOCOL 262");

        let dump = Query::AllConnections { v6: true }.request(1).unwrap();
        assert_eq!(u16::from_ne_bytes([dump[6], dump[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(dump[16], libc::AF_INET6 as u8);
        let tcp = Query::AllSubflows { v6: false }.request(1).unwrap();
        assert_eq!((tcp[17], tcp.len()), (libc::IPPROTO_TCP as u8, 72), "TCP needs no protocol attribute");
    }

    #[test]
    fn a_subflow_is_asked_for_by_its_four_tuple_without_cookie() {
        let local: SocketAddr = "[fd00:1::2]:40000".parse().unwrap();
        let remote: SocketAddr = "[fd00::2]:443".parse().unwrap();
        let m = Query::Subflow { local, remote, ifindex: 5 }.request(3).unwrap();
        let body = &m[16..];
        assert_eq!(&body[..4], &[libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8, EXT_INFO, 0]);
        assert_eq!(&body[8..12], &[0x9c, 0x40, 0x01, 0xbb]);
        assert_eq!(&body[12..28], &"fd00:1::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(&body[44..48], &5u32.to_ne_bytes(), "the interface a join is bound to");
        assert_eq!(&body[48..56], &[0xff; 8]);
        let v4: SocketAddr = "10.0.0.2:443".parse().unwrap();
        assert!(Query::Subflow { local, remote: v4, ifindex: 0 }.request(1).is_none());
    }

    /// A reply as the kernel builds it: `inet_diag_msg`, then attributes.
    fn reply(
        family: u8,
        local: SocketAddr,
        remote: SocketAddr,
        attrs: impl FnOnce(&mut crate::netlink::codec::AttrWriter<'_>),
    ) -> Vec<u8> {
        let mut fixed = vec![family, 1, 0, 0];
        SockId { interface: 3, ..SockId::exact(local, remote) }.encode(&mut fixed);
        fixed.extend_from_slice(&[0; 12]); // expires, rqueue, wqueue
        fixed.extend_from_slice(&1000u32.to_ne_bytes()); // uid
        fixed.extend_from_slice(&777u32.to_ne_bytes());
        assert_eq!(fixed.len(), DIAG_MSG_LEN);
        request(Header { ty: SOCK_DIAG_BY_FAMILY, flags: 0, seq: 9, pid: 0 }, &fixed, attrs)
    }

    fn body(message: &[u8]) -> &[u8] {
        let Some(Ok(Message::Data { body, .. })) = route_messages(message).next() else { panic!() };
        body
    }

    #[test]
    fn a_subflow_reply_names_its_connection() {
        let local: SocketAddr = "10.2.0.2:50000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let m = reply(libc::AF_INET as u8, local, remote, |a| {
            a.bytes(INET_DIAG_INFO, &[1; 280]);
            a.bytes(INET_DIAG_CGROUP_ID, &0x1234_5678_9abcu64.to_ne_bytes());
            a.nested(INET_DIAG_ULP_INFO, |u| {
                u.string(1, "mptcp");
                u.nested(INET_ULP_INFO_MPTCP, |m| {
                    // The kernel's order: not by number.
                    m.u32(1, 0).u32(SUBFLOW_ATTR_TOKEN_LOC, 0xfeed).u32(8, 0xe3).u8(9, 0).u8(SUBFLOW_ATTR_ID_LOC, 4);
                });
            });
        });
        let s = InetDiagMsg::parse(body(&m)).unwrap();
        assert_eq!((s.local, s.remote, s.inode, s.state, s.interface), (local, remote, 777, 1, 3));
        assert_eq!((s.uid, s.cgroup), (1000, Some(0x1234_5678_9abc)));
        assert_eq!(s.info.map(<[u8]>::len), Some(280));
        // 0xe3: MP_CAPABLE both ways, backup here, fully established, connected.
        assert_eq!(s.subflow_of, Some(SubflowOf { token: 0xfeed, loc_id: 4, backup: true, fully_established: true }));

        let plain = reply(libc::AF_INET6 as u8, "[fd00::1]:1".parse().unwrap(), "[fd00::2]:2".parse().unwrap(), |_| {});
        let s = InetDiagMsg::parse(body(&plain)).unwrap();
        assert_eq!((s.info, s.subflow_of, s.cgroup), (None, None, None), "plain TCP");
        assert_eq!(s.local, "[fd00::1]:1".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn malformed_replies_are_errors_never_panics() {
        assert!(InetDiagMsg::parse(&[0; 71]).is_err());
        let mut odd = vec![99u8; DIAG_MSG_LEN];
        assert!(InetDiagMsg::parse(&odd).is_err(), "family 99");
        odd[0] = libc::AF_INET as u8;
        odd.extend_from_slice(&[200, 0, 2, 0]); // an attribute longer than what is left
        assert!(InetDiagMsg::parse(&odd).is_err());
        // Every truncation of a good reply.
        let good = reply(libc::AF_INET as u8, "10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap(), |a| {
            a.nested(INET_DIAG_ULP_INFO, |u| {
                u.nested(INET_ULP_INFO_MPTCP, |m| {
                    m.u32(SUBFLOW_ATTR_TOKEN_LOC, 1);
                });
            });
        });
        let good = body(&good).to_vec();
        for len in 0..good.len() {
            let _ = InetDiagMsg::parse(&good[..len]);
        }
    }
}
