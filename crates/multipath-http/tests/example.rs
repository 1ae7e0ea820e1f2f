//! Runs `examples/hyper_client.rs` against a local check server, so the
//! example is not only compiled but shown to work.

#[path = "../examples/hyper_client.rs"]
#[allow(dead_code)] // its `main` is the example's, not ours
mod hyper_client;

use multipath_http::server::CheckServer;

#[tokio::test]
async fn the_hyper_client_example_fetches_over_mptcp() {
    let server = CheckServer::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    let (status, multipath, body) = hyper_client::fetch(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(status, 200);
    assert!(multipath, "the connector opened an MPTCP connection");
    assert_eq!(body, "You are using MPTCP.\n");
}
