//! `mptcp bench handover`: a path fails mid-transfer and comes back (or
//! is renumbered); the longest receive stall after each event and the
//! return to the best path, for the kernel's path manager (the other paths
//! as backup endpoints) and for `multipath`'s handover, in the same run and
//! in labs alike. Two paths (wifi, cell) or three (eth, wifi, cell).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use multipath::{blocking, ServiceType};
use multipath_lab::{Lab, LabConfig, PathConfig};

use crate::bench::lab::{any, prepare_in, server_ip, Contender, Family};

/// How the best path fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Failure {
    /// Link down (routes vanish), then up.
    Down,
    /// Silent blackhole (link stays up), then cleared.
    Blackhole,
    /// Renumbered: its address replaced by another, as a DHCP renewal or a
    /// roam does; the stall lasts until data flows again, and "back" is
    /// when the new address carries it.
    Renumber,
}

/// Which way the data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flow {
    /// Server to client.
    Download,
    /// Client to server.
    Upload,
}

/// The client's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// wifi 20 Mbit/s 20 ms, cell 10 Mbit/s 60 ms: wifi fails and returns.
    Two,
    /// eth 40 Mbit/s 4 ms first: eth fails, then wifi, then eth returns.
    Three,
}

/// Something done to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail(&'static str, Failure),
    Restore(&'static str, Failure),
}

impl Action {
    fn apply(self, lab: &Lab) -> Result<()> {
        match self {
            Action::Fail(path, Failure::Down) => lab.set_link(path, false)?,
            Action::Restore(path, Failure::Down) => lab.set_link(path, true)?,
            Action::Fail(path, Failure::Blackhole) => lab.set_blackhole(path, true)?,
            Action::Restore(path, Failure::Blackhole) => lab.set_blackhole(path, false)?,
            Action::Fail(path, Failure::Renumber) | Action::Restore(path, Failure::Renumber) => {
                drop(lab.renumber(path)?)
            }
        }
        Ok(())
    }

    fn path(self) -> &'static str {
        match self {
            Action::Fail(p, _) | Action::Restore(p, _) => p,
        }
    }

    fn label(self) -> String {
        match self {
            Action::Fail(p, Failure::Renumber) | Action::Restore(p, Failure::Renumber) => format!("{p} renumbered"),
            Action::Fail(p, Failure::Down) => format!("{p} down"),
            Action::Fail(p, Failure::Blackhole) => format!("{p} blackholed"),
            Action::Restore(p, _) => format!("{p} back"),
        }
    }
}

/// A scenario: the lab, its events, and when the transfer ends. The last
/// event's path is watched for data afterwards.
struct Plan {
    lab: LabConfig,
    steps: Vec<(Duration, Action)>,
    end: Duration,
}

fn plan(failure: Failure, topology: Topology) -> Plan {
    let ms = Duration::from_millis;
    let (lab, first, second) = match topology {
        Topology::Two => (LabConfig::wifi_cell(), "wifi", None),
        Topology::Three => {
            let eth = PathConfig::new("eth").rate_mbit(40.0).rtt(ms(4));
            let mut lab = LabConfig::wifi_cell();
            lab.paths.insert(0, eth);
            (lab, "eth", Some("wifi"))
        }
    };
    let steps = match (failure, second) {
        (Failure::Renumber, _) => vec![(ms(1500), Action::Fail(first, failure))],
        (_, None) => vec![(ms(1500), Action::Fail(first, failure)), (ms(3500), Action::Restore(first, failure))],
        (_, Some(second)) => vec![
            (ms(1500), Action::Fail(first, failure)),
            (ms(3500), Action::Fail(second, failure)),
            (ms(5500), Action::Restore(first, failure)),
        ],
    };
    let end = steps.last().expect("a step").0 + ms(2500);
    Plan { lab, steps, end }
}

/// One run's figures.
#[derive(Debug)]
pub struct Outcome {
    /// Per event, the longest gap between reads at the receiver until the
    /// next event (the last: until 500 ms before the end).
    pub stalls: Vec<(String, Duration)>,
    /// From the last event until its path carried data again (`None`:
    /// never).
    pub back: Option<Duration>,
}

/// What each contender is called in the output.
fn name(c: Contender) -> (&'static str, &'static str) {
    match c {
        Contender::Multipath => ("multipath", "multipath handover"),
        Contender::Unregistered => ("multipath-unregistered", "multipath, unregistered"),
        _ => ("kernel", "kernel, backup endpoints"),
    }
}

pub fn run(failure: Failure, flow: Flow, family: Family, topology: Topology, rounds: usize, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the handover benchmark builds labs: run it as root");
    }
    let mut rows = Vec::new();
    for _ in 0..rounds {
        for contender in [Contender::Kernel { cell_backup: true }, Contender::Multipath, Contender::Unregistered] {
            rows.push((contender, once(contender, failure, flow, family, topology)?));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let lower = |d: &dyn std::fmt::Debug| format!("{d:?}").to_lowercase();
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(m, o)| {
                let steps: Vec<_> =
                    o.stalls.iter().map(|(e, d)| serde_json::json!({ "event": e, "stall_ms": ms(*d) })).collect();
                serde_json::json!({
                    "path_manager": name(*m).0,
                    "failure": lower(&failure), "flow": lower(&flow), "family": lower(&family),
                    "topology": lower(&topology), "steps": steps, "back_ms": o.back.map(ms),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "handover": list }));
        return Ok(());
    }
    let plan = plan(failure, topology);
    let paths: Vec<String> = plan.lab.paths.iter().map(describe).collect();
    println!("{failure:?} during a {flow:?} over {family:?}; paths {}", paths.join(", "));
    let watched = plan.steps.last().expect("a step").1.path();
    print!("{:<28}", "path manager");
    for (_, action) in &plan.steps {
        print!(" {:>22}", format!("stall after {}", action.label()));
    }
    println!(" {:>16}", format!("data on {watched}"));
    for (m, o) in &rows {
        print!("{:<28}", name(*m).1);
        for (_, stall) in &o.stalls {
            print!(" {:>19.0} ms", ms(*stall));
        }
        println!(" {:>16}", o.back.map_or("never".to_owned(), |d| format!("{:.0} ms", ms(d))));
    }
    Ok(())
}

fn describe(p: &PathConfig) -> String {
    let rate = p.down.rate_bps.map_or("unlimited".into(), |r| format!("{} Mbit/s", r as f64 / 1e6));
    format!("{} {rate} {} ms", p.name, (p.up.delay + p.down.delay).as_millis())
}

fn once(contender: Contender, failure: Failure, flow: Flow, family: Family, topology: Topology) -> Result<Outcome> {
    let plan = plan(failure, topology);
    let (lab, params, _manager) = prepare_in(&plan.lab, contender, ServiceType::Handover, family)?;
    let listener = lab.server().run(|| blocking::Listener::bind(any(family), &params))?;
    let server = SocketAddr::new(server_ip(&lab, family), listener.local_addr()?.port());
    let end_at = plan.end;
    let sender = move |mut conn: blocking::Connection| {
        let chunk = vec![0x6bu8; 64 * 1024];
        let end = Instant::now() + end_at;
        while Instant::now() < end && conn.write_all(&chunk).is_ok() {}
    };
    let server_side = std::thread::spawn(move || -> Result<Option<Vec<Instant>>> {
        let (mut conn, _) = listener.accept()?;
        conn.read_exact(&mut [0u8; 2])?;
        conn.write_all(b"ok")?;
        Ok(match flow {
            Flow::Download => {
                sender(conn);
                None
            }
            Flow::Upload => Some(receive(&mut conn)),
        })
    });
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params))?;
    conn.write_all(b"go")?;
    conn.read_exact(&mut [0u8; 2])?;
    let start = Instant::now();

    // The script runs beside the transfer, then watches the last event's
    // path (at its address of the moment) for data.
    let probe = conn.try_clone()?;
    let steps = plan.steps.clone();
    let script = std::thread::scope(|s| -> Result<(Vec<Instant>, Option<Duration>)> {
        let watcher = s.spawn(|| -> Result<Option<Duration>> {
            for (at, action) in &steps {
                sleep_until(start + *at);
                action.apply(&lab)?;
            }
            let (_, last) = *steps.last().expect("a step");
            let watched = lab.path(last.path())?.client_addr_for(server.ip());
            let carried = || {
                probe.subflows().map_or(0, |l| {
                    l.iter().filter(|s| s.local.ip().to_canonical() == watched).map(|s| counter(s, flow)).sum::<u64>()
                })
            };
            let (before, back) = (carried(), Instant::now());
            while Instant::now() < start + end_at {
                if carried() > before + 64 * 1024 {
                    return Ok(Some(back.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None)
        });
        let reads = match flow {
            Flow::Download => receive(&mut conn),
            Flow::Upload => {
                sender(conn.try_clone()?);
                let _ = conn.get_ref().shutdown(std::net::Shutdown::Write);
                Vec::new()
            }
        };
        Ok((reads, watcher.join().expect("watcher")?))
    })?;
    let (mut reads, back) = script;
    if let Some(server_reads) = server_side.join().expect("server")? {
        reads = server_reads;
    }
    let gaps = |from: Duration, to: Duration| {
        reads
            .windows(2)
            .filter(|w| w[1] > start + from && w[0] < start + to)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(Duration::ZERO)
    };
    let ends = plan.steps.iter().skip(1).map(|s| s.0).chain([plan.end - Duration::from_millis(500)]);
    let stalls = plan.steps.iter().zip(ends).map(|((at, action), until)| (action.label(), gaps(*at, until))).collect();
    Ok(Outcome { stalls, back })
}

fn counter(s: &multipath::SubflowInfo, flow: Flow) -> u64 {
    match flow {
        Flow::Download => s.tcp.bytes_received.unwrap_or(0),
        Flow::Upload => s.tcp.bytes_acked.unwrap_or(0),
    }
}

/// Reads to EOF, noting when each read returned.
fn receive(conn: &mut blocking::Connection) -> Vec<Instant> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = Vec::new();
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        let _ = n;
        at.push(Instant::now());
    }
    at
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}
