//! `mptcp bench`: measurements taken side by side with their baseline in
//! the same run, reported as ratios. One file per benchmark; `lab` sets up
//! the contenders of the lab benchmarks, `stats` holds what they share.

pub mod aggregate;
pub mod handover;
pub mod http;
pub mod interactive;
pub mod lab;
pub mod matrix;
pub mod run;
pub mod scale;
mod stats;
mod throughput;

pub(crate) use stats::quantile;

use anyhow::Result;
use clap::Subcommand;
use multipath::ServiceType;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Bulk upload through `multipath` connections against raw kernel MPTCP
    /// sockets, on loopback and (as root) across an unshaped lab path.
    Throughput {
        /// Seconds per transfer.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Transfers per contender, alternated. Single transfers vary by
        /// ±30% on a shared 2-core VM; 30 rounds bring the median ratio
        /// within about ±3%.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Skip the lab part.
        #[arg(long)]
        loopback_only: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// `mptcp get` against curl (under mptcpize) fetching one file from
    /// `mptcp serve` on loopback, HTTP and HTTPS.
    Get {
        /// File size (`/files/<size>`).
        #[arg(long, default_value = "1000M")]
        size: String,
        /// Alternated transfers per contender and scheme.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// wrk (under mptcpize) against `mptcp serve`'s check endpoint on
    /// loopback: requests/s and latency percentiles.
    Serve {
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Server worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bulk download: plain TCP on each path alone, kernel path manager with
    /// both paths active, multipath aggregate (needs root).
    Aggregate {
        /// Seconds per transfer (with --matrix at least 12: bulk goodput
        /// is counted after the first 8).
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// Pairs of unlike paths instead (20/10 Mbit/s 20/60 ms, 20/20
        /// 20/200, 20/3 20/200 with 1% loss, 50/1 10/300, 5/20 80/30), with
        /// short transfers (100 KB, 1 MB) against the best path alone.
        #[arg(long)]
        matrix: bool,
        /// With --matrix: short transfers per contender and size.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// With --matrix: only this row (1 to 5).
        #[arg(long)]
        row: Option<usize>,
        /// With --matrix: a fixed receive buffer (SO_RCVBUF) of this many
        /// bytes for the MPTCP contenders, instead of autotuning.
        #[arg(long)]
        recv_buffer: Option<usize>,
        /// With --matrix: multipath aggregate without its contribution
        /// guard (every path active, as the kernel's path manager has them).
        #[arg(long)]
        unguarded: bool,
        /// With --matrix: the server's congestion control for every
        /// contender (default: the library's choice, cubic for aggregate
        /// sockets where available).
        #[arg(long, value_name = "NAME")]
        sender_cc: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// 20 KB echo exchanges: plain TCP on each path alone, the kernel path
    /// manager with both paths active, multipath interactive; before and
    /// after wifi's delay rises (needs root).
    Interactive {
        /// Exchanges measured per phase.
        #[arg(long, default_value_t = 100)]
        exchanges: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Many concurrent connections registered with one daemon, opened at a
    /// steady rate, beside the kernel's path manager (needs root).
    Scale {
        /// Connections held open at the end.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// New connections per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Connections kept busy (100 bytes every 50 ms each) while the
        /// daemon's CPU is measured again.
        #[arg(long, default_value_t = 1000)]
        busy: usize,
        /// Service type every connection registers with: none, handover,
        /// interactive or aggregate.
        #[arg(long, default_value = "handover")]
        service: ServiceType,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unmodified programs (curl, python3) under `mptcp run` against `mptcpize run`: bulk
    /// throughput, connect() time, and a steady rate of connections from one program
    /// (needs root, mptcpize, curl and python3).
    Run {
        /// File curl downloads (`/files/<size>`).
        #[arg(long, default_value = "200M")]
        size: String,
        /// Alternated rounds per contender.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Connections timed per round.
        #[arg(long, default_value_t = 200)]
        connects: usize,
        /// New connections per second in the rate part.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds of the rate part.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Wifi's rate in Mbit/s (0: unshaped, where the CPU is the bottleneck).
        #[arg(long, default_value_t = 200.0)]
        wifi_mbit: f64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The greeting server of `bench scale`, run in the lab's server namespace.
    #[command(hide = true)]
    ScaleServer,
    /// Wifi fails mid-transfer and comes back: stalls and the return to
    /// wifi, kernel path manager against multipath's handover (needs root).
    Handover {
        /// How wifi fails.
        #[arg(long, value_enum, default_value = "down")]
        failure: crate::bench::handover::Failure,
        /// Which way data flows.
        #[arg(long, value_enum, default_value = "download")]
        flow: crate::bench::handover::Flow,
        /// The connection's family (the lab is dual stack).
        #[arg(long, value_enum, default_value = "v4")]
        family: crate::bench::lab::Family,
        /// Two paths (wifi fails) or three (eth, then wifi, fail; eth returns).
        #[arg(long, value_enum, default_value = "two")]
        paths: crate::bench::handover::Topology,
        /// Runs per path manager.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Scale { connections, rate, busy, service, json } => {
            crate::bench::scale::run(connections, rate, busy, service, json)
        }
        BenchCommand::ScaleServer => crate::bench::scale::serve(),
        BenchCommand::Run { size, rounds, connects, rate, seconds, wifi_mbit, json } => {
            crate::bench::run::run(crate::bench::run::Options {
                size: &size,
                rounds: rounds.max(1),
                connects: connects.max(1),
                rate,
                seconds,
                wifi_mbit: wifi_mbit.max(0.0),
                json,
            })
        }
        BenchCommand::Get { size, rounds, json } => crate::bench::http::get(&size, rounds.max(1), json),
        BenchCommand::Serve { seconds, connections, threads, json } => {
            crate::bench::http::serve(seconds.max(1), connections.max(1), threads.max(1), json)
        }
        BenchCommand::Aggregate { seconds, matrix: true, rounds, row, recv_buffer, unguarded, sender_cc, json } => {
            let opts = crate::bench::matrix::Options { recv_buffer, guard: !unguarded, sender_cc };
            crate::bench::matrix::run(seconds, rounds.max(1), row, opts, json)
        }
        BenchCommand::Aggregate { seconds, json, .. } => crate::bench::aggregate::run(seconds, json),
        BenchCommand::Interactive { exchanges, json } => crate::bench::interactive::run(exchanges.max(1), json),
        BenchCommand::Handover { failure, flow, family, paths, rounds, json } => {
            crate::bench::handover::run(failure, flow, family, paths, rounds, json)
        }
        BenchCommand::Throughput { seconds, rounds, loopback_only, json } => {
            throughput::run(seconds, rounds, loopback_only, json)
        }
    }
}
