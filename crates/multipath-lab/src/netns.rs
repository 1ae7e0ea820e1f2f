//! Named network namespaces, and running code inside them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use crate::{cmd, LabError, Result};

/// A named network namespace (`/run/netns/NAME`), as `ip netns` makes them.
///
/// Code runs inside it on a thread of its own ([`Netns::run`]): a socket
/// created there stays in the namespace for its whole life, wherever it is
/// used afterwards.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub(crate) fn create(name: &str) -> Result<Netns> {
        cmd::run("ip", &["netns", "add", name])?;
        let ready = Netns::open(name).and_then(|ns| cmd::ip(name, &["link", "set", "lo", "up"]).map(|_| ns));
        if ready.is_err() {
            let _ = destroy(name);
        }
        ready
    }

    /// Opens an existing namespace.
    pub fn open(name: &str) -> Result<Netns> {
        let path = Netns::path_of(name);
        let file = File::open(&path).map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
        Ok(Netns { name: name.to_owned(), file })
    }

    fn path_of(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// The namespace's name, for `ip netns exec NAME ...`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread inside this namespace and returns its
    /// result; a panic in `f` is propagated to the caller.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let fd = self.file.as_raw_fd();
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("ns-{}", self.name))
                .spawn_scoped(scope, move || {
                    enter(fd).unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
                    f()
                })
                .expect("spawn thread");
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts `f` on a detached thread inside this namespace, e.g. a server.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<std::thread::JoinHandle<R>> {
        let file = self.file.try_clone().map_err(|e| LabError::io("dup netns fd", e))?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("ns-{name}"))
            .spawn(move || {
                enter(file.as_raw_fd()).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
                drop(file);
                f()
            })
            .map_err(|e| LabError::io("spawn thread", e))
    }

    /// A command that will run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Writes a sysctl of this namespace (`net.ipv4.ip_forward` style name).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value)).map_err(|e| LabError::io(format!("sysctl {key}={value}"), e))
    }

    /// Reads a sysctl of this namespace.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::read_to_string(&path))
            .map(|s| s.trim().to_owned())
            .map_err(|e| LabError::io(format!("read sysctl {key}"), e))
    }
}

/// Kills every process left in the namespace `name`, then deletes it.
pub(crate) fn destroy(name: &str) -> Result<()> {
    kill_processes(name);
    cmd::run("ip", &["netns", "del", name]).map(drop)
}

/// Kills the processes `ip netns pids` lists for `name`.
pub(crate) fn kill_processes(name: &str) {
    let Ok(pids) = cmd::run("ip", &["netns", "pids", name]) else { return };
    for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Moves the calling thread into the namespace behind `fd` (`setns(2)`).
fn enter(fd: i32) -> io::Result<()> {
    // SAFETY: setns takes a file descriptor and a flag; it only changes the
    // calling thread's network namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
