//! `mptcp`: the multipath command line.
//!
//! - `mptcp lab up|down|status`: multi-path test networks in namespaces.
//! - `mptcp demo` (also `mptcp lab demo`): each service type and the kernel through a failing Wi-Fi.
//! - `mptcp pmd`: the path-manager daemon.
//! - `mptcp run --service T -- PROGRAM`: an unmodified program under a service type.
//! - `mptcp ls`: the connections the daemon manages.
//! - `mptcp monitor`: live path-manager events and path changes.
//! - `mptcp get`, `mptcp check`, `mptcp serve`: HTTP over multipath.
//! - `mptcp bench ...`: benchmarks, each beside its baseline.

mod bench;
mod check;
mod demo;
mod get;
mod lab;
mod ls;
mod monitor;
mod pathspec;
mod pmd;
mod pmd_config;
mod run;
mod serve;
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
    /// The same download through a failing Wi-Fi under each service type and the kernel,
    /// with a table, sentences and pictures (needs root).
    Demo(demo::DemoArgs),
    /// Print the kernel's path-manager events and path changes as they happen (needs root).
    Monitor(monitor::MonitorArgs),
    /// The path-manager daemon: enforces the service types programs register (needs root).
    Pmd(pmd::PmdArgs),
    /// Run an unmodified program with its TCP connections under a service type, enforced by
    /// the daemon (`mptcp pmd`).
    Run(run::RunArgs),
    /// The connections the daemon manages: program, user, service type and where it came
    /// from, paths and subflows.
    Ls(ls::LsArgs),
    /// Fetch a URL over a multipath session (curl-like).
    Get(get::GetArgs),
    /// Ask a check.mptcp.dev-style server whether this connection uses MPTCP, and compare
    /// with the socket's own answer.
    Check(check::CheckArgs),
    /// Serve the check.mptcp.dev protocol and test files (HTTP and HTTPS).
    Serve(serve::ServeArgs),
    /// Benchmarks, each measured side by side with its baseline.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The causes, one line; never a backtrace (RUST_BACKTRACE may be
            // set in the user's environment).
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal, never into a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Lab { command } => lab::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Pmd(args) => pmd::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Run(args) => run::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Get(args) => get::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench { command } => bench::run(command),
    }
}
