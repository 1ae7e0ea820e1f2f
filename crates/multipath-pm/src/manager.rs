//! The in-process path manager: a thread that owns the netlink sockets and
//! the policy core, and enforces the service type of the connections a
//! program hands it. Needs CAP_NET_ADMIN and the userspace path manager
//! (`net.mptcp.pm_type = 1`) in the network namespace it starts in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multipath::ServiceType;

use crate::netlink::socket::poll_any;
use crate::policy::{Core, Input, LocalPath, PolicyConfig, Probe, SubflowSample};
use crate::{Event, EventSocket, PmError, PmSocket, RouteWatcher};

/// How often managed connections' subflows are measured.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A running path manager. Dropping it stops the thread (connections keep
/// their subflows; nothing manages them any more).
#[derive(Debug)]
pub struct Manager {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Request {
    Manage { fd: OwnedFd, service: ServiceType, reply: mpsc::Sender<Result<u32, PmError>> },
    ActivePath { token: u32, reply: mpsc::Sender<Option<String>> },
}

impl Manager {
    /// Starts managing in the calling thread's network namespace.
    pub fn start(config: PolicyConfig) -> Result<Manager, PmError> {
        let mut driver = Driver::open(config)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("multipath-pm".into())
            .spawn(move || driver.run(rx))
            .map_err(PmError::Io)?;
        Ok(Manager { requests: Some(tx), thread: Some(thread) })
    }

    /// Enforces `service` on the MPTCP connection behind `socket` from now
    /// on; returns its token. The manager keeps its own duplicate of the
    /// descriptor to measure the subflows.
    pub fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<u32, PmError> {
        let fd = socket.try_clone_to_owned()?;
        let (reply, answer) = mpsc::channel();
        self.send(Request::Manage { fd, service, reply })?;
        answer.recv().map_err(|_| stopped())?
    }

    /// The path carrying a managed connection's data.
    pub fn active_path(&self, token: u32) -> Result<Option<String>, PmError> {
        let (reply, answer) = mpsc::channel();
        self.send(Request::ActivePath { token, reply })?;
        answer.recv().map_err(|_| stopped())
    }

    fn send(&self, request: Request) -> Result<(), PmError> {
        self.requests.as_ref().expect("sender lives until drop").send(request).map_err(|_| stopped())
    }
}

/// Lets [`multipath::Parameters::path_manager`] hand connections over.
impl multipath::Enforcer for Manager {
    fn manage(&self, socket: BorrowedFd<'_>, service: ServiceType) -> Result<(), String> {
        Manager::manage(self, socket, service).map(drop).map_err(|e| e.to_string())
    }

    fn kind(&self) -> multipath::PathManager {
        multipath::PathManager::InProcess
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.requests.take(); // the thread sees the channel close
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> PmError {
    PmError::Io(std::io::Error::other("the path manager thread has stopped"))
}

struct Managed {
    fd: OwnedFd,
}

/// An ICMP echo on its way.
struct PendingProbe {
    token: u32,
    path: String,
    socket: std::net::UdpSocket,
    sent: Instant,
}

/// Sends one ICMP echo from `probe.from` to `probe.to` on an ICMP datagram
/// socket (the kernel fills in checksum and identifier; needs the
/// namespace's `net.ipv4.ping_group_range` to include our group).
fn send_probe(probe: &Probe) -> std::io::Result<PendingProbe> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, proto, echo) = match probe.to {
        std::net::IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        std::net::IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(proto))?;
    sock.bind(&SocketAddr::new(probe.from, 0).into())?;
    sock.set_nonblocking(true)?;
    let socket: std::net::UdpSocket = sock.into();
    let mut request = [0u8; 16];
    request[0] = echo;
    socket.send_to(&request, SocketAddr::new(probe.to, 0))?;
    Ok(PendingProbe { token: probe.token, path: probe.path.clone(), socket, sent: Instant::now() })
}

struct Driver {
    core: Core,
    pm: PmSocket,
    events: EventSocket,
    routes: RouteWatcher,
    paths: Vec<LocalPath>,
    /// Registered connections and the descriptors that measure them.
    managed: BTreeMap<u32, Managed>,
    probes: Vec<PendingProbe>,
    /// What connections nobody registered get; `None` leaves them alone.
    default_service: Option<ServiceType>,
}

impl Driver {
    fn open(config: PolicyConfig) -> Result<Driver, PmError> {
        let mut driver = Driver {
            core: Core::new(config.clone()),
            pm: PmSocket::open()?,
            events: EventSocket::open()?,
            routes: RouteWatcher::open()?,
            paths: Vec::new(),
            managed: BTreeMap::new(),
            probes: Vec::new(),
            default_service: config.default_service,
        };
        driver.refresh_paths(Instant::now())?;
        Ok(driver)
    }

    fn run(&mut self, requests: mpsc::Receiver<Request>) {
        let mut next_sample = Instant::now();
        loop {
            loop {
                match requests.try_recv() {
                    Ok(r) => self.request(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            let mut wake = next_sample.min(now + SAMPLE_EVERY);
            if let Some(t) = self.core.poll_timeout() {
                wake = wake.min(t);
            }
            let fds = [self.events.as_fd(), self.routes.as_fd()];
            let ready = match poll_any(&fds, wake.saturating_duration_since(now)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "poll failed; path manager stops");
                    return;
                }
            };
            let now = Instant::now();
            if ready[0] {
                self.kernel_events(now);
            }
            if ready[1] {
                if let Err(e) = self.routes.changed().and_then(|_| self.refresh_paths(now)) {
                    tracing::warn!(error = %e, "reading links and routes");
                }
            }
            self.probe_answers(now);
            if now >= next_sample {
                self.sample(now);
                next_sample = now + SAMPLE_EVERY;
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.flush(now);
        }
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::Manage { fd, service, reply } => {
                let _ = reply.send(self.manage(fd, service));
            }
            Request::ActivePath { token, reply } => {
                let _ = reply.send(self.core.active_path(token).map(str::to_owned));
            }
        }
    }

    /// Reads the token and the initial subflow from the descriptor itself.
    fn manage(&mut self, fd: OwnedFd, service: ServiceType) -> Result<u32, PmError> {
        let unfit = |e: &dyn std::fmt::Display| PmError::NotManageable(e.to_string());
        let token = multipath::raw::mptcp_info(fd.as_fd()).map_err(|e| unfit(&e))?.token;
        let sock = socket2::SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| -> Result<SocketAddr, PmError> {
            a.map_err(|e| unfit(&e))?.as_socket().ok_or_else(|| unfit(&"not an IP socket"))
        };
        let (local, remote) = (addr(sock.local_addr())?, addr(sock.peer_addr())?);
        if token == 0 {
            return Err(unfit(&"no token yet"));
        }
        let now = Instant::now();
        self.core.handle(Input::Established { token, service, local, remote }, now);
        self.managed.insert(token, Managed { fd });
        self.flush(now);
        Ok(token)
    }

    fn kernel_events(&mut self, now: Instant) {
        let events = match self.events.recv() {
            Ok(e) => e,
            Err(PmError::EventsLost) => {
                // The next samples (every 10 ms) resynchronise every
                // managed connection's subflows with the kernel's.
                tracing::warn!("path-manager events lost; resynchronising from the sockets");
                self.sample(now);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading path-manager events");
                return;
            }
        };
        for event in events {
            // Connections nobody registered get the default service type
            // (client side only: a server's joins come from its peers).
            if let (Event::Established(c), Some(service)) = (&event, self.default_service) {
                if !c.server_side && !self.core.manages(c.token) {
                    let input = Input::Established { token: c.token, service, local: c.local, remote: c.remote };
                    self.core.handle(input, now);
                    continue;
                }
            }
            if !event.token().is_some_and(|t| self.core.manages(t)) {
                continue;
            }
            let input = match event {
                Event::SubEstablished(s) => {
                    Input::SubflowEstablished { token: s.token, local: s.local, loc_id: s.loc_id }
                }
                Event::SubClosed(s) => Input::SubflowClosed { token: s.token, local: s.local, loc_id: s.loc_id },
                Event::Closed { token } => {
                    self.managed.remove(&token);
                    Input::Closed { token }
                }
                _ => continue,
            };
            self.core.handle(input, now);
        }
    }

    fn refresh_paths(&mut self, now: Instant) -> Result<(), PmError> {
        let fresh = self.core.config().paths.apply(self.routes.paths()?);
        for old in &self.paths {
            if !fresh.iter().any(|p| p.name == old.name) {
                self.core.handle(Input::PathDown { name: old.name.clone() }, now);
            }
        }
        for p in &fresh {
            if !self.paths.contains(p) {
                self.core.handle(Input::PathUp(p.clone()), now);
            }
        }
        self.paths = fresh;
        Ok(())
    }

    fn sample(&mut self, now: Instant) {
        let mut inputs = Vec::new();
        for (&token, m) in &self.managed {
            let Ok(subflows) = multipath::raw::subflows(m.fd.as_fd()) else { continue };
            let samples = subflows
                .iter()
                .filter(|s| s.is_open())
                .map(|s| SubflowSample {
                    local: s.local,
                    rtt_us: s.tcp.rtt_us,
                    min_rtt_us: s.tcp.min_rtt_us.unwrap_or(0),
                    backoff: s.tcp.backoff,
                    unacked: s.tcp.unacked,
                    total_retrans: s.tcp.total_retrans,
                    last_data_recv_ms: s.tcp.last_data_recv_ms,
                    established: s.tcp.state == multipath::TcpState::Established,
                })
                .collect();
            inputs.push(Input::Samples { token, subflows: samples });
        }
        for input in inputs {
            self.core.handle(input, now);
        }
    }

    /// Collects echo replies; forgets probes the core has long given up on.
    fn probe_answers(&mut self, now: Instant) {
        let mut answered = Vec::new();
        self.probes.retain(|p| {
            let mut buf = [0u8; 64];
            // Any reply on the socket is the echo's: ping sockets only get theirs.
            if p.socket.recv(&mut buf).is_ok() {
                answered.push((p.token, p.path.clone()));
                return false;
            }
            now.duration_since(p.sent) < Duration::from_secs(2)
        });
        for (token, path) in answered {
            self.core.handle(Input::ProbeAnswered { token, path }, now);
        }
    }

    /// Sends what the core decided. Refusals go back to the core after the
    /// batch, so what it asks again waits for the next turn of the loop
    /// instead of spinning.
    fn flush(&mut self, now: Instant) {
        while let Some(probe) = self.core.poll_probe() {
            match send_probe(&probe) {
                Ok(p) => self.probes.push(p),
                // A probe that cannot be sent proves nothing: count the path
                // as alive rather than switch on every silence. Detection
                // then rests on retransmission timeouts alone.
                Err(e) => {
                    tracing::warn!(error = %e, path = %probe.path, "cannot send a path probe");
                    self.core.handle(Input::ProbeAnswered { token: probe.token, path: probe.path }, now);
                }
            }
        }
        let batch: Vec<_> = std::iter::from_fn(|| self.core.poll_command()).collect();
        let mut refused = Vec::new();
        for command in batch {
            tracing::debug!(?command, "path manager");
            if let Err(e) = self.pm.execute(&command) {
                tracing::debug!(error = %e, command = command.name(), "refused");
                refused.push(command);
            }
        }
        for command in refused {
            self.core.handle(Input::CommandFailed(command), now);
        }
    }
}
