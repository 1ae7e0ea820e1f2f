//! Blocking connections for programs without an async runtime.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};

use crate::connection::{listening_socket, telemetry_methods};
use crate::endpoint::{ordered, Endpoint, ToEndpoint};
use crate::last_segment::PushOnClose;
use crate::send_buffer::SendBuffer;
use crate::socket::{self, SocketMeta};
use crate::{Error, Parameters, Result};

/// A blocking [`Connection`](crate::Connection): `std::io::Read + Write`.
///
/// Addresses are tried one after another (no happy eyeballs); the connect
/// timeout, if set, applies to each attempt.
#[derive(Debug)]
pub struct Connection {
    /// Before `stream`: it drops while the descriptor is open.
    last_segment: PushOnClose,
    stream: TcpStream,
    meta: SocketMeta,
    send_buffer: SendBuffer,
}

impl Connection {
    /// Resolves `endpoint` and connects to the first address that answers.
    pub fn connect(endpoint: impl ToEndpoint, params: &Parameters) -> Result<Connection> {
        let endpoint = endpoint.to_endpoint()?;
        let resolved = match &endpoint {
            Endpoint::Addr(a) => vec![*a],
            Endpoint::Host { host, port } => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|source| Error::Resolve { host: host.clone(), source })?
                .collect(),
        };
        let mut attempts = Vec::new();
        for addr in ordered(&endpoint, resolved, params)? {
            let turns = socket::first_paths(addr.ip(), params);
            let connected = match turns.as_slice() {
                [turn] if turn.len() == 1 => {
                    socket::for_attempt(addr, turn[0], params)?.and_then(|(sock, meta, to)| {
                        match params.get_connect_timeout() {
                            Some(t) => sock.connect_timeout(&to.into(), t)?,
                            None => sock.connect(&to.into())?,
                        }
                        Ok((sock, meta))
                    })
                }
                _ => Self::race(addr, turns, params, &mut attempts)?,
            };
            match connected.map(|(sock, meta)| Connection::new(sock.into(), meta)) {
                Ok(mut conn) => {
                    conn.meta.enforced_by = socket::enforce(conn.stream.as_fd(), &conn.meta, params);
                    socket::check_strict(conn.socket_fd(), &conn.meta, params)?;
                    return Ok(conn);
                }
                Err(e) => attempts.push((addr, e)),
            }
        }
        Err(Error::Connect { endpoint: endpoint.to_string(), attempts })
    }

    fn new(stream: TcpStream, meta: SocketMeta) -> Connection {
        let last_segment = PushOnClose::new(stream.as_fd(), &meta);
        Connection { last_segment, stream, send_buffer: SendBuffer::new(&meta), meta }
    }

    /// Handshakes to `addr` from each source of `turns` (see
    /// [`socket::first_paths`]); the first to complete wins and the others
    /// are closed. The losers' failures are added to `failures`.
    fn race(
        addr: SocketAddr,
        turns: Vec<Vec<Option<SocketAddr>>>,
        params: &Parameters,
        failures: &mut Vec<(SocketAddr, io::Error)>,
    ) -> Result<io::Result<(socket2::Socket, SocketMeta)>> {
        // Sockets are opened as their turn comes; an error that stops every
        // attempt (strict mode without MPTCP) shows at the first.
        let mut fatal = None;
        let started = turns.into_iter().map(|turn| {
            turn.into_iter()
                .filter_map(|from| match socket::for_attempt(addr, from, params) {
                    Ok(ready) => Some(ready.and_then(|(sock, meta, to)| {
                        sock.set_nonblocking(true)?;
                        match sock.connect(&to.into()) {
                            Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => Err(e),
                            _ => Ok((sock, meta, addr)),
                        }
                    })),
                    Err(e) => {
                        fatal.get_or_insert(e);
                        None
                    }
                })
                .collect()
        });
        let won = socket::first_to_connect(started, socket::ATTEMPT_DELAY, params.get_connect_timeout());
        if let Some(e) = fatal {
            return Err(e);
        }
        Ok(match won {
            Ok((sock, meta)) => sock.set_nonblocking(false).map(|()| (sock, meta)),
            Err(mut lost) => {
                let last = lost.pop().unwrap_or_else(|| io::Error::from(io::ErrorKind::NotConnected));
                failures.extend(lost.into_iter().map(|e| (addr, e)));
                Err(last)
            }
        })
    }

    /// The underlying std stream. An MPTCP connection to an IPv4 address
    /// is an IPv6 socket's: its own addresses are IPv4-mapped. Shut it
    /// down with [`Connection::shutdown`] rather than through this.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The local address of the initial subflow (IPv4 as IPv4).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr().map(crate::connection::canonical)
    }

    /// The peer's address (IPv4 as IPv4).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr().map(crate::connection::canonical)
    }

    /// A second handle to the same connection (`dup`), e.g. to read and
    /// write from two threads.
    pub fn try_clone(&self) -> io::Result<Connection> {
        let stream = self.stream.try_clone()?;
        Ok(Connection {
            last_segment: self.last_segment.for_clone(stream.as_fd()),
            stream,
            meta: self.meta.clone(),
            send_buffer: self.send_buffer.clone(),
        })
    }

    /// Shuts down reading, writing or both, as [`TcpStream::shutdown`].
    /// Shutting down writing sends what is queued at once: an MPTCP
    /// subflow would hold a last segment shorter than the MSS until
    /// everything before it is acknowledged, a round trip later.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        if how != std::net::Shutdown::Read {
            self.last_segment.shutting_down();
        }
        self.stream.shutdown(how)
    }

    fn socket_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
    fn meta(&self) -> &SocketMeta {
        &self.meta
    }

    telemetry_methods!();
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.send_buffer.wrote(self.stream.as_fd(), n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// A blocking [`Listener`](crate::Listener).
#[derive(Debug)]
pub struct Listener {
    listener: std::net::TcpListener,
    params: Parameters,
    meta: SocketMeta,
}

impl Listener {
    /// Listens on `addr`, MPTCP unless the service type is `none`.
    pub fn bind(addr: SocketAddr, params: &Parameters) -> Result<Listener> {
        let (sock, meta) = listening_socket(addr, params)?;
        Ok(Listener { listener: sock.into(), params: params.clone(), meta })
    }

    /// Waits for the next client.
    pub fn accept(&self) -> Result<(Connection, SocketAddr)> {
        let (stream, peer) = self.listener.accept()?;
        if self.params.get_nodelay() {
            stream.set_nodelay(true)?;
        }
        let meta = SocketMeta { peer: Some(peer), ..self.meta.clone() };
        Ok((Connection::new(stream, meta), peer))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
