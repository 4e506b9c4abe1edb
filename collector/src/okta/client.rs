//! One GET of Okta's System Log, and what came back.
//!
//! The client knows nothing about checkpoints or storage: it fetches the URL it is given
//! (the saved next link, or [`first_url`]) and returns the events as raw JSON, the
//! validated next link, and the rate-limit headers for pacing. Three rules are enforced here
//! because getting them wrong loses data or leaks the credential:
//!
//! - a URL (requested or `next`) on any origin other than the org's is refused before
//!   anything is sent (docs/design.md §5);
//! - a body that is not a JSON array of objects is `Malformed`, never an empty page: the
//!   caller retries and alarms, it never skips (docs/design.md §5);
//! - a refused credential is re-read from its source once (Key Vault rotation) before the
//!   error is returned.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, ACCEPT};
use reqwest::StatusCode;
use url::Url;

use super::auth::{resource_dpop_nonce, wants_dpop_nonce, Authenticator, Credential};
use super::error::{body_error, transport_error};
use super::events::Events;
use super::links::{self, LinkError};
use super::rate_limit::{parse_date, parse_rate_limit};
use super::response::{parse_events, status_error};

pub use super::error::OktaError;
pub use super::rate_limit::RateLimit;

/// Okta's query timeout is 30 s (then 500 E0000009); wait a little longer than that.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// `limit` of the first request: the maximum Okta allows.
pub const PAGE_LIMIT: u32 = 1000;

/// Largest body accepted: a full page is ≈ 2–3 MB (1000 events of 2–4 KB, docs/contracts.md
/// §1.5); anything far beyond is not a System Log page and must not exhaust memory.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One page of the System Log.
#[derive(Debug)]
pub struct OktaPage {
    /// The events exactly as received (each a JSON object).
    pub events: Events,
    /// `rel="next"`, already checked to be on the org's origin.
    pub next: Option<Url>,
    pub rate: Option<RateLimit>,
    /// The response's `Date` header (Okta's clock), for pacing.
    pub date: Option<DateTime<Utc>>,
}

/// Client of one Okta org's System Log.
pub struct OktaClient {
    origin: Url,
    http: reqwest::Client,
    auth: Authenticator,
}

impl std::fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaClient")
            .field("origin", &self.origin.as_str())
            .finish_non_exhaustive()
    }
}

/// A `reqwest` client fit for Okta: gzip on, redirects off (a redirect must never carry the
/// credential anywhere), a timeout above Okta's own 30 s query timeout.
pub fn build_http_client(extra_roots_pem: &[Vec<u8>]) -> Result<reqwest::Client, OktaError> {
    build_http_client_with_timeout(extra_roots_pem, REQUEST_TIMEOUT)
}

/// [`build_http_client`] with another whole-request timeout (`OKTA_REQUEST_TIMEOUT`).
pub fn build_http_client_with_timeout(
    extra_roots_pem: &[Vec<u8>],
    timeout: Duration,
) -> Result<reqwest::Client, OktaError> {
    let mut b = reqwest::Client::builder()
        .gzip(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("okta-sentinel/", env!("CARGO_PKG_VERSION")));
    for pem in extra_roots_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| OktaError::Transport(format!("extra root certificate: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| OktaError::Transport(format!("cannot build the HTTP client: {e}")))
}

impl OktaClient {
    /// `origin`: the org's scheme, host and port (any path is ignored). `http` should come from
    /// [`build_http_client`].
    pub fn new(
        origin: Url,
        credential: Credential,
        http: reqwest::Client,
    ) -> Result<OktaClient, OktaError> {
        let origin = normalise_origin(&origin)?;
        let auth = Authenticator::new(credential, &origin)?;
        Ok(OktaClient { origin, http, auth })
    }

    /// `scheme://host[:port]/`.
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// The org's host, as stored in each event's `domain`.
    pub fn host(&self) -> &str {
        self.origin.host_str().unwrap_or_default()
    }

    pub fn credential(&self) -> &Credential {
        self.auth.credential()
    }

    /// Whether requests carry DPoP proofs: learned from the token endpoint on the first
    /// request (`collector doctor` reports whether the service app requires DPoP).
    pub async fn uses_dpop(&self) -> bool {
        self.auth.uses_dpop().await
    }

    /// GETs one page. `url` must be on the org's origin (else nothing is sent).
    pub async fn fetch(&self, url: &Url) -> Result<OktaPage, OktaError> {
        if !links::same_origin(url, &self.origin) {
            return Err(OktaError::ForeignOrigin(links::origin_of(url)));
        }
        let mut refreshed = false;
        let mut nonce_retried = false;
        loop {
            let auth = match self.auth.authorize(&self.http, url).await {
                Ok(a) => a,
                Err(e) if e.is_auth() && !refreshed => {
                    refreshed = true;
                    self.refresh_after(&e).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut req = self
                .http
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .header(reqwest::header::AUTHORIZATION, auth.authorization);
            if let Some(proof) = auth.dpop {
                req = req.header("DPoP", proof);
            }
            let resp = req.send().await.map_err(transport_error)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            if let Some(nonce) = resource_dpop_nonce(&headers) {
                self.auth.set_resource_nonce(nonce);
            }
            if status == StatusCode::UNAUTHORIZED
                && !nonce_retried
                && wants_dpop_nonce(&headers)
                && resource_dpop_nonce(&headers).is_some()
                && self.auth.uses_dpop().await
            {
                nonce_retried = true;
                continue;
            }
            let bytes = read_body(resp).await?;
            if status.is_success() {
                return self.page(status, url, &headers, bytes);
            }
            let err = status_error(
                status.as_u16(),
                &headers,
                &bytes,
                Some(auth.secret.expose()),
            );
            let retry_auth = match &err {
                OktaError::Unauthorized { .. } => true,
                OktaError::Forbidden { code, .. } => {
                    code.is_none() || code.as_deref() == Some("E0000006")
                }
                _ => false,
            };
            if retry_auth && !refreshed {
                refreshed = true;
                self.refresh_after(&err).await;
                continue;
            }
            return Err(err);
        }
    }

    /// Drops the token and re-reads the credential; a failing refresh is logged, and the
    /// original refusal is what the caller gets if the retry fails too.
    async fn refresh_after(&self, cause: &OktaError) {
        tracing::warn!(error = %cause, "Okta refused the credential; re-reading it and retrying once");
        if let Err(e) = self.auth.refresh().await {
            tracing::warn!(error = %e, "could not re-read the Okta credential");
        }
    }

    fn page(
        &self,
        status: StatusCode,
        url: &Url,
        headers: &HeaderMap,
        bytes: Vec<u8>,
    ) -> Result<OktaPage, OktaError> {
        let events = if status == StatusCode::NO_CONTENT && bytes.is_empty() {
            Events::default()
        } else {
            parse_events(headers, bytes)?
        };
        let next = links::next_url(headers, url, &self.origin).map_err(|e| match e {
            LinkError::ForeignOrigin(o) => OktaError::ForeignOrigin(o),
            other => OktaError::Malformed(other.to_string()),
        })?;
        Ok(OktaPage {
            events,
            next,
            rate: parse_rate_limit(headers),
            date: parse_date(headers),
        })
    }
}

/// The polling request that starts a new checkpoint: `since` only (no `until`, which would
/// make it a finite bounded request), the largest page ([`PAGE_LIMIT`]).
pub fn first_url(origin: &Url, since: DateTime<Utc>) -> Url {
    let mut url = origin.clone();
    url.set_path("/api/v1/logs");
    url.query_pairs_mut()
        .clear()
        .append_pair(
            "since",
            &since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .append_pair("limit", &PAGE_LIMIT.to_string());
    url
}

/// Keeps scheme, host and port; refuses plain http except for loopback hosts.
fn normalise_origin(url: &Url) -> Result<Url, OktaError> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| OktaError::InvalidOrigin("no host".into()))?;
    common::config::require_https_or_loopback(url)
        .map_err(|reason| OktaError::InvalidOrigin(format!("{host}: {reason}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OktaError::InvalidOrigin("credentials in the URL".into()));
    }
    Url::parse(&url.origin().ascii_serialization())
        .map_err(|e| OktaError::InvalidOrigin(e.to_string()))
}

/// Reads the whole body, refusing one larger than [`MAX_BODY`].
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, OktaError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(OktaError::Malformed(format!(
            "body of {} bytes is larger than any System Log page",
            resp.content_length().unwrap_or_default()
        )));
    }
    // A full page is megabytes: take the announced length at once rather than grow (and copy)
    // the buffer a dozen times as the chunks arrive.
    // (At most 16 MiB up front: a server announcing more than it sends costs no more.)
    let announced = resp.content_length().and_then(|n| usize::try_from(n).ok());
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(16 << 20));
    while let Some(chunk) = resp.chunk().await.map_err(body_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(OktaError::Malformed(format!(
                "body larger than {MAX_BODY} bytes is not a System Log page"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let ok = |s: &str| normalise_origin(&Url::parse(s).unwrap()).map(|u| u.to_string());
        assert_eq!(
            ok("https://acme.okta.com/some/path?x=1").unwrap(),
            "https://acme.okta.com/"
        );
        assert_eq!(
            ok("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(ok("http://localhost:1").unwrap(), "http://localhost:1/");
        assert_eq!(ok("http://[::1]:1").unwrap(), "http://[::1]:1/");
        assert!(ok("http://acme.okta.com").is_err());
        assert!(ok("ftp://acme.okta.com").is_err());
        assert!(ok("https://u:p@acme.okta.com").is_err());
    }
}
