//! `mptcp pmd`: the path-manager daemon.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use multipath::daemon_client::DEFAULT_SOCKET;
use multipath_pm::{Daemon, DaemonConfig};

#[derive(Args)]
pub struct PmdArgs {
    /// Unix socket programs register their connections on.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// A user id entitled to `aggregate` (repeatable).
    #[arg(long = "aggregate-uid", value_name = "UID")]
    aggregate_uids: Vec<u32>,
    /// An executable entitled to `aggregate` (repeatable).
    #[arg(long = "aggregate-exe", value_name = "PATH")]
    aggregate_executables: Vec<PathBuf>,
}

const PM_TYPE: &str = "/proc/sys/net/mptcp/pm_type";

/// Runs until SIGINT/SIGTERM/SIGHUP. Switches this network namespace to the
/// userspace path manager and puts the previous setting back on exit.
pub fn run(args: PmdArgs) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("mptcp pmd needs CAP_NET_ADMIN (run it as root)");
    }
    let previous = std::fs::read_to_string(PM_TYPE).context("reading net.mptcp.pm_type (is MPTCP enabled?)")?;
    let shutdown = crate::shutdown::Shutdown::listen()?;
    std::fs::write(PM_TYPE, "1").context("switching to the userspace path manager")?;
    let config = DaemonConfig {
        socket: args.socket.clone(),
        aggregate_uids: args.aggregate_uids,
        aggregate_executables: args.aggregate_executables,
        ..Default::default()
    };
    let daemon = match Daemon::start(config) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::write(PM_TYPE, previous.trim());
            return Err(e).context("starting the path manager");
        }
    };
    eprintln!("mptcp pmd: managing MPTCP connections; register on {}", args.socket.display());
    shutdown.wait();
    drop(daemon);
    std::fs::write(PM_TYPE, previous.trim()).context("restoring net.mptcp.pm_type")?;
    eprintln!("mptcp pmd: stopped; net.mptcp.pm_type restored to {}", previous.trim());
    Ok(())
}
