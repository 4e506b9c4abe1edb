//! The Logs Ingestion API (`docs/contracts.md` §3):
//! `POST /dataCollectionRules/{dcrImmutableId}/streams/{stream}?api-version=2023-01-01`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::body::{gunzip_bounded, read_bounded, Bounded, GunzipError};
use super::server::ConnKill;
use super::{rows, Api, Shared};
use crate::fakes::token;

/// The request size limit (on the body as sent, and — strict mode — after gunzip).
pub const LI_MAX_BODY_BYTES: usize = 1_048_576;

/// The cap on a decompressed body, whatever the mode.
pub const LI_MAX_DECOMPRESSED_BYTES: usize = 50 * 1024 * 1024;

/// `api-version`s the endpoint serves (the GA one and the preview older SDKs send).
const API_VERSIONS: [&str; 2] = ["2023-01-01", "2021-11-01-preview"];

/// The service's error body `{"error":{"code","message"}}`, with `x-ms-error-code`.
pub fn li_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-ms-error-code", v);
    }
    resp
}

fn too_large(length: u64) -> Response {
    li_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ContentLengthLimitExceeded",
        &format!(
            "Maximum allowed content length: {LI_MAX_BODY_BYTES} bytes (1 MB). \
             Provided content length: {length} bytes."
        ),
    )
}

/// The upload handler.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    Path((dcr, stream)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The body is read first so an empty batch (`[]`, the health probe) can be told apart: it
    // is validated like any request but meets no injected fault and is counted on its own.
    let read = read_bounded(body, LI_MAX_BODY_BYTES).await;
    let probe = read
        .as_ref()
        .ok()
        .and_then(|r| r.bytes.as_deref())
        .is_some_and(|b| is_empty_batch(&headers, b));
    let args = (dcr.as_str(), stream.as_str(), query.as_deref(), &headers);
    if probe {
        let resp = process(&shared, &kill, args, read, true).await;
        shared.count_probe_status(resp.status());
        return resp;
    }
    let resp = match shared.before(Api::LogsIngestion, &kill).await {
        Some(r) => r,
        None => process(&shared, &kill, args, read, false).await,
    };
    shared.count_status(resp.status());
    resp
}

/// Whether a body is the empty batch `[]` (after gunzip when gzip-encoded): what health checks
/// post (Vector's `azure_logs_ingestion` sink, `doctor`). The service validates such a request
/// like any other and answers 204, storing nothing (docs/contracts.md §3.3: 204 = accepted).
fn is_empty_batch(headers: &HeaderMap, body: &[u8]) -> bool {
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let text = if gzip {
        match gunzip_bounded(body, 64) {
            Ok(d) => d,
            Err(_) => return false,
        }
    } else {
        body.to_vec()
    };
    text.trim_ascii() == b"[]"
}

async fn process(
    shared: &Arc<Shared>,
    kill: &ConnKill,
    (dcr, stream, query, headers): (&str, &str, Option<&str>, &HeaderMap),
    read: Result<Bounded, axum::Error>,
    probe: bool,
) -> Response {
    let bad = StatusCode::BAD_REQUEST;
    match super::query_param(query, "api-version") {
        None => {
            return li_error(
                bad,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return li_error(
                bad,
                "UnsupportedApiVersion",
                &format!("The HTTP resource does not support the API version '{v}'."),
            )
        }
        Some(_) => {}
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match token::verify_bearer(auth, &shared.cfg.audience) {
        Err(e) => {
            return li_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                &format!("The access token is missing or invalid: {e}"),
            )
        }
        Ok(claims) if shared.is_revoked(&claims.jti) => {
            return li_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is missing or invalid: the token has been revoked",
            )
        }
        Ok(_) => {}
    }
    if dcr != shared.cfg.dcr_immutable_id {
        return li_error(
            StatusCode::NOT_FOUND,
            "DataCollectionRuleNotFound",
            &format!("Data collection rule with immutable Id '{dcr}' not found."),
        );
    }
    if shared.publisher_denied() {
        return li_error(
            StatusCode::FORBIDDEN,
            "OperationFailed",
            &format!(
                "The authentication token provided does not have access to ingest data for the data \
                 collection rule with immutable Id '{dcr}' PipelineAccessResult: AccessGranted: False, \
                 IsRbacPresent: False, IsDcrDceBindingValid: , Message: Required authorization action \
                 was not found for tenantId <tenant> objectId <object> on resourceId <dcr>"
            ),
        );
    }
    if stream != shared.cfg.stream {
        return li_error(
            StatusCode::from_u16(shared.cfg.unknown_stream_status).unwrap_or(StatusCode::NOT_FOUND),
            "InvalidStream",
            &format!("Stream '{stream}' is not declared in data collection rule '{dcr}'."),
        );
    }
    let declared_len = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = match read {
        Ok(r) => r,
        Err(_) => {
            return li_error(
                bad,
                "InvalidRequestBody",
                "The request body could not be read.",
            )
        }
    };
    let wire = match read.bytes {
        Some(b) if declared_len.is_none_or(|l| l <= LI_MAX_BODY_BYTES as u64) => b,
        _ => return too_large(declared_len.unwrap_or(read.received)),
    };
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let json = match encoding.as_deref() {
        None | Some("") | Some("identity") => Cow::Borrowed(wire.as_slice()),
        Some("gzip") => match gunzip_bounded(&wire, LI_MAX_DECOMPRESSED_BYTES) {
            Ok(d) => Cow::Owned(d),
            Err(GunzipError::TooLarge { cap }) => {
                return li_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "ContentLengthLimitExceeded",
                    &format!("The decompressed request body exceeds {cap} bytes."),
                )
            }
            Err(e @ GunzipError::Corrupt(_)) => {
                return li_error(bad, "InvalidContentEncoding", &e.to_string())
            }
        },
        Some(other) => {
            return li_error(
                bad,
                "UnsupportedContentEncoding",
                &format!("Content-Encoding '{other}' is not supported; use gzip."),
            )
        }
    };
    if shared.cfg.strict_decompressed_limit && json.len() > LI_MAX_BODY_BYTES {
        return too_large(json.len() as u64);
    }
    if shared.body_limit().is_some_and(|limit| json.len() > limit) {
        return too_large(json.len() as u64);
    }
    if let Some(resp) = shared.body_fault(Api::LogsIngestion, &json) {
        return resp;
    }
    let parsed = match rows::parse(&json, shared.columns.as_ref(), shared.cfg.store_rows) {
        Ok(p) => p,
        Err(msg) => return li_error(bad, "InvalidPayload", &msg),
    };
    if probe {
        return StatusCode::NO_CONTENT.into_response();
    }
    let count = parsed.count as u64;
    shared.store_li(parsed, wire.len() as u64, json.len() as u64);
    if shared.take_accept_then_drop(count) {
        kill.0.cancel();
        return std::future::pending().await;
    }
    StatusCode::NO_CONTENT.into_response()
}
