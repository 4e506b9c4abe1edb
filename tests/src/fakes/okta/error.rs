//! Okta's JSON error bodies (`docs/contracts.md` §1.6) and the OAuth error bodies of the token
//! endpoint.
//!
//! Clients must key their flow control on `errorCode` only, so the fake always sends the
//! full Okta shape: a client that works against it works against the real body too.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// Okta error codes the fake emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OktaErrorCode {
    /// 400 "Api validation failed".
    E0000001,
    /// 404 "Not found".
    E0000007,
    /// 403 "You do not have permission".
    E0000006,
    /// 500 "Internal Server Error" (query timeout).
    E0000009,
    /// 401 "Invalid token provided".
    E0000011,
    /// 400 "Invalid search criteria" (unsupported query).
    E0000031,
    /// 429 rate limit.
    E0000047,
    /// 400 invalid filter / `since` too old.
    E0000053,
}

impl OktaErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::E0000001 => "E0000001",
            Self::E0000006 => "E0000006",
            Self::E0000007 => "E0000007",
            Self::E0000009 => "E0000009",
            Self::E0000011 => "E0000011",
            Self::E0000031 => "E0000031",
            Self::E0000047 => "E0000047",
            Self::E0000053 => "E0000053",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::E0000001 | Self::E0000031 | Self::E0000053 => StatusCode::BAD_REQUEST,
            Self::E0000006 => StatusCode::FORBIDDEN,
            Self::E0000007 => StatusCode::NOT_FOUND,
            Self::E0000009 => StatusCode::INTERNAL_SERVER_ERROR,
            Self::E0000011 => StatusCode::UNAUTHORIZED,
            Self::E0000047 => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::E0000001 => "Api validation failed: {0}",
            Self::E0000006 => "You do not have permission to perform the requested action",
            Self::E0000007 => "Not found: Resource not found: {0}",
            Self::E0000009 => "Internal Server Error",
            Self::E0000011 => "Invalid token provided",
            Self::E0000031 => "Invalid search criteria.",
            Self::E0000047 => "API call exceeded rate limit due to too many requests.",
            Self::E0000053 => "Invalid SCIM filter.",
        }
    }
}

/// A distinct `errorId` per response, shaped like Okta's (`oae…`).
fn error_id() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("oaeFake{:016x}", N.fetch_add(1, Ordering::Relaxed))
}

/// A response with Okta's error body; `detail` fills the `{0}` placeholder and the single
/// `errorCauses` entry.
pub fn okta_error(code: OktaErrorCode, detail: &str) -> Response {
    let summary = code.summary().replace("{0}", detail);
    let causes = if detail.is_empty() {
        json!([])
    } else {
        json!([{ "errorSummary": detail }])
    };
    let body = json!({
        "errorCode": code.as_str(),
        "errorSummary": summary,
        "errorLink": code.as_str(),
        "errorId": error_id(),
        "errorCauses": causes,
    });
    json_response(code.status(), &body)
}

/// An OAuth 2.0 error of the token endpoint (`{"error": …, "error_description": …}`).
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    let mut r = json_response(status, &body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON response with Okta's content type.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}
