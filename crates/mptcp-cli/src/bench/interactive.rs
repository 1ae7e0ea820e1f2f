//! `mptcp bench interactive`: 20 KB request/response exchanges; the median
//! time per exchange for plain TCP on the best path alone, the kernel's
//! path manager with both paths active, and `multipath`'s interactive
//! service type; then again after wifi's delay rises to 120 ms RTT.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use multipath::{blocking, Parameters, ServiceType};
use multipath_lab::LinkShape;

use crate::bench::lab::{prepare, Contender as Setup, Family, AGAINST_SINGLE_PATHS};

const SIZE: usize = 20 * 1024;

pub fn run(exchanges: usize, json: bool) -> Result<()> {
    if !multipath_lab::is_root() {
        bail!("the interactive benchmark builds labs: run it as root");
    }
    let mut rows = Vec::new();
    for setup in AGAINST_SINGLE_PATHS {
        let (before, after) = once(setup, exchanges)?;
        rows.push((setup, before, after));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let base_before = rows[0].1;
    let base_after = rows[1].2;
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(s, b, a)| {
                serde_json::json!({"setup": format!("{s:?}"), "median_ms": ms(*b), "after_swap_median_ms": ms(*a),
                "ratio": ms(*b) / ms(base_before), "after_swap_ratio": ms(*a) / ms(base_after)})
            })
            .collect();
        println!("{}", serde_json::json!({ "interactive": list }));
        return Ok(());
    }
    println!("{SIZE}-byte echo exchanges, median per exchange (ratio to the best single path)");
    println!("{:<26} {:>18} {:>26}", "setup", "wifi 20 ms", "after swap: wifi 120 ms");
    for (s, b, a) in &rows {
        let name = match s {
            Setup::Alone(p) => format!("plain TCP, {p} alone"),
            Setup::Kernel { .. } => "kernel PM, both active".into(),
            Setup::Multipath => "multipath interactive".into(),
            Setup::Unregistered => "  the same, unregistered".into(),
        };
        println!(
            "{name:<26} {:>8.1} ms ({:.2}x) {:>14.1} ms ({:.2}x)",
            ms(*b),
            ms(*b) / ms(base_before),
            ms(*a),
            ms(*a) / ms(base_after)
        );
    }
    Ok(())
}

/// Medians before and (from 2 s) after wifi's delay rises.
fn once(setup: Setup, exchanges: usize) -> Result<(Duration, Duration)> {
    let (lab, params, _manager) = prepare(setup, ServiceType::Interactive, Family::V4)?;
    let server_params = Parameters::tcp().multipath_service_type(ServiceType::Interactive).nodelay(true);
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().expect("addr"), &server_params))?;
    let server = SocketAddr::new(lab.server_addr().into(), listener.local_addr()?.port());
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = vec![0u8; SIZE];
            while conn.read_exact(&mut buf).is_ok() && conn.write_all(&buf).is_ok() {}
        }
    });
    let mut conn = lab.client().run(|| blocking::Connection::connect(server, &params))?;
    let request = vec![0x42u8; SIZE];
    let mut reply = vec![0u8; SIZE];
    let mut exchange = |conn: &mut blocking::Connection| -> Result<Duration> {
        let t = Instant::now();
        conn.write_all(&request)?;
        conn.read_exact(&mut reply)?;
        Ok(t.elapsed())
    };
    // Warm up: windows open, the path manager adds and judges subflows.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        exchange(&mut conn)?;
    }
    let before = super::stats::median_duration((0..exchanges).map(|_| exchange(&mut conn)).collect::<Result<_>>()?);
    if let Ok(subflows) = conn.subflows() {
        for s in subflows.iter().filter(|s| s.is_open()) {
            let rx = s.tcp.bytes_received.unwrap_or(0);
            tracing::info!(?setup, local = %s.local, rx, rtt_us = s.tcp.rtt_us, "subflow after the first phase");
        }
    }
    let (up, down) = lab.path("wifi")?.shape();
    let slower = |s: LinkShape| LinkShape { delay: Duration::from_millis(60), ..s };
    lab.set_shape("wifi", slower(up), slower(down))?;
    let swap = Instant::now();
    while swap.elapsed() < Duration::from_secs(2) {
        exchange(&mut conn)?;
    }
    let after = super::stats::median_duration((0..exchanges).map(|_| exchange(&mut conn)).collect::<Result<_>>()?);
    Ok((before, after))
}
