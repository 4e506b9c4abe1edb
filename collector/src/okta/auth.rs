//! How the collector proves itself to Okta: an SSWS API token, or an OAuth 2.0 service app
//! (`private_key_jwt` client credentials, scope `okta.logs.read`), optionally with DPoP.
//!
//! The OAuth access token is cached and renewed shortly before it expires; a refused token is
//! dropped and the credential re-read from its source (Key Vault rotation) by the client.
//! Whether the app wants DPoP is learned from the token endpoint's answer (`use_dpop_nonce` /
//! `invalid_dpop_proof`), so the same configuration works whether or not an admin ticked
//! "Require DPoP header in token requests".
//!
//! Secret values (token, private key, access token, assertion) never reach an error, a log
//! line or a `Debug` output: header values are marked sensitive, and errors carry only
//! Okta's error codes and summaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as SyncMutex;
use std::time::{Duration, Instant};

use common::secrets::SecretString;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;

use super::dpop::DpopKey;
use super::error::{clip, transport_error, OktaError};
use super::keys::load_signing_key;
use super::rate_limit::{parse_date, parse_rate_limit};
use super::response::status_error;

pub use common::secrets::SecretSource;

/// Scope the collector asks for.
pub const LOGS_READ_SCOPE: &str = "okta.logs.read";

/// Renew a cached access token this long before it expires.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Lifetime of a client assertion (Okta accepts at most one hour).
const ASSERTION_TTL_SECS: i64 = 300;

/// Okta's access tokens live one hour; used when `expires_in` is missing.
const DEFAULT_TOKEN_TTL: u64 = 3600;

/// The configured Okta credential.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `Authorization: SSWS {token}` (`OKTA_API_TOKEN`).
    Ssws(SecretSource),
    /// OAuth 2.0 service app (`OKTA_CLIENT_ID`, `OKTA_PRIVATE_KEY`, `OKTA_KEY_ID`).
    PrivateKeyJwt {
        client_id: String,
        /// PEM (RSA or EC) or JWK JSON.
        key: SecretSource,
        /// `kid` of the key registered on the app; when absent, a JWK's own `kid` is used.
        key_id: Option<String>,
        /// Normally [`LOGS_READ_SCOPE`].
        scope: String,
    },
}

impl Credential {
    /// An OAuth service app asking for [`LOGS_READ_SCOPE`].
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        key: SecretSource,
        key_id: Option<String>,
    ) -> Self {
        Credential::PrivateKeyJwt {
            client_id: client_id.into(),
            key,
            key_id,
            scope: LOGS_READ_SCOPE.into(),
        }
    }

    /// For logs and `collector status` (never the value): `SSWS token from env
    /// OKTA_API_TOKEN`, `OAuth app 0oa… (private_key_jwt, key from Key Vault secret …)`.
    pub fn describe(&self) -> String {
        match self {
            Credential::Ssws(s) => format!("SSWS token from {}", s.describe()),
            Credential::PrivateKeyJwt { client_id, key, .. } => format!(
                "OAuth app {client_id} (private_key_jwt, key from {})",
                key.describe()
            ),
        }
    }

    /// Re-reads the secret from its source (Key Vault), so a rotated token or key is used
    /// without a restart.
    pub async fn refresh(&self) -> Result<(), OktaError> {
        let source = match self {
            Credential::Ssws(s) => s,
            Credential::PrivateKeyJwt { key, .. } => key,
        };
        secret_refresh(source).await
    }

    fn is_oauth(&self) -> bool {
        matches!(self, Credential::PrivateKeyJwt { .. })
    }
}

/// The headers that authorise one request.
pub(crate) struct Authorization {
    pub authorization: HeaderValue,
    pub dpop: Option<HeaderValue>,
    /// The raw secret sent (token or access token), only to scrub it from error snippets.
    pub secret: SecretString,
}

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    dpop: bool,
    renew_at: Instant,
}

/// Credential plus the OAuth state that goes with it.
pub(crate) struct Authenticator {
    credential: Credential,
    token_url: Url,
    token: Mutex<Option<CachedToken>>,
    /// Present for OAuth credentials only.
    dpop_key: Option<DpopKey>,
    /// Learned from the token endpoint: this app wants DPoP proofs.
    dpop_required: AtomicBool,
    token_nonce: SyncMutex<Option<String>>,
    resource_nonce: SyncMutex<Option<String>>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    token_type: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

impl Authenticator {
    pub(crate) fn new(credential: Credential, origin: &Url) -> Result<Self, OktaError> {
        let token_url = origin
            .join("/oauth2/v1/token")
            .map_err(|e| OktaError::InvalidOrigin(e.to_string()))?;
        let dpop_key = if credential.is_oauth() {
            Some(DpopKey::generate().map_err(|e| OktaError::Credential(e.to_string()))?)
        } else {
            None
        };
        Ok(Self {
            credential,
            token_url,
            token: Mutex::new(None),
            dpop_key,
            dpop_required: AtomicBool::new(false),
            token_nonce: SyncMutex::new(None),
            resource_nonce: SyncMutex::new(None),
        })
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Headers for a GET of `url`, fetching or renewing an access token when needed.
    pub(crate) async fn authorize(
        &self,
        http: &reqwest::Client,
        url: &Url,
    ) -> Result<Authorization, OktaError> {
        match &self.credential {
            Credential::Ssws(source) => {
                let token = secret_current(source).await?;
                Ok(Authorization {
                    authorization: sensitive(&format!("SSWS {}", token.expose()))?,
                    dpop: None,
                    secret: token,
                })
            }
            Credential::PrivateKeyJwt { .. } => {
                let token = self.access_token(http).await?;
                let (scheme, dpop) = if token.dpop {
                    let key = self.require_dpop_key()?;
                    let nonce = lock(&self.resource_nonce).clone();
                    let proof = key
                        .proof("GET", url, nonce.as_deref(), Some(token.value.expose()))
                        .map_err(|e| OktaError::Credential(e.to_string()))?;
                    ("DPoP", Some(sensitive(&proof)?))
                } else {
                    ("Bearer", None)
                };
                Ok(Authorization {
                    authorization: sensitive(&format!("{scheme} {}", token.value.expose()))?,
                    dpop,
                    secret: token.value,
                })
            }
        }
    }

    /// Remembers a `DPoP-Nonce` the resource server sent.
    pub(crate) fn set_resource_nonce(&self, nonce: String) {
        *lock(&self.resource_nonce) = Some(nonce);
    }

    /// Whether the requests carry DPoP proofs (so a resource nonce matters).
    pub(crate) async fn uses_dpop(&self) -> bool {
        self.token.lock().await.as_ref().is_some_and(|t| t.dpop)
    }

    /// Drops the cached access token and re-reads the credential from its source.
    pub(crate) async fn refresh(&self) -> Result<(), OktaError> {
        *self.token.lock().await = None;
        self.credential.refresh().await
    }

    fn require_dpop_key(&self) -> Result<&DpopKey, OktaError> {
        self.dpop_key
            .as_ref()
            .ok_or_else(|| OktaError::Credential("DPoP needs an OAuth credential".into()))
    }

    async fn access_token(&self, http: &reqwest::Client) -> Result<CachedToken, OktaError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.renew_at {
                return Ok(t.clone());
            }
        }
        let fresh = self.request_token(http).await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// One client-credentials grant, including the DPoP nonce dance: without a proof →
    /// (app requires DPoP) proof → (server wants a nonce) proof with nonce.
    async fn request_token(&self, http: &reqwest::Client) -> Result<CachedToken, OktaError> {
        let Credential::PrivateKeyJwt {
            client_id,
            key,
            key_id,
            scope,
        } = &self.credential
        else {
            return Err(OktaError::Credential("not an OAuth credential".into()));
        };
        let pem_or_jwk = secret_current(key).await?;
        let signing = load_signing_key(pem_or_jwk.expose())
            .map_err(|e| OktaError::Credential(e.to_string()))?;
        let kid = key_id.clone().or_else(|| signing.jwk_kid.clone());
        let mut last_error = None;
        // Worst case: no proof → proof without nonce → proof with a fresh nonce, plus one more
        // if the nonce rotated in between.
        for _ in 0..4 {
            let use_dpop = self.dpop_required.load(Ordering::Relaxed);
            let now = chrono::Utc::now().timestamp();
            let mut header = jsonwebtoken::Header::new(signing.alg);
            header.kid = kid.clone();
            let claims = AssertionClaims {
                iss: client_id,
                sub: client_id,
                aud: self.token_url.as_str(),
                iat: now,
                exp: now + ASSERTION_TTL_SECS,
                jti: uuid::Uuid::new_v4().to_string(),
            };
            let assertion = jsonwebtoken::encode(&header, &claims, &signing.key).map_err(|e| {
                OktaError::Credential(format!("cannot sign the client assertion: {e}"))
            })?;
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", scope)
                .append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion)
                .finish();
            let mut req = http
                .post(self.token_url.clone())
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
            if use_dpop {
                let nonce = lock(&self.token_nonce).clone();
                let proof = self
                    .require_dpop_key()?
                    .proof("POST", &self.token_url, nonce.as_deref(), None)
                    .map_err(|e| OktaError::Credential(e.to_string()))?;
                req = req.header("DPoP", sensitive(&proof)?);
            }
            let resp = req.send().await.map_err(transport_error)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            if let Some(n) = dpop_nonce(&headers) {
                *lock(&self.token_nonce) = Some(n);
            }
            let bytes = resp.bytes().await.map_err(transport_error)?;
            if status.is_success() {
                return self.parse_token(&bytes, use_dpop);
            }
            let oauth: OAuthErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let code = oauth.error.as_deref().unwrap_or_default();
            if status.as_u16() == 400 && code == "use_dpop_nonce" && dpop_nonce(&headers).is_some()
            {
                self.dpop_required.store(true, Ordering::Relaxed);
                last_error = Some(token_error(status.as_u16(), &headers, &bytes, oauth));
                continue;
            }
            if status.as_u16() == 400 && code == "invalid_dpop_proof" && !use_dpop {
                self.dpop_required.store(true, Ordering::Relaxed);
                last_error = Some(token_error(status.as_u16(), &headers, &bytes, oauth));
                continue;
            }
            return Err(token_error(status.as_u16(), &headers, &bytes, oauth));
        }
        Err(last_error.unwrap_or_else(|| OktaError::Unauthorized {
            code: None,
            summary: "token endpoint kept asking for a new DPoP nonce".into(),
        }))
    }

    fn parse_token(&self, bytes: &[u8], sent_dpop: bool) -> Result<CachedToken, OktaError> {
        let t: TokenResponse = serde_json::from_slice(bytes).map_err(|e| {
            OktaError::Malformed(format!(
                "token endpoint answer is not a token response: {e}"
            ))
        })?;
        let Some(access_token) = t.access_token.filter(|t| !t.is_empty()) else {
            return Err(OktaError::Malformed(
                "token endpoint answer has no access_token".into(),
            ));
        };
        let dpop = match t.token_type.as_deref() {
            Some(tt) if tt.eq_ignore_ascii_case("DPoP") => true,
            Some(tt) if tt.eq_ignore_ascii_case("Bearer") => false,
            // RFC 6749 makes token_type mandatory; Okta always sends it. Without it, trust
            // what was asked for.
            None => sent_dpop,
            Some(other) => {
                return Err(OktaError::Malformed(format!(
                    "token endpoint issued an unsupported token type {:?}",
                    other.chars().take(20).collect::<String>()
                )))
            }
        };
        if dpop && !sent_dpop {
            return Err(OktaError::Malformed(
                "token endpoint issued a DPoP token to a request without a proof".into(),
            ));
        }
        let ttl = t.expires_in.unwrap_or(DEFAULT_TOKEN_TTL);
        let ttl = Duration::from_secs(ttl);
        // Renew 60 s early, but never later than half-way for (test-only) short tokens.
        let early = ttl.saturating_sub(RENEW_BEFORE_EXPIRY).max(ttl / 2);
        Ok(CachedToken {
            value: SecretString::new(access_token),
            dpop,
            renew_at: Instant::now() + early,
        })
    }
}

/// Maps a token-endpoint failure. OAuth errors (`{"error": …}`) and Okta's own error shape
/// (`{"errorCode": …}`) both occur.
fn token_error(status: u16, headers: &HeaderMap, bytes: &[u8], oauth: OAuthErrorBody) -> OktaError {
    if oauth.error.is_none() {
        return status_error(status, headers, bytes, None);
    }
    let code = oauth.error;
    let summary = oauth
        .error_description
        .map_or_else(|| "token request refused".into(), |d| clip(&d));
    match (status, code.as_deref()) {
        (429, _) => OktaError::RateLimited {
            rate: parse_rate_limit(headers),
            date: parse_date(headers),
        },
        (s, _) if s >= 500 => OktaError::Server {
            status: s,
            code,
            summary,
        },
        (_, Some("invalid_scope" | "unauthorized_client" | "access_denied")) => {
            OktaError::Forbidden { code, summary }
        }
        (_, Some("invalid_client" | "invalid_grant" | "invalid_dpop_proof" | "use_dpop_nonce"))
        | (401 | 403, _) => OktaError::Unauthorized { code, summary },
        (s, _) => OktaError::BadRequest {
            status: s,
            code,
            summary,
        },
    }
}

fn dpop_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .map(str::to_string)
}

/// A header value that `Debug` and HTTP tracing print as `Sensitive`.
fn sensitive(value: &str) -> Result<HeaderValue, OktaError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        OktaError::Credential("the credential contains characters not allowed in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a nonce half-written: recover the value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn resource_dpop_nonce(headers: &HeaderMap) -> Option<String> {
    dpop_nonce(headers)
}

/// Whether a 401 asks for a (new) DPoP nonce: `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
pub(crate) fn wants_dpop_nonce(headers: &HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.trim_start();
            v.len() >= 4 && v[..4].eq_ignore_ascii_case("dpop") && v.contains("use_dpop_nonce")
        })
}

async fn secret_current(source: &SecretSource) -> Result<SecretString, OktaError> {
    source
        .get()
        .await
        .map_err(|e| secret_error("credential unavailable", e))
}

async fn secret_refresh(source: &SecretSource) -> Result<(), OktaError> {
    source
        .refresh()
        .await
        .map(|_| ())
        .map_err(|e| secret_error("credential refresh failed", e))
}

/// A store that cannot be reached is transient; a missing or forbidden secret needs the
/// operator (reported as a credential problem).
fn secret_error(what: &str, e: common::secrets::SecretError) -> OktaError {
    if e.is_transient() {
        OktaError::SecretUnavailable(format!("{what}: {e}"))
    } else {
        OktaError::Credential(format!("{what}: {e}"))
    }
}
