//! TLS over a multipath connection (feature `tls`): rustls with the *ring*
//! provider, no OpenSSL. The counterpart of `NWParameters.tls`: give
//! [`Parameters::tls`](crate::Parameters::tls) a [`TlsOptions`] and open a
//! [`TlsConnection`]; it reports the same multipath status and subflows as a
//! plain [`Connection`].

use std::io;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::endpoint::{Endpoint, ToEndpoint};
use crate::{Connection, Error, Parameters, Result};

/// Which certificate authorities a client trusts by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's store (`/etc/ssl/certs` and friends) and the
    /// Mozilla roots compiled in (`webpki-roots`): what a browser trusts.
    #[default]
    SystemAndWebpki,
    /// The operating system's store only.
    System,
    /// The Mozilla roots compiled in only (works on a bare container).
    Webpki,
    /// None: only the authorities added with [`TlsOptions::add_root_pem`].
    None,
}

/// TLS settings of a client connection: trusted roots, extra authorities, a
/// client certificate, ALPN, the name to verify, and (loudly) no
/// verification at all. Cheap to clone; the rustls configuration is built
/// once, on first use.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    roots: Roots,
    extra_roots: Vec<CertificateDer<'static>>,
    client_auth: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
    alpn: Vec<Vec<u8>>,
    server_name: Option<String>,
    insecure: bool,
    built: Arc<OnceLock<std::result::Result<Arc<ClientConfig>, String>>>,
}

impl PartialEq for TlsOptions {
    fn eq(&self, other: &Self) -> bool {
        crate::params::same_arc(&self.client_auth, &other.client_auth)
            && (self.roots, &self.extra_roots, &self.alpn, &self.server_name, self.insecure)
                == (other.roots, &other.extra_roots, &other.alpn, &other.server_name, other.insecure)
    }
}

impl Eq for TlsOptions {}

impl TlsOptions {
    /// Verification against the system's and the Mozilla roots, no ALPN.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Any change invalidates the configuration built so far.
    fn changed(mut self) -> Self {
        self.built = Arc::default();
        self
    }

    /// The default authorities to trust.
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self.changed()
    }

    /// Also trusts the certificates in `pem` (one or more `CERTIFICATE`
    /// blocks), e.g. a test or corporate CA.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<Self> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| tls_config(format!("CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(tls_config("CA certificates: no CERTIFICATE block in the PEM data"));
        }
        self.extra_roots.extend(certs);
        Ok(self.changed())
    }

    /// Presents this certificate chain and key when the server asks for one
    /// (`chain_pem`: `CERTIFICATE` blocks, leaf first; `key_pem`: a PKCS#8,
    /// PKCS#1 or SEC1 private key).
    pub fn client_certificate_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| tls_config(format!("client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(tls_config("client certificate: no CERTIFICATE block in the PEM data"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_config(format!("client key: {e}")))?;
        self.client_auth = Some(Arc::new((chain, key)));
        Ok(self.changed())
    }

    /// Application protocols to offer, most preferred first (`h2`,
    /// `http/1.1`).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self.changed()
    }

    /// The name sent as SNI and verified in the certificate, instead of the
    /// endpoint's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self.changed()
    }

    /// Accepts any certificate, for any name, from anyone. The connection is
    /// encrypted but not authenticated: for tests and diagnostics only.
    pub fn danger_accept_invalid_certificates(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self.changed()
    }

    /// Whether certificates go unverified.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The protocols offered by ALPN.
    pub fn alpn_protocols(&self) -> &[Vec<u8>] {
        &self.alpn
    }

    /// The rustls configuration these options describe, built on first use.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        self.built.get_or_init(|| self.build()).clone().map_err(tls_config)
    }

    fn build(&self) -> std::result::Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if self.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        } else {
            builder.with_root_certificates(self.root_store()?)
        };
        let mut config = match &self.client_auth {
            Some(auth) => builder
                .with_client_auth_cert(auth.0.clone(), auth.1.clone_key())
                .map_err(|e| format!("client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    fn root_store(&self) -> std::result::Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        if matches!(self.roots, Roots::System | Roots::SystemAndWebpki) {
            // Unreadable entries are skipped, as browsers do; an empty system
            // store is only an error when nothing else is trusted.
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
        if matches!(self.roots, Roots::Webpki | Roots::SystemAndWebpki) {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &self.extra_roots {
            store.add(cert.clone()).map_err(|e| format!("CA certificate: {e}"))?;
        }
        if store.is_empty() {
            return Err("no trusted certificate authority (the system store is empty and none was added)".into());
        }
        Ok(store)
    }
}

fn tls_config(reason: impl Into<String>) -> Error {
    Error::Tls { endpoint: String::new(), failure: TlsFailure::Config, reason: reason.into() }
}

/// What kind of TLS failure an [`Error::Tls`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The options themselves (bad PEM, no roots).
    Config,
    /// The server's certificate is not trusted, expired, or not for this
    /// name.
    Certificate,
    /// Anything else in the handshake: no common protocol, a reset, an
    /// alert, a peer that does not speak TLS.
    Handshake,
}

/// The verifier behind `danger_accept_invalid_certificates`: checks that
/// the handshake's signatures are well-formed, nothing about who signed.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Socket bytes read at once beneath rustls, which on its own made one
/// recvmsg per ~16 KiB (6,311 per 100 MB). 256 KiB (allocated per
/// connection) made 481, and took HTTPS downloads from 0.99× to 1.05× curl.
const RECORDS_READ_AT_ONCE: usize = 256 * 1024;

/// A TLS session over a [`Connection`]: a tokio byte stream that still says
/// whether it is multipath.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::client::TlsStream<tokio::io::BufReader<Connection>>,
}

impl TlsConnection {
    /// Connects like [`Connection::connect`], then runs the TLS handshake
    /// with [`Parameters::tls`](crate::Parameters::tls)'s options (the
    /// defaults when none were given). The name verified is the endpoint's
    /// host unless the options name another. The connect timeout, if any,
    /// covers the handshake too.
    pub async fn connect(endpoint: impl ToEndpoint, params: &Parameters) -> Result<TlsConnection> {
        let endpoint = endpoint.to_endpoint()?;
        let options = params.get_tls().cloned().unwrap_or_default();
        let started = tokio::time::Instant::now();
        let conn = Connection::connect(endpoint.clone(), params).await?;
        let handshake = TlsConnection::handshake(conn, &endpoint, &options);
        match params.get_connect_timeout() {
            Some(after) => tokio::time::timeout_at(started + after, handshake).await.map_err(|_| Error::Tls {
                endpoint: endpoint.to_string(),
                failure: TlsFailure::Handshake,
                reason: format!("no TLS handshake within {after:?}"),
            })?,
            None => handshake.await,
        }
    }

    /// Runs the client handshake over an open connection.
    pub async fn handshake(conn: Connection, endpoint: &Endpoint, options: &TlsOptions) -> Result<TlsConnection> {
        let config = options.client_config().map_err(|e| with_endpoint(e, endpoint))?;
        let name = match (&options.server_name, endpoint) {
            (Some(name), _) => name.clone(),
            (None, Endpoint::Host { host, .. }) => host.clone(),
            (None, Endpoint::Addr(a)) => a.ip().to_string(),
        };
        let server_name = ServerName::try_from(name.clone()).map_err(|e| Error::Tls {
            endpoint: endpoint.to_string(),
            failure: TlsFailure::Config,
            reason: format!("{name:?} is not a valid server name: {e}"),
        })?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tokio::io::BufReader::with_capacity(RECORDS_READ_AT_ONCE, conn))
            .await
            .map_err(|e| handshake_error(e, endpoint))?;
        Ok(TlsConnection { stream })
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &Connection {
        self.stream.get_ref().0.get_ref()
    }

    /// The application protocol the server picked by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }

    /// The TLS version in use, e.g. `TLSv1_3`.
    pub fn protocol_version(&self) -> Option<String> {
        self.stream.get_ref().1.protocol_version().map(|v| format!("{v:?}"))
    }

    /// Like [`Connection::multipath_status`].
    pub fn multipath_status(&self) -> crate::MultipathStatus {
        self.get_ref().multipath_status()
    }

    /// Like [`Connection::mptcp_info`].
    pub fn mptcp_info(&self) -> Result<crate::MptcpInfo> {
        self.get_ref().mptcp_info()
    }

    /// Like [`Connection::subflows`].
    pub fn subflows(&self) -> Result<Vec<crate::SubflowInfo>> {
        self.get_ref().subflows()
    }

    /// Like [`Connection::telemetry`].
    pub fn telemetry(&self) -> crate::Telemetry {
        self.get_ref().telemetry()
    }
}

fn with_endpoint(e: Error, endpoint: &Endpoint) -> Error {
    match e {
        Error::Tls { failure, reason, .. } => Error::Tls { endpoint: endpoint.to_string(), failure, reason },
        other => other,
    }
}

/// Sorts a handshake failure: certificate problems apart from the rest.
fn handshake_error(e: io::Error, endpoint: &Endpoint) -> Error {
    let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let failure = match rustls_error {
        Some(rustls::Error::InvalidCertificate(_)) => TlsFailure::Certificate,
        _ => TlsFailure::Handshake,
    };
    let reason = match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection during the handshake".to_owned(),
        _ => e.to_string(),
    };
    Error::Tls { endpoint: endpoint.to_string(), failure, reason }
}

crate::connection::forward_async_io!(TlsConnection);
