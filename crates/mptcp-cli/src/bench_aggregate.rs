//! `mptcp bench aggregate`: bulk download goodput of plain TCP on each path
//! alone, of the kernel's path manager with both paths active, and of
//! `multipath`'s aggregate, in the same run; the last two as a share of the
//! sum of the single-path figures.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use multipath::{blocking, Parameters, ServiceType};

use crate::bench_lab::{prepare, Contender as Setup};

pub fn run(seconds: f64, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the aggregate benchmark builds labs: run it as root");
    }
    let duration = Duration::from_secs_f64(seconds.max(2.0));
    let mut rows = Vec::new();
    for setup in [Setup::Alone("wifi"), Setup::Alone("cell"), Setup::Kernel { cell_backup: false }, Setup::Multipath] {
        rows.push((setup, once(setup, duration)?));
    }
    let sum = rows[0].1 + rows[1].1;
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(s, bps)| serde_json::json!({"setup": format!("{s:?}"), "bps": bps, "share_of_sum": bps / sum}))
            .collect();
        println!("{}", serde_json::json!({ "aggregate": list, "sum_bps": sum }));
        return Ok(());
    }
    println!("bulk download, {:.0} s each, counted after the first second", duration.as_secs_f64());
    for (s, bps) in &rows {
        let name = match s {
            Setup::Alone(p) => format!("plain TCP, {p} alone"),
            Setup::Kernel { .. } => "kernel PM, both active".into(),
            Setup::Multipath => "multipath aggregate".into(),
        };
        println!("{name:<26} {:>7.2} Mbit/s  {:>5.1}% of the sum", bps / 1e6, bps / sum * 100.0);
    }
    Ok(())
}

fn once(setup: Setup, duration: Duration) -> Result<f64> {
    let (lab, params, _manager) = prepare(setup, ServiceType::Aggregate)?;
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
