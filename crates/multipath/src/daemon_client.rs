//! Handing connections to the `mptcp pmd` daemon: the connection's socket
//! itself travels over a Unix socket (`SCM_RIGHTS`), so the daemon proves
//! ownership from the descriptor and reads the token from it; nobody can
//! name another program's connection.
//!
//! Protocol, one `SOCK_SEQPACKET` message each way: `manage <service>` with
//! one descriptor attached; `ok <token>` or `error <reason>`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{sys, Enforcer, PathManager, ServiceType};

/// Where the daemon listens unless `MULTIPATH_PMD_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/multipath/pmd.sock";

/// Longest request or reply, bytes.
pub const MAX_MESSAGE: usize = 256;

/// The daemon as an [`Enforcer`].
#[derive(Clone, Debug)]
pub struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    /// The daemon listening on `socket`.
    pub fn at(socket: impl Into<PathBuf>) -> Self {
        Daemon { socket: socket.into() }
    }

    /// The daemon at `MULTIPATH_PMD_SOCKET` or [`DEFAULT_SOCKET`], if its
    /// socket exists.
    pub fn discover() -> Option<Self> {
        let path =
            std::env::var_os("MULTIPATH_PMD_SOCKET").map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
        Path::new(&path).exists().then(|| Daemon::at(path))
    }

    /// Registers the connection behind `socket`; returns its token.
    pub fn register(&self, socket: BorrowedFd<'_>, service: ServiceType) -> io::Result<u32> {
        let conn = seqpacket_connect(&self.socket)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        sys::send_with_fd(conn.as_fd(), format!("manage {service}").as_bytes(), socket)?;
        let mut reply = [0u8; MAX_MESSAGE];
        let n = io::Read::read(&mut &conn, &mut reply)?;
        let text = String::from_utf8_lossy(&reply[..n]);
        let text = text.trim();
        if let Some(token) = text.strip_prefix("ok ") {
            return token
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("daemon said {text:?}")));
        }
        let reason = text.strip_prefix("error ").unwrap_or(text);
        Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("the path-manager daemon refused: {reason}")))
    }
}

impl Enforcer for Daemon {
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), String> {
        self.register(socket, service).map(drop).map_err(|e| e.to_string())
    }

    fn kind(&self) -> PathManager {
        PathManager::Daemon
    }
}

/// `connect` on a `SOCK_SEQPACKET` Unix socket (std only has stream ones).
fn seqpacket_connect(path: &Path) -> io::Result<UnixStream> {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
    sock.connect(&socket2::SockAddr::unix(path)?)?;
    // A connected seqpacket socket reads and writes like a stream socket,
    // one message per call.
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(sock)))
}
