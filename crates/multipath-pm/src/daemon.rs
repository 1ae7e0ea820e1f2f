//! The path-manager daemon: unprivileged programs hand it their MPTCP
//! connections over a Unix socket, passing the socket itself, and it
//! enforces the service type they ask for (aggregate only for entitled
//! users or programs).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multipath::daemon_client::MAX_MESSAGE;
use multipath::ServiceType;

use crate::netlink::socket::{peer_credentials, poll_any, recv_with_fds};
use crate::policy::PolicyConfig;
use crate::{Manager, PmError};

/// Who may ask for `aggregate`, and where to listen.
#[derive(Clone, Debug, Default)]
pub struct DaemonConfig {
    /// The Unix socket to listen on.
    pub socket: PathBuf,
    /// User ids entitled to `aggregate`.
    pub aggregate_uids: Vec<u32>,
    /// Executables entitled to `aggregate` (as `/proc/<pid>/exe` shows them).
    pub aggregate_executables: Vec<PathBuf>,
    /// Policy tunables.
    pub policy: PolicyConfig,
    /// Where to report every command sent (see [`Manager::start_with_log`]).
    pub command_log: Option<std::sync::mpsc::SyncSender<crate::manager::SentCommand>>,
}

/// A running daemon. Dropping it stops accepting, removes the socket file
/// and stops the path manager.
#[derive(Debug)]
pub struct Daemon {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
    /// The socket's directory, when the daemon created it.
    created_dir: Option<PathBuf>,
    manager: Arc<Manager>,
}

impl Daemon {
    /// Starts the path manager in the calling thread's network namespace
    /// and listens on `config.socket` (mode 0666: any local user may
    /// register its own connections).
    pub fn start(config: DaemonConfig) -> Result<Daemon, PmError> {
        let mut policy = config.policy.clone();
        // Unregistered connections behave as under the kernel's manager.
        policy.default_service.get_or_insert(ServiceType::Aggregate);
        let manager = Arc::new(Manager::start_with_log(policy, config.command_log.clone())?);
        let created_dir = config.socket.parent().filter(|d| !d.exists()).map(Path::to_path_buf);
        let listener = listen(&config.socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, manager2, socket) = (stop.clone(), manager.clone(), config.socket.clone());
        let thread = std::thread::Builder::new()
            .name("multipath-pmd".into())
            .spawn(move || serve(listener, &config, &manager2, &stop2))
            .map_err(PmError::Io)?;
        Ok(Daemon { stop, thread: Some(thread), socket, created_dir, manager })
    }

    /// The path manager behind the daemon.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = &self.created_dir {
            let _ = std::fs::remove_dir(dir); // only if nothing else is in it
        }
    }
}

fn listen(path: &Path) -> Result<OwnedFd, PmError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a daemon that died is in the way.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let sock = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    sock.bind(&SockAddr::unix(path)?)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    sock.listen(128)?;
    Ok(sock.into())
}

/// How long a client may take to send its request after connecting.
const REQUEST_WITHIN: Duration = Duration::from_secs(2);
/// Clients connected and not yet heard from, at most.
const MAX_PENDING: usize = 256;

/// Accepts clients and answers each one's single request as it arrives: a
/// client that connects and says nothing holds no one else up, and is
/// dropped after `REQUEST_WITHIN`.
fn serve(listener: OwnedFd, config: &DaemonConfig, manager: &Manager, stop: &AtomicBool) {
    let listener = socket2::Socket::from(listener);
    let mut pending: Vec<(UnixStream, Instant)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut fds = vec![listener.as_fd()];
        fds.extend(pending.iter().map(|(c, _)| c.as_fd()));
        // Wake now and then to notice the stop flag and late clients.
        let ready = match poll_any(&fds, Duration::from_millis(100)) {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(error = %e, "daemon socket");
                return;
            }
        };
        let now = Instant::now();
        let mut answered = Vec::new();
        for (i, (client, since)) in pending.iter().enumerate() {
            let reply = if ready[i + 1] {
                match handle(client, config, manager) {
                    Ok(token) => format!("ok {token}"),
                    Err(reason) => {
                        tracing::info!(%reason, "registration refused");
                        format!("error {reason}")
                    }
                }
            } else if now.duration_since(*since) > REQUEST_WITHIN {
                format!("error no request within {} s", REQUEST_WITHIN.as_secs())
            } else {
                continue;
            };
            let _ = (&*client).write_all(reply.as_bytes());
            answered.push(i);
        }
        for i in answered.into_iter().rev() {
            pending.swap_remove(i);
        }
        if ready[0] && pending.len() < MAX_PENDING {
            if let Ok((client, _)) = listener.accept() {
                let client = UnixStream::from(OwnedFd::from(client));
                // A reply is one small datagram; never wait long to send it.
                let _ = client.set_write_timeout(Some(Duration::from_millis(100)));
                pending.push((client, now));
            }
        }
    }
}

/// One registration: the request, the caller, the descriptor, the policy.
fn handle(client: &UnixStream, config: &DaemonConfig, manager: &Manager) -> Result<u32, String> {
    let mut buf = [0u8; MAX_MESSAGE];
    let got = recv_with_fds(client.as_fd(), &mut buf).map_err(|e| format!("reading the request: {e}"))?;
    if got.truncated {
        return Err(format!("request longer than {MAX_MESSAGE} bytes"));
    }
    if got.fds_truncated || got.fds.len() > 1 {
        return Err("attach exactly one descriptor, the connection's socket".into());
    }
    let text = std::str::from_utf8(&buf[..got.len]).map_err(|_| "request is not text".to_string())?;
    let service = match text.trim().split_once(' ') {
        Some(("manage", service)) => service.parse::<ServiceType>().map_err(|e| e.to_string())?,
        _ => return Err(format!("malformed request {:?} (expected `manage <service>`)", text.trim())),
    };
    let fd = got.fds.into_iter().next().ok_or("no descriptor attached: pass the connection's socket")?;
    let (pid, uid) = peer_credentials(client.as_fd()).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if service == ServiceType::Aggregate && !entitled(config, pid, uid) {
        return Err(format!("aggregate needs an entitlement; uid {uid} and its program are not granted one"));
    }
    if !multipath::raw::is_mptcp_socket(fd.as_fd()).unwrap_or(false) {
        return Err("the descriptor is not an MPTCP socket".into());
    }
    manager.manage(fd.as_fd(), service).map_err(|e| e.to_string())
}

fn entitled(config: &DaemonConfig, pid: i32, uid: u32) -> bool {
    if config.aggregate_uids.contains(&uid) {
        return true;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    exe.is_ok_and(|exe| config.aggregate_executables.contains(&exe))
}
