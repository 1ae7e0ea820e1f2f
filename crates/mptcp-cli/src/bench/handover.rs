//! `mptcp bench handover`: wifi fails mid-transfer and comes back; the
//! longest receive stall and the return to wifi, for the kernel's path
//! manager (cell as backup endpoint) and for `multipath`'s handover, in the
//! same run and the same lab.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use multipath::{blocking, ServiceType};
use multipath_lab::Lab;

use crate::bench::lab::{any, prepare, server_ip, Contender, Family};

/// How wifi fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Failure {
    /// Link down (routes vanish), then up.
    Down,
    /// Silent blackhole (link stays up), then cleared.
    Blackhole,
}

/// Which way the data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flow {
    /// Server to client.
    Download,
    /// Client to server.
    Upload,
}

/// One run's figures.
#[derive(Debug)]
pub struct Outcome {
    /// Longest gap between reads at the receiver while wifi was failed.
    pub stall_failed: Duration,
    /// Longest gap after wifi came back.
    pub stall_back: Duration,
    /// From wifi's return until wifi carried data again (`None`: never).
    pub back_on_wifi: Option<Duration>,
}

const FAIL_AT: Duration = Duration::from_millis(1500);
const BACK_AT: Duration = Duration::from_millis(3500);
const END_AT: Duration = Duration::from_millis(6000);

/// What each contender is called in the output.
fn name(c: Contender) -> (&'static str, &'static str) {
    match c {
        Contender::Multipath => ("multipath", "multipath handover"),
        Contender::Unregistered => ("multipath-unregistered", "multipath, unregistered"),
        _ => ("kernel", "kernel, cell backup endpoint"),
    }
}

pub fn run(failure: Failure, flow: Flow, family: Family, rounds: usize, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the handover benchmark builds labs: run it as root");
    }
    let mut rows = Vec::new();
    for _ in 0..rounds {
        for contender in [Contender::Kernel { cell_backup: true }, Contender::Multipath, Contender::Unregistered] {
            rows.push((contender, once(contender, failure, flow, family)?));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(m, o)| {
                serde_json::json!({
                    "path_manager": name(*m).0,
                    "failure": format!("{failure:?}").to_lowercase(), "flow": format!("{flow:?}").to_lowercase(),
                    "family": format!("{family:?}").to_lowercase(),
                    "stall_failed_ms": ms(o.stall_failed), "stall_back_ms": ms(o.stall_back),
                    "back_on_wifi_ms": o.back_on_wifi.map(ms),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "handover": list }));
        return Ok(());
    }
    println!(
        "{failure:?} of wifi during a {flow:?} over {family:?}, lab wifi 20 Mbit/s 20 ms RTT, cell 10 Mbit/s 60 ms RTT"
    );
    println!("{:<28} {:>16} {:>16} {:>16}", "path manager", "stall (failed)", "stall (back)", "back on wifi");
    for (m, o) in &rows {
        let name = name(*m).1;
        let back = o.back_on_wifi.map_or("never".to_owned(), |d| format!("{:.0} ms", ms(d)));
        println!("{name:<28} {:>13.0} ms {:>13.0} ms {back:>16}", ms(o.stall_failed), ms(o.stall_back));
    }
    Ok(())
}

fn once(contender: Contender, failure: Failure, flow: Flow, family: Family) -> Result<Outcome> {
    let (lab, params, _manager) = prepare(contender, ServiceType::Handover, family)?;
    let listener = lab.server().run(|| blocking::Listener::bind(any(family), &params))?;
    let server = SocketAddr::new(server_ip(&lab, family), listener.local_addr()?.port());
    let sender = move |mut conn: blocking::Connection| {
        let chunk = vec![0x6bu8; 64 * 1024];
        let end = Instant::now() + END_AT;
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
    let wifi: IpAddr = lab.path("wifi")?.client_addr_for(server.ip());
    let start = Instant::now();

    // The script runs beside the transfer, and watches wifi's byte counters.
    let probe = conn.try_clone()?;
    let script = std::thread::scope(|s| -> Result<(Vec<Instant>, Option<Duration>)> {
        let watcher = s.spawn(|| -> Result<Option<Duration>> {
            sleep_until(start + FAIL_AT);
            set_failed(&lab, failure, true)?;
            sleep_until(start + BACK_AT);
            let wifi_bytes = || {
                probe.subflows().map_or(0, |l| {
                    l.iter().filter(|s| s.local.ip() == wifi).map(|s| wifi_counter(s, flow)).sum::<u64>()
                })
            };
            let before = wifi_bytes();
            set_failed(&lab, failure, false)?;
            let back = Instant::now();
            while back.elapsed() < END_AT - BACK_AT {
                if wifi_bytes() > before + 64 * 1024 {
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
    let (mut reads, back_on_wifi) = script;
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
    Ok(Outcome {
        stall_failed: gaps(FAIL_AT, BACK_AT),
        stall_back: gaps(BACK_AT, END_AT - Duration::from_millis(500)),
        back_on_wifi,
    })
}

fn wifi_counter(s: &multipath::SubflowInfo, flow: Flow) -> u64 {
    match flow {
        Flow::Download => s.tcp.bytes_received.unwrap_or(0),
        Flow::Upload => s.tcp.bytes_acked.unwrap_or(0),
    }
}

fn set_failed(lab: &Lab, failure: Failure, failed: bool) -> Result<()> {
    match failure {
        Failure::Down => lab.set_link("wifi", !failed)?,
        Failure::Blackhole => lab.set_blackhole("wifi", failed)?,
    }
    Ok(())
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
