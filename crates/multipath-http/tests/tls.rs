//! `TlsConnection` and `TlsOptions` on loopback: a test CA made here, a
//! server that requires client certificates, and the multipath status of a
//! TLS connection.

use std::sync::Arc;

use multipath::tls::{Roots, TlsFailure};
use multipath::{Error, Listener, Parameters, ServiceType, TlsConnection, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca: ca.pem(), server: leaf("localhost"), client: leaf("client.test") }
}

/// A TLS server (MPTCP listener) that requires a client certificate from
/// the test CA and answers each connection with "cert" once it has one.
async fn server(pki: &Pki) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &params).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(conn).await {
                    let has_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    let mut hello = [0u8; 2];
                    if tls.read_exact(&mut hello).await.is_ok() && has_cert {
                        let _ = tls.write_all(b"cert").await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn client_certificates_are_presented_and_the_connection_says_it_is_multipath() {
    let pki = pki();
    let addr = server(&pki).await;
    let trust = TlsOptions::new().roots(Roots::None).add_root_pem(pki.ca.as_bytes()).unwrap().server_name("localhost");
    let with_cert = trust.clone().client_certificate_pem(pki.client.0.as_bytes(), pki.client.1.as_bytes()).unwrap();
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).tls(with_cert);
    let mut conn = TlsConnection::connect(addr, &params).await.unwrap();
    conn.write_all(b"hi").await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "cert");
    assert!(conn.multipath_status().is_multipath(), "{}", conn.multipath_status());
    assert_eq!(conn.subflows().unwrap().len(), 1);
    assert_eq!(conn.protocol_version().as_deref(), Some("TLSv1_3"));

    // Without a certificate the server refuses: no "cert", an error or EOF.
    let params = Parameters::tcp().multipath_service_type(ServiceType::Handover).tls(trust);
    let outcome = async {
        let mut conn = TlsConnection::connect(addr, &params).await?;
        conn.write_all(b"hi").await?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await?;
        Ok::<_, Box<dyn std::error::Error>>(reply)
    }
    .await;
    assert!(outcome.as_ref().map_or(true, |r| r.is_empty()), "{outcome:?}");
}

#[test]
fn bad_pem_is_a_configuration_error() {
    let err = TlsOptions::new().add_root_pem(b"not pem at all").unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::Config, .. }), "{err}");
    let err = TlsOptions::new().client_certificate_pem(b"", b"").unwrap_err();
    assert!(matches!(err, Error::Tls { failure: TlsFailure::Config, .. }), "{err}");
    let pki = pki();
    let err = TlsOptions::new().client_certificate_pem(pki.client.0.as_bytes(), b"junk").unwrap_err();
    assert!(err.to_string().contains("client key"), "{err}");
    // No roots at all cannot verify anyone: said when the configuration is built.
    let err = TlsOptions::new().roots(Roots::None).client_config().unwrap_err();
    assert!(err.to_string().contains("no trusted certificate authority"), "{err}");
}
