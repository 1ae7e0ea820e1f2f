//! Netlink framing: message headers, generic-netlink headers, attributes,
//! and error/ack messages with their extended-ack text. Pure functions over
//! byte buffers, so they are unit-tested and fuzzable without a kernel.

use std::fmt;

/// `struct nlmsghdr` size.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct genlmsghdr` size.
pub const GENL_HDRLEN: usize = 4;
/// `struct nlattr` header size.
const NLA_HDRLEN: usize = 4;

/// Message types and flags from `linux/netlink.h`.
pub mod consts {
    /// Error or acknowledgement (error 0).
    pub const NLMSG_ERROR: u16 = 2;
    /// End of a multipart dump.
    pub const NLMSG_DONE: u16 = 3;
    /// Data lost.
    pub const NLMSG_OVERRUN: u16 = 4;
    /// A request.
    pub const NLM_F_REQUEST: u16 = 0x1;
    /// Part of a multipart message.
    pub const NLM_F_MULTI: u16 = 0x2;
    /// Ask for an acknowledgement.
    pub const NLM_F_ACK: u16 = 0x4;
    /// Dump everything (`NLM_F_ROOT | NLM_F_MATCH`).
    pub const NLM_F_DUMP: u16 = 0x300;
    /// In a NEW request: fail if it already exists.
    pub const NLM_F_EXCL: u16 = 0x200;
    /// In a NEW request: create it.
    pub const NLM_F_CREATE: u16 = 0x400;
    /// In an error message: the original request is not echoed.
    pub const NLM_F_CAPPED: u16 = 0x100;
    /// In an error message: extended-ack attributes follow.
    pub const NLM_F_ACK_TLVS: u16 = 0x200;
    /// `NLMSGERR_ATTR_MSG`: a human-readable error string.
    pub const NLMSGERR_ATTR_MSG: u16 = 1;
    /// Attribute type flag: the payload is nested attributes.
    pub const NLA_F_NESTED: u16 = 0x8000;
    /// Attribute type bits without the flags.
    pub const NLA_TYPE_MASK: u16 = 0x3fff;
}
use consts::*;

/// Bytes that are not the netlink message they claim to be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink data: {0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    pub(crate) fn new(what: impl fmt::Display) -> Self {
        DecodeError(what.to_string())
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type: a family id, or `NLMSG_ERROR`/`NLMSG_DONE`.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number, echoed in replies.
    pub seq: u32,
    /// Port id of the sender (0 for the kernel).
    pub pid: u32,
}

/// Builds one generic-netlink request; the closure appends attributes.
pub fn genl_request(header: Header, cmd: u8, version: u8, attrs: impl FnOnce(&mut AttrWriter<'_>)) -> Vec<u8> {
    request(header, &[cmd, version, 0, 0], attrs)
}

/// Builds one request: header, the family's fixed header, attributes.
pub fn request(header: Header, fixed: &[u8], attrs: impl FnOnce(&mut AttrWriter<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; NLMSG_HDRLEN];
    buf.extend_from_slice(fixed);
    buf.resize(align4(buf.len()), 0);
    attrs(&mut AttrWriter { buf: &mut buf });
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&header.ty.to_ne_bytes());
    buf[6..8].copy_from_slice(&header.flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&header.seq.to_ne_bytes());
    buf[12..16].copy_from_slice(&header.pid.to_ne_bytes());
    buf
}

/// Appends netlink attributes (type-length-value, 4-byte aligned).
pub struct AttrWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl AttrWriter<'_> {
    /// An attribute with a raw payload.
    pub fn bytes(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }
    /// A `u8` attribute.
    pub fn u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.bytes(ty, &[v])
    }
    /// A host-order `u16` attribute.
    pub fn u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    /// A host-order `u32` attribute.
    pub fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    /// A host-order `i32` attribute.
    pub fn i32(&mut self, ty: u16, v: i32) -> &mut Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    /// A NUL-terminated string attribute.
    pub fn string(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(ty, &v)
    }
    /// A nested attribute whose content the closure writes.
    pub fn nested(&mut self, ty: u16, inner: impl FnOnce(&mut AttrWriter<'_>)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(&mut AttrWriter { buf: self.buf });
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }
}

/// One attribute: its type (flags stripped) and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Attribute type.
    pub ty: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    fn fixed<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        self.payload.get(..N).filter(|_| self.payload.len() == N).map(|b| b.try_into().expect("N bytes")).ok_or_else(
            || DecodeError::new(format!("attribute {} has {} bytes, expected {N}", self.ty, self.payload.len())),
        )
    }
    /// As a `u8`.
    pub fn u8(&self) -> Result<u8, DecodeError> {
        self.fixed::<1>().map(|b| b[0])
    }
    /// As a host-order `u16`.
    pub fn u16(&self) -> Result<u16, DecodeError> {
        self.fixed().map(u16::from_ne_bytes)
    }
    /// As a network-order `u16`.
    pub fn be16(&self) -> Result<u16, DecodeError> {
        self.fixed().map(u16::from_be_bytes)
    }
    /// As a host-order `u32`.
    pub fn u32(&self) -> Result<u32, DecodeError> {
        self.fixed().map(u32::from_ne_bytes)
    }
    /// As a host-order `u64`.
    pub fn u64(&self) -> Result<u64, DecodeError> {
        self.fixed().map(u64::from_ne_bytes)
    }
    /// As raw bytes of a fixed size (addresses).
    pub fn array<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        self.fixed()
    }
    /// As a string (NUL terminator and anything after it dropped).
    pub fn string(&self) -> String {
        let end = self.payload.iter().position(|&b| b == 0).unwrap_or(self.payload.len());
        String::from_utf8_lossy(&self.payload[..end]).into_owned()
    }
    /// The nested attributes.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }
}

/// Iterates attributes; a malformed one ends the iteration with an error.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match split_attr(self.rest) {
            Ok((attr, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(attr))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The first attribute of `buf` and the bytes it occupies with padding.
fn split_attr(buf: &[u8]) -> Result<(Attr<'_>, usize), DecodeError> {
    let left = buf.len();
    if left < NLA_HDRLEN {
        return Err(DecodeError::new(format!("{left} trailing bytes, too few for an attribute")));
    }
    let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
    let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
    if len < NLA_HDRLEN || len > left {
        return Err(DecodeError::new(format!("attribute {ty} claims {len} bytes, {left} left")));
    }
    Ok((Attr { ty, payload: &buf[NLA_HDRLEN..len] }, align4(len).min(left)))
}

/// A message received from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A generic-netlink message: a reply or an event.
    Genl {
        /// Its header.
        header: Header,
        /// Command (`genlmsghdr.cmd`).
        cmd: u8,
        /// The attributes, not yet parsed.
        attrs: &'a [u8],
    },
    /// A message of a classic netlink family (rtnetlink): its header and
    /// body (the family's fixed header, then attributes).
    Data {
        /// Its header.
        header: Header,
        /// The body.
        body: &'a [u8],
    },
    /// Acknowledgement of request `seq`.
    Ack {
        /// Sequence number of the request.
        seq: u32,
    },
    /// Request `seq` failed.
    Error {
        /// Sequence number of the request.
        seq: u32,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack message, if it sent one.
        message: Option<String>,
    },
    /// End of a dump.
    Done {
        /// Sequence number of the request.
        seq: u32,
    },
    /// The kernel dropped messages.
    Overrun,
}

/// Splits a generic-netlink datagram into messages.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>, DecodeError>> {
    split(buf, true)
}

/// Splits a datagram of a classic family (rtnetlink) into messages.
pub fn route_messages(buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>, DecodeError>> {
    split(buf, false)
}

fn split(buf: &[u8], generic: bool) -> impl Iterator<Item = Result<Message<'_>, DecodeError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let result = parse_one(rest, generic);
        match &result {
            Ok((_, used)) => rest = &rest[(*used).min(rest.len())..],
            Err(_) => rest = &[],
        }
        Some(result.map(|(m, _)| m))
    })
}

fn parse_one(buf: &[u8], generic: bool) -> Result<(Message<'_>, usize), DecodeError> {
    if buf.len() < NLMSG_HDRLEN {
        return Err(DecodeError::new(format!("{} bytes, too few for a message header", buf.len())));
    }
    let u32_at = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    let len = u32_at(0) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(DecodeError::new(format!("message claims {len} bytes, {} available", buf.len())));
    }
    let header = Header {
        ty: u16::from_ne_bytes([buf[4], buf[5]]),
        flags: u16::from_ne_bytes([buf[6], buf[7]]),
        seq: u32_at(8),
        pid: u32_at(12),
    };
    let body = &buf[NLMSG_HDRLEN..len];
    let message = match header.ty {
        NLMSG_ERROR => parse_error(header, body)?,
        NLMSG_DONE => parse_done(header, body),
        NLMSG_OVERRUN => Message::Overrun,
        _ if !generic => Message::Data { header, body },
        _ => {
            if body.len() < GENL_HDRLEN {
                return Err(DecodeError::new("generic netlink message without its header"));
            }
            Message::Genl { header, cmd: body[0], attrs: &body[GENL_HDRLEN..] }
        }
    };
    Ok((message, align4(len)))
}

/// The end of a dump. A dump that failed says so here: a negative errno,
/// then (when flagged) extended-ack attributes.
fn parse_done(header: Header, body: &[u8]) -> Message<'_> {
    let error = body.get(0..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
    if error >= 0 {
        return Message::Done { seq: header.seq };
    }
    let mut message = None;
    if header.flags & NLM_F_ACK_TLVS != 0 {
        for attr in Attrs::new(&body[4..]).flatten() {
            if attr.ty == NLMSGERR_ATTR_MSG {
                message = Some(attr.string());
            }
        }
    }
    // Saturating: a corrupt i32::MIN must not overflow.
    Message::Error { seq: header.seq, errno: error.saturating_neg(), message }
}

/// `struct nlmsgerr`: errno, the request's header (and body unless
/// capped), then extended-ack attributes when flagged.
fn parse_error(header: Header, body: &[u8]) -> Result<Message<'_>, DecodeError> {
    if body.len() < 4 + NLMSG_HDRLEN {
        return Err(DecodeError::new("error message too short"));
    }
    let error = i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes"));
    if error == 0 {
        return Ok(Message::Ack { seq: header.seq });
    }
    if error > 0 {
        return Err(DecodeError::new("error message with a positive errno"));
    }
    let mut message = None;
    if header.flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if header.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32::from_ne_bytes(body[4..8].try_into().expect("4 bytes")) as usize
        };
        let tlvs = body.get(4 + align4(echoed)..).unwrap_or(&[]);
        for attr in Attrs::new(tlvs).flatten() {
            if attr.ty == NLMSGERR_ATTR_MSG {
                message = Some(attr.string());
            }
        }
    }
    Ok(Message::Error { seq: header.seq, errno: error.saturating_neg(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: u16) -> Header {
        Header { ty, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 7, pid: 0 }
    }

    #[test]
    fn request_round_trips_through_the_parser() {
        let msg = genl_request(header(0x1c), 10, 1, |a| {
            a.u32(4, 0xabcd).nested(1, |n| {
                n.u16(1, 2).u8(2, 5).bytes(3, &[10, 1, 0, 2]);
            });
        });
        assert_eq!(msg.len() % 4, 0);
        let parsed: Vec<_> = messages(&msg).collect::<Result<_, _>>().unwrap();
        let Message::Genl { header: h, cmd, attrs } = &parsed[0] else { panic!("{parsed:?}") };
        assert_eq!((h.ty, h.seq, *cmd), (0x1c, 7, 10));
        let attrs: Vec<_> = Attrs::new(attrs).collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs[0].u32().unwrap(), 0xabcd);
        assert_eq!(attrs[1].ty, 1, "nested flag stripped");
        let inner: Vec<_> = attrs[1].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].u16().unwrap(), 2);
        assert_eq!(inner[1].u8().unwrap(), 5);
        assert_eq!(inner[2].array::<4>().unwrap(), [10, 1, 0, 2]);
    }

    fn error_message(errno: i32, flags: u16, ext: Option<&str>) -> Vec<u8> {
        let request = genl_request(header(0x1c), 10, 1, |a| {
            a.u32(4, 1);
        });
        let mut body = (-errno).to_ne_bytes().to_vec();
        if flags & NLM_F_CAPPED != 0 {
            body.extend_from_slice(&request[..NLMSG_HDRLEN]);
        } else {
            body.extend_from_slice(&request);
        }
        if let Some(text) = ext {
            AttrWriter { buf: &mut body }.string(NLMSGERR_ATTR_MSG, text);
        }
        let h = Header { ty: NLMSG_ERROR, flags, seq: 7, pid: 0 };
        let mut msg = genl_request(h, 0, 0, |_| {});
        msg.truncate(NLMSG_HDRLEN);
        msg.extend_from_slice(&body);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn errors_with_and_without_extended_ack() {
        let m = error_message(libc::EINVAL, NLM_F_ACK_TLVS, Some("invalid token"));
        let parsed = messages(&m).next().unwrap().unwrap();
        assert_eq!(parsed, Message::Error { seq: 7, errno: libc::EINVAL, message: Some("invalid token".into()) });
        let m = error_message(libc::EADDRNOTAVAIL, NLM_F_ACK_TLVS | NLM_F_CAPPED, Some("no addr"));
        let parsed = messages(&m).next().unwrap().unwrap();
        assert_eq!(parsed, Message::Error { seq: 7, errno: libc::EADDRNOTAVAIL, message: Some("no addr".into()) });
        let m = error_message(libc::EPERM, 0, None);
        assert_eq!(messages(&m).next().unwrap().unwrap(), Message::Error { seq: 7, errno: libc::EPERM, message: None });
        let m = error_message(0, NLM_F_CAPPED, None);
        assert_eq!(messages(&m).next().unwrap().unwrap(), Message::Ack { seq: 7 });
    }

    fn done_message(error: i32, ext: Option<&str>) -> Vec<u8> {
        let flags = if ext.is_some() { NLM_F_ACK_TLVS | NLM_F_MULTI } else { NLM_F_MULTI };
        request(Header { ty: NLMSG_DONE, flags, seq: 9, pid: 0 }, &error.to_ne_bytes(), |a| {
            if let Some(text) = ext {
                a.string(NLMSGERR_ATTR_MSG, text);
            }
        })
    }

    #[test]
    fn a_dump_ends_with_done_or_with_the_error_that_stopped_it() {
        assert_eq!(messages(&done_message(0, None)).next().unwrap().unwrap(), Message::Done { seq: 9 });
        let failed = done_message(-libc::EINVAL, Some("invalid token"));
        let parsed = route_messages(&failed).next().unwrap().unwrap();
        assert_eq!(parsed, Message::Error { seq: 9, errno: libc::EINVAL, message: Some("invalid token".into()) });
        let bare = done_message(-libc::ENOENT, None);
        assert_eq!(
            messages(&bare).next().unwrap().unwrap(),
            Message::Error { seq: 9, errno: libc::ENOENT, message: None }
        );
        // Old kernels send DONE without a body.
        let empty = request(Header { ty: NLMSG_DONE, flags: 0, seq: 9, pid: 0 }, &[], |_| {});
        assert_eq!(messages(&empty).next().unwrap().unwrap(), Message::Done { seq: 9 });
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let cases: [&[u8]; 5] = [
            &[1, 2, 3],
            &[8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xff, 0xff, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[17, 0, 0, 0, 0x1c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[20, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for case in cases {
            assert!(messages(case).any(|m| m.is_err()), "{case:?}");
        }
        assert!(Attrs::new(&[2, 0, 1, 0]).next().unwrap().is_err(), "length below header");
        assert!(Attrs::new(&[200, 0, 1, 0, 0]).next().unwrap().is_err(), "length beyond buffer");
        assert!(Attrs::new(&[1, 2]).next().unwrap().is_err(), "truncated header");
        let short = Attr { ty: 1, payload: &[1, 2] };
        assert!(short.u32().is_err());
    }

    /// Every prefix and every single-byte corruption of valid input parses
    /// without panicking (a poor man's fuzzer that runs in every test run).
    #[test]
    fn corrupted_input_never_panics() {
        let valid = error_message(libc::EINVAL, NLM_F_ACK_TLVS, Some("invalid token"));
        for cut in 0..valid.len() {
            let _ = messages(&valid[..cut]).count();
        }
        for i in 0..valid.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = valid.clone();
                m[i] = v;
                for msg in messages(&m).flatten() {
                    if let Message::Genl { attrs, .. } = msg {
                        let _ = Attrs::new(attrs).count();
                    }
                }
            }
        }
    }
}
