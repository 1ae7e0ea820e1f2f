//! `mptcp monitor`: the kernel's path-manager events and path changes, live,
//! and, whenever they change, the sizes of the namespace daemon's tables
//! and the connections it manages (as `mptcp ls` shows them).

use anyhow::{Context, Result};
use clap::Args;
use multipath_pm::{Event, EventSocket, RouteWatcher};
use serde_json::json;

#[derive(Args)]
pub struct MonitorArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: MonitorArgs) -> Result<()> {
    let mut events = EventSocket::open().context("subscribing to mptcp_pm events (needs CAP_NET_ADMIN)")?;
    let mut routes = RouteWatcher::open().context("subscribing to link and route changes")?;
    let paths = routes.paths()?;
    print_paths(&paths, args.json);
    // Path changes and the daemon's tables are checked between event reads.
    events.set_timeout(Some(std::time::Duration::from_millis(200)))?;
    let daemon = multipath::daemon_client::Daemon::discover();
    let (mut tables, mut tables_at) = (None, None::<std::time::Instant>);
    let mut listed = None;
    loop {
        if routes.changed()? {
            print_paths(&routes.paths()?, args.json);
        }
        if tables_at.is_none_or(|t| t.elapsed() >= TABLES_EVERY) {
            tables_at = Some(std::time::Instant::now());
            let now = daemon.tables().map_err(|e| e.to_string());
            if tables.as_ref() != Some(&now) {
                print_tables(&now, args.json);
                tables = Some(now);
            }
            // Only once a daemon answers: without one, the tables line
            // says so already.
            if let Ok(now) = daemon.list() {
                if listed.as_ref() != Some(&now) {
                    print_connections(&now, args.json);
                    listed = Some(now);
                }
            }
        }
        match events.recv() {
            Ok(list) => list.iter().for_each(|e| print_event(e, args.json)),
            Err(multipath_pm::PmError::EventsLost) => {
                println!("{}", line(args.json, json!({"lost": true}), "events lost"))
            }
            Err(multipath_pm::PmError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// How often the daemon's tables are asked for.
const TABLES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The daemon's table sizes, or why they could not be read.
fn print_tables(tables: &Result<Vec<(String, u64)>, String>, as_json: bool) {
    let (value, text) = match tables {
        Ok(counts) => {
            let map: serde_json::Map<String, serde_json::Value> =
                counts.iter().map(|(name, n)| (name.clone(), json!(n))).collect();
            let text: Vec<String> = counts.iter().map(|(name, n)| format!("{name}={n}")).collect();
            (json!({"daemon": map}), format!("daemon tables: {}", text.join(" ")))
        }
        Err(e) => (json!({"daemon": null, "reason": e}), format!("daemon: {e}")),
    };
    println!("{}", line(as_json, value, &text));
}

/// The daemon's managed connections.
fn print_connections(listed: &[multipath::daemon_client::Listed], as_json: bool) {
    let text: Vec<String> = listed
        .iter()
        .map(|l| {
            let program = l.program.as_ref().map_or("?".into(), |p| p.display().to_string());
            let active = l.active.as_deref().unwrap_or("-");
            format!("{program} -> {} {} ({}) on {active}", l.remote, l.service, l.source)
        })
        .collect();
    let text = if text.is_empty() { "managed: none".to_owned() } else { format!("managed: {}", text.join("; ")) };
    println!("{}", line(as_json, json!({ "connections": listed }), &text));
}

fn line(as_json: bool, value: serde_json::Value, text: &str) -> String {
    if as_json {
        value.to_string()
    } else {
        text.to_owned()
    }
}

fn print_paths(paths: &[multipath_pm::policy::LocalPath], as_json: bool) {
    let list: Vec<_> =
        paths.iter().map(|p| json!({"name": p.name, "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(), "rank": p.rank})).collect();
    let text: Vec<_> = paths
        .iter()
        .map(|p| {
            format!(
                "{} {} (metric {})",
                p.name,
                p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                p.rank
            )
        })
        .collect();
    println!("{}", line(as_json, json!({"paths": list}), &format!("paths: {}", text.join(", "))));
}

fn print_event(event: &Event, as_json: bool) {
    let (kind, value) = match event {
        Event::Created(c) | Event::Established(c) => (
            if matches!(event, Event::Created(_)) { "created" } else { "established" },
            json!({"token": c.token, "local": c.local.to_string(), "remote": c.remote.to_string(), "server_side": c.server_side}),
        ),
        Event::Closed { token } => ("closed", json!({"token": token})),
        Event::Announced { token, rem_id, addr } => {
            ("announced", json!({"token": token, "rem_id": rem_id, "addr": addr.to_string()}))
        }
        Event::Removed { token, rem_id } => ("removed", json!({"token": token, "rem_id": rem_id})),
        Event::SubEstablished(s) | Event::SubClosed(s) | Event::SubPriority(s) => (
            match event {
                Event::SubEstablished(_) => "sub_established",
                Event::SubClosed(_) => "sub_closed",
                _ => "sub_priority",
            },
            json!({"token": s.token, "loc_id": s.loc_id, "rem_id": s.rem_id, "local": s.local.to_string(),
                   "remote": s.remote.to_string(), "backup": s.backup, "ifindex": s.ifindex, "error": s.error}),
        ),
        Event::ListenerCreated { addr } => ("listener_created", json!({"addr": addr.to_string()})),
        Event::ListenerClosed { addr } => ("listener_closed", json!({"addr": addr.to_string()})),
        Event::Unknown { cmd } => ("unknown", json!({"cmd": cmd})),
    };
    let mut obj = value;
    obj["event"] = json!(kind);
    let text = format!("{kind:>16} {}", obj);
    println!("{}", line(as_json, obj, &text));
}
