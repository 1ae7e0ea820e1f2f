//! `sock_diag` (NETLINK_SOCK_DIAG), the one request a path manager needs:
//! SOCK_DESTROY of a TCP socket named by its 4-tuple, which aborts it with
//! a reset to the peer (pure functions; the socket is in [`super::socket`]).
//!
//! Why: the kernel never disposes of a connection's first subflow. Destroyed
//! through the path manager it is only shut down, so it keeps acknowledging
//! whatever the peer still retransmits on it; when its path returns, the
//! peer's stale retransmissions take that path's capacity from the new
//! subflow for as long as its queue lasts. Aborted, the subflow is gone, and
//! the peer's first retransmission meets a reset.

use std::net::{IpAddr, SocketAddr};

use super::codec::consts::{NLM_F_ACK, NLM_F_REQUEST};
use super::codec::{request, Header};

/// The netlink protocol number of `sock_diag`.
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// `SOCK_DESTROY`.
const SOCK_DESTROY: u16 = 21;
/// `INET_DIAG_NOCOOKIE`: match by address alone.
const NO_COOKIE: u32 = u32::MAX;

/// A SOCK_DESTROY request for the TCP socket `local` -> `remote`, or `None`
/// when the two are of different families.
pub fn destroy_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Option<Vec<u8>> {
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => return None,
    };
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, then
    // struct inet_diag_sockid: sport, dport (network order), src[4], dst[4]
    // (network order, IPv4 in the first word), if, cookie[2].
    let mut body = Vec::with_capacity(56);
    body.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    body.extend_from_slice(&u32::MAX.to_ne_bytes());
    body.extend_from_slice(&local.port().to_be_bytes());
    body.extend_from_slice(&remote.port().to_be_bytes());
    for ip in [local.ip(), remote.ip()] {
        let mut word = [0u8; 16];
        match ip {
            IpAddr::V4(a) => word[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => word.copy_from_slice(&a.octets()),
        }
        body.extend_from_slice(&word);
    }
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    body.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    Some(request(Header { ty: SOCK_DESTROY, flags: NLM_F_REQUEST | NLM_F_ACK, seq, pid: 0 }, &body, |_| {}))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
