//! Access tokens issued by the fake managed-identity endpoint and checked by the fake
//! Key Vault and Log Analytics.
//!
//! Real Entra tokens are RS256 JWTs; the fakes use HS256 with a key only they know, so a
//! token that the identity fake did not issue (or that was issued for another audience, or
//! has expired) is rejected exactly as the real services reject it.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const SIGNING_KEY: &[u8] = b"okta-sentinel fake identity signing key";

/// Claims of a fake access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// Audience: the resource without `/.default`, e.g. `https://monitor.azure.com`.
    pub aud: String,
    pub iss: String,
    /// The client id of the identity (user-assigned) or `system`.
    pub appid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique id of this token, so a test can revoke one token and not the next one issued
    /// in the same second ([`crate::fakes::log_analytics::LogAnalyticsFake::revoke_tokens`]).
    #[serde(default)]
    pub jti: String,
}

/// Issues a token for `audience` valid for `ttl_secs`.
pub fn issue(audience: &str, client_id: &str, ttl_secs: i64) -> String {
    issue_with_id(audience, client_id, ttl_secs).0
}

/// Issues a token like [`issue`]; also returns its id (`jti`).
pub fn issue_with_id(audience: &str, client_id: &str, ttl_secs: i64) -> (String, String) {
    let jti = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        aud: audience.trim_end_matches('/').to_string(),
        iss: "https://sts.windows.net/00000000-0000-0000-0000-000000000000/".into(),
        appid: client_id.to_string(),
        iat: now,
        nbf: now - 5,
        exp: now + ttl_secs,
        jti: jti.clone(),
    };
    // Encoding HS256 with a static key cannot fail.
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SIGNING_KEY),
    )
    .unwrap_or_default();
    (token, jti)
}

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("no Authorization: Bearer header")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token audience {got} is not {expected}")]
    WrongAudience { got: String, expected: String },
}

/// Verifies an `Authorization` header value: `Bearer <jwt>` signed by the fake identity
/// endpoint, not expired, for `audience` (trailing slashes ignored).
pub fn verify_bearer(header: Option<&str>, audience: &str) -> Result<Claims, TokenError> {
    let h = header.ok_or(TokenError::Missing)?;
    let jwt = h.strip_prefix("Bearer ").ok_or(TokenError::Missing)?.trim();
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.leeway = 0;
    let data = decode::<Claims>(jwt, &DecodingKey::from_secret(SIGNING_KEY), &v)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let expected = audience.trim_end_matches('/');
    if data.claims.aud.trim_end_matches('/') != expected {
        return Err(TokenError::WrongAudience {
            got: data.claims.aud,
            expected: expected.to_string(),
        });
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_own_token_and_rejects_others() {
        let t = issue("https://monitor.azure.com", "cid", 60);
        let ok = verify_bearer(Some(&format!("Bearer {t}")), "https://monitor.azure.com/");
        assert_eq!(ok.map(|c| c.appid), Ok("cid".to_string()));
        assert!(matches!(
            verify_bearer(Some(&format!("Bearer {t}")), "https://vault.azure.net"),
            Err(TokenError::WrongAudience { .. })
        ));
        assert_eq!(verify_bearer(None, "x"), Err(TokenError::Missing));
        let expired = issue("https://monitor.azure.com", "cid", -10);
        assert!(matches!(
            verify_bearer(
                Some(&format!("Bearer {expired}")),
                "https://monitor.azure.com"
            ),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify_bearer(Some("Bearer abc.def.ghi"), "https://monitor.azure.com"),
            Err(TokenError::Invalid(_))
        ));
    }
}
