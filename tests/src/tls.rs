//! A throw-away certificate authority for the local world, and an https server loop.
//!
//! The production code only talks TLS to Azure (the SDK refuses bearer tokens over plain
//! http), so the https fakes and Azurite's `--oauth basic` mode need a certificate the clients
//! trust. Webpki rejects a CA certificate used directly as the server certificate, so the
//! servers get a *leaf* signed by this CA, and clients trust only the CA (through
//! `HttpOptions::extra_roots_pem` or `SSL_CERT_FILE`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A self-signed test CA that issues server certificates for `127.0.0.1` / `localhost`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of any test output.
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate (leaf) and its private key, both PEM.
#[derive(Clone)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a fresh CA (ECDSA P-256, valid for the default rcgen period).
    pub fn new() -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "okta-sentinel test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key).context("self-signing the CA")?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate in PEM: what clients must trust.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/test-ca.pem` and returns the path (for
    /// `SSL_CERT_FILE` or `OKTA_SENTINEL_EXTRA_CA`).
    pub fn write_ca_file(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, self.ca_pem())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Issues a leaf for `127.0.0.1` and `localhost`, signed by this CA.
    pub fn issue_server_cert(&self) -> anyhow::Result<ServerCert> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("generating the server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the server certificate")?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

impl ServerCert {
    /// A rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3, ALPN `http/1.1`) that
    /// presents this certificate.
    pub fn rustls_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .context("server certificate and key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Writes `server.pem` and `server.key` into `dir` (Azurite's `--cert`/`--key`).
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::write(&cert, &self.cert_pem)
            .with_context(|| format!("writing {}", cert.display()))?;
        std::fs::write(&key, &self.key_pem)
            .with_context(|| format!("writing {}", key.display()))?;
        Ok((cert, key))
    }
}

/// One CA for the whole test process, so every fake and Azurite share a single trust root.
///
/// Key generation cannot fail in practice (it only fails when the crypto provider is
/// broken); if it does, every https test fails anyway, so this function panics with the cause.
pub fn shared_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| match TestCa::new() {
        Ok(ca) => ca,
        // Invariant: see the doc comment; there is no caller that could recover.
        Err(e) => panic!("cannot create the test CA: {e:#}"),
    })
}

/// Serves `router` over https on `listener` until `shutdown` is cancelled.
///
/// Each accepted connection is handshaken and served on its own task, so a slow or broken
/// client cannot stall the others. Handshake failures (a client that does not trust the CA)
/// only drop that connection. Open connections are not drained on shutdown: the fakes are
/// dropped at the end of a test and nobody waits for them.
pub async fn serve_https(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, _peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "https accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "https connection ended with an error");
                    }
                }
            }
        });
    }
}
