//! `mptcp pmd`: the path-manager daemon.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use std::sync::mpsc::SyncSender;

use multipath::daemon_client::ABSTRACT_NAME;
use multipath_pm::{Daemon, SentCommand};

use crate::pmd_config;

#[derive(Args)]
pub struct PmdArgs {
    /// Configuration file (TOML; see `--print-config` for every key and its default).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the documented default configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Check the configuration, print what it resolves to, and exit.
    #[arg(long)]
    check_config: bool,
    /// With --check-config: which rule a connection would hit, given as
    /// `exe=PATH,uid=N,cgroup=PATH,port=N,address=IP` (any of them; repeatable).
    #[arg(long, value_name = "CONNECTION", requires = "check_config")]
    sample: Vec<pmd_config::Sample>,
    /// A filesystem socket to listen on too, besides this network
    /// namespace's abstract `@multipath-pmd` (overrides the file).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// A user id entitled to `aggregate` (repeatable; adds to the file's).
    #[arg(long = "aggregate-uid", value_name = "UID")]
    aggregate_uids: Vec<u32>,
    /// An executable entitled to `aggregate` (repeatable; adds to the file's).
    #[arg(long = "aggregate-exe", value_name = "PATH")]
    aggregate_executables: Vec<PathBuf>,
    /// Append one line per netlink command sent: CLOCK_MONOTONIC ns, token,
    /// command, ok|refused (for `mptcp bench scale`).
    #[arg(long, value_name = "FILE", hide = true)]
    command_log: Option<PathBuf>,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` reads, comparable
/// across processes.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes the command log until the daemon drops its sender.
fn command_log(path: &std::path::Path) -> Result<(SyncSender<SentCommand>, std::thread::JoinHandle<()>)> {
    use std::io::Write;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<SentCommand>(1 << 16);
    let thread = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(file);
        for sent in rx {
            let ago = sent.at.elapsed().as_nanos() as u64;
            let verdict = if sent.refused.is_some() { "refused" } else { "ok" };
            let line = format!("{} {} {} {verdict}", monotonic_ns() - ago, sent.command.token(), sent.command.name());
            if writeln!(out, "{line}").is_err() {
                return;
            }
        }
        let _ = out.flush();
    });
    Ok((tx, thread))
}

/// Where the daemon keeps what it must put back, per network namespace.
const STATE_DIR: &str = "/run/multipath";

/// Runs until SIGINT/SIGTERM/SIGHUP. Switches this network namespace to the
/// userspace path manager and puts the previous setting back on exit.
pub fn run(args: PmdArgs) -> Result<()> {
    if args.print_config {
        print!("{}", pmd_config::DOCUMENTED);
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => pmd_config::load(path)?,
        None => pmd_config::defaults(),
    };
    if let Some(socket) = args.socket {
        if !socket.is_absolute() {
            bail!("--socket {}: not an absolute path", socket.display());
        }
        config.socket = Some(socket);
    }
    config.aggregate_uids.extend(args.aggregate_uids);
    if let Some(exe) = args.aggregate_executables.iter().find(|p| !p.is_absolute()) {
        bail!("--aggregate-exe {}: not an absolute path", exe.display());
    }
    config.aggregate_executables.extend(args.aggregate_executables);
    if args.check_config {
        if args.sample.is_empty() {
            println!("{config:#?}");
        }
        for sample in &args.sample {
            println!("{}", pmd_config::explain(&config, sample));
        }
        return Ok(());
    }
    if !multipath_lab::is_root() {
        bail!("mptcp pmd needs CAP_NET_ADMIN (run it as root)");
    }
    let shutdown = crate::shutdown::Shutdown::listen()?;
    let socket = config.socket.clone();
    let log = args.command_log.as_deref().map(command_log).transpose()?;
    let log_thread = log.map(|(tx, thread)| {
        config.command_log = Some(tx);
        thread
    });
    // The daemon first: it holds the namespace's lock, so a second one
    // stops here, before it touches anything.
    config.state_dir = Some(STATE_DIR.into());
    let daemon = Daemon::start(config).context("starting the path manager")?;
    match socket {
        Some(path) => {
            eprintln!("mptcp pmd: managing MPTCP connections; register on @{ABSTRACT_NAME} or {}", path.display())
        }
        None => eprintln!("mptcp pmd: managing MPTCP connections; register on @{ABSTRACT_NAME}"),
    }
    // A daemon whose path manager died (a bug) must not linger half alive:
    // it stops, puts the namespace back, and says so.
    let signalled = shutdown.wait_while(|| daemon.is_running());
    if !signalled {
        eprintln!("mptcp pmd: the path manager stopped unexpectedly (see above); stopping");
    }
    let restored = daemon.stop().context("restoring net.mptcp.pm_type")?;
    if let Some(t) = log_thread {
        let _ = t.join();
    }
    eprintln!("mptcp pmd: stopped; net.mptcp.pm_type restored to {}", restored.unwrap_or_default());
    if !signalled {
        anyhow::bail!("the path manager stopped unexpectedly");
    }
    Ok(())
}
