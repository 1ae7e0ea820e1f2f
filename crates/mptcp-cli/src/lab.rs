//! `mptcp lab up|down|status`.

use anyhow::{Context, Result};
use clap::Subcommand;
use multipath_lab::{cleanup, Lab, LabConfig};

use crate::pathspec;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build a lab and keep it until Ctrl-C (or SIGTERM), then tear it down.
    Up {
        /// Paths as `NAME:RATE:RTT[:LOSS][:v4|v6|dual]`, in preference order
        /// [default: wifi:20mbit:20ms cell:10mbit:60ms].
        #[arg(long = "path", value_name = "SPEC")]
        paths: Vec<String>,
        /// Add every path but the first as a kernel path-manager endpoint
        /// (`subflow`), so MPTCP connections get a subflow on each.
        #[arg(long)]
        kernel_endpoints: bool,
    },
    /// Remove labs: all of them, or those whose owner process is gone.
    Down {
        /// Only labs whose owner process is gone.
        #[arg(long)]
        stale: bool,
    },
    /// List the labs on this machine.
    Status,
    /// Same as `mptcp demo`.
    Demo(crate::demo::DemoArgs),
}

pub fn run(command: LabCommand) -> Result<()> {
    match command {
        LabCommand::Up { paths, kernel_endpoints } => up(paths, kernel_endpoints),
        LabCommand::Down { stale } => {
            let removed = cleanup::remove_labs(stale);
            if removed.is_empty() {
                println!("no labs to remove");
            }
            for name in removed {
                println!("removed {name}");
            }
            Ok(())
        }
        LabCommand::Status => {
            let labs = cleanup::list_labs();
            if labs.is_empty() {
                println!("no labs");
            }
            for lab in labs {
                let owner = if lab.owner_alive { "running" } else { "stale: owner gone, `mptcp lab down --stale`" };
                println!("{} (pid {}, {owner}): {}", lab.name, lab.owner_pid, lab.namespaces.join(" "));
            }
            Ok(())
        }
        LabCommand::Demo(args) => crate::demo::run(args),
    }
}

pub fn config_from(paths: &[String]) -> Result<LabConfig> {
    if paths.is_empty() {
        return Ok(LabConfig::wifi_cell());
    }
    let mut config = LabConfig::new();
    for spec in paths {
        config = config.path(pathspec::parse(spec)?);
    }
    Ok(config)
}

fn up(paths: Vec<String>, kernel_endpoints: bool) -> Result<()> {
    let config = config_from(&paths)?;
    let shutdown = crate::shutdown::Shutdown::listen()?;
    let lab = Lab::up(&config).context("building the lab")?;
    if kernel_endpoints {
        for p in &lab.paths()[1..] {
            lab.add_kernel_endpoint(p.name(), false)?;
        }
    }
    print!("{}", lab.describe());
    println!("press Ctrl-C to tear the lab down");
    shutdown.wait();
    drop(lab);
    println!("lab torn down");
    Ok(())
}
