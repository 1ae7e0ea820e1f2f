//! `mptcp bench aggregate`: bulk download goodput of plain TCP on each path
//! alone, of the kernel's path manager with both paths active, and of
//! `multipath`'s aggregate, in the same run; the last two as a share of the
//! sum of the single-path figures.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::Lab;

use crate::bench::lab::{prepare, Contender as Setup, Family, AGAINST_SINGLE_PATHS};

pub fn run(seconds: f64, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the aggregate benchmark builds labs: run it as root");
    }
    let duration = Duration::from_secs_f64(seconds.max(2.0));
    let mut rows = Vec::new();
    for setup in AGAINST_SINGLE_PATHS {
        rows.push((setup, once(setup, duration)?));
    }
    let sum = rows[0].1 + rows[1].1;
    // Wifi down at 2 s, back at 4 s: how soon the download is back to 90%
    // of the sum, in 500 ms windows, counted from wifi's return.
    let mut recovery = Vec::new();
    for setup in [Setup::Kernel { cell_backup: false }, Setup::Multipath] {
        recovery.push((setup, flap(setup, sum)?));
    }
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(s, bps)| serde_json::json!({"setup": format!("{s:?}"), "bps": bps, "share_of_sum": bps / sum}))
            .collect();
        let rec: Vec<_> = recovery
            .iter()
            .map(|(s, r)| serde_json::json!({"setup": format!("{s:?}"), "back_to_90pct_after_s": r}))
            .collect();
        println!("{}", serde_json::json!({ "aggregate": list, "sum_bps": sum, "recovery": rec }));
        return Ok(());
    }
    for (s, r) in &recovery {
        let name = if *s == Setup::Multipath { "multipath aggregate" } else { "kernel PM, both active" };
        match r {
            Some(t) => println!("{name:<26} back to 90% of the sum {t:.2} s after wifi returned"),
            None => println!("{name:<26} not back to 90% of the sum within 6 s of wifi returning"),
        }
    }
    println!("bulk download, {:.0} s each, counted after the first second", duration.as_secs_f64());
    for (s, bps) in &rows {
        let name = match s {
            Setup::Alone(p) => format!("plain TCP, {p} alone"),
            Setup::Kernel { .. } => "kernel PM, both active".into(),
            Setup::Multipath => "multipath aggregate".into(),
            Setup::Unregistered => "  the same, unregistered".into(),
        };
        println!("{name:<26} {:>7.2} Mbit/s  {:>5.1}% of the sum", bps / 1e6, bps / sum * 100.0);
    }
    Ok(())
}

/// A fresh lab for `setup` and a bulk download from its server that runs
/// for `duration` once the client says go (the lab and the manager, if
/// any, live as long as the returned handles).
fn download(
    setup: Setup,
    duration: Duration,
) -> Result<(Lab, blocking::Connection, Option<std::sync::Arc<multipath_pm::Manager>>)> {
    let (lab, params, manager) = prepare(setup, ServiceType::Aggregate, Family::V4)?;
    let server_params = Parameters::tcp().multipath_service_type(ServiceType::Aggregate);
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().expect("addr"), &server_params))?;
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr()?.port());
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.read_exact(&mut [0u8; 2]);
            let chunk = vec![0x77u8; 128 * 1024];
            let end = Instant::now() + duration;
            while Instant::now() < end && conn.write_all(&chunk).is_ok() {}
        }
    });
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params))?;
    conn.write_all(b"go")?;
    Ok((lab, conn, manager))
}

fn once(setup: Setup, duration: Duration) -> Result<f64> {
    let (_lab, mut conn, _manager) = download(setup, duration)?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let (mut counted, mut window) = (0u64, None);
    let mut last = start;
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        last = Instant::now();
        if last - start >= Duration::from_secs(1) {
            match window {
                None => window = Some(last),
                Some(_) => counted += n as u64,
            }
        }
    }
    let secs = window.map_or(0.0, |w| (last - w).as_secs_f64());
    if secs <= 0.0 {
        bail!("{setup:?}: transfer too short to measure");
    }
    Ok(counted as f64 * 8.0 / secs)
}

/// A download through a wifi flap: seconds from wifi's return until a
/// 500 ms window carries 90% of `sum`; `None` if not within 6 s.
fn flap(setup: Setup, sum: f64) -> Result<Option<f64>> {
    let (lab, mut conn, _manager) = download(setup, Duration::from_secs(11))?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    // Bytes per 100 ms slot since the start.
    let mut slots = vec![0u64; 120];
    let (mut down, mut up) = (false, None);
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        let t = start.elapsed();
        if let Some(slot) = slots.get_mut((t.as_millis() / 100) as usize) {
            *slot += n as u64;
        }
        if !down && t >= Duration::from_secs(2) {
            lab.set_link("wifi", false)?;
            down = true;
        } else if down && up.is_none() && t >= Duration::from_secs(4) {
            lab.set_link("wifi", true)?;
            up = Some(t);
        }
    }
    let Some(up) = up else { bail!("{setup:?}: the download ended before wifi came back") };
    let first = (up.as_millis() / 100) as usize + 1;
    let target = 0.9 * sum / 8.0 * 0.5; // bytes in 500 ms
    for end in first + 5..slots.len().min(first + 60) {
        if slots[end - 5..end].iter().sum::<u64>() as f64 >= target {
            return Ok(Some((end * 100) as f64 / 1e3 - up.as_secs_f64()));
        }
    }
    Ok(None)
}
