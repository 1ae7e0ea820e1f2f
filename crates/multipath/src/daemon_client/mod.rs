//! Handing connections to the `mptcp pmd` daemon: the connection's socket
//! itself travels over a Unix socket (`SCM_RIGHTS`), so the daemon proves
//! ownership from the descriptor and reads the token from it; nobody can
//! name another program's connection.
//!
//! The daemon of a network namespace listens on the abstract Unix socket
//! [`ABSTRACT_NAME`], which the kernel scopes to that namespace: a program
//! finds the daemon of its own namespace and no other. A daemon may listen
//! on a filesystem socket as well (`mptcp pmd --socket PATH`).
//!
//! Protocol, one `SOCK_SEQPACKET` message each way, typed here for both
//! sides ([`Request`], [`Reply`]): `manage <service>` (or `manage <service>
//! run` from the `mptcp run` preload library, see [`Origin`]) with one
//! descriptor attached; `ok <token>` or `error <reason>`. And `tables`, which anyone
//! may ask: `tables <name>=<count> ...`, the sizes of the daemon's tables
//! (no token, address or user in them). `check <service> <program>`:
//! `granted` or `error <reason>`. And `list`: one `conn ...` message per
//! managed connection the asker may see ([`Listed`]: root sees all, a user
//! their own), then `end`. `first <address>`, which anyone may ask before
//! connecting: `first routed`, `first ordered <local>...` or `first race
//! <local>...` ([`FirstPath`]).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::{sys, Enforcer, FirstPath, PathManager, ServiceType};

mod listing;
pub use listing::{Listed, ListedSubflow, MAX_LISTED};

/// The abstract socket name (without its leading NUL) of a network
/// namespace's daemon.
pub const ABSTRACT_NAME: &str = "multipath-pmd";

/// Longest request or reply, bytes.
pub const MAX_MESSAGE: usize = 256;

/// How long a registration may take, connecting included: the daemon
/// answers in milliseconds, or it is stuck.
const REGISTER_WITHIN: Duration = Duration::from_secs(2);

/// How long a connect waits for the daemon's advice on where to start: it
/// answers in well under a millisecond, or it is stuck.
const FIRST_PATH_WITHIN: Duration = Duration::from_millis(200);

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Enforce `service` on the connection whose socket is attached.
    Manage {
        /// The service type asked for.
        service: ServiceType,
        /// Who asks: shown by `mptcp ls`, grants nothing.
        origin: Origin,
    },
    /// The sizes of the daemon's tables.
    Tables,
    /// The managed connections the asker may see.
    List,
    /// The asking process (which `mptcp run` is about to replace with a
    /// program, keeping its pid) and its descendants: their connections
    /// nobody registers get `service` (Go, static programs, anything past
    /// the preload library), as long as the process lives.
    Run {
        /// The service type for their connections.
        service: ServiceType,
    },
    /// Whether connections of `program`, run by the asking user, would be
    /// granted `service` (`mptcp run` asks before it starts a program).
    /// Advisory: each registration is checked again, against the program
    /// the kernel recorded.
    Check {
        /// The service type to be asked for.
        service: ServiceType,
        /// The program's executable, as `/proc/<pid>/exe` will show it.
        program: PathBuf,
    },
    /// Where a new aggregate or interactive connection to `remote` should
    /// start ([`Reply::FirstPath`]), asked before it connects.
    FirstPath {
        /// The peer's address.
        remote: IpAddr,
    },
}

/// Who registers a connection, as `mptcp ls` shows it. A label only: the
/// daemon checks who asks from what the kernel recorded, never from this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The program itself (this library, the C API).
    #[default]
    Registered,
    /// The `mptcp run` preload library, on the program's behalf.
    Run,
}

impl Origin {
    /// The name `mptcp ls` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Registered => "registered",
            Origin::Run => "run",
        }
    }
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The connection is managed; its token.
    Managed {
        /// The connection's token, read from the socket by the daemon.
        token: u32,
    },
    /// Not managed, and why.
    Refused {
        /// The daemon's reason, for the user.
        reason: String,
    },
    /// Each table's name (lowercase letters and `_`) and size.
    Tables(Vec<(String, u64)>),
    /// A [`Request::Check`] would be granted.
    Granted,
    /// One connection of a [`Request::List`] answer.
    Listed(Box<Listed>),
    /// The end of a [`Request::List`] answer.
    End,
    /// The answer to a [`Request::FirstPath`].
    FirstPath(FirstPath),
}

/// Bytes that are not a message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("request longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("request is not text")]
    NotText,
    /// Not a known request or reply.
    #[error("malformed request {0:?} (expected `manage <service>`, `run <service>`, `check <service> <program>`, `first <address>`, `list` or `tables`)")]
    Malformed(String),
    /// A service type this version does not know.
    #[error(transparent)]
    UnknownService(#[from] crate::UnknownServiceType),
}

fn text(bytes: &[u8]) -> Result<&str, ProtocolError> {
    text_within(bytes, MAX_MESSAGE)
}

fn text_within(bytes: &[u8], max: usize) -> Result<&str, ProtocolError> {
    if bytes.len() > max {
        return Err(ProtocolError::TooLong);
    }
    std::str::from_utf8(bytes).map(str::trim).map_err(|_| ProtocolError::NotText)
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Manage { service, origin: Origin::Registered } => format!("manage {service}").into_bytes(),
            Request::Manage { service, origin: Origin::Run } => format!("manage {service} run").into_bytes(),
            Request::Tables => b"tables".to_vec(),
            Request::List => b"list".to_vec(),
            Request::Run { service } => format!("run {service}").into_bytes(),
            Request::FirstPath { remote } => format!("first {remote}").into_bytes(),
            Request::Check { service, program } => {
                let mut out = format!("check {service} ").into_bytes();
                out.extend_from_slice(program.as_os_str().as_encoded_bytes());
                out
            }
        }
    }

    /// Reads a request.
    pub fn decode(bytes: &[u8]) -> Result<Request, ProtocolError> {
        let text = text(bytes)?;
        if let Some(service) = text.strip_prefix("run ") {
            return Ok(Request::Run { service: service.parse()? });
        }
        if let Some(rest) = text.strip_prefix("check ") {
            return match rest.split_once(' ') {
                Some((service, program)) if program.starts_with('/') => {
                    Ok(Request::Check { service: service.parse()?, program: PathBuf::from(program) })
                }
                _ => Err(ProtocolError::Malformed(text.to_owned())),
            };
        }
        if let Some(remote) = text.strip_prefix("first ") {
            return remote
                .parse()
                .map(|remote| Request::FirstPath { remote })
                .map_err(|_| ProtocolError::Malformed(text.to_owned()));
        }
        match text {
            "tables" => return Ok(Request::Tables),
            "list" => return Ok(Request::List),
            _ => {}
        }
        match text.split_once(' ') {
            Some(("manage", rest)) => {
                let (service, origin) = match rest.trim().split_once(' ') {
                    None => (rest.trim(), Origin::Registered),
                    Some((service, "run")) => (service, Origin::Run),
                    Some(_) => return Err(ProtocolError::Malformed(text.to_owned())),
                };
                Ok(Request::Manage { service: service.parse()?, origin })
            }
            _ => Err(ProtocolError::Malformed(text.to_owned())),
        }
    }
}

impl Reply {
    /// The reply's bytes (a reason is cut to fit [`MAX_MESSAGE`]; a listed
    /// connection's program path to fit [`MAX_LISTED`]).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Listed(listed) => {
                let mut out = listed.encode();
                if out.len() > MAX_LISTED {
                    let program = Listed { program: None, ..(**listed).clone() };
                    out = program.encode();
                }
                out.into_bytes()
            }
            Reply::End => b"end".to_vec(),
            Reply::FirstPath(first) => {
                let (kind, addrs) = match first {
                    FirstPath::Ordered(addrs) => ("ordered", addrs.as_slice()),
                    FirstPath::Race(addrs) => ("race", addrs.as_slice()),
                    _ => ("routed", &[][..]),
                };
                let mut out = format!("first {kind}");
                // Addresses that do not fit are left out whole.
                for addr in addrs {
                    let item = format!(" {addr}");
                    if out.len() + item.len() > MAX_MESSAGE {
                        break;
                    }
                    out.push_str(&item);
                }
                out.into_bytes()
            }
            Reply::Managed { token } => format!("ok {token}").into_bytes(),
            Reply::Granted => b"granted".to_vec(),
            Reply::Refused { reason } => {
                let mut out = format!("error {reason}");
                if out.len() > MAX_MESSAGE {
                    let mut end = MAX_MESSAGE;
                    while !out.is_char_boundary(end) {
                        end -= 1;
                    }
                    out.truncate(end);
                }
                out.into_bytes()
            }
            Reply::Tables(counts) => {
                let mut out = String::from("tables");
                for (name, n) in counts {
                    // What does not fit is left out whole.
                    let item = format!(" {name}={n}");
                    if out.len() + item.len() > MAX_MESSAGE {
                        break;
                    }
                    out.push_str(&item);
                }
                out.into_bytes()
            }
        }
    }

    /// Reads a reply.
    pub fn decode(bytes: &[u8]) -> Result<Reply, ProtocolError> {
        let text = text_within(bytes, MAX_LISTED)?;
        if let Some(fields) = text.strip_prefix("conn ") {
            return Ok(Reply::Listed(Box::new(Listed::decode(fields)?)));
        }
        if text.len() > MAX_MESSAGE {
            return Err(ProtocolError::TooLong);
        }
        match text {
            "granted" => return Ok(Reply::Granted),
            "end" => return Ok(Reply::End),
            _ => {}
        }
        if let Some(first) = text.strip_prefix("first ") {
            let mut words = first.split_whitespace();
            let malformed = || ProtocolError::Malformed(text.to_owned());
            let kind = words.next().ok_or_else(malformed)?;
            let addrs: Vec<IpAddr> = words.map(|w| w.parse().map_err(|_| malformed())).collect::<Result<_, _>>()?;
            return match (kind, addrs.is_empty()) {
                ("routed", true) => Ok(Reply::FirstPath(FirstPath::Routed)),
                ("ordered", false) => Ok(Reply::FirstPath(FirstPath::Ordered(addrs))),
                ("race", false) => Ok(Reply::FirstPath(FirstPath::Race(addrs))),
                _ => Err(malformed()),
            };
        }
        if let Some(token) = text.strip_prefix("ok ") {
            let token = token.parse().map_err(|_| ProtocolError::Malformed(text.to_owned()))?;
            return Ok(Reply::Managed { token });
        }
        if let Some(reason) = text.strip_prefix("error ") {
            return Ok(Reply::Refused { reason: reason.to_owned() });
        }
        let malformed = || ProtocolError::Malformed(text.to_owned());
        let counts = match text.strip_prefix("tables") {
            Some(counts) if counts.is_empty() || counts.starts_with(' ') => counts,
            _ => return Err(malformed()),
        };
        let name_ok = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        counts
            .split_whitespace()
            .map(|item| match item.split_once('=') {
                Some((name, n)) if name_ok(name) && !n.starts_with('+') => {
                    Ok((name.to_owned(), n.parse().map_err(|_| malformed())?))
                }
                _ => Err(malformed()),
            })
            .collect::<Result<_, _>>()
            .map(Reply::Tables)
    }
}

/// Where a daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An abstract Unix socket name, scoped to a network namespace.
    Abstract(String),
    /// A filesystem socket (visible from every namespace that shares the
    /// filesystem; the daemon refuses connections of other namespaces).
    Path(PathBuf),
}

impl Address {
    /// The socket address.
    pub fn sockaddr(&self) -> io::Result<socket2::SockAddr> {
        match self {
            // A leading NUL makes the name abstract.
            Address::Abstract(name) => socket2::SockAddr::unix(format!("\0{name}")),
            Address::Path(path) => socket2::SockAddr::unix(path),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Abstract(name) => write!(f, "@{name}"),
            Address::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The daemon as an [`Enforcer`].
#[derive(Clone, Debug)]
pub struct Daemon {
    address: Address,
}

impl Daemon {
    /// The daemon listening on the filesystem socket `socket`.
    pub fn at(socket: impl Into<PathBuf>) -> Self {
        Daemon { address: Address::Path(socket.into()) }
    }

    /// The daemon of the calling thread's network namespace.
    pub fn of_this_namespace() -> Self {
        Daemon { address: Address::Abstract(ABSTRACT_NAME.to_owned()) }
    }

    /// The daemon at `MULTIPATH_PMD_SOCKET` (a path, or `@name` for an
    /// abstract socket), else the one of this network namespace.
    pub fn discover() -> Self {
        match std::env::var_os("MULTIPATH_PMD_SOCKET") {
            Some(s) => match s.to_str().and_then(|s| s.strip_prefix('@')) {
                Some(name) => Daemon { address: Address::Abstract(name.to_owned()) },
                None => Daemon::at(s),
            },
            None => Daemon::of_this_namespace(),
        }
    }

    /// Where this daemon listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Registers the connection behind `socket`; returns its token. Blocks
    /// for at most a couple of seconds. No daemon listening is
    /// [`io::ErrorKind::NotFound`].
    pub fn register(&self, socket: BorrowedFd<'_>, service: ServiceType) -> io::Result<u32> {
        self.register_as(socket, service, Origin::Registered)
    }

    /// Like [`Daemon::register`], labelled with who registers it.
    pub fn register_as(&self, socket: BorrowedFd<'_>, service: ServiceType, origin: Origin) -> io::Result<u32> {
        let conn = self.connect()?;
        sys::send_with_fd(conn.as_fd(), &Request::Manage { service, origin }.encode(), socket)?;
        match self.reply(&conn)? {
            Reply::Managed { token } => Ok(token),
            Reply::Refused { reason } => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the path-manager daemon refused: {reason}"),
            )),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
        }
    }

    /// Whether connections of `program` run by this user would get
    /// `service` ([`Request::Check`]). `Ok(Err(reason))`: not granted.
    pub fn check(&self, service: ServiceType, program: &std::path::Path) -> io::Result<Result<(), String>> {
        let request = Request::Check { service, program: program.to_owned() }.encode();
        if request.len() > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "program path too long to ask about"));
        }
        let conn = self.connect()?;
        io::Write::write_all(&mut &conn, &request)?;
        match self.reply(&conn)? {
            Reply::Granted => Ok(Ok(())),
            Reply::Refused { reason } => Ok(Err(reason)),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
        }
    }

    /// Where a new aggregate or interactive connection to `remote` should
    /// start, by the daemon's measurements ([`Request::FirstPath`]). No
    /// daemon listening is [`io::ErrorKind::NotFound`].
    pub fn first_path(&self, remote: IpAddr) -> io::Result<FirstPath> {
        // Advice on every connect: a daemon slower than this is not waited for.
        let conn = self.connect_within(FIRST_PATH_WITHIN)?;
        io::Write::write_all(&mut &conn, &Request::FirstPath { remote }.encode())?;
        match self.reply(&conn)? {
            Reply::FirstPath(first) => Ok(first),
            Reply::Refused { reason } => Err(io::Error::other(format!("the path-manager daemon said: {reason}"))),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
        }
    }

    /// The sizes of the daemon's tables, by name (see `multipath_pm::Tables`).
    pub fn tables(&self) -> io::Result<Vec<(String, u64)>> {
        let conn = self.connect()?;
        io::Write::write_all(&mut &conn, &Request::Tables.encode())?;
        match self.reply(&conn)? {
            Reply::Tables(counts) => Ok(counts),
            Reply::Refused { reason } => Err(io::Error::other(format!("the path-manager daemon said: {reason}"))),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
        }
    }

    /// Asks that this process and its descendants get `service` for the
    /// connections they do not register ([`Request::Run`]). `Ok(Err(reason))`:
    /// refused.
    pub fn begin_run(&self, service: ServiceType) -> io::Result<Result<(), String>> {
        let conn = self.connect()?;
        io::Write::write_all(&mut &conn, &Request::Run { service }.encode())?;
        match self.reply(&conn)? {
            Reply::Granted => Ok(Ok(())),
            Reply::Refused { reason } => Ok(Err(reason)),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
        }
    }

    /// The managed connections this user may see (root: all).
    pub fn list(&self) -> io::Result<Vec<Listed>> {
        let conn = self.connect()?;
        io::Write::write_all(&mut &conn, &Request::List.encode())?;
        let mut listed = Vec::new();
        loop {
            match self.reply(&conn)? {
                Reply::Listed(l) => listed.push(*l),
                Reply::End => return Ok(listed),
                Reply::Refused { reason } => {
                    return Err(io::Error::other(format!("the path-manager daemon said: {reason}")))
                }
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "the daemon answered out of turn")),
            }
        }
    }

    /// The daemon's next reply on `conn`.
    fn reply(&self, conn: &UnixStream) -> io::Result<Reply> {
        let mut reply = vec![0u8; MAX_LISTED];
        let n = match io::Read::read(&mut &*conn, &mut reply) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the path-manager daemon at {} did not answer in time", self.address),
                ))
            }
            r => r?,
        };
        Reply::decode(&reply[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the path-manager daemon said: {e}")))
    }

    /// Connects to the daemon, within [`REGISTER_WITHIN`] (a full backlog
    /// would block `connect` itself).
    fn connect(&self) -> io::Result<UnixStream> {
        self.connect_within(REGISTER_WITHIN)
    }

    /// Connects to the daemon; each wait (connect, send, reply) is limited
    /// to `limit`.
    fn connect_within(&self, limit: Duration) -> io::Result<UnixStream> {
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
        sock.set_write_timeout(Some(limit))?;
        sock.set_read_timeout(Some(limit))?;
        match sock.connect(&self.address.sockaddr()?) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) => {
                let hint = match &self.address {
                    Address::Abstract(_) => "start `mptcp pmd` in this network namespace".to_owned(),
                    Address::Path(p) if e.raw_os_error() == Some(libc::ECONNREFUSED) => format!(
                        "{} is a socket nobody listens on (its daemon died?): start `mptcp pmd`, which replaces it",
                        p.display()
                    ),
                    Address::Path(_) => "start `mptcp pmd`".to_owned(),
                };
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no path-manager daemon at {}: {hint}", self.address),
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the path-manager daemon at {} accepts no connection (backlog full)", self.address),
                ))
            }
            Err(e) => return Err(e),
        }
        // Anyone may bind an abstract name first: a connection's socket
        // goes only to a daemon run by root (or by this very user, who
        // gains nothing by it), as the kernel recorded it at `listen`.
        let uid = listener_uid(sock.as_fd())?;
        // SAFETY: geteuid has no preconditions.
        let own = unsafe { libc::geteuid() };
        if uid != 0 && uid != own {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is held by uid {uid}, not by root: not handing it a connection", self.address),
            ));
        }
        // A connected seqpacket socket reads and writes like a stream
        // socket, one message per call.
        Ok(UnixStream::from(std::os::fd::OwnedFd::from(sock)))
    }
}

/// The uid of the process listening at the other end (`SO_PEERCRED`).
fn listener_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = [0u8; 12]; // struct ucred: pid, uid, gid
    let n = sys::getsockopt_bytes(sock, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred)?;
    if n < 8 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "SO_PEERCRED too short"));
    }
    Ok(u32::from_ne_bytes(cred[4..8].try_into().expect("4 bytes")))
}

impl Enforcer for Daemon {
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), crate::EnforceError> {
        match self.register(socket, service) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(crate::EnforceError::refused(e.to_string())),
            Err(e) => Err(crate::EnforceError::failed(e)),
        }
    }

    fn kind(&self) -> PathManager {
        PathManager::Daemon
    }

    fn first_path(&self, remote: IpAddr, _service: ServiceType) -> FirstPath {
        match Daemon::first_path(self, remote) {
            Ok(first) => first,
            // No daemon is the normal case, and silent.
            Err(e) if e.kind() == io::ErrorKind::NotFound => FirstPath::Routed,
            Err(e) => {
                tracing::debug!(error = %e, "the daemon did not say where to start");
                FirstPath::Routed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        for service in [ServiceType::None, ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate] {
            for origin in [Origin::Registered, Origin::Run] {
                let r = Request::Manage { service, origin };
                assert_eq!(Request::decode(&r.encode()), Ok(r));
            }
        }
        assert_eq!(Request::decode(&Request::Tables.encode()), Ok(Request::Tables));
        let check = Request::Check { service: ServiceType::Aggregate, program: "/usr/bin/my curl".into() };
        assert_eq!(check.encode(), b"check aggregate /usr/bin/my curl");
        assert_eq!(Request::decode(&check.encode()), Ok(check));
        assert_eq!(Reply::decode(&Reply::Granted.encode()), Ok(Reply::Granted));
        assert_eq!(Request::decode(&Request::List.encode()), Ok(Request::List));
        let run = Request::Run { service: ServiceType::Interactive };
        assert_eq!(Request::decode(&run.encode()), Ok(run));
        assert_eq!(Reply::decode(&Reply::End.encode()), Ok(Reply::End));
        let tables = Reply::Tables(vec![("connections".into(), 1000), ("path_probes".into(), 0)]);
        assert_eq!(tables.encode(), b"tables connections=1000 path_probes=0");
        for reply in [Reply::Managed { token: u32::MAX }, Reply::Refused { reason: "no entitlement".into() }, tables] {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
        for remote in ["10.0.0.2", "fd00::2"] {
            let first = Request::FirstPath { remote: remote.parse().unwrap() };
            assert_eq!(first.encode(), format!("first {remote}").as_bytes());
            assert_eq!(Request::decode(&first.encode()), Ok(first));
        }
        let (wifi, cell): (IpAddr, IpAddr) = ("10.1.0.2".parse().unwrap(), "fd00:2::2".parse().unwrap());
        let ordered = Reply::FirstPath(FirstPath::Ordered(vec![cell, wifi]));
        assert_eq!(ordered.encode(), b"first ordered fd00:2::2 10.1.0.2");
        for reply in [ordered, Reply::FirstPath(FirstPath::Race(vec![wifi])), Reply::FirstPath(FirstPath::Routed)] {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
    }

    #[test]
    fn a_first_path_answer_that_does_not_fit_keeps_whole_addresses() {
        let many: Vec<IpAddr> = (0..40).map(|i| format!("fd00:{i}::1234:5678:9abc:def0").parse().unwrap()).collect();
        let bytes = Reply::FirstPath(FirstPath::Race(many.clone())).encode();
        assert!(bytes.len() <= MAX_MESSAGE);
        match Reply::decode(&bytes) {
            Ok(Reply::FirstPath(FirstPath::Race(kept))) => assert!(!kept.is_empty() && many.starts_with(&kept)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_gets_a_reason() {
        assert_eq!(Request::decode(b"\xff\xfe"), Err(ProtocolError::NotText));
        assert_eq!(Request::decode(&[b'a'; MAX_MESSAGE + 1]), Err(ProtocolError::TooLong));
        assert!(matches!(Request::decode(b"hello there"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(Request::decode(b"manage"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(Request::decode(b"manage handover later"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(Request::decode(b"check aggregate curl"), Err(ProtocolError::Malformed(_))), "relative");
        assert!(matches!(Request::decode(b"check aggregate"), Err(ProtocolError::Malformed(_))));
        assert!(Request::decode(b"run faster").is_err());
        let e = Request::decode(b"manage redundant").unwrap_err();
        assert!(e.to_string().contains("unknown multipath service type"), "{e}");
        assert!(matches!(Reply::decode(b"ok x"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(Reply::decode(b"maybe"), Err(ProtocolError::Malformed(_))));
        for bad in ["tablesx=1", "tables x", "tables x=", "tables X=1", "tables x=-1", "tables x=+1", "tables =1"] {
            assert!(matches!(Reply::decode(bad.as_bytes()), Err(ProtocolError::Malformed(_))), "{bad}");
        }
        assert!(matches!(Request::decode(b"tables please"), Err(ProtocolError::Malformed(_))));
        for bad in ["first", "first ", "first example.com", "first 10.0.0.2 10.0.0.3", "first 10.0.0.2:80"] {
            assert!(matches!(Request::decode(bad.as_bytes()), Err(ProtocolError::Malformed(_))), "{bad}");
        }
        for bad in ["first", "first routed 10.1.0.2", "first ordered", "first race x", "first maybe 10.1.0.2"] {
            assert!(matches!(Reply::decode(bad.as_bytes()), Err(ProtocolError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_on_a_character_boundary() {
        let reply = Reply::Refused { reason: "é".repeat(MAX_MESSAGE) };
        let bytes = reply.encode();
        assert!(bytes.len() <= MAX_MESSAGE);
        assert!(std::str::from_utf8(&bytes).is_ok());
    }

    #[test]
    fn addresses_say_where_they_are() {
        assert_eq!(Daemon::of_this_namespace().address().to_string(), "@multipath-pmd");
        assert_eq!(Daemon::at("/run/x.sock").address().to_string(), "/run/x.sock");
        let abstract_ = Address::Abstract("x".into()).sockaddr().unwrap();
        assert_eq!(abstract_.as_abstract_namespace(), Some(&b"x"[..]));
    }

    #[test]
    fn no_daemon_is_not_found_with_a_hint() {
        let d = Daemon { address: Address::Abstract(format!("multipath-test-none-{}", std::process::id())) };
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = d.register(sock.as_fd(), ServiceType::Handover).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("start `mptcp pmd`"), "{e}");
    }
}
