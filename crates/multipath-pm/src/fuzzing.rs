//! Entry points shared by the fuzz targets (`fuzz/`) and the test that
//! replays their regression inputs (`tests/hostile_bytes.rs`), so that both
//! decode bytes exactly as the daemon does. Not part of the stable API.

use crate::netlink::{codec, ctrl, mptcp_pm, route, sock_diag};

/// Most messages decoded from one datagram.
const MESSAGES: usize = 256;

/// A datagram as one of the daemon's netlink sockets delivers it; the first
/// byte chooses the reading: generic netlink (events, replies, family
/// lookups), rtnetlink (links, addresses, routes, rules), sock_diag replies,
/// or a bare attribute stream.
pub fn netlink(data: &[u8]) {
    let Some((&how, buf)) = data.split_first() else { return };
    match how % 4 {
        0 => genl(buf),
        1 => rtnetlink(buf),
        2 => {
            for m in codec::route_messages(buf).take(MESSAGES) {
                if let Ok(codec::Message::Data { body, .. }) = m {
                    inet_diag(body);
                }
            }
        }
        _ => {
            let Some((&ty, attrs)) = buf.split_first() else { return };
            attributes(ty, attrs);
            route_body(16 + u16::from(ty % 24), attrs);
            inet_diag(attrs);
        }
    }
}

/// A generic netlink datagram: each message's attributes as a path-manager
/// event, an address reply and a family lookup.
pub fn genl(buf: &[u8]) {
    for m in codec::messages(buf).take(MESSAGES) {
        if let Ok(codec::Message::Genl { cmd, attrs, .. }) = m {
            attributes(cmd, attrs);
        }
    }
}

/// Attributes of generic netlink command `cmd`, read every way the daemon
/// reads them.
pub fn attributes(cmd: u8, attrs: &[u8]) {
    let _ = mptcp_pm::decode_event(cmd, attrs);
    let _ = mptcp_pm::decode_addr_reply(attrs);
    let _ = ctrl::parse_family(attrs);
}

/// An rtnetlink datagram: each message's body by its type.
pub fn rtnetlink(buf: &[u8]) {
    for m in codec::route_messages(buf).take(MESSAGES) {
        if let Ok(codec::Message::Data { header, body }) = m {
            route_body(header.ty, body);
        }
    }
}

/// An rtnetlink message body of type `ty` (links, addresses, routes, rules).
pub fn route_body(ty: u16, body: &[u8]) {
    let _ = route::parse(ty, body);
    let _ = route::parse_quarantine(ty, body);
}

/// A sock_diag reply body, with the kernel structs it carries.
pub fn inet_diag(body: &[u8]) {
    if let Ok(msg) = sock_diag::InetDiagMsg::parse(body) {
        if let Some(info) = msg.info {
            kernel_structs(info);
        }
    }
}

/// `mptcp_info` and `tcp_info` of any length, as getsockopt and sock_diag
/// return them.
pub fn kernel_structs(data: &[u8]) {
    let _ = multipath::MptcpInfo::decode(data);
    let _ = multipath::TcpInfo::decode(data);
}

/// The daemon's socket protocol, both directions. What decodes must encode
/// back to bytes that decode the same: panics otherwise.
pub fn daemon_protocol(data: &[u8]) {
    use multipath::daemon_client::{Reply, Request};
    if let Ok(request) = Request::decode(data) {
        assert_eq!(Request::decode(&request.encode()), Ok(request));
    }
    if let Ok(reply) = Reply::decode(data) {
        assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
    }
}
