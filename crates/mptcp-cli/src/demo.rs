//! `mptcp demo`: a lab, one MPTCP download across it, and what the
//! connection says about itself while it runs.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use multipath::{blocking, Connection, Parameters, ServiceType, SubflowInfo};
use multipath_lab::Lab;
use tokio::io::AsyncReadExt;

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Service type to request.
    #[arg(long, default_value = "handover")]
    service: ServiceType,
    /// Seconds of download.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Paths as NAME:RATE:RTT[:LOSS] [default: wifi:20mbit:20ms cell:10mbit:60ms].
    #[arg(long = "path", value_name = "SPEC")]
    paths: Vec<String>,
    /// Print the final status and subflows as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let lab = Lab::up(&crate::lab::config_from(&args.paths)?).context("building the lab (needs root)")?;
    // Until the path manager arrives, the kernel's adds the other paths'
    // subflows: as backup, the closest it comes to handover and interactive.
    let backup = !matches!(args.service, ServiceType::Aggregate);
    for p in &lab.paths()[1..] {
        lab.add_kernel_endpoint(p.name(), backup)?;
    }
    if !args.json {
        print!("{}", lab.describe());
    }
    let params = Parameters::tcp().multipath_service_type(args.service);
    let server = start_sender(&lab, &params, Duration::from_secs(args.seconds))?;
    let json = args.json;
    let report = lab.client().run(|| -> Result<serde_json::Value> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(download(server, &params, json))
    })?;
    if json {
        println!("{report}");
    }
    Ok(())
}

/// A server in the lab that sends for `duration` to each client.
fn start_sender(lab: &Lab, params: &Parameters, duration: Duration) -> Result<SocketAddr> {
    let listener = lab.server().run(|| blocking::Listener::bind("0.0.0.0:0".parse().expect("addr"), params))?;
    let addr = SocketAddr::new(lab.server_addr().into(), listener.local_addr()?.port());
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let chunk = vec![0xa5u8; 128 * 1024];
            let end = Instant::now() + duration;
            while Instant::now() < end && conn.write_all(&chunk).is_ok() {}
        }
    });
    Ok(addr)
}

async fn download(server: SocketAddr, params: &Parameters, quiet: bool) -> Result<serde_json::Value> {
    let start = Instant::now();
    let mut conn = Connection::connect(server, params).await?;
    if !quiet {
        println!("\nconnected to {server}: {}\n", conn.multipath_status());
        println!("{:>5}  {:>9}  subflows (interface: RTT, bytes received)", "time", "Mbit/s");
    }
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut last_total) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    loop {
        tokio::select! {
            n = conn.read(&mut buf) => {
                let n = n?;
                if n == 0 { break; }
                total += n as u64;
            }
            _ = tick.tick() => {
                if !quiet {
                    let rate = (total - last_total) as f64 * 8.0 / 0.5 / 1e6;
                    println!("{:>4.1}s  {rate:>9.2}  {}", start.elapsed().as_secs_f64(), summary(&conn.subflows()?));
                }
                last_total = total;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let status = conn.multipath_status();
    let subflows = conn.subflows()?;
    if !quiet {
        println!("\n{total} bytes in {elapsed:.1} s ({:.2} Mbit/s)", total as f64 * 8.0 / elapsed / 1e6);
        println!("{status}\n");
        print_table(&subflows);
    }
    Ok(serde_json::json!({
        "bytes": total,
        "seconds": elapsed,
        "status": status,
        "mptcp_info": conn.mptcp_info().ok(),
        "subflows": subflows,
    }))
}

fn summary(subflows: &[SubflowInfo]) -> String {
    let parts: Vec<String> = subflows
        .iter()
        .filter(|s| s.is_open())
        .map(|s| {
            let name = s.interface.as_deref().unwrap_or("?");
            let rx = s.tcp.bytes_received.unwrap_or(0) as f64 / 1e6;
            format!("{name}: {:.1} ms, {rx:.1} MB", s.tcp.rtt_us as f64 / 1e3)
        })
        .collect();
    parts.join("   ")
}

fn print_table(subflows: &[SubflowInfo]) {
    println!(
        "{:>3} {:<9} {:<21} {:<21} {:<12} {:>8} {:>8} {:>5} {:>12} {:>8}",
        "id", "interface", "local", "remote", "state", "rtt ms", "min ms", "cwnd", "received", "retrans"
    );
    for s in subflows {
        println!(
            "{:>3} {:<9} {:<21} {:<21} {:<12} {:>8.1} {:>8.1} {:>5} {:>12} {:>8}",
            s.id,
            s.interface.as_deref().unwrap_or("?"),
            s.local.to_string(),
            s.remote.to_string(),
            format!("{:?}", s.tcp.state),
            s.tcp.rtt_us as f64 / 1e3,
            s.tcp.min_rtt_us.unwrap_or(0) as f64 / 1e3,
            s.tcp.snd_cwnd,
            s.tcp.bytes_received.unwrap_or(0),
            s.tcp.total_retrans,
        );
    }
}
