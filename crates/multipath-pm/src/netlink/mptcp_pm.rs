//! The `mptcp_pm` generic-netlink family: commands of the userspace path
//! manager and the events of `mptcp_pm_events`, as typed values.
//!
//! Numbers from `include/uapi/linux/mptcp_pm.h` (checked against the
//! running kernel's BTF). Byte orders follow the kernel: in address
//! attributes of commands the port is host order and IPv4 addresses are
//! network order; in events both ports and addresses are network order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::codec::{AttrWriter, Attrs, DecodeError};

/// Family name.
pub const FAMILY: &str = "mptcp_pm";
/// Family version.
pub const VERSION: u8 = 1;
/// Multicast group of path-manager events.
pub const EVENTS_GROUP: &str = "mptcp_pm_events";

mod cmd {
    pub const GET_ADDR: u8 = 3;
    pub const GET_LIMITS: u8 = 6;
    pub const SET_FLAGS: u8 = 7;
    pub const ANNOUNCE: u8 = 8;
    pub const REMOVE: u8 = 9;
    pub const SUBFLOW_CREATE: u8 = 10;
    pub const SUBFLOW_DESTROY: u8 = 11;
}

mod attr {
    pub const ADDR: u16 = 1;
    pub const RCV_ADD_ADDRS: u16 = 2;
    pub const SUBFLOWS: u16 = 3;
    pub const TOKEN: u16 = 4;
    pub const LOC_ID: u16 = 5;
    pub const ADDR_REMOTE: u16 = 6;
}

mod addr_attr {
    pub const FAMILY: u16 = 1;
    pub const ID: u16 = 2;
    pub const ADDR4: u16 = 3;
    pub const ADDR6: u16 = 4;
    pub const PORT: u16 = 5;
    pub const FLAGS: u16 = 6;
    pub const IF_IDX: u16 = 7;
}

mod ev_attr {
    pub const TOKEN: u16 = 1;
    pub const FAMILY: u16 = 2;
    pub const LOC_ID: u16 = 3;
    pub const REM_ID: u16 = 4;
    pub const SADDR4: u16 = 5;
    pub const SADDR6: u16 = 6;
    pub const DADDR4: u16 = 7;
    pub const DADDR6: u16 = 8;
    pub const SPORT: u16 = 9;
    pub const DPORT: u16 = 10;
    pub const BACKUP: u16 = 11;
    pub const ERROR: u16 = 12;
    pub const IF_IDX: u16 = 15;
    pub const SERVER_SIDE: u16 = 18;
}

/// `MPTCP_PM_ADDR_FLAG_*`.
pub mod flags {
    /// Announce the address to peers (ADD_ADDR).
    pub const SIGNAL: u32 = 1 << 0;
    /// Create subflows from the address.
    pub const SUBFLOW: u32 = 1 << 1;
    /// Subflows on it are backup (MP_PRIO).
    pub const BACKUP: u32 = 1 << 2;
}

/// A local address as a path-manager command names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    /// Address id: chosen by the path manager, unique per connection.
    pub id: u8,
    /// The address.
    pub addr: IpAddr,
    /// Port, when the subflow's port is meant (0 = any).
    pub port: u16,
    /// Interface index (0 = any).
    pub ifindex: i32,
    /// `flags::*`.
    pub flags: u32,
}

fn family_of(ip: &IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u16,
        IpAddr::V6(_) => libc::AF_INET6 as u16,
    }
}

fn put_ip(a: &mut AttrWriter<'_>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => a.bytes(addr_attr::ADDR4, &v4.octets()),
        IpAddr::V6(v6) => a.bytes(addr_attr::ADDR6, &v6.octets()),
    };
}

fn put_local(a: &mut AttrWriter<'_>, local: &LocalAddr) {
    a.nested(attr::ADDR, |n| {
        n.u16(addr_attr::FAMILY, family_of(&local.addr)).u8(addr_attr::ID, local.id);
        put_ip(n, &local.addr);
        if local.port != 0 {
            n.u16(addr_attr::PORT, local.port);
        }
        if local.ifindex != 0 {
            n.i32(addr_attr::IF_IDX, local.ifindex);
        }
        if local.flags != 0 {
            n.u32(addr_attr::FLAGS, local.flags);
        }
    });
}

fn put_sockaddr(a: &mut AttrWriter<'_>, ty: u16, addr: &SocketAddr, flags: u32) {
    a.nested(ty, |n| {
        n.u16(addr_attr::FAMILY, family_of(&addr.ip()));
        put_ip(n, &addr.ip());
        n.u16(addr_attr::PORT, addr.port());
        if flags != 0 {
            n.u32(addr_attr::FLAGS, flags);
        }
    });
}

/// The attributes of a GET_ADDR request: the address `id` of connection
/// `token`, as the userspace path manager knows it (an address announced
/// or used for a subflow it created).
pub fn get_addr_request(a: &mut AttrWriter<'_>, token: u32, id: u8) {
    a.u32(attr::TOKEN, token);
    a.nested(attr::ADDR, |n| {
        n.u8(addr_attr::ID, id);
    });
}

/// The attributes of a GET_ADDR dump request: every address entry of
/// connection `token`.
pub fn dump_addrs_request(a: &mut AttrWriter<'_>, token: u32) {
    a.u32(attr::TOKEN, token);
}

/// Command number of GET_ADDR.
pub const GET_ADDR: u8 = cmd::GET_ADDR;

/// Command number of GET_LIMITS (no attributes).
pub const GET_LIMITS: u8 = cmd::GET_LIMITS;

/// The namespace's MPTCP limits (`ip mptcp limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Additional subflows a connection may have (joins, not counting the
    /// initial subflow).
    pub subflows: u32,
    /// Addresses announced by a peer that the in-kernel path manager acts on.
    pub add_addr_accepted: u32,
}

/// Decodes a GET_LIMITS reply.
pub fn decode_limits_reply(attrs: &[u8]) -> Result<Limits, DecodeError> {
    let (mut subflows, mut accepted) = (None, None);
    for a in Attrs::new(attrs) {
        let a = a?;
        match a.ty {
            attr::SUBFLOWS => subflows = Some(a.u32()?),
            attr::RCV_ADD_ADDRS => accepted = Some(a.u32()?),
            _ => {}
        }
    }
    let missing = |what: &str| DecodeError::new(format!("GET_LIMITS reply without {what}"));
    Ok(Limits {
        subflows: subflows.ok_or_else(|| missing("subflows"))?,
        add_addr_accepted: accepted.ok_or_else(|| missing("add_addr_accepted"))?,
    })
}

/// Decodes a GET_ADDR reply: the address entry in its `ADDR` attribute.
/// Ports and IPv4 addresses as in commands (host-order port).
pub fn decode_addr_reply(attrs: &[u8]) -> Result<LocalAddr, DecodeError> {
    let nested = Attrs::new(attrs)
        .find_map(|a| match a {
            Ok(a) if a.ty == attr::ADDR => Some(Ok(a)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .ok_or_else(|| DecodeError::new("GET_ADDR reply without an address".to_string()))??;
    let (mut id, mut addr, mut port, mut ifindex, mut flags) = (None, None, 0, 0, 0);
    for a in nested.nested() {
        let a = a?;
        match a.ty {
            addr_attr::ID => id = Some(a.u8()?),
            addr_attr::ADDR4 => addr = Some(IpAddr::V4(Ipv4Addr::from(a.array::<4>()?))),
            addr_attr::ADDR6 => addr = Some(IpAddr::V6(Ipv6Addr::from(a.array::<16>()?))),
            addr_attr::PORT => port = a.u16()?,
            addr_attr::FLAGS => flags = a.u32()?,
            addr_attr::IF_IDX => ifindex = a.u32()? as i32,
            _ => {}
        }
    }
    let missing = |what: &str| DecodeError::new(format!("GET_ADDR reply without {what}"));
    Ok(LocalAddr {
        id: id.ok_or_else(|| missing("an id"))?,
        addr: addr.ok_or_else(|| missing("an address"))?,
        port,
        ifindex,
        flags,
    })
}

/// A command to the userspace path manager of one connection (`token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open a subflow from `local` to `remote`.
    SubflowCreate {
        /// Connection token.
        token: u32,
        /// Local address; give an id and interface (without an id the
        /// kernel uses id 0, the initial subflow's).
        local: LocalAddr,
        /// Remote address and port.
        remote: SocketAddr,
    },
    /// Close the subflow with exactly these endpoints.
    SubflowDestroy {
        /// Connection token.
        token: u32,
        /// Local address and port of the subflow.
        local: SocketAddr,
        /// Remote address and port of the subflow.
        remote: SocketAddr,
    },
    /// Set or clear the backup flag of one subflow (sends MP_PRIO).
    SetBackup {
        /// Connection token.
        token: u32,
        /// Local address and port of the subflow.
        local: SocketAddr,
        /// Remote address and port of the subflow.
        remote: SocketAddr,
        /// Backup or not.
        backup: bool,
    },
    /// Announce a local address to the peer (ADD_ADDR).
    Announce {
        /// Connection token.
        token: u32,
        /// The address and its id.
        addr: LocalAddr,
    },
    /// Withdraw a local address id (RM_ADDR): the peer closes its subflows.
    Remove {
        /// Connection token.
        token: u32,
        /// The local address id.
        loc_id: u8,
    },
}

impl Command {
    /// The connection the command acts on.
    pub fn token(&self) -> u32 {
        match *self {
            Command::SubflowCreate { token, .. }
            | Command::SubflowDestroy { token, .. }
            | Command::SetBackup { token, .. }
            | Command::Announce { token, .. }
            | Command::Remove { token, .. } => token,
        }
    }

    /// The command number (`genlmsghdr.cmd`).
    pub fn number(&self) -> u8 {
        match self {
            Command::SubflowCreate { .. } => cmd::SUBFLOW_CREATE,
            Command::SubflowDestroy { .. } => cmd::SUBFLOW_DESTROY,
            Command::SetBackup { .. } => cmd::SET_FLAGS,
            Command::Announce { .. } => cmd::ANNOUNCE,
            Command::Remove { .. } => cmd::REMOVE,
        }
    }

    /// Writes the command's attributes.
    pub fn write_attrs(&self, a: &mut AttrWriter<'_>) {
        match self {
            Command::SubflowCreate { token, local, remote } => {
                a.u32(attr::TOKEN, *token);
                put_local(a, local);
                put_sockaddr(a, attr::ADDR_REMOTE, remote, 0);
            }
            Command::SubflowDestroy { token, local, remote } => {
                a.u32(attr::TOKEN, *token);
                put_sockaddr(a, attr::ADDR, local, 0);
                put_sockaddr(a, attr::ADDR_REMOTE, remote, 0);
            }
            Command::SetBackup { token, local, remote, backup } => {
                a.u32(attr::TOKEN, *token);
                put_sockaddr(a, attr::ADDR, local, if *backup { flags::BACKUP } else { 0 });
                put_sockaddr(a, attr::ADDR_REMOTE, remote, 0);
            }
            Command::Announce { token, addr } => {
                a.u32(attr::TOKEN, *token);
                put_local(a, &LocalAddr { flags: addr.flags | flags::SIGNAL, ..*addr });
            }
            Command::Remove { token, loc_id } => {
                a.u32(attr::TOKEN, *token).u8(attr::LOC_ID, *loc_id);
            }
        }
    }

    /// Name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SubflowCreate { .. } => "SUBFLOW_CREATE",
            Command::SubflowDestroy { .. } => "SUBFLOW_DESTROY",
            Command::SetBackup { .. } => "SET_FLAGS",
            Command::Announce { .. } => "ANNOUNCE",
            Command::Remove { .. } => "REMOVE",
        }
    }
}

/// Addresses and ids of one subflow, as events carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubflowEvent {
    /// Connection token.
    pub token: u32,
    /// Local address id.
    pub loc_id: u8,
    /// Remote address id.
    pub rem_id: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The backup flag the event reports (for SUB_ESTABLISHED: the peer's).
    pub backup: bool,
    /// Interface index, when given.
    pub ifindex: Option<u32>,
    /// Socket error of a closed subflow (errno), when given.
    pub error: Option<u8>,
}

/// A path-manager event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection was created (SYN sent or received).
    Created(ConnectionEvent),
    /// A connection is established.
    Established(ConnectionEvent),
    /// A connection closed.
    Closed {
        /// Connection token.
        token: u32,
    },
    /// The peer announced an address.
    Announced {
        /// Connection token.
        token: u32,
        /// Remote address id.
        rem_id: u8,
        /// The address (port 0 if none was announced).
        addr: SocketAddr,
    },
    /// The peer withdrew an address.
    Removed {
        /// Connection token.
        token: u32,
        /// Remote address id.
        rem_id: u8,
    },
    /// A subflow is established.
    SubEstablished(SubflowEvent),
    /// A subflow closed (or failed to establish: `error` says why).
    SubClosed(SubflowEvent),
    /// The peer changed a subflow's backup flag.
    SubPriority(SubflowEvent),
    /// An MPTCP listener was created.
    ListenerCreated {
        /// Address and port.
        addr: SocketAddr,
    },
    /// An MPTCP listener closed.
    ListenerClosed {
        /// Address and port.
        addr: SocketAddr,
    },
    /// An event this crate does not know.
    Unknown {
        /// Its number.
        cmd: u8,
    },
}

/// CREATED / ESTABLISHED: the connection's initial subflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// Connection token.
    pub token: u32,
    /// Local address and port of the initial subflow.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Whether this side accepted the connection.
    pub server_side: bool,
}

impl Event {
    /// The connection the event is about, if any.
    pub fn token(&self) -> Option<u32> {
        match self {
            Event::Created(c) | Event::Established(c) => Some(c.token),
            Event::Closed { token } | Event::Announced { token, .. } | Event::Removed { token, .. } => Some(*token),
            Event::SubEstablished(s) | Event::SubClosed(s) | Event::SubPriority(s) => Some(s.token),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Fields {
    token: Option<u32>,
    family: Option<u16>,
    loc_id: Option<u8>,
    rem_id: Option<u8>,
    saddr: Option<IpAddr>,
    daddr: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    backup: Option<u8>,
    error: Option<u8>,
    ifindex: Option<u32>,
    server_side: Option<u8>,
}

impl Fields {
    fn parse(attrs: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::default();
        for a in Attrs::new(attrs) {
            let a = a?;
            match a.ty {
                ev_attr::TOKEN => f.token = Some(a.u32()?),
                ev_attr::FAMILY => f.family = Some(a.u16()?),
                ev_attr::LOC_ID => f.loc_id = Some(a.u8()?),
                ev_attr::REM_ID => f.rem_id = Some(a.u8()?),
                ev_attr::SADDR4 => f.saddr = Some(Ipv4Addr::from(a.array::<4>()?).into()),
                ev_attr::SADDR6 => f.saddr = Some(Ipv6Addr::from(a.array::<16>()?).into()),
                ev_attr::DADDR4 => f.daddr = Some(Ipv4Addr::from(a.array::<4>()?).into()),
                ev_attr::DADDR6 => f.daddr = Some(Ipv6Addr::from(a.array::<16>()?).into()),
                ev_attr::SPORT => f.sport = Some(a.be16()?),
                ev_attr::DPORT => f.dport = Some(a.be16()?),
                ev_attr::BACKUP => f.backup = Some(a.u8()?),
                ev_attr::ERROR => f.error = Some(a.u8()?),
                ev_attr::IF_IDX => f.ifindex = Some(a.u32()?),
                ev_attr::SERVER_SIDE => f.server_side = Some(a.u8()?),
                _ => {}
            }
        }
        Ok(f)
    }

    fn need<T>(v: Option<T>, what: &str, event: &str) -> Result<T, DecodeError> {
        v.ok_or_else(|| DecodeError::new(format!("{event} event without {what}")))
    }

    fn token(&self, event: &str) -> Result<u32, DecodeError> {
        Self::need(self.token, "token", event)
    }

    fn local(&self, event: &str) -> Result<SocketAddr, DecodeError> {
        Ok(SocketAddr::new(Self::need(self.saddr, "source address", event)?, self.sport.unwrap_or(0)))
    }

    fn remote(&self, event: &str) -> Result<SocketAddr, DecodeError> {
        Ok(SocketAddr::new(Self::need(self.daddr, "destination address", event)?, self.dport.unwrap_or(0)))
    }

    fn connection(&self, event: &str) -> Result<ConnectionEvent, DecodeError> {
        Ok(ConnectionEvent {
            token: self.token(event)?,
            local: self.local(event)?,
            remote: self.remote(event)?,
            server_side: self.server_side.unwrap_or(0) != 0,
        })
    }

    fn subflow(&self, event: &str) -> Result<SubflowEvent, DecodeError> {
        Ok(SubflowEvent {
            token: self.token(event)?,
            loc_id: self.loc_id.unwrap_or(0),
            rem_id: self.rem_id.unwrap_or(0),
            local: self.local(event)?,
            remote: self.remote(event)?,
            backup: self.backup.unwrap_or(0) != 0,
            ifindex: self.ifindex,
            error: self.error.filter(|&e| e != 0),
        })
    }
}

/// Decodes an event from its command number and attributes.
pub fn decode_event(cmd: u8, attrs: &[u8]) -> Result<Event, DecodeError> {
    let f = Fields::parse(attrs)?;
    let _ = f.family;
    Ok(match cmd {
        1 => Event::Created(f.connection("CREATED")?),
        2 => Event::Established(f.connection("ESTABLISHED")?),
        3 => Event::Closed { token: f.token("CLOSED")? },
        6 => Event::Announced {
            token: f.token("ANNOUNCED")?,
            rem_id: Fields::need(f.rem_id, "remote id", "ANNOUNCED")?,
            addr: f.remote("ANNOUNCED")?,
        },
        7 => Event::Removed { token: f.token("REMOVED")?, rem_id: Fields::need(f.rem_id, "remote id", "REMOVED")? },
        10 => Event::SubEstablished(f.subflow("SUB_ESTABLISHED")?),
        11 => Event::SubClosed(f.subflow("SUB_CLOSED")?),
        13 => Event::SubPriority(f.subflow("SUB_PRIORITY")?),
        15 => Event::ListenerCreated { addr: f.local("LISTENER_CREATED")? },
        16 => Event::ListenerClosed { addr: f.local("LISTENER_CLOSED")? },
        cmd => Event::Unknown { cmd },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::codec::{genl_request, messages, Header, Message};

    #[test]
    fn get_addr_request_and_reply() {
        let msg = genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd::GET_ADDR, VERSION, |a| {
            get_addr_request(a, 0xc0ffee, 3);
        });
        assert_eq!(msg[16], cmd::GET_ADDR);
        let local = LocalAddr { id: 3, addr: "10.2.0.2".parse().unwrap(), port: 0, ifindex: 3, flags: flags::BACKUP };
        let reply = genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd::GET_ADDR, VERSION, |a| {
            put_local(a, &local);
        });
        assert_eq!(decode_addr_reply(&reply[20..]).unwrap(), local);
        let v6 = LocalAddr { id: 9, addr: "2001:db8::2".parse().unwrap(), port: 4433, ifindex: 0, flags: 0 };
        let reply = genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd::GET_ADDR, VERSION, |a| {
            put_local(a, &v6);
        });
        assert_eq!(decode_addr_reply(&reply[20..]).unwrap(), v6);
        // Replies missing what they need, or cut short, are errors.
        let no_addr = genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd::GET_ADDR, VERSION, |a| {
            a.u32(attr::TOKEN, 1);
        });
        assert!(decode_addr_reply(&no_addr[20..]).unwrap_err().to_string().contains("without an address"));
        let full = genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd::GET_ADDR, VERSION, |a| {
            put_local(a, &local);
        });
        for cut in 20..full.len() {
            let _ = decode_addr_reply(&full[20..cut]); // never panics
        }
    }

    fn encode(cmd: &Command) -> (u8, Vec<u8>) {
        let msg =
            genl_request(Header { ty: 0x1d, flags: 0, seq: 1, pid: 0 }, cmd.number(), VERSION, |a| cmd.write_attrs(a));
        (msg[16], msg[20..].to_vec())
    }

    fn nested_fields(attrs: &[u8], ty: u16) -> Vec<(u16, Vec<u8>)> {
        let outer = Attrs::new(attrs).map(Result::unwrap).find(|a| a.ty == ty).expect("attribute present");
        outer.nested().map(|a| a.map(|a| (a.ty, a.payload.to_vec())).unwrap()).collect()
    }

    #[test]
    fn subflow_create_carries_id_ifindex_and_host_order_port() {
        let local = LocalAddr { id: 3, addr: "10.2.0.2".parse().unwrap(), port: 0, ifindex: 7, flags: 0 };
        let remote: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let (n, attrs) = encode(&Command::SubflowCreate { token: 0xfeed, local, remote });
        assert_eq!(n, 10);
        let token = Attrs::new(&attrs).next().unwrap().unwrap();
        assert_eq!((token.ty, token.u32().unwrap()), (attr::TOKEN, 0xfeed));
        let l = nested_fields(&attrs, attr::ADDR);
        assert!(l.contains(&(addr_attr::ID, vec![3])));
        assert!(l.contains(&(addr_attr::ADDR4, vec![10, 2, 0, 2])));
        assert!(l.contains(&(addr_attr::IF_IDX, 7i32.to_ne_bytes().to_vec())));
        assert!(!l.iter().any(|(t, _)| *t == addr_attr::PORT), "port 0 means any: not sent");
        let r = nested_fields(&attrs, attr::ADDR_REMOTE);
        assert!(r.contains(&(addr_attr::PORT, 443u16.to_ne_bytes().to_vec())));
        assert!(r.contains(&(addr_attr::FAMILY, (libc::AF_INET as u16).to_ne_bytes().to_vec())));
    }

    #[test]
    fn set_backup_flags_and_remove() {
        let local: SocketAddr = "[2001:db8::2]:5000".parse().unwrap();
        let remote: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let (n, attrs) = encode(&Command::SetBackup { token: 1, local, remote, backup: true });
        assert_eq!(n, 7);
        let l = nested_fields(&attrs, attr::ADDR);
        assert!(l.contains(&(addr_attr::FLAGS, flags::BACKUP.to_ne_bytes().to_vec())));
        assert!(l.contains(&(addr_attr::ADDR6, "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets().to_vec())));
        assert!(l.contains(&(addr_attr::PORT, 5000u16.to_ne_bytes().to_vec())));
        let (_, attrs) = encode(&Command::SetBackup { token: 1, local, remote, backup: false });
        assert!(!nested_fields(&attrs, attr::ADDR).iter().any(|(t, _)| *t == addr_attr::FLAGS));
        let (n, attrs) = encode(&Command::Remove { token: 9, loc_id: 4 });
        assert_eq!(n, 9);
        let all: Vec<_> = Attrs::new(&attrs).map(Result::unwrap).collect();
        assert_eq!(all[1].ty, attr::LOC_ID);
        assert_eq!(all[1].u8().unwrap(), 4);
    }

    fn event(cmd: u8, build: impl FnOnce(&mut AttrWriter<'_>)) -> Result<Event, DecodeError> {
        let msg = genl_request(Header { ty: 0x1d, flags: 0, seq: 0, pid: 0 }, cmd, 1, build);
        let Some(Ok(Message::Genl { cmd, attrs, .. })) = messages(&msg).next() else { panic!() };
        decode_event(cmd, attrs)
    }

    #[test]
    fn decodes_subflow_events_with_network_order_ports() {
        let ev = event(10, |a| {
            a.u32(ev_attr::TOKEN, 77)
                .u16(ev_attr::FAMILY, libc::AF_INET as u16)
                .u8(ev_attr::LOC_ID, 2)
                .u8(ev_attr::REM_ID, 0)
                .bytes(ev_attr::SADDR4, &[10, 2, 0, 2])
                .bytes(ev_attr::DADDR4, &[10, 0, 0, 2])
                .bytes(ev_attr::SPORT, &40000u16.to_be_bytes())
                .bytes(ev_attr::DPORT, &443u16.to_be_bytes())
                .u8(ev_attr::BACKUP, 1)
                .u32(ev_attr::IF_IDX, 5);
        })
        .unwrap();
        let Event::SubEstablished(sf) = ev else { panic!("{ev:?}") };
        assert_eq!(sf.local, "10.2.0.2:40000".parse().unwrap());
        assert_eq!(sf.remote, "10.0.0.2:443".parse().unwrap());
        assert_eq!((sf.token, sf.loc_id, sf.backup, sf.ifindex, sf.error), (77, 2, true, Some(5), None));
        assert_eq!(Event::SubEstablished(sf).token(), Some(77));
    }

    #[test]
    fn events_missing_what_they_need_are_errors() {
        assert!(event(3, |_| {}).is_err(), "CLOSED without token");
        assert!(event(10, |a| {
            a.u32(ev_attr::TOKEN, 1);
        })
        .is_err());
        assert!(
            event(1, |a| {
                a.u32(ev_attr::TOKEN, 1).bytes(ev_attr::SADDR4, &[1, 2, 3]);
            })
            .is_err(),
            "3-byte IPv4 address"
        );
        assert_eq!(event(99, |_| {}).unwrap(), Event::Unknown { cmd: 99 });
        let closed = event(11, |a| {
            a.u32(ev_attr::TOKEN, 1)
                .bytes(ev_attr::SADDR6, &[0; 16])
                .bytes(ev_attr::DADDR6, &[0; 16])
                .u8(ev_attr::ERROR, 111);
        })
        .unwrap();
        let Event::SubClosed(sf) = closed else { panic!() };
        assert_eq!(sf.error, Some(111));
    }
}
