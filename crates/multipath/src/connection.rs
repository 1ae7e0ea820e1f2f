//! The tokio connection and listener.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::Domain;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, TcpListener, TcpSocket, TcpStream};

use crate::endpoint::{ordered, Endpoint, ToEndpoint};
use crate::last_segment::PushOnClose;
use crate::send_buffer::SendBuffer;
use crate::socket::{self, SocketMeta};
use crate::{Error, MultipathStatus, Parameters, Result};

/// Delay before racing the next address (RFC 8305's "Connection Attempt Delay").
use crate::socket::ATTEMPT_DELAY;

/// Adds the telemetry methods to a type holding a socket and its meta.
macro_rules! telemetry_methods {
    () => {
        /// Whether the connection is multipath right now, what was asked
        /// for, and who manages its paths. Read from the socket each time:
        /// a connection can fall back to TCP mid-way.
        pub fn multipath_status(&self) -> $crate::MultipathStatus {
            $crate::socket::status(self.socket_fd(), self.meta())
        }

        /// The kernel's `struct mptcp_info` (token, subflow counts, data
        /// sequence numbers, byte counters). Fails with
        /// [`Error::NotMultipath`](crate::Error::NotMultipath) on plain TCP.
        pub fn mptcp_info(&self) -> $crate::Result<$crate::MptcpInfo> {
            $crate::socket::mptcp_info(self.socket_fd(), self.meta())
        }

        /// Every subflow with its addresses, interface, state, RTT, window
        /// and byte counters (`MPTCP_FULL_INFO`). A closed subflow is listed
        /// for a while in a closing state: see
        /// [`SubflowInfo::is_open`](crate::SubflowInfo::is_open). A plain
        /// TCP connection reports its one flow.
        pub fn subflows(&self) -> $crate::Result<Vec<$crate::SubflowInfo>> {
            $crate::socket::subflows(self.socket_fd(), self.meta())
        }
    };
}
pub(crate) use telemetry_methods;

/// A connection opened with a multipath service type: a tokio byte stream
/// (`AsyncRead + AsyncWrite`) that can say what it really is.
///
/// ```no_run
/// # async fn demo() -> multipath::Result<()> {
/// use multipath::{Connection, Parameters, ServiceType};
/// use tokio::io::AsyncWriteExt;
///
/// let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
/// let mut conn = Connection::connect("example.com:80", &params).await?;
/// conn.write_all(b"HEAD / HTTP/1.0\r\n\r\n").await?;
/// println!("{}", conn.multipath_status());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connection {
    /// Before `stream`: it drops while the descriptor is open.
    last_segment: PushOnClose,
    stream: TcpStream,
    meta: Arc<SocketMeta>,
    telemetry: TelemetryGuard,
    send_buffer: SendBuffer,
}

impl Connection {
    /// Resolves `endpoint`, tries its addresses happy-eyeballs style
    /// (families interleaved, a new attempt every 250 ms until one
    /// connects), and returns the first connection established.
    pub async fn connect(endpoint: impl ToEndpoint, params: &Parameters) -> Result<Connection> {
        let endpoint = endpoint.to_endpoint()?;
        let deadline = params.get_connect_timeout().map(|after| (tokio::time::Instant::now() + after, after));
        let resolving = resolve(&endpoint);
        let resolved = match deadline {
            Some((at, after)) => tokio::time::timeout_at(at, resolving).await.map_err(|_| Error::Timeout {
                endpoint: endpoint.to_string(),
                after,
                attempts: Vec::new(),
            })??,
            None => resolving.await?,
        };
        let addrs = ordered(&endpoint, resolved, params)?;
        // Each address's turns (see `socket::first_paths`), one after
        // another. Asking a daemon may wait: not on a runtime thread.
        let routed = |addrs: Vec<SocketAddr>| -> Vec<Turn> {
            addrs.into_iter().map(|addr| (addr, vec![params.get_local_address()])).collect()
        };
        let turns = if socket::asks_for_first_path(params) {
            let (for_turns, fallback) = (params.clone(), addrs.clone());
            tokio::task::spawn_blocking(move || {
                let each =
                    |addr: SocketAddr| socket::first_paths(addr.ip(), &for_turns).into_iter().map(move |t| (addr, t));
                addrs.into_iter().flat_map(each).collect()
            })
            .await
            .unwrap_or_else(|_| routed(fallback))
        } else {
            routed(addrs)
        };
        let mut conn = race(&endpoint, turns, params, deadline).await?;
        // Registration may wait on a daemon: not on a runtime thread.
        let fd = conn.stream.as_fd().try_clone_to_owned()?;
        let (meta, for_enforcer) = ((*conn.meta).clone(), params.clone());
        let enforced = tokio::task::spawn_blocking(move || socket::enforce(fd.as_fd(), &meta, &for_enforcer))
            .await
            .unwrap_or(None);
        Arc::get_mut(&mut conn.meta).expect("a new connection's meta is not shared").enforced_by = enforced;
        socket::check_strict(conn.socket_fd(), &conn.meta, params)?;
        Ok(conn)
    }

    fn new(stream: TcpStream, meta: Arc<SocketMeta>) -> Connection {
        Connection {
            last_segment: PushOnClose::new(stream.as_fd(), &meta),
            send_buffer: SendBuffer::new(&meta),
            stream,
            meta,
            telemetry: TelemetryGuard::default(),
        }
    }

    /// The local address of the initial subflow (IPv4 as IPv4, though an
    /// MPTCP connection to an IPv4 address is an IPv6 socket's, whose own
    /// `local_addr` shows it IPv4-mapped).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr().map(canonical)
    }

    /// The peer's address (IPv4 as IPv4, as for [`Connection::local_addr`]).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr().map(canonical)
    }

    /// The underlying tokio stream, for options this crate does not wrap.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Splits into halves that can be used from different tasks; both keep
    /// the telemetry methods.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (r, w) = self.stream.into_split();
        let read = ReadHalf { inner: r, meta: self.meta.clone(), telemetry: self.telemetry };
        let write =
            WriteHalf { last_segment: self.last_segment, inner: w, meta: self.meta, send_buffer: self.send_buffer };
        (read, write)
    }

    /// A handle that reads this connection's telemetry from elsewhere (an
    /// HTTP response, another task) for as long as the connection is open.
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.handle(self.stream.as_fd(), &self.meta)
    }

    fn socket_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
    fn meta(&self) -> &SocketMeta {
        &self.meta
    }

    telemetry_methods!();
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

async fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>> {
    match endpoint {
        Endpoint::Addr(a) => Ok(vec![*a]),
        Endpoint::Host { host, port } => Ok(tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|source| Error::Resolve { host: host.clone(), source })?
            .collect()),
    }
}

type Attempt = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum Step {
    Finished(usize, io::Result<TcpStream>),
    NextAttempt,
    TimedOut,
}

/// An address and the local addresses its attempts start from together
/// (`None`: where routing says).
type Turn = (SocketAddr, Vec<Option<SocketAddr>>);

/// Races connection attempts, starting the next turn when the previous
/// one's attempts fail or after [`ATTEMPT_DELAY`], whichever comes first,
/// until one connects, all fail, or the deadline passes. Sockets are
/// created here, in the caller's thread (and so its network namespace).
async fn race(
    endpoint: &Endpoint,
    turns: Vec<Turn>,
    params: &Parameters,
    deadline: Option<(tokio::time::Instant, Duration)>,
) -> Result<Connection> {
    let mut waiting = turns.into_iter();
    let mut running: Vec<(SocketAddr, SocketMeta, Attempt)> = Vec::new();
    let mut failures: Vec<(SocketAddr, io::Error)> = Vec::new();
    let mut delay = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut expiry = deadline.map(|(at, _)| Box::pin(tokio::time::sleep_until(at)));
    loop {
        let more = waiting.len() > 0;
        if running.is_empty() && !more {
            return Err(Error::Connect { endpoint: endpoint.to_string(), attempts: failures });
        }
        let step = poll_fn(|cx: &mut Context<'_>| {
            for (i, (_, _, attempt)) in running.iter_mut().enumerate() {
                if let Poll::Ready(r) = attempt.as_mut().poll(cx) {
                    return Poll::Ready(Step::Finished(i, r));
                }
            }
            if more && (running.is_empty() || delay.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Step::NextAttempt);
            }
            if expiry.as_mut().is_some_and(|e| e.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Step::TimedOut);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Finished(i, Ok(stream)) => {
                let (_, meta, _) = running.swap_remove(i);
                return Ok(Connection::new(stream, Arc::new(meta)));
            }
            Step::TimedOut => {
                let after = deadline.map_or(Duration::ZERO, |(_, after)| after);
                return Err(Error::Timeout { endpoint: endpoint.to_string(), after, attempts: failures });
            }
            Step::Finished(i, Err(e)) => {
                let (addr, _, _) = running.swap_remove(i);
                tracing::debug!(%addr, error = %e, "connection attempt failed");
                failures.push((addr, e));
            }
            Step::NextAttempt => {
                let (addr, turn) = waiting.next().expect("an address is waiting");
                for from in turn {
                    let ready = socket::for_attempt(addr, from, params)?.and_then(|(sock, meta, to)| {
                        sock.set_nonblocking(true)?;
                        Ok((TcpSocket::from_std_stream(std::net::TcpStream::from(sock)), meta, to))
                    });
                    match ready {
                        Ok((sock, meta, to)) => running.push((addr, meta, Box::pin(sock.connect(to)))),
                        Err(e) => failures.push((addr, e)),
                    }
                }
                delay.as_mut().reset(tokio::time::Instant::now() + ATTEMPT_DELAY);
            }
        }
    }
}

/// `AsyncRead` and `AsyncWrite` for a type wrapping a stream in its
/// `stream` field, forwarded as they are; `$wrote(&mut self, n)` is told
/// what each write took, `$shutting(&mut self)` that the write side is
/// being shut down.
macro_rules! forward_async_io {
    ($ty:ty) => {
        $crate::connection::forward_async_io!($ty, |_: &mut $ty, _: usize| {}, |_: &mut $ty| {});
    };
    ($ty:ty, $wrote:expr, $shutting:expr) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                let polled = std::pin::Pin::new(&mut this.stream).poll_write(cx, buf);
                if let std::task::Poll::Ready(Ok(n)) = polled {
                    ($wrote)(&mut *this, n);
                }
                polled
            }
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                let polled = std::pin::Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
                if let std::task::Poll::Ready(Ok(n)) = polled {
                    ($wrote)(&mut *this, n);
                }
                polled
            }
            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }
            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.stream).poll_flush(cx)
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                ($shutting)(&mut *this);
                std::pin::Pin::new(&mut this.stream).poll_shutdown(cx)
            }
        }
    };
}
#[cfg_attr(not(feature = "tls"), allow(unused_imports))]
pub(crate) use forward_async_io;

forward_async_io!(
    Connection,
    |this: &mut Connection, n| this.send_buffer.wrote(this.stream.as_fd(), n),
    |this: &mut Connection| this.last_segment.shutting_down()
);

/// The reading half of a [`Connection`].
#[derive(Debug)]
pub struct ReadHalf {
    inner: tcp::OwnedReadHalf,
    meta: Arc<SocketMeta>,
    telemetry: TelemetryGuard,
}

/// The writing half of a [`Connection`]; dropping it shuts the write side.
#[derive(Debug)]
pub struct WriteHalf {
    /// Before `inner`, whose drop shuts the write side down.
    last_segment: PushOnClose,
    inner: tcp::OwnedWriteHalf,
    meta: Arc<SocketMeta>,
    send_buffer: SendBuffer,
}

impl ReadHalf {
    fn socket_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_ref().as_fd()
    }
    fn meta(&self) -> &SocketMeta {
        &self.meta
    }
    /// Puts the halves back together.
    // The halves of two different connections come back as they were, by
    // value (as tokio's `reunite` gives them): a rare error, not worth a box.
    #[allow(clippy::result_large_err)]
    pub fn unsplit(self, write: WriteHalf) -> Result<Connection, (ReadHalf, WriteHalf)> {
        match self.inner.reunite(write.inner) {
            Ok(stream) => Ok(Connection {
                last_segment: write.last_segment,
                stream,
                meta: self.meta,
                telemetry: self.telemetry,
                send_buffer: write.send_buffer,
            }),
            Err(e) => Err((
                ReadHalf { inner: e.0, meta: self.meta, telemetry: self.telemetry },
                WriteHalf {
                    last_segment: write.last_segment,
                    inner: e.1,
                    meta: write.meta,
                    send_buffer: write.send_buffer,
                },
            )),
        }
    }
    telemetry_methods!();
}

impl WriteHalf {
    fn socket_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_ref().as_fd()
    }
    fn meta(&self) -> &SocketMeta {
        &self.meta
    }
    telemetry_methods!();
}

impl AsyncRead for ReadHalf {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.send_buffer.wrote(this.inner.as_ref().as_fd(), n);
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.last_segment.shutting_down();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A listening socket that accepts MPTCP and plain-TCP clients alike.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    params: Parameters,
    meta: SocketMeta,
}

/// Pending connections the kernel queues before `accept`.
pub(crate) const BACKLOG: i32 = 1024;

impl Listener {
    /// Listens on `addr`: an MPTCP listener unless the service type is
    /// `none` (or MPTCP is unavailable and strict mode is off). Must be
    /// called within a tokio runtime.
    pub fn bind(addr: SocketAddr, params: &Parameters) -> Result<Listener> {
        let (sock, meta) = listening_socket(addr, params)?;
        sock.set_nonblocking(true).map_err(|e| Error::socket("O_NONBLOCK", e))?;
        let listener = TcpListener::from_std(sock.into())?;
        Ok(Listener { listener, params: params.clone(), meta })
    }

    /// Waits for the next client. Its connection reports *multipath* when
    /// the client spoke MPTCP, *fell back to TCP* otherwise.
    pub async fn accept(&self) -> Result<(Connection, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        if self.params.get_nodelay() {
            stream.set_nodelay(true)?;
        }
        let meta = Arc::new(SocketMeta { peer: Some(peer), ..self.meta.clone() });
        Ok((Connection::new(stream, meta), peer))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the listening socket is: MPTCP, or TCP and why.
    pub fn multipath_status(&self) -> MultipathStatus {
        let mut status = socket::status(self.listener.as_fd(), &self.meta);
        // A listener never "speaks" MPTCP with a peer; report what it accepts.
        if self.meta.opened == socket::Opened::Mptcp {
            status.transport = crate::Transport::Multipath;
            status.path_manager = self.meta.path_manager;
        }
        status
    }
}

/// `addr` with an IPv4-mapped IPv6 address as IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Creates, binds and listens; shared with the blocking listener.
pub(crate) fn listening_socket(addr: SocketAddr, params: &Parameters) -> Result<(socket2::Socket, SocketMeta)> {
    let (sock, meta) = socket::open(Domain::for_address(addr), params)?;
    sock.set_reuse_address(true).map_err(|e| Error::socket("SO_REUSEADDR", e))?;
    sock.bind(&addr.into()).map_err(|e| Error::socket(format!("bind {addr}"), e))?;
    sock.listen(BACKLOG).map_err(|e| Error::socket("listen", e))?;
    Ok((sock, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceType;

    /// Each address once, from where routing says.
    fn routed(addrs: Vec<SocketAddr>) -> Vec<Turn> {
        addrs.into_iter().map(|a| (a, vec![None])).collect()
    }

    /// A loopback address whose SYNs go unanswered: a listener whose accept
    /// queue is full drops them, so connecting there hangs.
    fn unanswered() -> (std::net::TcpListener, Vec<std::net::TcpStream>, SocketAddr) {
        let sock = socket2::Socket::new(Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        sock.listen(0).unwrap();
        let listener: std::net::TcpListener = sock.into();
        let addr = listener.local_addr().unwrap();
        let queued = (0..3)
            .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
            .collect();
        (listener, queued, addr)
    }

    fn params() -> Parameters {
        Parameters::tcp().multipath_service_type(ServiceType::Handover)
    }

    #[tokio::test]
    async fn a_hanging_first_address_does_not_block_the_next() {
        let (_hold, _queued, dead) = unanswered();
        let listener = std::net::TcpListener::bind("[::1]:0").or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"));
        let listener = listener.unwrap();
        let good = listener.local_addr().unwrap();
        let endpoint = Endpoint::Host { host: "test".into(), port: 0 };
        let started = std::time::Instant::now();
        let conn = race(&endpoint, routed(vec![dead, good]), &params(), None).await.unwrap();
        let took = started.elapsed();
        assert_eq!(conn.peer_addr().unwrap(), good);
        assert!(took >= ATTEMPT_DELAY && took < 4 * ATTEMPT_DELAY, "second attempt started after {took:?}");
    }

    #[tokio::test]
    async fn a_refused_first_address_moves_on_at_once_and_all_failures_are_reported() {
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_addr = good.local_addr().unwrap();
        let endpoint = Endpoint::Addr(refused);
        let started = std::time::Instant::now();
        let conn = race(&endpoint, routed(vec![refused, good_addr]), &params(), None).await.unwrap();
        assert!(started.elapsed() < ATTEMPT_DELAY, "a refusal starts the next attempt without waiting");
        assert_eq!(conn.peer_addr().unwrap(), good_addr);
        drop(good);
        let err = race(&endpoint, routed(vec![refused, good_addr]), &params(), None).await.unwrap_err();
        assert!(matches!(&err, Error::Connect { attempts, .. } if attempts.len() == 2), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_reports_the_failures_before_it() {
        let (_hold, _queued, dead) = unanswered();
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let deadline = Some((tokio::time::Instant::now() + Duration::from_millis(400), Duration::from_millis(400)));
        let err = race(&Endpoint::Addr(refused), routed(vec![refused, dead]), &params(), deadline).await.unwrap_err();
        match &err {
            Error::Timeout { attempts, .. } => assert_eq!(attempts.len(), 1, "{err}"),
            other => panic!("expected a timeout, got {other}"),
        }
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn an_unusable_address_is_one_failure_not_the_end() {
        // Binding the local address fails for every attempt (it is taken):
        // each address records its own failure.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let params = params().local_address(taken.local_addr().unwrap());
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        let turns = addrs.iter().map(|&a| (a, vec![params.get_local_address()])).collect();
        let err = race(&Endpoint::Addr(addrs[0]), turns, &params, None).await.unwrap_err();
        match &err {
            Error::Connect { attempts, .. } => assert_eq!(attempts.len(), 2, "{err}"),
            other => panic!("expected both attempts to fail, got {other}"),
        }
        assert!(err.to_string().contains("bind"), "{err}");
    }

    #[tokio::test]
    async fn connect_timeout_is_a_clear_error() {
        let (_hold, _queued, dead) = unanswered();
        let params = params().connect_timeout(Duration::from_millis(300));
        let err = Connection::connect(dead, &params).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(300)), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
    }
}

/// Reads a connection's telemetry from outside it: what an HTTP response
/// carries so that its metrics come from the connection that served it.
/// Cheap to clone. Once the connection is closed, every read fails with
/// `NotConnected`: the handle never keeps the socket open.
#[derive(Clone, Debug)]
pub struct Telemetry {
    shared: Arc<TelemetryShared>,
}

#[derive(Debug)]
struct TelemetryShared {
    /// A duplicate of the connection's descriptor, taken back (closed) when
    /// the connection is dropped.
    fd: std::sync::Mutex<Option<std::os::fd::OwnedFd>>,
    meta: Arc<SocketMeta>,
}

impl Telemetry {
    fn read<T>(&self, f: impl FnOnce(BorrowedFd<'_>, &SocketMeta) -> Result<T>) -> Result<T> {
        let fd = self.shared.fd.lock().unwrap_or_else(|e| e.into_inner());
        match fd.as_ref() {
            Some(fd) => f(fd.as_fd(), &self.shared.meta),
            None => Err(Error::Io(io::Error::new(io::ErrorKind::NotConnected, "the connection is closed"))),
        }
    }

    /// Like [`Connection::multipath_status`].
    pub fn multipath_status(&self) -> Result<MultipathStatus> {
        self.read(|fd, meta| Ok(socket::status(fd, meta)))
    }

    /// Like [`Connection::mptcp_info`].
    pub fn mptcp_info(&self) -> Result<crate::MptcpInfo> {
        self.read(socket::mptcp_info)
    }

    /// Like [`Connection::subflows`].
    pub fn subflows(&self) -> Result<Vec<crate::SubflowInfo>> {
        self.read(socket::subflows)
    }
}

/// Owned by the connection: hands out [`Telemetry`] handles, and closes
/// their descriptor when the connection goes.
#[derive(Debug, Default)]
struct TelemetryGuard {
    shared: std::sync::OnceLock<Arc<TelemetryShared>>,
}

impl TelemetryGuard {
    fn handle(&self, fd: BorrowedFd<'_>, meta: &Arc<SocketMeta>) -> Telemetry {
        let shared = self.shared.get_or_init(|| {
            Arc::new(TelemetryShared { fd: std::sync::Mutex::new(fd.try_clone_to_owned().ok()), meta: meta.clone() })
        });
        Telemetry { shared: shared.clone() }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.get() {
            shared.fd.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}
