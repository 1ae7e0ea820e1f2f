//! `mptcp ls`: the connections the namespace's daemon manages, with who
//! holds them and where their service type came from.

use anyhow::{Context, Result};
use clap::Args;
use multipath::daemon_client::{Daemon, Listed};

#[derive(Args)]
pub struct LsArgs {
    /// One JSON object per connection, one per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LsArgs) -> Result<()> {
    let daemon = Daemon::discover();
    let listed = daemon.list().with_context(|| format!("asking the path-manager daemon at {}", daemon.address()))?;
    if args.json {
        for l in &listed {
            println!("{}", serde_json::to_string(l)?);
        }
        return Ok(());
    }
    if listed.is_empty() {
        println!("no managed connections (a user sees their own; root sees all)");
        return Ok(());
    }
    let rows: Vec<[String; 8]> = listed.iter().map(row).collect();
    let header = ["PROGRAM", "PID", "UID", "SERVICE", "FROM", "REMOTE", "ACTIVE", "SUBFLOWS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for l in &listed {
        if let Some((need, cap)) = l.receive_buffer {
            println!(
                "connection to {}: its paths need a {:.1} MB receive buffer, net.ipv4.tcp_rmem allows {:.1} MB: \
                 the slowest path's data holds up the others (raise tcp_rmem's maximum)",
                l.remote,
                need as f64 / 1e6,
                cap as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn row(l: &Listed) -> [String; 8] {
    let unknown = || "?".to_owned();
    let subflows: Vec<String> = l
        .subflows
        .iter()
        .map(|s| {
            let mut notes = vec![if s.backup { "backup" } else { "active" }];
            if !s.established {
                notes.push("joining");
            }
            if l.backed_off.contains(&s.path) {
                notes.push("costs goodput");
            }
            format!("{}({})", s.path, notes.join(","))
        })
        .chain(l.held_back.iter().map(|p| format!("{p}(held back by the subflow limit)")))
        .collect();
    [
        l.program.as_ref().map_or_else(unknown, |p| p.display().to_string()),
        l.pid.map_or_else(unknown, |p| p.to_string()),
        l.uid.map_or_else(unknown, |u| u.to_string()),
        l.service.to_string(),
        l.source.clone(),
        l.remote.to_string(),
        l.active.clone().unwrap_or_else(|| "-".into()),
        subflows.join(" "),
    ]
}
