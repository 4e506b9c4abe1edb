//! One GET of Okta's System Log, and what came back.
//!
//! The client knows nothing about checkpoints or storage: it fetches the URL it is given
//! (the saved next link, or [`OktaClient::first_url`]) and returns the events as raw JSON, the
//! validated next link, and the rate-limit headers for pacing. Three rules are enforced here
//! because getting them wrong loses data or leaks the credential:
//!
//! - a URL (requested or `next`) on any origin other than the org's is refused before
//!   anything is sent (DESIGN §5);
//! - a body that is not a JSON array of objects is `Malformed`, never an empty page: the
//!   caller retries and alarms, it never skips (DESIGN §5);
//! - a refused credential is re-read from its source once (Key Vault rotation) before the
//!   error is returned.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, DATE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

use super::auth::{resource_dpop_nonce, wants_dpop_nonce, Authenticator, Credential};
use super::links::{self, LinkError};

/// Okta's query timeout is 30 s (then 500 E0000009); wait a little longer than that.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// `limit` of the first request: the maximum Okta allows.
pub const PAGE_LIMIT: u32 = 1000;

/// Largest body accepted: a full page is ≈ 2–3 MB (1000 events of 2–4 KB, contracts.md
/// §1.5); anything far beyond is not a System Log page and must not exhaust memory.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Longest excerpt of a response body or summary kept in an error.
const MAX_SNIPPET: usize = 200;

/// `X-Rate-Limit-*` headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-Rate-Limit-Limit`: the ceiling of the bucket (for this token).
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset` (epoch seconds on Okta's clock).
    pub reset: DateTime<Utc>,
}

/// One page of the System Log.
#[derive(Debug)]
pub struct OktaPage {
    /// The events exactly as received (each a JSON object).
    pub events: Vec<Box<RawValue>>,
    /// `rel="next"`, already checked to be on the org's origin.
    pub next: Option<Url>,
    pub rate: Option<RateLimit>,
    /// The response's `Date` header (Okta's clock), for pacing.
    pub date: Option<DateTime<Utc>>,
}

/// Why a fetch failed. Messages never contain the credential or an access token.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum OktaError {
    /// 429: wait until the reset (see [`crate::pacing::Pacer::delay_after_429`]).
    #[error("Okta rate limit exceeded (429)")]
    RateLimited {
        rate: Option<RateLimit>,
        date: Option<DateTime<Utc>>,
    },
    /// 401: the token or the client assertion was refused.
    #[error("Okta refused the credential (401{}): {summary}", code_suffix(.code))]
    Unauthorized {
        code: Option<String>,
        summary: String,
    },
    /// 403 (E0000006): authenticated, but not allowed to read the System Log.
    #[error("Okta denied access (403{}): {summary}", code_suffix(.code))]
    Forbidden {
        code: Option<String>,
        summary: String,
    },
    /// 5xx (E0000009 is Okta's 30 s query timeout): retry with backoff.
    #[error("Okta server error ({status}{}): {summary}", code_suffix(.code))]
    Server {
        status: u16,
        code: Option<String>,
        summary: String,
    },
    /// The response is not what Okta sends (HTML, truncated or non-array JSON, invalid
    /// UTF-8, broken link header): retry with backoff and alarm; never skip the page.
    #[error("malformed Okta response: {0}")]
    Malformed(String),
    /// A URL on another origin than the org's; nothing was sent to it.
    #[error("refused to send the Okta credential to another origin: {0}")]
    ForeignOrigin(String),
    /// Connection, TLS or I/O failure.
    #[error("cannot reach Okta: {0}")]
    Transport(String),
    /// No complete answer within [`REQUEST_TIMEOUT`].
    #[error("Okta request timed out")]
    Timeout,
    /// Other 4xx (e.g. 400 E0000053 `since` too old): retrying the same request will not help.
    #[error("Okta rejected the request ({status}{}): {summary}", code_suffix(.code))]
    BadRequest {
        status: u16,
        code: Option<String>,
        summary: String,
    },
    /// A 3xx: Okta's API does not redirect, and following one could leak the credential.
    #[error("Okta answered with a redirect ({status}); not followed")]
    Redirect { status: u16 },
    /// The configured credential cannot be used (unreadable key, missing or forbidden secret).
    #[error("Okta credential problem: {0}")]
    Credential(String),
    /// The secret store could not be reached (Key Vault or the managed identity is down):
    /// nothing was sent to Okta, and nothing is wrong with the credential itself.
    #[error("cannot read the Okta credential: {0}")]
    SecretUnavailable(String),
    /// `OKTA_DOMAIN` does not give a usable origin.
    #[error("invalid Okta origin: {0}")]
    InvalidOrigin(String),
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

impl OktaError {
    /// The credential was refused or cannot be used: the operator must act (the caller
    /// reports not-ready and retries slowly).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            OktaError::Unauthorized { .. } | OktaError::Forbidden { .. } | OktaError::Credential(_)
        )
    }

    /// Worth retrying the same request after a backoff, without operator action.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OktaError::RateLimited { .. }
                | OktaError::Server { .. }
                | OktaError::Malformed(_)
                | OktaError::Transport(_)
                | OktaError::Timeout
                | OktaError::SecretUnavailable(_)
        )
    }

    /// What an operator should check, for logs and `collector status`.
    pub fn operator_hint(&self) -> &'static str {
        match self {
            OktaError::Unauthorized { .. } => {
                "Okta refused the credential. An SSWS API token expires after 30 days unused or \
                 when the admin who created it is deactivated or loses the role; create a new \
                 token (Security > API > Tokens) and update OKTA_API_TOKEN or its Key Vault \
                 secret. For an OAuth service app, check OKTA_CLIENT_ID, that the public key on \
                 the app matches OKTA_PRIVATE_KEY (and OKTA_KEY_ID), and whether the app requires \
                 DPoP."
            }
            OktaError::Forbidden { .. } => {
                "Okta authenticated the collector but denied the System Log. For an OAuth service \
                 app, grant the okta.logs.read scope and assign an admin role that can read the \
                 System Log (e.g. Read-only Administrator). For an API token, the admin who \
                 created it needs such a role."
            }
            OktaError::SecretUnavailable(_) => {
                "Key Vault or the managed-identity endpoint cannot be reached; the collector \
                 retries with backoff. Check KEY_VAULT_URL, the vault's network rules and the \
                 identity (AZURE_CLIENT_ID)."
            }
            OktaError::Credential(_) => {
                "The configured Okta credential cannot be used: check that OKTA_API_TOKEN or \
                 OKTA_PRIVATE_KEY (PEM or JWK, unencrypted) is set or readable from Key Vault."
            }
            OktaError::RateLimited { .. } => {
                "Okta's rate limit for /api/v1/logs is exhausted: other integrations may share \
                 the bucket; raise OKTA_RATE_LIMIT_RESERVE or the token's share in Okta's \
                 rate-limit dashboard."
            }
            OktaError::Server { .. } | OktaError::Timeout | OktaError::Transport(_) => {
                "Okta or the network is failing; the collector retries with backoff. Check \
                 connectivity to the Okta domain and status.okta.com."
            }
            OktaError::Malformed(_) => {
                "Okta returned a response that is not a System Log page (a proxy or captive \
                 portal page, a truncated body). The collector retries and does not skip the page."
            }
            OktaError::ForeignOrigin(_) => {
                "A link pointed outside the configured Okta org; nothing was sent there. Check \
                 OKTA_DOMAIN (use the org's own domain, not a custom or vanity domain \
                 mismatch) and any proxy rewriting links."
            }
            OktaError::BadRequest { .. } | OktaError::Redirect { .. } => {
                "Okta rejected the request itself. A `since` older than 180 days or a saved \
                 next link from another org are typical; `collector reset` sets a new start."
            }
            OktaError::InvalidOrigin(_) => {
                "OKTA_DOMAIN must be a host name (acme.okta.com) or an https origin; plain http \
                 is allowed only for loopback."
            }
        }
    }
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

    /// The polling request that starts a new checkpoint: `since` only (no `until`, which would
    /// make it a finite bounded request), the largest page.
    pub fn first_url(&self, since: DateTime<Utc>) -> Url {
        let mut url = self.origin.clone();
        url.set_path("/api/v1/logs");
        url.query_pairs_mut()
            .append_pair(
                "since",
                &since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .append_pair("limit", &PAGE_LIMIT.to_string());
        url
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
                return self.page(status, url, &headers, &bytes);
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
        bytes: &[u8],
    ) -> Result<OktaPage, OktaError> {
        let events = if status == StatusCode::NO_CONTENT && bytes.is_empty() {
            Vec::new()
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

/// The body of a 200: a JSON array whose elements are all objects.
fn parse_events(headers: &HeaderMap, bytes: &[u8]) -> Result<Vec<Box<RawValue>>, OktaError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        OktaError::Malformed(format!(
            "body is not valid UTF-8 (at byte {} of {})",
            e.valid_up_to(),
            bytes.len()
        ))
    })?;
    let first = text.trim_start().chars().next();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    match first {
        Some('[') => {}
        Some('<') => {
            return Err(OktaError::Malformed(format!(
                "an HTML/XML page instead of JSON (content-type {}, {} bytes): {}",
                clip(content_type),
                bytes.len(),
                snippet(text, None)
            )))
        }
        Some('{') => {
            return Err(OktaError::Malformed(format!(
                "a JSON object instead of an array of events ({} bytes): {}",
                bytes.len(),
                snippet(text, None)
            )))
        }
        None => return Err(OktaError::Malformed("empty body with status 200".into())),
        Some(_) => {
            return Err(OktaError::Malformed(format!(
                "not a JSON array (content-type {}, {} bytes): {}",
                clip(content_type),
                bytes.len(),
                snippet(text, None)
            )))
        }
    }
    let events: Vec<Box<RawValue>> = serde_json::from_str(text).map_err(|e| {
        OktaError::Malformed(format!("invalid JSON array ({} bytes): {e}", bytes.len()))
    })?;
    if let Some(i) = events
        .iter()
        .position(|e| !e.get().trim_start().starts_with('{'))
    {
        return Err(OktaError::Malformed(format!(
            "element {i} of the page is not a JSON object"
        )));
    }
    Ok(events)
}

/// Okta's error shape: `{"errorCode": "E0000011", "errorSummary": "…", …}`.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct ErrorBody {
    #[serde(rename = "errorCode")]
    pub code: Option<String>,
    #[serde(rename = "errorSummary")]
    pub summary: Option<String>,
}

pub(crate) fn error_body(bytes: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<ErrorBody>(bytes)
        .ok()
        .filter(|b| b.code.is_some() || b.summary.is_some())
}

/// Maps a non-2xx answer. `secret` (what was sent) is scrubbed from any body excerpt.
pub(crate) fn status_error(
    status: u16,
    headers: &HeaderMap,
    bytes: &[u8],
    secret: Option<&str>,
) -> OktaError {
    let body = error_body(bytes);
    let code = body.as_ref().and_then(|b| b.code.clone()).map(|c| clip(&c));
    let summary = match body.and_then(|b| b.summary) {
        Some(s) => scrub(&clip(&s), secret),
        None if bytes.is_empty() => canonical(status),
        None => format!(
            "{}; body: {}",
            canonical(status),
            snippet(&String::from_utf8_lossy(bytes), secret)
        ),
    };
    match status {
        429 => OktaError::RateLimited {
            rate: parse_rate_limit(headers),
            date: parse_date(headers),
        },
        401 => OktaError::Unauthorized { code, summary },
        403 => OktaError::Forbidden { code, summary },
        300..=399 => OktaError::Redirect { status },
        500..=599 => OktaError::Server {
            status,
            code,
            summary,
        },
        _ => OktaError::BadRequest {
            status,
            code,
            summary,
        },
    }
}

fn canonical(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!("HTTP {status} {r}"))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

/// At most [`MAX_SNIPPET`] characters, control characters flattened.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_SNIPPET)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_SNIPPET).is_some() {
        out.push('…');
    }
    out
}

fn snippet(text: &str, secret: Option<&str>) -> String {
    scrub(&clip(text.trim()), secret)
}

fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 && text.contains(s) => text.replace(s, "<redacted>"),
        _ => text.to_string(),
    }
}

pub(crate) fn parse_rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let num = |name: &str| -> Option<i64> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let limit = u32::try_from(num("x-rate-limit-limit")?).ok()?;
    let remaining = u32::try_from(num("x-rate-limit-remaining")?).ok()?;
    let reset = Utc.timestamp_opt(num("x-rate-limit-reset")?, 0).single()?;
    Some(RateLimit {
        limit,
        remaining,
        reset,
    })
}

pub(crate) fn parse_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let v = headers.get(DATE)?.to_str().ok()?;
    DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub(crate) fn transport_error(e: reqwest::Error) -> OktaError {
    if e.is_timeout() {
        return OktaError::Timeout;
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    OktaError::Transport(clip(&msg))
}

/// Reads the whole body, refusing one larger than [`MAX_BODY`].
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, OktaError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(OktaError::Malformed(format!(
            "body of {} bytes is larger than any System Log page",
            resp.content_length().unwrap_or_default()
        )));
    }
    let mut body = Vec::new();
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

/// A body that cannot be read: a gzip stream that does not decode is malformed content; a
/// connection cut mid-body is a transport failure.
fn body_error(e: reqwest::Error) -> OktaError {
    if e.is_decode() {
        OktaError::Malformed(format!(
            "body cannot be decoded: {}",
            clip(&e.without_url().to_string())
        ))
    } else {
        transport_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn rate_limit_and_date_headers() {
        let m = h(&[
            ("x-rate-limit-limit", "120"),
            ("x-rate-limit-remaining", "119"),
            ("x-rate-limit-reset", "1609459200"),
            ("date", "Fri, 01 Jan 2021 00:00:00 GMT"),
        ]);
        let r = parse_rate_limit(&m).unwrap();
        assert_eq!(
            (r.limit, r.remaining, r.reset.timestamp()),
            (120, 119, 1_609_459_200)
        );
        assert_eq!(parse_date(&m).unwrap().timestamp(), 1_609_459_200);
        assert_eq!(parse_rate_limit(&h(&[("x-rate-limit-limit", "1")])), None);
        assert_eq!(
            parse_rate_limit(&h(&[
                ("x-rate-limit-limit", "-1"),
                ("x-rate-limit-remaining", "0"),
                ("x-rate-limit-reset", "0")
            ])),
            None
        );
    }

    #[test]
    fn bodies_that_are_not_pages_are_malformed() {
        let none = HeaderMap::new();
        let cases: [&[u8]; 7] = [
            b"<html><body>Sign in</body></html>",
            b"[{\"uuid\":\"a\"},{\"uuid\":",
            b"{\"errorCode\":\"E0000001\"}",
            b"[{\"uuid\":\"a\xff\"}]",
            b"",
            b"[1,2]",
            b"null",
        ];
        for body in cases {
            let r = parse_events(&none, body);
            assert!(
                matches!(r, Err(OktaError::Malformed(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_events(&none, b" [ ] ").unwrap().len(), 0);
        assert_eq!(parse_events(&none, b"[{\"a\":1}, {}]").unwrap().len(), 2);
    }

    #[test]
    fn malformed_descriptions_are_short() {
        let big = format!("<html>{}</html>", "x".repeat(10_000));
        let Err(OktaError::Malformed(m)) = parse_events(&HeaderMap::new(), big.as_bytes()) else {
            panic!("not malformed")
        };
        assert!(m.len() < 400, "{}", m.len());
    }

    #[test]
    fn error_statuses_map_to_variants() {
        let okta = |code: &str| {
            format!(r#"{{"errorCode":"{code}","errorSummary":"s {code}","errorCauses":[]}}"#)
        };
        let none = HeaderMap::new();
        assert!(matches!(
            status_error(401, &none, okta("E0000011").as_bytes(), None),
            OktaError::Unauthorized { code: Some(c), .. } if c == "E0000011"
        ));
        assert!(matches!(
            status_error(403, &none, okta("E0000006").as_bytes(), None),
            OktaError::Forbidden { .. }
        ));
        assert!(matches!(
            status_error(500, &none, okta("E0000009").as_bytes(), None),
            OktaError::Server { status: 500, .. }
        ));
        assert!(matches!(
            status_error(400, &none, okta("E0000053").as_bytes(), None),
            OktaError::BadRequest { status: 400, .. }
        ));
        let rl = h(&[
            ("x-rate-limit-limit", "20"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1609459260"),
            ("date", "Fri, 01 Jan 2021 00:00:00 GMT"),
        ]);
        let OktaError::RateLimited {
            rate: Some(r),
            date: Some(d),
        } = status_error(429, &rl, okta("E0000047").as_bytes(), None)
        else {
            panic!("not rate limited")
        };
        assert_eq!(
            (r.limit, r.remaining, (r.reset - d).num_seconds()),
            (20, 0, 60)
        );
        assert!(matches!(
            status_error(302, &none, b"", None),
            OktaError::Redirect { status: 302 }
        ));
    }

    #[test]
    fn secrets_are_scrubbed_from_error_bodies() {
        let e = status_error(
            502,
            &HeaderMap::new(),
            b"<p>bad gateway for SSWS 00SECRETTOKEN</p>",
            Some("00SECRETTOKEN"),
        );
        assert!(!e.to_string().contains("00SECRETTOKEN"), "{e}");
        let e = status_error(
            401,
            &HeaderMap::new(),
            br#"{"errorSummary":"00SECRETTOKEN invalid"}"#,
            Some("00SECRETTOKEN"),
        );
        assert!(!e.to_string().contains("00SECRETTOKEN"), "{e}");
    }

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

    #[test]
    fn hints_for_auth_errors_name_the_usual_causes() {
        let u = OktaError::Unauthorized {
            code: None,
            summary: String::new(),
        };
        assert!(u.is_auth() && u.operator_hint().contains("30 days"));
        let f = OktaError::Forbidden {
            code: None,
            summary: String::new(),
        };
        assert!(f.is_auth() && f.operator_hint().contains("okta.logs.read"));
        assert!(!OktaError::Timeout.is_auth());
        assert!(OktaError::Malformed(String::new()).is_transient());
    }
}
