//! The kernel's MPTCP and TCP telemetry structs, decoded from the bytes the
//! kernel hands back.
//!
//! Decoding is pure (no I/O) so it is unit-tested without a kernel. The
//! layouts are those of Linux 6.18 (`struct mptcp_info`, `tcp_info`,
//! `mptcp_subflow_info`, `mptcp_full_info`); the kernel copies
//! `min(our size, its size)` bytes and says how many, so a field the running
//! kernel does not have is `None` here rather than a misread zero, and a field
//! a newer kernel adds is ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::Serialize;

/// Size of `struct mptcp_info` on the newest kernel we know.
pub(crate) const MPTCP_INFO_SIZE: usize = 96;
/// Size of `struct tcp_info` on the newest kernel we know.
pub(crate) const TCP_INFO_SIZE: usize = 280;
/// Size of `struct mptcp_subflow_info` (id, then two `sockaddr_storage`).
pub(crate) const SUBFLOW_INFO_SIZE: usize = 264;
/// Offset of the embedded `mptcp_info` in `struct mptcp_full_info`: the
/// fixed header the kernel insists on (`MIN_FULL_INFO_OPTLEN_SIZE`).
pub(crate) const FULL_INFO_HEADER_SIZE: usize = 40;

/// Oldest `mptcp_info` prefix we accept (up to `mptcpi_csum_enabled`, Linux 5.16).
const MPTCP_INFO_MIN: usize = 43;
/// Oldest `tcp_info` prefix we accept (up to `tcpi_total_retrans`, Linux 2.6).
const TCP_INFO_MIN: usize = 104;

/// The kernel handed back bytes that cannot be the struct asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("kernel returned {got} bytes for {what}, at least {need} expected")]
pub struct DecodeError {
    /// Which struct.
    pub what: &'static str,
    /// How many bytes came back.
    pub got: usize,
    /// How many the oldest supported layout has.
    pub need: usize,
}

/// Little cursor over a struct's bytes: a field beyond the end is `None`.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.0.get(at..at + N).map(|b| b.try_into().expect("slice of N bytes"))
    }
    fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.bytes(at).map(u16::from_ne_bytes)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.bytes(at).map(u32::from_ne_bytes)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.bytes(at).map(u64::from_ne_bytes)
    }
}

fn require<'a>(what: &'static str, buf: &'a [u8], need: usize) -> Result<Fields<'a>, DecodeError> {
    if buf.len() < need {
        return Err(DecodeError { what, got: buf.len(), need });
    }
    Ok(Fields(buf))
}

/// `struct mptcp_info`: the state of an MPTCP connection as a whole.
///
/// Fields added by kernels newer than 5.16 are `Option`s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MptcpInfo {
    /// Extra subflows (the initial one is not counted).
    pub subflows: u8,
    /// ADD_ADDRs this side has signalled.
    pub add_addr_signal: u8,
    /// ADD_ADDRs accepted from the peer.
    pub add_addr_accepted: u8,
    /// Limit on extra subflows.
    pub subflows_max: u8,
    /// Limit on signalled addresses.
    pub add_addr_signal_max: u8,
    /// Limit on accepted addresses.
    pub add_addr_accepted_max: u8,
    /// `MPTCP_INFO_FLAG_*` bits; see [`MptcpInfo::fell_back`].
    pub flags: u32,
    /// The connection token, as path-manager events carry it.
    pub token: u32,
    /// Next data sequence number to send.
    pub write_seq: u64,
    /// Oldest unacknowledged data sequence number.
    pub snd_una: u64,
    /// Next data sequence number expected.
    pub rcv_nxt: u64,
    /// Local addresses in use.
    pub local_addr_used: u8,
    /// Limit on local addresses.
    pub local_addr_max: u8,
    /// Whether DSS checksums are on.
    pub csum_enabled: bool,
    /// Retransmissions at the MPTCP level (Linux 6.6+).
    pub retransmits: Option<u32>,
    /// Bytes retransmitted at the MPTCP level (6.6+).
    pub bytes_retrans: Option<u64>,
    /// Bytes sent (6.6+).
    pub bytes_sent: Option<u64>,
    /// Bytes received (6.6+).
    pub bytes_received: Option<u64>,
    /// Bytes acknowledged by the peer (6.6+).
    pub bytes_acked: Option<u64>,
    /// All subflows, the initial one included (6.10+).
    pub subflows_total: Option<u8>,
    /// Milliseconds since data was last sent (6.12+).
    pub last_data_sent_ms: Option<u32>,
    /// Milliseconds since data was last received (6.12+).
    pub last_data_recv_ms: Option<u32>,
    /// Milliseconds since an ack was last received (6.12+).
    pub last_ack_recv_ms: Option<u32>,
}

impl MptcpInfo {
    /// `MPTCP_INFO_FLAG_FALLBACK`: the connection fell back to plain TCP.
    pub const FLAG_FALLBACK: u32 = 1 << 0;
    /// `MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED`: the peer's key arrived.
    pub const FLAG_REMOTE_KEY_RECEIVED: u32 = 1 << 1;

    /// Decodes the bytes `getsockopt(SOL_MPTCP, MPTCP_INFO)` returned.
    ///
    /// The struct grew in steps (48 bytes in 5.16, 80 in 6.6, 88 in 6.10,
    /// 96 in 6.12), each padded to 8 bytes: a field counts as present only
    /// when the step that added it is complete, so padding is never read as
    /// a zero value.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let full = require("struct mptcp_info", buf, MPTCP_INFO_MIN)?;
        let b = |at| full.u8(at).unwrap_or_default();
        let step = |size: usize| Fields(if buf.len() >= size { buf } else { &[] });
        let (v6_6, v6_10, v6_12) = (step(80), step(88), step(96));
        let f = &full;
        Ok(MptcpInfo {
            subflows: b(0),
            add_addr_signal: b(1),
            add_addr_accepted: b(2),
            subflows_max: b(3),
            add_addr_signal_max: b(4),
            add_addr_accepted_max: b(5),
            flags: f.u32(8).unwrap_or_default(),
            token: f.u32(12).unwrap_or_default(),
            write_seq: f.u64(16).unwrap_or_default(),
            snd_una: f.u64(24).unwrap_or_default(),
            rcv_nxt: f.u64(32).unwrap_or_default(),
            local_addr_used: b(40),
            local_addr_max: b(41),
            csum_enabled: b(42) != 0,
            retransmits: v6_6.u32(44),
            bytes_retrans: v6_6.u64(48),
            bytes_sent: v6_6.u64(56),
            bytes_received: v6_6.u64(64),
            bytes_acked: v6_6.u64(72),
            subflows_total: v6_10.u8(80),
            last_data_sent_ms: v6_12.u32(84),
            last_data_recv_ms: v6_12.u32(88),
            last_ack_recv_ms: v6_12.u32(92),
        })
    }

    /// The connection fell back to plain TCP.
    pub fn fell_back(&self) -> bool {
        self.flags & Self::FLAG_FALLBACK != 0
    }
}

/// TCP state of a subflow (`tcpi_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// Data can flow.
    Established,
    /// Handshake started by us.
    SynSent,
    /// Handshake started by the peer.
    SynRecv,
    /// We closed, waiting for the ack of our FIN.
    FinWait1,
    /// We closed, waiting for the peer's FIN.
    FinWait2,
    /// Both closed, lingering.
    TimeWait,
    /// Closed.
    Close,
    /// The peer closed.
    CloseWait,
    /// The peer closed, then we did.
    LastAck,
    /// Listening.
    Listen,
    /// Both sides closed at once.
    Closing,
    /// A state number this crate does not know.
    Other(u8),
}

impl TcpState {
    fn from_kernel(n: u8) -> Self {
        use TcpState::*;
        match n {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            n => Other(n),
        }
    }

    /// The kernel's number for the state (`TCP_ESTABLISHED` = 1, ...).
    pub fn kernel_number(self) -> u8 {
        use TcpState::*;
        match self {
            Established => 1,
            SynSent => 2,
            SynRecv => 3,
            FinWait1 => 4,
            FinWait2 => 5,
            TimeWait => 6,
            Close => 7,
            CloseWait => 8,
            LastAck => 9,
            Listen => 10,
            Closing => 11,
            Other(n) => n,
        }
    }

    /// Whether the subflow is set up or being set up, as opposed to closing.
    /// The kernel lists a destroyed subflow for a while in a closing state.
    pub fn is_open(self) -> bool {
        matches!(self, TcpState::Established | TcpState::SynSent | TcpState::SynRecv)
    }
}

/// `struct tcp_info` of one subflow (or of a plain TCP connection): the
/// fields a path manager and a curious user need. Times are in the kernel's
/// units, named in the field (`_us`, `_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpInfo {
    /// Connection state.
    pub state: TcpState,
    /// Congestion-avoidance state (open, disorder, CWR, recovery, loss).
    pub ca_state: u8,
    /// Consecutive retransmission timeouts of the oldest unacked segment.
    pub retransmits: u8,
    /// Exponential backoff of the retransmission timer.
    pub backoff: u8,
    /// Retransmission timeout, µs.
    pub rto_us: u32,
    /// Sender maximum segment size.
    pub snd_mss: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Segments believed lost.
    pub lost: u32,
    /// Segments retransmitted and not yet acknowledged.
    pub retrans: u32,
    /// Since data was last sent, ms.
    pub last_data_sent_ms: u32,
    /// Since data was last received, ms.
    pub last_data_recv_ms: u32,
    /// Since an ack was last received, ms.
    pub last_ack_recv_ms: u32,
    /// Path MTU.
    pub pmtu: u32,
    /// Smoothed round-trip time, µs.
    pub rtt_us: u32,
    /// Round-trip time variation, µs.
    pub rttvar_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Retransmitted segments over the connection's life.
    pub total_retrans: u32,
    /// Pacing rate, bytes/s (Linux 3.15+); `None` also when the socket is
    /// not paced (the kernel's `~0`).
    pub pacing_rate: Option<u64>,
    /// Bytes acknowledged by the peer (4.1+).
    pub bytes_acked: Option<u64>,
    /// Bytes received (4.1+).
    pub bytes_received: Option<u64>,
    /// Bytes not yet sent from the send buffer (4.6+).
    pub notsent_bytes: Option<u32>,
    /// Minimum RTT seen, µs (4.6+); `None` also before the first RTT sample
    /// (the kernel's `~0`).
    pub min_rtt_us: Option<u32>,
    /// Delivery rate estimate, bytes/s (4.9+).
    pub delivery_rate: Option<u64>,
    /// Bytes sent, retransmissions included (4.19+).
    pub bytes_sent: Option<u64>,
    /// Bytes retransmitted (4.19+).
    pub bytes_retrans: Option<u64>,
    /// Retransmission timeouts over the connection's life (6.7+).
    pub total_rto: Option<u16>,
}

impl TcpInfo {
    /// Decodes the bytes `getsockopt(SOL_TCP, TCP_INFO)` (or an element of
    /// `MPTCP_FULL_INFO`'s `tcp_info` array) returned.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let f = require("struct tcp_info", buf, TCP_INFO_MIN)?;
        let w = |at| f.u32(at).unwrap_or_default();
        Ok(TcpInfo {
            state: TcpState::from_kernel(f.u8(0).unwrap_or_default()),
            ca_state: f.u8(1).unwrap_or_default(),
            retransmits: f.u8(2).unwrap_or_default(),
            backoff: f.u8(4).unwrap_or_default(),
            rto_us: w(8),
            snd_mss: w(16),
            unacked: w(24),
            lost: w(32),
            retrans: w(36),
            last_data_sent_ms: w(44),
            last_data_recv_ms: w(52),
            last_ack_recv_ms: w(56),
            pmtu: w(60),
            rtt_us: w(68),
            rttvar_us: w(72),
            snd_cwnd: w(80),
            total_retrans: w(100),
            // ~0UL: no pacing, not a rate.
            pacing_rate: f.u64(104).filter(|v| *v != u64::MAX),
            bytes_acked: f.u64(120),
            bytes_received: f.u64(128),
            notsent_bytes: f.u32(144),
            // ~0U until the first RTT sample: unset, not 71 minutes.
            min_rtt_us: f.u32(148).filter(|v| *v != u32::MAX),
            delivery_rate: f.u64(160),
            bytes_sent: f.u64(200),
            bytes_retrans: f.u64(208),
            total_rto: f.u16(240),
        })
    }
}

/// One subflow of an MPTCP connection, from `MPTCP_FULL_INFO`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubflowInfo {
    /// The kernel's id of this subflow within its connection (1 = initial).
    pub id: u32,
    /// Local address and port; IPv4 as IPv4, also for an IPv6 socket's
    /// IPv4 subflows (which the kernel may report IPv4-mapped).
    pub local: SocketAddr,
    /// Remote address and port, IPv4 as IPv4.
    pub remote: SocketAddr,
    /// Name of the local interface holding `local`'s address, when known
    /// (the namespace's interfaces are read at most once a second).
    pub interface: Option<String>,
    /// TCP-level telemetry of the subflow.
    pub tcp: TcpInfo,
}

impl SubflowInfo {
    /// Whether the subflow runs over IPv4: one connection of an IPv6 socket
    /// may have subflows of both families.
    pub fn is_ipv4(&self) -> bool {
        canonical_ip(&self.local).is_ipv4()
    }

    /// Whether the subflow is set up or being set up (not closing).
    pub fn is_open(&self) -> bool {
        self.tcp.state.is_open()
    }
}

/// What `MPTCP_FULL_INFO` returned, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FullInfo {
    pub mptcp: MptcpInfo,
    pub subflows: Vec<SubflowInfo>,
    /// Subflows the kernel has, which may exceed the arrays we passed.
    pub num_subflows: usize,
}

/// Header fields of `struct mptcp_full_info` as the kernel filled them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FullInfoHeader {
    pub size_tcpinfo_user: usize,
    pub size_sfinfo_user: usize,
    pub num_subflows: usize,
}

/// Builds the `struct mptcp_full_info` request: element sizes and array
/// length we offer, and the user-space addresses of the two arrays.
pub(crate) fn encode_full_info_request(buf: &mut [u8], entries: u32, subflow_info_addr: u64, tcp_info_addr: u64) {
    buf.fill(0);
    buf[4..8].copy_from_slice(&(TCP_INFO_SIZE as u32).to_ne_bytes());
    buf[12..16].copy_from_slice(&(SUBFLOW_INFO_SIZE as u32).to_ne_bytes());
    buf[20..24].copy_from_slice(&entries.to_ne_bytes());
    buf[24..32].copy_from_slice(&subflow_info_addr.to_ne_bytes());
    buf[32..40].copy_from_slice(&tcp_info_addr.to_ne_bytes());
}

impl FullInfoHeader {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let f = require("struct mptcp_full_info", buf, FULL_INFO_HEADER_SIZE)?;
        let w = |at| f.u32(at).unwrap_or_default() as usize;
        Ok(FullInfoHeader {
            // The kernel clamps each element size to min(ours, its own).
            size_tcpinfo_user: w(4).min(TCP_INFO_SIZE),
            size_sfinfo_user: w(12).min(SUBFLOW_INFO_SIZE),
            num_subflows: w(16),
        })
    }
}

/// Decodes a whole `MPTCP_FULL_INFO` answer: `header` is the struct as
/// returned (header plus however much `mptcp_info` came back), the arrays
/// are the buffers we passed, each `entries` elements of our sizes. The
/// kernel packs elements at *its* returned element size.
pub(crate) fn decode_full_info(
    header: &[u8],
    subflow_infos: &[u8],
    tcp_infos: &[u8],
    entries: usize,
) -> Result<FullInfo, DecodeError> {
    let head = FullInfoHeader::decode(header)?;
    let mptcp = MptcpInfo::decode(&header[FULL_INFO_HEADER_SIZE..])?;
    let filled = head.num_subflows.min(entries);
    let mut subflows = Vec::with_capacity(filled);
    for i in 0..filled {
        let sf = element(subflow_infos, i, head.size_sfinfo_user);
        let tcp = element(tcp_infos, i, head.size_tcpinfo_user);
        let (id, local, remote) = decode_subflow_addrs(sf)?;
        subflows.push(SubflowInfo { id, local, remote, interface: None, tcp: TcpInfo::decode(tcp)? });
    }
    Ok(FullInfo { mptcp, subflows, num_subflows: head.num_subflows })
}

fn element(array: &[u8], index: usize, size: usize) -> &[u8] {
    let start = (index * size).min(array.len());
    &array[start..(start + size).min(array.len())]
}

/// `struct mptcp_subflow_info`: id, then local and remote `sockaddr_storage`.
fn decode_subflow_addrs(buf: &[u8]) -> Result<(u32, SocketAddr, SocketAddr), DecodeError> {
    let f = require("struct mptcp_subflow_info", buf, SUBFLOW_INFO_SIZE)?;
    let bad = DecodeError { what: "subflow address family", got: 0, need: 0 };
    // IPv4 as IPv4: the kernel reports an IPv6 socket's IPv4 subflows
    // mapped, some of them.
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let local = canonical(decode_sockaddr(&buf[8..136]).ok_or(bad.clone())?);
    let remote = canonical(decode_sockaddr(&buf[136..264]).ok_or(bad)?);
    Ok((f.u32(0).unwrap_or_default(), local, remote))
}

/// A `sockaddr_in` / `sockaddr_in6` in kernel layout (port and address in
/// network order, family in host order).
pub(crate) fn decode_sockaddr(buf: &[u8]) -> Option<SocketAddr> {
    let f = Fields(buf);
    let port = u16::from_be_bytes(f.bytes(2)?);
    match i32::from(f.u16(0)?) {
        libc::AF_INET => {
            let ip = Ipv4Addr::from(f.bytes::<4>(4)?);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(f.bytes(4)?);
            let ip = Ipv6Addr::from(f.bytes::<16>(8)?);
            let scope = f.u32(24)?;
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)))
        }
        _ => None,
    }
}

/// The IP of a socket address with IPv4-mapped IPv6 turned back into IPv4,
/// as interface addresses are listed.
pub(crate) fn canonical_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
        buf[at..at + N].copy_from_slice(&bytes);
    }

    fn mptcp_info_bytes(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; MPTCP_INFO_SIZE];
        b[0] = 1; // subflows
        b[3] = 2; // subflows_max
        put(&mut b, 8, 2u32.to_ne_bytes());
        put(&mut b, 12, 0xdead_beefu32.to_ne_bytes());
        put(&mut b, 16, 1000u64.to_ne_bytes());
        b[42] = 1;
        put(&mut b, 56, 4242u64.to_ne_bytes());
        b[80] = 2;
        put(&mut b, 92, 7u32.to_ne_bytes());
        b.truncate(len);
        b
    }

    #[test]
    fn mptcp_info_full_layout() {
        let info = MptcpInfo::decode(&mptcp_info_bytes(MPTCP_INFO_SIZE)).unwrap();
        assert_eq!(info.subflows, 1);
        assert_eq!(info.subflows_max, 2);
        assert_eq!(info.token, 0xdead_beef);
        assert_eq!(info.write_seq, 1000);
        assert!(info.csum_enabled);
        assert!(!info.fell_back());
        assert_eq!(info.flags & MptcpInfo::FLAG_REMOTE_KEY_RECEIVED, 2);
        assert_eq!(info.bytes_sent, Some(4242));
        assert_eq!(info.subflows_total, Some(2));
        assert_eq!(info.last_ack_recv_ms, Some(7));
    }

    #[test]
    fn mptcp_info_from_older_kernel_has_no_newer_fields() {
        // 5.16 layout: 43 bytes of fields, padded to 48 by the compiler.
        let info = MptcpInfo::decode(&mptcp_info_bytes(48)).unwrap();
        assert_eq!(info.token, 0xdead_beef);
        assert_eq!(info.retransmits, None, "bytes 44..48 are padding in 5.16");
        assert_eq!(info.bytes_sent, None);
        assert_eq!(info.subflows_total, None);
        assert_eq!(info.last_data_recv_ms, None);
    }

    #[test]
    fn mptcp_info_from_6_10_has_no_last_times() {
        // 6.10: subflows_total then padding up to 88 bytes.
        let info = MptcpInfo::decode(&mptcp_info_bytes(88)).unwrap();
        assert_eq!(info.subflows_total, Some(2));
        assert_eq!(info.bytes_sent, Some(4242));
        assert_eq!(info.last_data_sent_ms, None, "bytes 84..88 are padding in 6.10");
        assert_eq!(info.last_ack_recv_ms, None);
    }

    #[test]
    fn mptcp_info_too_short_is_an_error() {
        let err = MptcpInfo::decode(&mptcp_info_bytes(20)).unwrap_err();
        assert_eq!(err.got, 20);
        assert!(err.to_string().contains("mptcp_info"));
        assert!(MptcpInfo::decode(&[]).is_err());
    }

    #[test]
    fn oversized_buffers_from_newer_kernels_are_ignored_beyond_known_fields() {
        let mut b = mptcp_info_bytes(MPTCP_INFO_SIZE);
        b.extend_from_slice(&[0xff; 64]);
        assert_eq!(MptcpInfo::decode(&b).unwrap().token, 0xdead_beef);
        let mut t = tcp_info_bytes(TCP_INFO_SIZE);
        t.extend_from_slice(&[0xff; 100]);
        assert_eq!(TcpInfo::decode(&t).unwrap().rtt_us, 20_000);
    }

    fn tcp_info_bytes(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; TCP_INFO_SIZE];
        b[0] = 1;
        b[4] = 3;
        put(&mut b, 68, 20_000u32.to_ne_bytes());
        put(&mut b, 80, 10u32.to_ne_bytes());
        put(&mut b, 100, 5u32.to_ne_bytes());
        put(&mut b, 120, 111u64.to_ne_bytes());
        put(&mut b, 148, 19_000u32.to_ne_bytes());
        put(&mut b, 200, 222u64.to_ne_bytes());
        put(&mut b, 240, 9u16.to_ne_bytes());
        b.truncate(len);
        b
    }

    #[test]
    fn tcp_info_fields() {
        let t = TcpInfo::decode(&tcp_info_bytes(TCP_INFO_SIZE)).unwrap();
        assert_eq!(t.state, TcpState::Established);
        assert_eq!(t.backoff, 3);
        assert_eq!(t.rtt_us, 20_000);
        assert_eq!(t.snd_cwnd, 10);
        assert_eq!(t.total_retrans, 5);
        assert_eq!(t.bytes_acked, Some(111));
        assert_eq!(t.min_rtt_us, Some(19_000));
        assert_eq!(t.bytes_sent, Some(222));
        assert_eq!(t.total_rto, Some(9));
    }

    /// The kernel's "not yet" and "no pacing" (all ones) read as unset, not
    /// as 71 minutes and 18 EB/s.
    #[test]
    fn unset_tcp_info_fields_are_none() {
        let mut b = tcp_info_bytes(TCP_INFO_SIZE);
        b[148..152].copy_from_slice(&u32::MAX.to_ne_bytes());
        b[104..112].copy_from_slice(&u64::MAX.to_ne_bytes());
        let t = TcpInfo::decode(&b).unwrap();
        assert_eq!(t.min_rtt_us, None);
        assert_eq!(t.pacing_rate, None);
    }

    #[test]
    fn tcp_info_older_and_short() {
        // Linux 4.6 ended at tcpi_min_rtt (152 bytes incl. padding).
        let t = TcpInfo::decode(&tcp_info_bytes(152)).unwrap();
        assert_eq!(t.min_rtt_us, Some(19_000));
        assert_eq!(t.bytes_sent, None);
        assert_eq!(t.total_rto, None);
        assert!(TcpInfo::decode(&tcp_info_bytes(103)).is_err());
    }

    #[test]
    fn tcp_states() {
        assert!(TcpState::from_kernel(1).is_open());
        assert!(!TcpState::from_kernel(4).is_open());
        assert_eq!(TcpState::from_kernel(200), TcpState::Other(200));
    }

    fn sockaddr_v4(ip: [u8; 4], port: u16) -> [u8; 128] {
        let mut b = [0u8; 128];
        put(&mut b, 0, (libc::AF_INET as u16).to_ne_bytes());
        put(&mut b, 2, port.to_be_bytes());
        put(&mut b, 4, ip);
        b
    }

    #[test]
    fn sockaddrs() {
        let v4 = decode_sockaddr(&sockaddr_v4([10, 1, 0, 2], 443)).unwrap();
        assert_eq!(v4, "10.1.0.2:443".parse().unwrap());
        let mut v6 = [0u8; 128];
        put(&mut v6, 0, (libc::AF_INET6 as u16).to_ne_bytes());
        put(&mut v6, 2, 80u16.to_be_bytes());
        put(&mut v6, 8, "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        put(&mut v6, 24, 3u32.to_ne_bytes());
        let v6 = decode_sockaddr(&v6).unwrap();
        assert_eq!(v6, "[2001:db8::1%3]:80".parse().unwrap());
        assert_eq!(decode_sockaddr(&[0u8; 128]), None, "AF_UNSPEC");
        assert_eq!(decode_sockaddr(&[2, 0, 1]), None, "truncated");
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        assert_eq!(canonical_ip(&mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    fn full_info(num: u32, entries: usize, sf_size: u32, tcp_size: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut head = vec![0u8; FULL_INFO_HEADER_SIZE];
        put(&mut head, 0, (TCP_INFO_SIZE as u32).to_ne_bytes());
        put(&mut head, 4, tcp_size.to_ne_bytes());
        put(&mut head, 8, (SUBFLOW_INFO_SIZE as u32).to_ne_bytes());
        put(&mut head, 12, sf_size.to_ne_bytes());
        put(&mut head, 16, num.to_ne_bytes());
        head.extend(mptcp_info_bytes(MPTCP_INFO_SIZE));
        let (sf_size, tcp_size) = (sf_size as usize, tcp_size as usize);
        let mut sfs = vec![0u8; entries * SUBFLOW_INFO_SIZE];
        let mut tcps = vec![0u8; entries * TCP_INFO_SIZE];
        for i in 0..entries.min(num as usize) {
            let s = &mut sfs[i * sf_size..(i + 1) * sf_size];
            put(s, 0, (i as u32 + 1).to_ne_bytes());
            s[8..136].copy_from_slice(&sockaddr_v4([10, i as u8 + 1, 0, 2], 5000 + i as u16));
            s[136..264].copy_from_slice(&sockaddr_v4([10, 0, 0, 2], 80));
            let t = &mut tcps[i * tcp_size..(i + 1) * tcp_size];
            t.copy_from_slice(&tcp_info_bytes(tcp_size));
            put(t, 68, (20_000 * (i as u32 + 1)).to_ne_bytes());
        }
        (head, sfs, tcps)
    }

    #[test]
    fn full_info_two_subflows() {
        let (h, s, t) = full_info(2, 4, SUBFLOW_INFO_SIZE as u32, TCP_INFO_SIZE as u32);
        let full = decode_full_info(&h, &s, &t, 4).unwrap();
        assert_eq!(full.num_subflows, 2);
        assert_eq!(full.mptcp.token, 0xdead_beef);
        assert_eq!(full.subflows.len(), 2);
        assert_eq!(full.subflows[1].id, 2);
        assert_eq!(full.subflows[1].local, "10.2.0.2:5001".parse().unwrap());
        assert_eq!(full.subflows[1].remote, "10.0.0.2:80".parse().unwrap());
        assert_eq!(full.subflows[1].tcp.rtt_us, 40_000);
    }

    #[test]
    fn full_info_with_smaller_kernel_tcp_info_is_packed_at_kernel_size() {
        // An older kernel (tcp_info of 232 bytes) packs elements at 232.
        let (h, s, t) = full_info(2, 2, SUBFLOW_INFO_SIZE as u32, 232);
        let full = decode_full_info(&h, &s, &t, 2).unwrap();
        assert_eq!(full.subflows[1].tcp.rtt_us, 40_000);
        assert_eq!(full.subflows[1].tcp.total_rto, None);
    }

    #[test]
    fn full_info_more_subflows_than_room() {
        let (h, s, t) = full_info(5, 2, SUBFLOW_INFO_SIZE as u32, TCP_INFO_SIZE as u32);
        let full = decode_full_info(&h, &s, &t, 2).unwrap();
        assert_eq!(full.num_subflows, 5);
        assert_eq!(full.subflows.len(), 2);
    }

    #[test]
    fn full_info_garbage_is_an_error_not_a_panic() {
        assert!(decode_full_info(&[0u8; 10], &[], &[], 0).is_err());
        // Header claims subflows, arrays are empty.
        let (h, _, _) = full_info(3, 0, SUBFLOW_INFO_SIZE as u32, TCP_INFO_SIZE as u32);
        assert!(decode_full_info(&h, &[], &[], 3).is_err());
        // Unknown address family in a subflow entry.
        let (h, mut s, t) = full_info(1, 1, SUBFLOW_INFO_SIZE as u32, TCP_INFO_SIZE as u32);
        s[8] = 99;
        assert!(decode_full_info(&h, &s, &t, 1).is_err());
    }

    #[test]
    fn request_encoding() {
        let mut b = [0xffu8; FULL_INFO_HEADER_SIZE + MPTCP_INFO_SIZE];
        encode_full_info_request(&mut b, 8, 0x1000, 0x2000);
        let f = Fields(&b);
        assert_eq!(f.u32(0), Some(0), "kernel-filled fields must be zero");
        assert_eq!(f.u32(4), Some(TCP_INFO_SIZE as u32));
        assert_eq!(f.u32(12), Some(SUBFLOW_INFO_SIZE as u32));
        assert_eq!(f.u32(16), Some(0));
        assert_eq!(f.u32(20), Some(8));
        assert_eq!(f.u64(24), Some(0x1000));
        assert_eq!(f.u64(32), Some(0x2000));
        assert!(b[FULL_INFO_HEADER_SIZE..].iter().all(|&x| x == 0));
    }
}
