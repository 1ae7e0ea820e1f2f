//! A plain hyper-util client using the MPTCP connector: the connector is a
//! `tower::Service<Uri>`, so any hyper-util (or other tower-based) stack can
//! open multipath connections with it, the way Alamofire wraps URLSession.
//!
//! `cargo run -p multipath-http --example hyper_client -- http://check.mptcp.dev/`

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use multipath::{Parameters, ServiceType};
use multipath_http::{ConnectionInfo, MptcpConnector};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// GETs `url` with a curl User-Agent (so a check server answers in one
/// line): the status, whether the connection was MPTCP, and the body.
pub async fn fetch(url: &str) -> Result<(u16, bool, String), Error> {
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let client: Client<MptcpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(MptcpConnector::new(params));
    let request = http::Request::get(url).header("user-agent", "curl/8 (hyper_client example)").body(Empty::new())?;
    let response = client.request(request).await?;
    // The connector attaches what the connection was to every response.
    let multipath = response.extensions().get::<ConnectionInfo>().is_some_and(|i| i.status.is_multipath());
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, multipath, String::from_utf8_lossy(&body).into_owned()))
}

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

async fn run() -> Result<(), Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "http://check.mptcp.dev/".into());
    let (status, multipath, body) = fetch(&url).await?;
    println!("{status} (connection multipath: {multipath})");
    print!("{body}");
    Ok(())
}
