//! `mptcp check [URL]`: asks a check.mptcp.dev-style server whether this
//! connection uses MPTCP, and compares with what the socket itself says.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::get::{self, ConnectArgs};

#[derive(Args)]
pub struct CheckArgs {
    /// The check server.
    #[arg(default_value = "https://check.mptcp.dev")]
    url: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Exit code when the server and the socket disagree.
const DISAGREE: i32 = 2;

#[derive(Serialize)]
struct Verdict {
    url: String,
    /// What the server said, as its one-line answer.
    server_says: String,
    /// The server's answer as a boolean (`null`: it does not know).
    server_mptcp: Option<bool>,
    /// The socket's own answer.
    local_mptcp: bool,
    agree: bool,
    metrics: multipath_http::TransactionMetrics,
}

pub fn run(args: CheckArgs) -> Result<()> {
    get::exit_with(async {
        match check(&args).await {
            // With --json, a failure is JSON too (on stdout, where the
            // verdict would have been), with the same exit code.
            Err(e) if args.json => {
                println!("{}", serde_json::json!({ "url": args.url, "error": format!("{e:#}"), "exit_code": 1 }));
                Ok(1)
            }
            other => other,
        }
    })
}

/// Reports a request's failure, as a line on stderr or JSON on stdout;
/// the exit code.
fn failed(args: &CheckArgs, e: &multipath_http::HttpError) -> i32 {
    let code = get::exit_code(e);
    if args.json {
        println!("{}", serde_json::json!({ "url": args.url, "error": e.to_string(), "exit_code": code }));
    } else {
        eprintln!("error: {e}");
        if let Some(hint) = get::hint(e) {
            eprintln!("hint: {hint}");
        }
    }
    code
}

async fn check(args: &CheckArgs) -> Result<i32> {
    let session = get::session(&args.connect, false)?;
    // check.mptcp.dev answers curl with one plain-text line.
    let response = match session.get(&args.url).header("user-agent", "curl/8 (mptcp check)").send().await {
        Ok(r) => r,
        Err(e) => return Ok(failed(args, &e)),
    };
    let metrics = response.metrics();
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => return Ok(failed(args, &e)),
    };
    let line = text.lines().find(|l| l.contains("MPTCP")).unwrap_or(text.trim()).trim().to_owned();
    let server_mptcp = if line.contains("are not using MPTCP") {
        Some(false)
    } else if line.contains("are using MPTCP") {
        Some(true)
    } else {
        None
    };
    let local_mptcp = metrics.is_multipath;
    let agree = server_mptcp == Some(local_mptcp);
    let verdict = Verdict { url: args.url.clone(), server_says: line, server_mptcp, local_mptcp, agree, metrics };
    if args.json {
        println!("{}", serde_json::to_string(&verdict)?);
    } else {
        println!("server: {}", verdict.server_says);
        let status = verdict.metrics.status.as_ref().map_or("unknown".into(), |s| s.to_string());
        println!("socket: {status}");
        if local_mptcp {
            let open = verdict.metrics.subflows.iter().filter(|s| s.is_open()).count();
            println!("subflows: {open}");
        } else {
            println!("subflows: none (TCP)");
        }
        if !agree {
            println!(
                "DISAGREE: the server says {}, the socket says {}",
                match server_mptcp {
                    Some(true) => "MPTCP",
                    Some(false) => "not MPTCP",
                    None => "it does not know",
                },
                if local_mptcp { "MPTCP" } else { "not MPTCP" }
            );
        }
    }
    Ok(if agree { 0 } else { DISAGREE })
}
