//! Sessions across the lab (wifi 20 Mbit/s 20 ms, cell 10 Mbit/s 60 ms)
//! against `CheckServer`, with the in-process path manager enforcing each
//! service type. Needs root; without it each test reports itself SKIPPED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use multipath::{ServiceType, TlsOptions};
use multipath_http::content::{Sha256, HASH_HEADER};
use multipath_http::server::{CheckServer, ServerTls};
use multipath_http::{HttpVersion, Session, SessionConfig, TransactionMetrics};
use multipath_lab::testing::lab_test;
use multipath_lab::{Lab, LabConfig};
use multipath_pm::policy::PolicyConfig;
use multipath_pm::Manager;

/// A check server in the lab's server namespace, plain or TLS, on `rt`.
fn start_server(lab: &Lab, rt: &tokio::runtime::Runtime, tls: Option<ServerTls>) -> SocketAddr {
    let handle = rt.handle().clone();
    let server = lab.server().run(move || {
        let _in_runtime = handle.enter();
        CheckServer::bind("0.0.0.0:0".parse().unwrap(), tls).unwrap()
    });
    let port = server.local_addr().unwrap().port();
    rt.spawn(server.serve(std::future::pending()));
    SocketAddr::new(lab.server_addr().into(), port)
}

/// Downloads `url` and checks the body against the server's hash.
async fn download(session: &Session, url: &str) -> (u64, TransactionMetrics) {
    let mut r = session.get(url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    let expected = r.headers().get(HASH_HEADER).unwrap().to_str().unwrap().to_owned();
    let (mut hash, mut bytes) = (Sha256::default(), 0u64);
    while let Some(chunk) = r.chunk().await.unwrap() {
        hash.update(&chunk);
        bytes += chunk.len() as u64;
    }
    assert_eq!(hash.finish_hex(), expected, "{url}: body does not match its hash");
    (bytes, r.metrics())
}

fn open_subflows(m: &TransactionMetrics) -> usize {
    m.subflows.iter().filter(|s| s.is_open()).count()
}

#[test]
fn sessions_report_multipath_with_both_subflows_over_http_and_https_in_both_versions() {
    let Some(_one_at_a_time) =
        lab_test("sessions_report_multipath_with_both_subflows_over_http_and_https_in_both_versions")
    else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    lab.client().sysctl("net.mptcp.pm_type", "1").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server_name = lab.server_addr().to_string();
    let tls = ServerTls::self_signed(std::slice::from_ref(&server_name)).unwrap();
    let plain = start_server(&lab, &rt, None);
    let secure = start_server(&lab, &rt, Some(tls.clone()));
    let manager: Arc<Manager> = Arc::new(lab.client().run(|| Manager::start(PolicyConfig::default())).unwrap());
    let trust = TlsOptions::new().roots(multipath::tls::Roots::None).add_root_pem(tls.certificate_pem().as_bytes());
    let trust = trust.unwrap();

    lab.client().run(|| {
        // Sockets are made where the runtime polls: in this thread, in the
        // client's namespace.
        let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        client_rt.block_on(async {
            for service in [ServiceType::Handover, ServiceType::Interactive, ServiceType::Aggregate, ServiceType::None]
            {
                for (base, version) in [
                    (format!("http://{plain}"), HttpVersion::Http1Only),
                    (format!("https://{secure}"), HttpVersion::Http2Only),
                ] {
                    let what = format!("{service} {version:?} {base}");
                    let session = Session::new(
                        SessionConfig::default()
                            .multipath_service_type(service)
                            .http_version(version)
                            .tls(trust.clone())
                            .path_manager(manager.clone())
                            .timeout(Some(Duration::from_secs(20))),
                    );
                    let (bytes, m) = download(&session, &format!("{base}/files/1M")).await;
                    assert_eq!(bytes, 1_000_000, "{what}");
                    assert_eq!(m.is_multipath, service != ServiceType::None, "{what}: {m:?}");
                    let status = m.status.as_ref().unwrap();
                    assert!(status.enforced, "{what}: {status}");
                    let want = if service == ServiceType::None { 1 } else { 2 };
                    assert_eq!(open_subflows(&m), want, "{what}: {:?}", m.subflows);
                    assert_eq!(m.http_version, if version == HttpVersion::Http2Only { "HTTP/2.0" } else { "HTTP/1.1" });

                    // The server's view of the same connection matches.
                    let r = session.get(&format!("{base}/")).header("accept", "application/json").send().await.unwrap();
                    let local = r.metrics();
                    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                    assert_eq!(v["mptcp"], serde_json::json!(local.is_multipath), "{what}: {v}");
                    // Plain TCP has no subflows, as the server says.
                    let subflows = if local.is_multipath { open_subflows(&local) } else { 0 };
                    assert_eq!(v["subflows"], serde_json::json!(subflows), "{what}: {v}");
                }
            }
            // 10 MB over HTTPS with handover: verified, and carried by wifi.
            let session = Session::new(
                SessionConfig::default()
                    .multipath_service_type(ServiceType::Handover)
                    .tls(trust.clone())
                    .path_manager(manager.clone())
                    .read_timeout(Some(Duration::from_secs(10))),
            );
            let (bytes, m) = download(&session, &format!("https://{secure}/files/10M")).await;
            assert_eq!(bytes, 10_000_000);
            let wifi: std::net::IpAddr = lab.path("wifi").unwrap().client_addr().into();
            let on_wifi: u64 =
                m.subflows.iter().filter(|s| s.local.ip() == wifi).map(|s| s.tcp.bytes_received.unwrap_or(0)).sum();
            assert!(on_wifi >= 9_000_000, "handover keeps the data on wifi: {on_wifi} bytes there");
        });
    });
}
