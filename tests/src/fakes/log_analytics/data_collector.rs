//! The legacy HTTP Data Collector API (`docs/contracts.md` §2): `POST /api/logs`, SharedKey
//! authorisation, service-side flattening into `{Log-Type}_CL`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::body::{read_bounded, Bounded};
use super::flatten::parse_iso_datetime;
use super::server::ConnKill;
use super::{Api, Shared};

/// Largest post the API takes. Microsoft documents "30 MB"; the fake uses the smaller
/// decimal reading so a client that splits at 30 MiB is caught.
pub const DC_MAX_POST_BYTES: usize = 30_000_000;

/// How far `x-ms-date` may be from the server clock.
const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// Top-level property names the API refuses.
const RESERVED: [&str; 3] = ["tenant", "TimeGenerated", "RawData"];

/// The documented `api-version`.
const API_VERSION: &str = "2016-04-01";

/// The Base64 HMAC-SHA256 signature of the string-to-sign
/// `POST\n{content_length}\napplication/json\nx-ms-date:{date}\n/api/logs`, keyed with the
/// Base64-decoded workspace key (`docs/contracts.md` §2.1). `content_length` is the body's length
/// in **bytes** (UTF-8), not characters.
///
/// A key that is not valid Base64 is used as an empty key (the result then matches nothing
/// the fake accepts; the fake refuses such a key at start).
pub fn shared_key_signature(workspace_key_b64: &str, date: &str, content_length: usize) -> String {
    signature_for(workspace_key_b64, "application/json", date, content_length)
}

fn string_to_sign(content_type: &str, date: &str, content_length: usize) -> String {
    format!("POST\n{content_length}\n{content_type}\nx-ms-date:{date}\n/api/logs")
}

fn mac_for(
    key: &[u8],
    content_type: &str,
    date: &str,
    content_length: usize,
) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(string_to_sign(content_type, date, content_length).as_bytes());
    Some(mac)
}

fn signature_for(key_b64: &str, content_type: &str, date: &str, content_length: usize) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap_or_default();
    match mac_for(&key, content_type, date, content_length) {
        Some(mac) => base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// The service's error body: `{"Error":"<code>","Message":"<text>"}`.
pub fn dc_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Error": code, "Message": message });
    (status, axum::Json(body)).into_response()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /api/logs?api-version=2016-04-01`.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Read first so an empty batch (`[]`, the health probe) can be told apart: it is checked
    // like any post but meets no injected fault and is counted on its own.
    let read = read_bounded(body, DC_MAX_POST_BYTES).await;
    let probe = read
        .as_ref()
        .ok()
        .and_then(|r| r.bytes.as_deref())
        .is_some_and(|b| b.trim_ascii() == b"[]");
    if probe {
        let resp = process(&shared, &kill, query.as_deref(), &headers, read).await;
        shared.count_probe_status(resp.status());
        return resp;
    }
    let resp = match shared.before(Api::DataCollector, &kill).await {
        Some(r) => r,
        None => process(&shared, &kill, query.as_deref(), &headers, read).await,
    };
    shared.count_status(resp.status());
    resp
}

async fn process(
    shared: &Arc<Shared>,
    kill: &ConnKill,
    query: Option<&str>,
    headers: &HeaderMap,
    read: Result<Bounded, axum::Error>,
) -> Response {
    let bad = StatusCode::BAD_REQUEST;
    let forbidden = StatusCode::FORBIDDEN;
    match super::query_param(query, "api-version") {
        None => {
            return dc_error(
                bad,
                "MissingApiVersion",
                "The API version wasn't specified.",
            )
        }
        Some(v) if v != API_VERSION => {
            return dc_error(
                bad,
                "InvalidApiVersion",
                &format!("Unrecognised API version '{v}'."),
            )
        }
        Some(_) => {}
    }
    let Some(content_type) = header(headers, "content-type") else {
        return dc_error(
            bad,
            "MissingContentType",
            "The content type wasn't specified.",
        );
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return dc_error(
            bad,
            "UnsupportedContentType",
            "The content type wasn't set to application/json.",
        );
    }
    let Some(log_type) = header(headers, "log-type") else {
        return dc_error(
            bad,
            "MissingLogType",
            "The required value log type wasn't specified.",
        );
    };
    if log_type.is_empty()
        || log_type.len() > 100
        || !log_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return dc_error(
            bad,
            "InvalidLogType",
            "The log type may contain only letters, numbers and underscore (at most 100).",
        );
    }
    let Some(provided_sig) = header(headers, "authorization")
        .and_then(|a| a.strip_prefix("SharedKey "))
        .and_then(|a| a.split_once(':'))
        .filter(|(ws, _)| *ws == shared.cfg.workspace_id)
        .map(|(_, sig)| sig.to_string())
    else {
        return dc_error(
            forbidden,
            "InvalidAuthorization",
            "An invalid scheme or workspace was specified in the Authorization header",
        );
    };
    let Some(date) = header(headers, "x-ms-date") else {
        return dc_error(
            forbidden,
            "InvalidAuthorization",
            "Missing x-ms-date header",
        );
    };
    match chrono::DateTime::parse_from_rfc2822(date) {
        Ok(d) if (chrono::Utc::now().timestamp() - d.timestamp()).abs() <= MAX_CLOCK_SKEW_SECS => {}
        Ok(_) => {
            return dc_error(
                forbidden,
                "InvalidAuthorization",
                "The x-ms-date is more than 15 minutes away from the server time",
            )
        }
        Err(_) => {
            return dc_error(
                forbidden,
                "InvalidAuthorization",
                "The x-ms-date is not RFC 1123",
            )
        }
    }
    let declared_len = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let read = match read {
        Ok(r) => r,
        Err(_) => {
            return dc_error(
                bad,
                "InvalidDataFormat",
                "The request body could not be read.",
            )
        }
    };
    let Some(bytes) = read
        .bytes
        .filter(|_| declared_len.is_none_or(|l| l <= DC_MAX_POST_BYTES as u64))
    else {
        // The documented answer to an over-size post is 404, not 413.
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let verified = base64::engine::general_purpose::STANDARD
        .decode(provided_sig)
        .ok()
        .zip(mac_for(&shared.dc_key, content_type, date, bytes.len()))
        .is_some_and(|(sig, mac)| mac.verify_slice(&sig).is_ok());
    if !verified {
        return dc_error(
            forbidden,
            "InvalidAuthorization",
            "The signature does not match the string-to-sign (content length in bytes, \
             exact Content-Type, x-ms-date, /api/logs)",
        );
    }
    let records: Vec<Map<String, Value>> = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return dc_error(
                bad,
                "InvalidDataFormat",
                &format!("The body must be a JSON array of objects: {e}"),
            )
        }
    };
    if let Some(name) = records
        .iter()
        .flat_map(|r| r.keys())
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return dc_error(
            bad,
            "InvalidDataFormat",
            &format!("The property '{name}' is reserved."),
        );
    }
    if records.is_empty() {
        // The empty batch: accepted, nothing stored.
        return StatusCode::OK.into_response();
    }
    let time_field = header(headers, "time-generated-field").filter(|f| !f.is_empty());
    shared.store_dc(log_type, time_field, &records);
    if shared.take_accept_then_drop(records.len() as u64) {
        kill.0.cancel();
        return std::future::pending().await;
    }
    StatusCode::OK.into_response()
}

/// `TimeGenerated` of a record: the time-generated field when it is an ISO 8601 date-time
/// within [now − 2 days, now + 1 day], the receive time otherwise (`docs/contracts.md` §2.3).
pub fn time_generated(
    record: &Map<String, Value>,
    field: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let from_field = field
        .and_then(|f| record.get(f))
        .and_then(Value::as_str)
        .and_then(|s| parse_iso_datetime(s).map(|t| (s, t)))
        .filter(|(_, t)| {
            *t >= now - chrono::Duration::days(2) && *t <= now + chrono::Duration::days(1)
        });
    match from_field {
        Some((s, _)) => s.to_string(),
        None => now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_computation() {
        // Key = base64("0123456789abcdef"), fixed date and length.
        let key = base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef");
        let date = "Mon, 04 Apr 2016 08:00:00 GMT";
        let sig = shared_key_signature(&key, date, 1024);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").ok();
        if let Some(m) = &mut mac {
            m.update(
                b"POST\n1024\napplication/json\nx-ms-date:Mon, 04 Apr 2016 08:00:00 GMT\n/api/logs",
            );
        }
        let expected = mac
            .map(|m| base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()));
        assert_eq!(Some(sig.clone()), expected);
        assert_ne!(sig, shared_key_signature(&key, date, 1025));
    }

    #[test]
    fn time_generated_uses_the_field_inside_the_window_only() {
        let now = chrono::Utc::now();
        let recent =
            (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let old =
            (now - chrono::Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let rec = |v: &str| {
            let mut m = Map::new();
            m.insert("published".into(), Value::String(v.into()));
            m
        };
        let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(
            time_generated(&rec(&recent), Some("published"), now),
            recent
        );
        assert_eq!(time_generated(&rec(&old), Some("published"), now), now_s);
        assert_eq!(time_generated(&rec("junk"), Some("published"), now), now_s);
        assert_eq!(time_generated(&rec(&recent), None, now), now_s);
    }
}
