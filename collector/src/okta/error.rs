//! Why a request to Okta failed ([`OktaError`]), with the hint an operator needs for each
//! case, and the helpers that keep error text short and free of secrets. Used by the client
//! (System Log requests) and by the credential (token requests) alike.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use super::rate_limit::RateLimit;

/// Longest excerpt of a response body or summary kept in an error.
const MAX_SNIPPET: usize = 200;

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
    /// No complete answer within [`REQUEST_TIMEOUT`](super::client::REQUEST_TIMEOUT).
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

pub fn canonical(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or_else(
            || format!("HTTP {status}"),
            |r| format!("HTTP {status} {r}"),
        )
}

/// At most [`MAX_SNIPPET`] characters, control characters flattened.
pub fn clip(s: &str) -> String {
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

pub fn snippet(text: &str, secret: Option<&str>) -> String {
    scrub(&clip(text.trim()), secret)
}

pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 && text.contains(s) => text.replace(s, "<redacted>"),
        _ => text.to_string(),
    }
}

pub fn transport_error(e: reqwest::Error) -> OktaError {
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

/// A body that cannot be read: a gzip stream that does not decode is malformed content; a
/// connection cut mid-body is a transport failure.
pub fn body_error(e: reqwest::Error) -> OktaError {
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
