//! The fake org authorization server (`POST /oauth2/v1/token`) and the checks of OAuth and
//! DPoP credentials at the resource (`docs/contracts.md` §1.8).
//!
//! Service apps authenticate with `private_key_jwt` only; the assertion is verified with
//! the configured public key exactly as Okta does (audience = token URL, `iss` = `sub` =
//! client id, bounded `exp`, `jti` against replays). With DPoP required, the first token
//! request is refused with `use_dpop_nonce`, issued tokens are bound to the proof key
//! (`cnf.jkt`), and the resource demands its own nonce before accepting them.

use super::error::oauth_error;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{decode, decode_header, Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The service app registered in the fake org.
#[derive(Clone)]
pub struct OAuthAppConfig {
    pub client_id: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`) of an RSA or P-256 key.
    pub public_key_pem: String,
    /// "Require DPoP header in token requests".
    pub require_dpop: bool,
    /// Lifetime of issued access tokens (Okta: fixed 3600 s).
    pub token_ttl_secs: u64,
    /// Scopes granted to the app; a token request for any other scope is refused.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OAuthAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthAppConfig")
            .field("client_id", &self.client_id)
            .field("require_dpop", &self.require_dpop)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OAuthAppConfig {
    /// An app granted `okta.logs.read`, tokens valid 3600 s, DPoP not required.
    pub fn new(client_id: impl Into<String>, public_key_pem: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            public_key_pem: public_key_pem.into(),
            require_dpop: false,
            token_ttl_secs: 3600,
            scopes: vec!["okta.logs.read".into()],
        }
    }
}

/// An access token the fake issued.
#[derive(Clone)]
pub struct IssuedToken {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires: Instant,
    /// JWK thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
}

/// Largest accepted age of a DPoP proof's `iat`, and allowed clock skew into the future.
const PROOF_MAX_AGE: i64 = 300;
const CLOCK_SKEW: i64 = 60;
/// How many proof `jti`s are remembered to refuse replays.
const JTI_MEMORY: usize = 100_000;

/// What a valid DPoP proof told us.
pub struct Proof {
    pub jkt: String,
    pub nonce: Option<String>,
    pub ath: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: String,
    htu: String,
    iat: i64,
    jti: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    ath: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    #[serde(default)]
    jti: Option<String>,
}

/// Why a credential was refused (never contains the credential itself).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(String),
}

pub struct OAuthState {
    pub cfg: OAuthAppConfig,
    key: Option<(DecodingKey, AlgorithmFamily)>,
    pub tokens: HashMap<String, IssuedToken>,
    used_assertion_jtis: HashSet<String>,
    proof_jtis: HashSet<String>,
    proof_jti_order: VecDeque<String>,
    as_nonce: String,
    prev_as_nonce: Option<String>,
    pub resource_nonce: String,
}

fn random_token(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{a}{b}")
}

fn parse_public_key(pem: &str) -> Option<(DecodingKey, AlgorithmFamily)> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Some((k, AlgorithmFamily::Rsa));
    }
    DecodingKey::from_ec_pem(pem.as_bytes())
        .ok()
        .map(|k| (k, AlgorithmFamily::Ec))
}

fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

impl OAuthState {
    pub fn new(cfg: OAuthAppConfig) -> Self {
        let key = parse_public_key(&cfg.public_key_pem);
        Self {
            cfg,
            key,
            tokens: HashMap::new(),
            used_assertion_jtis: HashSet::new(),
            proof_jtis: HashSet::new(),
            proof_jti_order: VecDeque::new(),
            as_nonce: random_token("asn-"),
            prev_as_nonce: None,
            resource_nonce: random_token("rsn-"),
        }
    }

    /// Rotates both nonces. The authorization server keeps accepting the previous one (as
    /// Okta does for 3 days); the resource demands the new one at once, so a client must
    /// handle a `use_dpop_nonce` challenge in the middle of a session.
    pub fn rotate_nonces(&mut self) {
        self.prev_as_nonce = Some(std::mem::replace(&mut self.as_nonce, random_token("asn-")));
        self.resource_nonce = random_token("rsn-");
    }

    /// Makes every issued token expired.
    pub fn expire_all(&mut self) {
        let past = Instant::now();
        for t in self.tokens.values_mut() {
            t.expires = past;
        }
    }

    fn remember_proof_jti(&mut self, jti: &str) -> bool {
        if !self.proof_jtis.insert(jti.to_string()) {
            return false;
        }
        self.proof_jti_order.push_back(jti.to_string());
        if self.proof_jti_order.len() > JTI_MEMORY {
            if let Some(old) = self.proof_jti_order.pop_front() {
                self.proof_jtis.remove(&old);
            }
        }
        true
    }

    /// Verifies a DPoP proof's signature (with the JWK it carries), `typ`, `htm`, `htu`,
    /// `iat` freshness and `jti` uniqueness. Nonce and `ath` are returned for the caller.
    pub fn verify_proof(&mut self, proof: &str, htm: &str, htu: &str) -> Result<Proof, AuthError> {
        let bad = |m: &str| AuthError::InvalidProof(m.to_string());
        let header = decode_header(proof).map_err(|_| bad("undecodable header"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(bad("typ is not dpop+jwt"));
        }
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::EdDSA
        ) {
            return Err(bad("alg must be asymmetric"));
        }
        let jwk: Jwk = header.jwk.clone().ok_or_else(|| bad("no jwk in header"))?;
        if raw_header_has_private_key(proof) {
            return Err(bad("jwk contains a private key"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("unusable jwk"))?;
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims = HashSet::new();
        let data =
            decode::<ProofClaims>(proof, &key, &v).map_err(|_| bad("bad signature or claims"))?;
        let c = data.claims;
        if c.htm != htm {
            return Err(bad("htm mismatch"));
        }
        if c.htu != htu {
            return Err(bad("htu mismatch"));
        }
        let now = now_epoch();
        if c.iat > now + CLOCK_SKEW || c.iat < now - PROOF_MAX_AGE {
            return Err(bad("iat not fresh"));
        }
        if c.jti.is_empty() || !self.remember_proof_jti(&c.jti) {
            return Err(bad("jti missing or replayed"));
        }
        Ok(Proof {
            jkt: jwk.thumbprint(ThumbprintHash::SHA256),
            nonce: c.nonce,
            ath: c.ath,
        })
    }

    /// Verifies the `private_key_jwt` client assertion; returns its `jti`.
    fn verify_assertion(&self, assertion: &str, token_url: &str) -> Result<String, String> {
        let (key, family) = self
            .key
            .as_ref()
            .ok_or("the app's public key is not usable")?;
        let header = decode_header(assertion).map_err(|_| "client_assertion is not a JWT")?;
        let allowed: &[Algorithm] = match family {
            AlgorithmFamily::Rsa => &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
            _ => &[Algorithm::ES256, Algorithm::ES384],
        };
        if !allowed.contains(&header.alg) {
            return Err(format!("alg {:?} does not match the app's key", header.alg));
        }
        let mut v = Validation::new(header.alg);
        v.set_audience(&[token_url]);
        v.set_issuer(&[&self.cfg.client_id]);
        v.sub = Some(self.cfg.client_id.clone());
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.leeway = 30;
        let data = decode::<AssertionClaims>(assertion, key, &v)
            .map_err(|e| format!("The client_assertion token is invalid: {:?}", e.kind()))?;
        if data.claims.exp > now_epoch() + 3600 + 30 {
            return Err(
                "The client_assertion token has an expiration too far in the future.".into(),
            );
        }
        let jti = data
            .claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or("The client_assertion token must contain a jti claim.")?;
        if self.used_assertion_jtis.contains(&jti) {
            return Err("The client_assertion token has already been used (jti replay).".into());
        }
        Ok(jti)
    }

    /// Handles a token request (form fields already parsed). Returns the response and
    /// whether it was a nonce challenge.
    pub fn token_request(
        &mut self,
        form: &HashMap<String, String>,
        headers: &HeaderMap,
        token_url: &str,
    ) -> (Response, bool) {
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "The authorization grant type is not supported by the authorization server.",
                ),
                false,
            );
        }
        if field("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return (
                oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Client authentication failed: private_key_jwt is required.",
                ),
                false,
            );
        }
        let Some(assertion) = field("client_assertion") else {
            return (
                oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "No client credentials found.",
                ),
                false,
            );
        };
        if let Some(cid) = field("client_id") {
            if cid != self.cfg.client_id {
                return (
                    oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "The client_id does not match the client_assertion.",
                    ),
                    false,
                );
            }
        }
        let jti = match self.verify_assertion(assertion, token_url) {
            Ok(j) => j,
            Err(why) => {
                return (
                    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &why),
                    false,
                )
            }
        };
        let requested: Vec<String> = field("scope")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if requested.is_empty() {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "The authorization server requires a scope.",
                ),
                false,
            );
        }
        let denied: Vec<&str> = requested
            .iter()
            .filter(|s| !self.cfg.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !denied.is_empty() {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!(
                        "The following scopes are not allowed: {}",
                        denied.join(", ")
                    ),
                ),
                false,
            );
        }
        let mut jkt = None;
        if self.cfg.require_dpop {
            let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
                return (
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_dpop_proof",
                        "The DPoP proof JWT header is missing.",
                    ),
                    false,
                );
            };
            let p = match self.verify_proof(proof, "POST", token_url) {
                Ok(p) => p,
                Err(e) => {
                    return (
                        oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_dpop_proof",
                            &e.to_string(),
                        ),
                        false,
                    )
                }
            };
            let nonce_ok = p
                .nonce
                .as_deref()
                .is_some_and(|n| n == self.as_nonce || self.prev_as_nonce.as_deref() == Some(n));
            if !nonce_ok {
                let mut r = oauth_error(
                    StatusCode::BAD_REQUEST,
                    "use_dpop_nonce",
                    "Authorization server requires nonce in DPoP proof.",
                );
                if let Ok(v) = HeaderValue::from_str(&self.as_nonce) {
                    r.headers_mut().insert("dpop-nonce", v);
                }
                return (r, true);
            }
            jkt = Some(p.jkt);
        }
        self.used_assertion_jtis.insert(jti);
        let token = random_token("fake-at.");
        let ttl = self.cfg.token_ttl_secs;
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                client_id: self.cfg.client_id.clone(),
                scopes: requested.clone(),
                expires: Instant::now() + Duration::from_secs(ttl),
                jkt,
            },
        );
        let body = json!({
            "token_type": token_type,
            "expires_in": ttl,
            "access_token": token,
            "scope": requested.join(" "),
        });
        let mut r = super::error::json_response(StatusCode::OK, &body);
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        r.headers_mut()
            .insert("pragma", HeaderValue::from_static("no-cache"));
        (r, false)
    }

    /// Looks up a live token presented at the resource.
    pub fn live_token(&self, token: &str) -> Option<&IssuedToken> {
        self.tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())
    }
}

/// RFC 9449 forbids a private key in the proof's `jwk`; jsonwebtoken's `Jwk` would
/// silently drop `d`, so the raw header is checked.
fn raw_header_has_private_key(proof: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let Some(h) = proof.split('.').next() else {
        return true;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(h) else {
        return true;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return true;
    };
    v["jwk"].get("d").is_some()
}
