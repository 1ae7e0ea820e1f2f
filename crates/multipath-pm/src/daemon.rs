//! The path-manager daemon: unprivileged programs hand it their MPTCP
//! connections over a Unix socket, passing the socket itself, and it
//! enforces the service type they ask for (aggregate only for entitled
//! users or programs).
//!
//! One daemon per network namespace: it listens on the namespace's abstract
//! socket ([`ABSTRACT_NAME`]), which is also its lock, and takes only
//! sockets of its own namespace. Who asks is what the kernel recorded when
//! the client connected (`SO_PEERCRED`, a pidfd), and the request must come
//! from that same process (`SCM_CREDENTIALS`). The passed descriptor is read
//! and closed at once: the daemon never keeps a connection open. See
//! `SECURITY.md` for the threat model.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multipath::daemon_client::{Address, Listed, ListedSubflow, Origin, Reply, Request, ABSTRACT_NAME, MAX_MESSAGE};
use multipath::ServiceType;

use crate::netlink::sock_diag::Query;
use crate::netlink::socket::{poll_any, Diag};
use crate::owner;
use crate::policy::PolicyConfig;
use crate::rules::{Decision, Rules, Subject};
use crate::state::{NamespaceState, Registry};
use crate::unix::{self, Credentials};
use crate::{Manager, PmError, Registrant};

/// Who may ask for `aggregate`, where to listen, and how much one user may
/// ask for.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// A filesystem socket to listen on as well as the namespace's abstract
    /// one (for programs that look for a path). Created mode 0666; an
    /// existing file there is replaced only if it is a socket nobody
    /// listens on.
    pub socket: Option<PathBuf>,
    /// User ids entitled to `aggregate`.
    pub aggregate_uids: Vec<u32>,
    /// Executables entitled to `aggregate` (as `/proc/<pid>/exe` shows them
    /// when the program connects to the daemon).
    pub aggregate_executables: Vec<PathBuf>,
    /// Registered connections one user may have open at once.
    pub max_per_uid: usize,
    /// Where the daemon keeps what outlives it (`/run/multipath` for
    /// `mptcp pmd`). With it, the daemon switches the namespace to the
    /// userspace path manager and puts the original value back when it
    /// stops (even after a crash in between, see [`NamespaceState`]),
    /// records each registration, and at start manages the connections a
    /// crashed predecessor left: registered ones with their service type,
    /// the others with the default. Without it, none of that.
    pub state_dir: Option<PathBuf>,
    /// Policy tunables.
    pub policy: PolicyConfig,
    /// Where to report every command sent (see [`Manager::start_with_log`]).
    pub command_log: Option<std::sync::mpsc::SyncSender<crate::manager::SentCommand>>,
    /// The kernel-event socket's receive buffer (see
    /// [`crate::ManagerOptions::event_buffer`]).
    pub event_buffer: Option<usize>,
    /// Per-program rules for connections nobody registered: the first
    /// match gives the service type (aggregate only where entitled), else
    /// the policy's default.
    pub rules: Rules,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: None,
            aggregate_uids: Vec::new(),
            aggregate_executables: Vec::new(),
            max_per_uid: 4096,
            state_dir: None,
            policy: PolicyConfig::default(),
            command_log: None,
            event_buffer: None,
            rules: Rules::default(),
        }
    }
}

impl DaemonConfig {
    /// Whether `uid` running `program` is entitled to aggregate.
    pub fn entitled(&self, uid: Option<u32>, program: Option<&Path>) -> bool {
        uid.is_some_and(|u| self.aggregate_uids.contains(&u))
            || program.is_some_and(|exe| self.aggregate_executables.iter().any(|e| e == exe))
    }

    /// What the rules decide for `subject`, entitlements applied.
    pub fn decide(&self, subject: &Subject<'_>) -> Decision {
        self.rules.decide(subject, |s| self.entitled(s.uid, s.exe))
    }
}

/// A running daemon. Dropping it stops accepting, removes its filesystem
/// socket (if any) and stops the path manager.
#[derive(Debug)]
pub struct Daemon {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<Registry>>>,
    socket: Option<PathBuf>,
    /// The socket's directory, when the daemon created it.
    created_dir: Option<PathBuf>,
    manager: Arc<Manager>,
    /// The path-manager type to put back, with a `state_dir`.
    namespace: Option<NamespaceState>,
}

impl Daemon {
    /// Starts the path manager in the calling thread's network namespace
    /// and listens for registrations. Refused, naming the running one's
    /// pid, when another daemon serves this namespace.
    pub fn start(config: DaemonConfig) -> Result<Daemon, PmError> {
        // The namespace's lock first: nothing else is touched by a second
        // daemon.
        let abstract_ = listen_abstract()?;
        let netns = unix::netns_cookie(abstract_.as_fd())?;
        let dir = config.state_dir.as_deref();
        let created_dir =
            config.socket.as_deref().and_then(Path::parent).filter(|d| !d.exists()).map(Path::to_path_buf);
        let mut listeners = vec![abstract_];
        if let Some(path) = &config.socket {
            listeners.push(listen_path(path)?);
        }
        let mut policy = config.policy.clone();
        // Unregistered connections behave as under the kernel's manager.
        policy.default_service.get_or_insert(ServiceType::Aggregate);
        let sessions = Arc::new(std::sync::Mutex::new(Vec::new()));
        let classifier = Arc::new(RuleClassifier {
            config: config.clone(),
            sessions: sessions.clone(),
            refused_said: Default::default(),
        }) as Arc<dyn crate::Classifier>;
        let options = crate::ManagerOptions {
            log: config.command_log.clone(),
            event_buffer: config.event_buffer,
            classifier: Some(classifier),
        };
        let manager = Arc::new(Manager::start_with(policy, options)?);
        let registry = match dir {
            Some(dir) => {
                let (mut registry, recorded) = Registry::open(dir)?;
                let adopted = manager.adopt(recorded)?;
                if adopted > 0 {
                    tracing::warn!(adopted, "managing connections a previous daemon left behind");
                }
                registry.rewrite(&manager.managed()?)?;
                Some(registry)
            }
            None => None,
        };
        // Last: a start that fails before here changes nothing in the
        // namespace.
        let namespace = dir.map(NamespaceState::take_over).transpose()?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            config: config.clone(),
            manager: manager.clone(),
            netns,
            stop: stop.clone(),
            registry: std::sync::Mutex::new(registry),
            sessions,
        };
        let thread = std::thread::Builder::new()
            .name("multipath-pmd".into())
            .spawn(move || server.serve(listeners))
            .map_err(PmError::Io)?;
        Ok(Daemon { stop, thread: Some(thread), socket: config.socket, created_dir, manager, namespace })
    }

    /// Stops the daemon and, with a `state_dir`, puts the namespace's
    /// path-manager type back: the value it restored, if any.
    pub fn stop(mut self) -> Result<Option<String>, PmError> {
        self.shut_down();
        self.namespace.take().map(NamespaceState::restore).transpose()
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Ok(Some(registry)) = t.join() {
                // A clean stop: nothing is left to adopt.
                let _ = registry.remove();
            }
        }
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = self.created_dir.take() {
            let _ = std::fs::remove_dir(dir); // only if nothing else is in it
        }
    }

    /// Whether the daemon still serves: its listener's thread and its path
    /// manager both running.
    pub fn is_running(&self) -> bool {
        self.manager.is_running() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The path manager behind the daemon.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shut_down();
        if let Some(namespace) = self.namespace.take() {
            if let Err(e) = namespace.restore() {
                tracing::error!(error = %e, "restoring net.mptcp.pm_type");
            }
        }
    }
}

fn seqpacket() -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
}

/// The pid of the daemon listening at `address`, if one does.
fn running_daemon(address: &Address) -> Option<i32> {
    let probe = seqpacket().ok()?;
    probe.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    probe.connect(&address.sockaddr().ok()?).ok()?;
    unix::peer_credentials(probe.as_fd()).ok().map(|c| c.pid)
}

fn already_running(address: &Address) -> PmError {
    match running_daemon(address) {
        Some(pid) => PmError::AlreadyRunning { address: address.to_string(), pid: Some(pid) },
        None => PmError::AlreadyRunning { address: address.to_string(), pid: None },
    }
}

fn finish_listener(sock: socket2::Socket) -> io::Result<OwnedFd> {
    sock.listen(128)?;
    sock.set_nonblocking(true)?;
    unix::pass_credentials(sock.as_fd())?;
    Ok(sock.into())
}

/// The namespace's abstract socket; `EADDRINUSE` means another daemon.
fn listen_abstract() -> Result<OwnedFd, PmError> {
    let address = Address::Abstract(ABSTRACT_NAME.to_owned());
    let sock = seqpacket()?;
    match sock.bind(&address.sockaddr()?) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Err(already_running(&address)),
        r => Ok(finish_listener(r.map(|()| sock)?)?),
    }
}

/// A filesystem socket at `path`. What is there already stays, unless it
/// is a socket nobody listens on (a dead daemon's).
fn listen_path(path: &Path) -> Result<OwnedFd, PmError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let address = Address::Path(path.to_owned());
    // Not following symlinks: a link is not ours to replace.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(PmError::SocketPathTaken { path: path.to_owned(), what: describe(&meta) })
        }
        Ok(_) => match running_daemon(&address) {
            Some(pid) => return Err(PmError::AlreadyRunning { address: address.to_string(), pid: Some(pid) }),
            None => std::fs::remove_file(path)?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let sock = seqpacket()?;
    sock.bind(&address.sockaddr()?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(finish_listener(sock)?)
}

fn describe(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a socket"
    }
}

/// How long a client may take to send its request after connecting.
const REQUEST_WITHIN: Duration = Duration::from_secs(2);
/// Clients connected and not yet heard from, at most; beyond that the
/// listeners are not even looked at until some leave.
const MAX_PENDING: usize = 256;
/// Of which one user may hold at most this many: a user opening hundreds
/// of silent connections locks out only itself.
const MAX_PENDING_PER_UID: usize = 8;
/// Longest pause after `accept` fails (out of descriptors, say), doubling
/// from 10 ms: the listener stays readable, and retrying at once would spin.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A client connected and not yet heard from, with who it is as the kernel
/// recorded it at `connect`.
struct Pending {
    stream: UnixStream,
    since: Instant,
    peer: Credentials,
    /// The program that connected, read at `accept` and checked against its
    /// pidfd (the pid still names the same process).
    exe: Option<PathBuf>,
}

struct Server {
    config: DaemonConfig,
    manager: Arc<Manager>,
    /// The daemon's own network namespace (its cookie).
    netns: u64,
    stop: Arc<AtomicBool>,
    /// Where registrations are recorded, with a `state_dir`.
    registry: std::sync::Mutex<Option<Registry>>,
    /// `mptcp run` processes whose descendants' connections get a service
    /// type.
    sessions: Sessions,
}

/// Processes given a service type for their unregistered connections
/// ([`Request::Run`]), shared with the manager's classifier.
type Sessions = Arc<std::sync::Mutex<Vec<RunSession>>>;

/// One `mptcp run`: the process as the kernel recorded it (pid and pidfd,
/// taken when it connected to the daemon) and what it asked for.
#[derive(Debug)]
struct RunSession {
    pid: i32,
    pidfd: OwnedFd,
    uid: u32,
    service: ServiceType,
}

/// `mptcp run` sessions one user may have at once.
const MAX_SESSIONS_PER_UID: usize = 64;

impl Server {
    /// Accepts clients and answers each one's single request as it
    /// arrives: a client that connects and says nothing holds no one else
    /// up, and is dropped after `REQUEST_WITHIN`.
    /// Serves until stopped; hands back the registry.
    fn serve(self, listeners: Vec<OwnedFd>) -> Option<Registry> {
        self.serve_until_stopped(listeners);
        self.registry.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn serve_until_stopped(&self, listeners: Vec<OwnedFd>) {
        let listeners: Vec<socket2::Socket> = listeners.into_iter().map(socket2::Socket::from).collect();
        let mut pending: Vec<Pending> = Vec::new();
        let (mut accept_after, mut backoff) = (Instant::now(), Duration::ZERO);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let listening = pending.len() < MAX_PENDING && now >= accept_after;
            let mut fds: Vec<_> = if listening { listeners.iter().map(|l| l.as_fd()).collect() } else { Vec::new() };
            let first_client = fds.len();
            fds.extend(pending.iter().map(|p| p.stream.as_fd()));
            // Wake for the stop flag, the next client's deadline, the end
            // of an accept backoff.
            let mut wait = Duration::from_millis(100);
            if let Some(oldest) = pending.iter().map(|p| p.since).min() {
                wait = wait.min((oldest + REQUEST_WITHIN).saturating_duration_since(now));
            }
            if !listening && now < accept_after {
                wait = wait.min(accept_after - now);
            }
            let ready = match poll_any(&fds, wait) {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(error = %e, "daemon socket");
                    return;
                }
            };
            let now = Instant::now();
            let mut done = Vec::new();
            for (i, p) in pending.iter().enumerate() {
                let replies = if ready[first_client + i] {
                    match self.handle(p) {
                        Some(replies) => replies,
                        None => {
                            done.push(i); // hung up without a word
                            continue;
                        }
                    }
                } else if now.duration_since(p.since) > REQUEST_WITHIN {
                    vec![Reply::Refused { reason: format!("no request within {} s", REQUEST_WITHIN.as_secs()) }]
                } else {
                    continue;
                };
                for reply in replies {
                    if let Reply::Refused { reason } = &reply {
                        tracing::info!(%reason, uid = p.peer.uid, pid = p.peer.pid, "registration refused");
                    }
                    // A client that stops reading gets no more.
                    if (&p.stream).write_all(&reply.encode()).is_err() {
                        break;
                    }
                }
                done.push(i);
            }
            for i in done.into_iter().rev() {
                pending.swap_remove(i);
            }
            if !listening {
                continue;
            }
            for (l, _) in listeners.iter().zip(&ready).filter(|(_, r)| **r) {
                match l.accept() {
                    Ok((client, _)) => {
                        backoff = Duration::ZERO;
                        if let Some(p) = self.admit(UnixStream::from(OwnedFd::from(client)), &pending, now) {
                            pending.push(p);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if backoff.is_zero() {
                            tracing::warn!(error = %e, "accepting clients; pausing (said once per streak)");
                        }
                        backoff = (backoff * 2).clamp(Duration::from_millis(10), ACCEPT_BACKOFF_MAX);
                        accept_after = now + backoff;
                    }
                }
            }
        }
    }

    /// Takes in a new client, as the kernel recorded it at `connect`;
    /// `None` (after telling it why) when its user already has too many
    /// requests in progress.
    fn admit(&self, stream: UnixStream, pending: &[Pending], now: Instant) -> Option<Pending> {
        // A reply is one small datagram; never wait long to send it.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let peer = unix::peer_credentials(stream.as_fd()).ok()?;
        if pending.iter().filter(|p| p.peer.uid == peer.uid).count() >= MAX_PENDING_PER_UID {
            let reason = format!("uid {} has {MAX_PENDING_PER_UID} registrations in progress already", peer.uid);
            let _ = (&stream).write_all(&Reply::Refused { reason }.encode());
            return None;
        }
        let _ = unix::pass_credentials(stream.as_fd());
        Some(Pending { exe: connected_program(&stream, peer), stream, since: now, peer })
    }

    /// One request: the replies to send, `None` when the client hung up.
    fn handle(&self, p: &Pending) -> Option<Vec<Reply>> {
        let mut buf = [0u8; MAX_MESSAGE + 1];
        let got = match unix::recv_with_fds(p.stream.as_fd(), &mut buf) {
            Ok(got) if got.len == 0 && got.fds.is_empty() => return None,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Some(vec![Reply::Refused { reason: "no request".into() }])
            }
            Err(e) => return Some(vec![Reply::Refused { reason: format!("reading the request: {e}") }]),
        };
        if got.truncated {
            return Some(vec![Reply::Refused { reason: format!("request longer than {MAX_MESSAGE} bytes") }]);
        }
        Some(vec![match Request::decode(&buf[..got.len]) {
            Err(e) => Reply::Refused { reason: e.to_string() },
            // Sizes only: nothing in them names a connection or a user.
            Ok(Request::Tables) => match self.manager.tables() {
                Ok(t) => Reply::Tables(t.counts().iter().map(|&(name, n)| (name.to_owned(), n as u64)).collect()),
                Err(e) => Reply::Refused { reason: e.to_string() },
            },
            Ok(Request::Check { service, program }) => match self.grants(p.peer.uid, Some(&program), service) {
                Ok(()) => Reply::Granted,
                Err(reason) => Reply::Refused { reason },
            },
            Ok(Request::Manage { service, origin }) => match self.register(p, got, service, origin) {
                Ok(token) => Reply::Managed { token },
                Err(reason) => Reply::Refused { reason },
            },
            Ok(Request::List) => return Some(self.list(p.peer.uid)),
            // Which local path answers fastest: nothing in it names a
            // connection or a user.
            Ok(Request::FirstPath { remote }) => match self.manager.first_path(remote) {
                Ok(first) => Reply::FirstPath(first),
                Err(e) => Reply::Refused { reason: e.to_string() },
            },
            Ok(Request::Run { service }) => match self.begin_run(p, service) {
                Ok(()) => Reply::Granted,
                Err(reason) => Reply::Refused { reason },
            },
        }])
    }

    /// Records an `mptcp run` session for the process that connected.
    fn begin_run(&self, p: &Pending, service: ServiceType) -> Result<(), String> {
        let pidfd = match unix::peer_pidfd(p.stream.as_fd()) {
            Ok(Some(fd)) => fd,
            _ => return Err("this kernel records no pidfd of the asking process (Linux 6.5+ needed)".into()),
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|s| unix::pidfd_alive(s.pidfd.as_fd()));
        if sessions.iter().filter(|s| s.uid == p.peer.uid).count() >= MAX_SESSIONS_PER_UID {
            return Err(format!("uid {} has {MAX_SESSIONS_PER_UID} mptcp run sessions already", p.peer.uid));
        }
        sessions.push(RunSession { pid: p.peer.pid, pidfd, uid: p.peer.uid, service });
        Ok(())
    }

    /// The managed connections `asker` may see (root: all; a user: their
    /// own), then the end mark.
    fn list(&self, asker: u32) -> Vec<Reply> {
        let conns = match self.manager.connections() {
            Ok(conns) => conns,
            Err(e) => return vec![Reply::Refused { reason: e.to_string() }],
        };
        // Who holds the others, as the kernel recorded it.
        let unregistered: HashSet<u32> = conns.iter().filter(|c| c.registrant.is_none()).map(|c| c.token).collect();
        let recorded = if unregistered.is_empty() { HashMap::new() } else { kernel_owners(&unregistered) };
        let holders = owner::holders(&recorded.values().map(|&(_, inode)| inode).collect());
        let mut replies: Vec<Reply> = conns
            .into_iter()
            .map(|c| {
                let (uid, pid, program) = match &c.registrant {
                    Some(r) => (Some(r.uid), Some(r.pid), r.program.clone()),
                    None => {
                        let recorded = recorded.get(&c.token);
                        let holder = recorded.and_then(|(_, inode)| holders.get(inode));
                        (recorded.map(|r| r.0), holder.map(|h| h.pid), holder.and_then(|h| h.program.clone()))
                    }
                };
                Listed {
                    token: c.token,
                    service: c.view.service,
                    source: c.source.to_string(),
                    uid,
                    pid,
                    program,
                    remote: c.view.remote,
                    active: c.view.active,
                    subflows: c
                        .view
                        .subflows
                        .into_iter()
                        .map(|s| ListedSubflow {
                            path: s.path,
                            local: s.local,
                            backup: s.backup,
                            established: s.established,
                        })
                        .collect(),
                    held_back: c.view.held_back,
                    backed_off: c.view.backed_off,
                    receive_buffer: c.view.receive_buffer.map(|r| (r.need, r.cap)),
                }
            })
            .filter(|l| asker == 0 || l.uid == Some(asker))
            .map(|l| Reply::Listed(Box::new(l)))
            .collect();
        replies.push(Reply::End);
        replies
    }

    fn register(&self, p: &Pending, got: unix::Received, service: ServiceType, origin: Origin) -> Result<u32, String> {
        if got.fds_truncated || got.fds.len() > 1 {
            return Err("attach exactly one descriptor, the connection's socket".into());
        }
        // Read and closed before this returns: the daemon keeps nothing open.
        let fd = got.fds.into_iter().next().ok_or("no descriptor attached: pass the connection's socket")?;
        // The process that connected must be the one asking: a child or a
        // process it passed the daemon socket to is someone else.
        match got.sender {
            Some(sender) if sender.pid == p.peer.pid => {}
            Some(sender) => {
                return Err(format!(
                "the request came from pid {}, not from pid {} that connected: register from the process that connects",
                sender.pid, p.peer.pid
            ))
            }
            None => return Err("the request carries no sender credentials".into()),
        }
        // Nothing is asked of a descriptor before it is known to be a socket
        // of ours to look at.
        if !multipath::raw::is_mptcp_socket(fd.as_fd()).unwrap_or(false) {
            return Err("the descriptor is not an MPTCP socket".into());
        }
        match unix::netns_cookie(fd.as_fd()) {
            Ok(ns) if ns == self.netns => {}
            Ok(_) => {
                return Err("the socket belongs to another network namespace: register with the daemon of its \
                            namespace"
                    .into())
            }
            Err(e) => return Err(format!("cannot tell the socket's network namespace: {e}")),
        }
        self.grants(p.peer.uid, p.exe.as_deref(), service)?;
        let owner = Registrant {
            uid: p.peer.uid,
            pid: p.peer.pid,
            program: p.exe.clone(),
            origin,
            limit: self.config.max_per_uid,
        };
        let token = self.manager.manage_for(fd.as_fd(), service, Some(owner)).map_err(|e| e.to_string())?;
        self.record(token, service);
        Ok(token)
    }

    /// Keeps a registration for the next daemon, should this one crash.
    fn record(&self, token: u32, service: ServiceType) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = registry.as_mut() else { return };
        let result = r.record(token, service).and_then(|full| match full {
            // Asked only when full: it lists every managed connection.
            true => self.manager.managed().map_err(io::Error::other).and_then(|live| r.rewrite(&live)),
            false => Ok(()),
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "recording a registration");
        }
    }

    /// Whether `uid` running `program` may have `service`: everything but
    /// aggregate, which needs an entitlement of the user or the program.
    fn grants(&self, uid: u32, program: Option<&Path>, service: ServiceType) -> Result<(), String> {
        if service != ServiceType::Aggregate || self.config.entitled(Some(uid), program) {
            return Ok(());
        }
        Err(format!(
            // The keys first: the reply holds 256 bytes, and a long
            // program path may be cut.
            "aggregate needs an entitlement (mptcp pmd --aggregate-uid, --aggregate-exe, or [entitlements] in its \
             configuration); uid {uid} and its program ({}) have none",
            program.map_or("unknown".into(), |e| e.display().to_string())
        ))
    }
}

/// The daemon's rules as the manager's [`crate::Classifier`]: the program
/// and cgroup of a connection are looked up (through its socket's inode)
/// only when a rule could need them.
#[derive(Debug)]
struct RuleClassifier {
    config: DaemonConfig,
    sessions: Sessions,
    /// Rules whose aggregate was refused for want of an entitlement, said
    /// once each.
    refused_said: std::sync::Mutex<HashSet<usize>>,
}

impl crate::Classifier for RuleClassifier {
    fn active(&self) -> bool {
        !self.config.rules.0.is_empty() || !self.sessions.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    fn classify(&self, conn: &crate::Recorded) -> Option<(ServiceType, String)> {
        let rules = &self.config.rules;
        // The live `mptcp run` sessions of the connection's user.
        let sessions: Vec<(i32, ServiceType)> = {
            let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|s| unix::pidfd_alive(s.pidfd.as_fd()));
            all.iter().filter(|s| s.uid == conn.uid).map(|s| (s.pid, s.service)).collect()
        };
        let known = Subject { uid: Some(conn.uid), remote: Some(conn.remote), ..Subject::default() };
        let needs_process = !sessions.is_empty()
            || rules.0.iter().any(|r| {
                (r.exe.is_some() || r.cgroup.is_some() || r.service == ServiceType::Aggregate)
                    && r.matches_ignoring_process(&known)
            });
        if !needs_process && rules.0.is_empty() {
            return None;
        }
        let holder = needs_process.then(|| owner::holders(&HashSet::from([conn.inode])).remove(&conn.inode)).flatten();
        // A program under `mptcp run` (or its child) that did not register
        // the connection itself: statically linked, Go, a preload refused.
        if let Some(h) = holder.as_ref().filter(|_| !sessions.is_empty()) {
            let ancestry = owner::ancestry(h.pid);
            if let Some(&(_, service)) = sessions.iter().find(|(pid, _)| ancestry.contains(pid)) {
                if service != ServiceType::Aggregate || self.config.entitled(Some(conn.uid), h.program.as_deref()) {
                    return Some((service, "run".into()));
                }
            }
        }
        let cgroup = holder.as_ref().zip(conn.cgroup).and_then(|(h, id)| owner::cgroup_path(h.pid, id));
        let subject =
            Subject { exe: holder.as_ref().and_then(|h| h.program.as_deref()), cgroup: cgroup.as_deref(), ..known };
        match self.config.decide(&subject) {
            Decision::Rule { index, service } => Some((service, rules.label(index))),
            Decision::NotEntitled { index } => {
                if self.refused_said.lock().unwrap_or_else(|e| e.into_inner()).insert(index) {
                    tracing::warn!(
                        rule = %rules.name(index),
                        uid = conn.uid,
                        program = ?subject.exe,
                        "a rule gives aggregate to a connection without an entitlement: it gets the default \
                         (said once per rule)"
                    );
                }
                None
            }
            Decision::Default => None,
        }
    }
}

/// The user and socket inode the kernel recorded for each of `tokens`
/// (MPTCP dumps of both families); a connection gone meanwhile is missing.
fn kernel_owners(tokens: &HashSet<u32>) -> HashMap<u32, (u32, u32)> {
    let mut found = HashMap::new();
    let Ok(mut diag) = Diag::open() else { return found };
    for v6 in [false, true] {
        let _ = diag.dump(Query::AllConnections { v6 }, |msg| {
            if let Some(info) = msg.info.and_then(|b| multipath::MptcpInfo::decode(b).ok()) {
                if tokens.contains(&info.token) {
                    found.insert(info.token, (msg.uid, msg.inode));
                }
            }
        });
    }
    found
}

/// The program of the process that connected to `stream`: its
/// `/proc/<pid>/exe`, read now and trusted only if the pidfd the kernel
/// recorded at `connect` shows the pid still names that process. Without
/// pidfds (before Linux 6.5) no program is trusted.
fn connected_program(stream: &UnixStream, peer: Credentials) -> Option<PathBuf> {
    let pidfd = unix::peer_pidfd(stream.as_fd()).ok()??;
    let exe = std::fs::read_link(format!("/proc/{}/exe", peer.pid)).ok()?;
    unix::pidfd_alive(pidfd.as_fd()).then_some(exe)
}
