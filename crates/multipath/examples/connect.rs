//! Connects with a service type and prints what the connection really is.
//!
//! ```sh
//! cargo run -p multipath --example connect -- check.mptcp.dev:80 handover
//! ```

use multipath::{Connection, Parameters, ServiceType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes as sentences, not `Debug`.
            eprint!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprint!(": {cause}");
                source = cause.source();
            }
            eprintln!();
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "check.mptcp.dev:80".into());
    let service: ServiceType = args.next().as_deref().unwrap_or("handover").parse()?;
    let params = Parameters::tcp().multipath_service_type(service).connect_timeout(std::time::Duration::from_secs(10));

    let mut conn = Connection::connect(&endpoint, &params).await?;
    let host = endpoint.rsplit_once(':').map_or(endpoint.as_str(), |(h, _)| h);
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: curl/8\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await?;
    println!("server says: {}", reply.lines().last().unwrap_or(""));
    println!("status: {}", conn.multipath_status());
    for sf in conn.subflows()? {
        println!("  subflow {} {} -> {} via {:?}, rtt {} us", sf.id, sf.local, sf.remote, sf.interface, sf.tcp.rtt_us);
    }
    Ok(())
}
