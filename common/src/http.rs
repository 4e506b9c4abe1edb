//! The shared HTTP client.
//!
//! One `reqwest::Client` serves as the Azure SDK's transport and for our own calls to Log
//! Analytics, so connections and TLS configuration are shared. Automatic decompression is off:
//! partitioned blob downloads need the raw bytes (docs/azure-sdk-notes.md §Q5). Okta uses its own
//! client with gzip on (see the collector).

use std::time::Duration;

/// Options for [`build_client`].
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Extra trusted root certificates in PEM (tests: the local CA of Azurite and the fakes).
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Whole-request timeout; `None` = 120 s.
    pub timeout: Option<Duration>,
    /// Accept gzip responses (Okta); off for the Azure SDK transport.
    pub gzip: bool,
}

/// Builds a client: rustls, no automatic decompression, sane timeouts.
pub fn build_client(opts: &HttpOptions) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder();
    b = if opts.gzip { b.gzip(true) } else { b.no_gzip() };
    let mut b = b
        .connect_timeout(Duration::from_secs(10))
        .timeout(opts.timeout.unwrap_or(Duration::from_secs(120)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("okta-sentinel/", env!("CARGO_PKG_VERSION")));
    for pem in &opts.extra_roots_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    b.build()
}

/// Reads extra root certificates named by `OKTA_SENTINEL_EXTRA_CA` (a PEM file path), so that
/// tests and private deployments can trust a local CA without touching the system store.
pub fn extra_roots_from_env() -> std::io::Result<Vec<Vec<u8>>> {
    match std::env::var_os("OKTA_SENTINEL_EXTRA_CA") {
        Some(p) if !p.is_empty() => Ok(vec![std::fs::read(p)?]),
        _ => Ok(Vec::new()),
    }
}

/// The Azure SDK transport and Log Analytics client of a binary: extra roots from
/// `OKTA_SENTINEL_EXTRA_CA`, no automatic decompression.
pub fn azure_client() -> Result<reqwest::Client, String> {
    let roots = extra_roots_from_env()
        .map_err(|e| format!("OKTA_SENTINEL_EXTRA_CA: cannot read the CA file ({e})"))?;
    build_client(&HttpOptions {
        extra_roots_pem: roots,
        timeout: Some(Duration::from_secs(60)),
        gzip: false,
    })
    .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
