//! `mptcp`: the multipath command line.
//!
//! - `mptcp lab up|down|status`: multi-path test networks in namespaces.
//! - `mptcp demo` (also `mptcp lab demo`): a lab, an MPTCP connection across it, its subflows.
//! - `mptcp pmd`: the path-manager daemon.
//! - `mptcp monitor`: live path-manager events and path changes.
//! - `mptcp bench throughput`: the library against raw kernel MPTCP sockets.

mod bench;
mod bench_aggregate;
mod bench_handover;
mod bench_interactive;
mod bench_lab;
mod bench_scale;
mod demo;
mod lab;
mod monitor;
mod pathspec;
mod pmd;
mod pmd_config;
mod shutdown;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mptcp", version, about = "Multipath TCP with Apple's service types, on Linux")]
struct Cli {
    /// More logging (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Multi-path test networks in network namespaces (needs root).
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Build a lab, open an MPTCP connection across it and show its subflows (needs root).
    Demo(demo::DemoArgs),
    /// Print the kernel's path-manager events and path changes as they happen (needs root).
    Monitor(monitor::MonitorArgs),
    /// The path-manager daemon: enforces the service types programs register (needs root).
    Pmd(pmd::PmdArgs),
    /// Benchmarks, each measured side by side with its baseline.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Lab { command } => lab::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Pmd(args) => pmd::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Bench { command } => bench::run(command),
    }
}
