//! HTTP handlers: `GET /api/v1/logs` (polling and bounded queries, `docs/contracts.md` §1.1–§1.3),
//! `POST /oauth2/v1/token` (§1.8) and the 404 fallback.
//!
//! Order of checks on `/api/v1/logs`, as at Okta: authentication (401), the per-token rate
//! limit (429, counted for every request), injected faults, scope (403), query validation
//! (400), then the page. Every response carries the three `X-Rate-Limit-*` headers.

use super::cursor::PollingCursor;
use super::error::{oauth_error, okta_error, OktaErrorCode as E};
use super::keys::access_token_hash;
use super::{lock, App, EmptyPageMode, OktaFault};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Who is calling: the rate-limit bucket and, for OAuth tokens, the granted scopes
/// (`None` = an SSWS token, which carries its admin's permissions).
struct Principal {
    bucket: String,
    scopes: Option<Vec<String>>,
}

/// A refused request; rendered into a `Response` only at the edge (keeps `Result`s small).
enum Refusal {
    /// Okta's JSON error with a detail for `{0}` / `errorCauses`.
    Okta(E, String),
    /// 401 for a DPoP problem.
    Dpop {
        error: &'static str,
        description: String,
        nonce: Option<String>,
    },
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Okta(code, detail) => okta_error(code, &detail),
            Refusal::Dpop {
                error,
                description,
                nonce,
            } => dpop_unauthorized(error, &description, nonce.as_deref()),
        }
    }
}

fn unauthorized() -> Refusal {
    Refusal::Okta(E::E0000011, String::new())
}

fn dpop_refusal(error: &'static str, description: &str, nonce: Option<&str>) -> Refusal {
    Refusal::Dpop {
        error,
        description: description.to_string(),
        nonce: nonce.map(str::to_string),
    }
}

/// 401 for a DPoP problem, with the `WWW-Authenticate: DPoP` challenge of RFC 9449 §7.1.
fn dpop_unauthorized(error: &str, description: &str, nonce: Option<&str>) -> Response {
    let mut r = okta_error(E::E0000011, "");
    let challenge = format!(
        "DPoP algs=\"RS256 RS384 RS512 ES256 ES384\", error=\"{error}\", error_description=\"{description}\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(n) = nonce.and_then(|n| HeaderValue::from_str(n).ok()) {
        r.headers_mut().insert("dpop-nonce", n);
    }
    r
}

fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, Refusal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let (scheme, credential) = value.split_once(' ').ok_or_else(unauthorized)?;
    let credential = credential.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "ssws" => app
            .ssws_tokens
            .iter()
            .position(|t| t == credential)
            .map(|i| Principal {
                bucket: format!("ssws#{i}"),
                scopes: None,
            })
            .ok_or_else(unauthorized),
        "bearer" => {
            let oauth = app.oauth.as_ref().ok_or_else(unauthorized)?;
            let o = lock(oauth);
            let t = o.live_token(credential).ok_or_else(unauthorized)?;
            if t.jkt.is_some() {
                // A DPoP-bound token presented as a plain bearer token.
                return Err(unauthorized());
            }
            Ok(Principal {
                bucket: format!("oauth:{}", t.client_id),
                scopes: Some(t.scopes.clone()),
            })
        }
        "dpop" => {
            let oauth = app.oauth.as_ref().ok_or_else(unauthorized)?;
            let mut o = lock(oauth);
            let t = o.live_token(credential).cloned().ok_or_else(unauthorized)?;
            let Some(jkt) = t.jkt.clone() else {
                return Err(dpop_refusal(
                    "invalid_token",
                    "token is not DPoP-bound",
                    None,
                ));
            };
            let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
                return Err(dpop_refusal(
                    "invalid_dpop_proof",
                    "DPoP proof missing",
                    None,
                ));
            };
            let htu = format!("{}/api/v1/logs", app.base_url);
            let p = o
                .verify_proof(proof, "GET", &htu)
                .map_err(|e| dpop_refusal("invalid_dpop_proof", &e.to_string(), None))?;
            if p.jkt != jkt {
                return Err(dpop_refusal(
                    "invalid_dpop_proof",
                    "proof key does not match the token",
                    None,
                ));
            }
            if p.ath.as_deref() != Some(access_token_hash(credential).as_str()) {
                return Err(dpop_refusal(
                    "invalid_dpop_proof",
                    "ath does not match the token",
                    None,
                ));
            }
            if p.nonce.as_deref() != Some(o.resource_nonce.as_str()) {
                lock(&app.stats).dpop_nonce_challenges += 1;
                return Err(dpop_refusal(
                    "use_dpop_nonce",
                    "Resource server requires nonce in DPoP proof",
                    Some(&o.resource_nonce),
                ));
            }
            Ok(Principal {
                bucket: format!("oauth:{}", t.client_id),
                scopes: Some(t.scopes),
            })
        }
        _ => Err(unauthorized()),
    }
}

/// `GET /api/v1/logs`.
pub async fn logs(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let seq = app
        .logs_seq
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock(&app.stats).logs_requests += 1;
    lock(&app.logs_arrivals).push(Instant::now());
    let auth = authenticate(&app, &headers);
    let bucket = match &auth {
        Ok(p) => p.bucket.clone(),
        Err(_) => "anonymous".to_string(),
    };
    let decision = lock(&app.limiter).hit(&bucket, Instant::now(), Utc::now().timestamp_millis());
    let mut resp = match auth {
        Err(r) => r.into_response(),
        Ok(_) if !decision.allowed => okta_error(E::E0000047, ""),
        Ok(p) => serve(&app, &p, &uri, seq, decision.remaining).await,
    };
    let remaining = if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        lock(&app.stats).rate_limited += 1;
        0
    } else {
        decision.remaining
    };
    let h = resp.headers_mut();
    h.insert("x-rate-limit-limit", HeaderValue::from(decision.limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    h.insert(
        "x-rate-limit-reset",
        HeaderValue::from(decision.reset_epoch),
    );
    resp
}

/// A page ready to be sent.
struct Page {
    body: Vec<u8>,
    count: usize,
    self_url: String,
    next_url: Option<String>,
    /// A bounded request (`until` or DESCENDING), and the `limit` it asked for.
    bounded: bool,
    limit: usize,
}

async fn serve(app: &App, p: &Principal, uri: &Uri, seq: u64, remaining: u32) -> Response {
    let fault = app.next_fault();
    match &fault {
        Some(OktaFault::Status500 { .. }) => return okta_error(E::E0000009, ""),
        Some(OktaFault::Status429 { .. }) => return okta_error(E::E0000047, ""),
        Some(OktaFault::Unauthorized { .. }) => return unauthorized().into_response(),
        Some(OktaFault::Forbidden { .. }) => return okta_error(E::E0000006, ""),
        Some(OktaFault::HtmlErrorPage { .. }) => {
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                 <body><h1>502 Bad Gateway</h1><p>The server returned an invalid or \
                 incomplete response.</p></body></html>",
            )
                .into_response()
        }
        Some(OktaFault::Delay { delay, .. }) => tokio::time::sleep(*delay).await,
        _ => {}
    }
    if let Some(scopes) = &p.scopes {
        if !scopes.iter().any(|s| s == "okta.logs.read") {
            return okta_error(E::E0000006, "");
        }
    }
    let mut page = match build_page(app, uri) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    {
        let mut stats = lock(&app.stats);
        stats.events_served += page.count as u64;
        if page.bounded {
            stats.bounded_requests += 1;
        }
        stats.trace.push(super::LogsRequest {
            bounded: page.bounded,
            events: page.count,
            limit: page.limit,
            remaining,
        });
    }
    let mut body = std::mem::take(&mut page.body);
    match fault {
        Some(OktaFault::TruncatedJson { .. }) => body.truncate((body.len() / 2).max(1)),
        Some(OktaFault::ObjectInsteadOfArray { .. }) => {
            let mut o = b"{\"events\":".to_vec();
            o.extend_from_slice(&body);
            o.push(b'}');
            body = o;
        }
        Some(OktaFault::InvalidUtf8 { .. }) => body = corrupt_utf8(body),
        Some(OktaFault::ForeignNextLink { url, .. }) => page.next_url = Some(url),
        _ => {}
    }
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    add_links(
        resp.headers_mut(),
        &page.self_url,
        page.next_url.as_deref(),
        seq,
    );
    resp
}

/// Puts bytes that are not UTF-8 inside the first string value.
fn corrupt_utf8(body: Vec<u8>) -> Vec<u8> {
    match body.windows(2).position(|w| w == b":\"") {
        Some(i) => {
            let mut out = body[..i + 2].to_vec();
            out.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            out.extend_from_slice(&body[i + 2..]);
            out
        }
        None => b"[\"\xff\xfe\"]".to_vec(),
    }
}

/// Link headers: alternately one header per link (Okta's style) and one comma-joined
/// header (RFC 8288), so clients are tested on both.
fn add_links(h: &mut HeaderMap, self_url: &str, next_url: Option<&str>, seq: u64) {
    let mut links = vec![format!("<{self_url}>; rel=\"self\"")];
    if let Some(n) = next_url {
        links.push(format!("<{n}>; rel=\"next\""));
    }
    let values: Vec<String> = if seq.is_multiple_of(2) {
        links
    } else {
        vec![links.join(", ")]
    };
    for v in values {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(header::LINK, v);
        }
    }
}

fn bad_request(code: E, detail: &str) -> Refusal {
    Refusal::Okta(code, detail.to_string())
}

fn parse_time(name: &str, v: &str) -> Result<i64, Refusal> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad_request(
                E::E0000001,
                &format!("{name}: The date format in your query is not recognized. Please enter dates using ISO8601 string format.. 'YYYY-MM-DDTHH:mm:ss.SSSZ'"),
            )
        })
}

fn build_page(app: &App, uri: &Uri) -> Result<Page, Refusal> {
    let query = uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut names = HashSet::new();
    for (k, _) in &pairs {
        if !names.insert(k.as_str()) {
            return Err(bad_request(
                E::E0000001,
                &format!("{k}: duplicate parameter"),
            ));
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("filter").is_some() || get("q").is_some() {
        return Err(bad_request(
            E::E0000031,
            "filter and q are not implemented by the fake Okta org",
        ));
    }
    let limit = match get("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= app.max_limit => n,
            _ => {
                return Err(bad_request(
                    E::E0000001,
                    &format!("limit: must be an integer between 0 and {}", app.max_limit),
                ))
            }
        },
    };
    let descending = match get("sortOrder") {
        None | Some("ASCENDING") => false,
        Some("DESCENDING") => true,
        Some(_) => {
            return Err(bad_request(
                E::E0000001,
                "sortOrder: must be ASCENDING or DESCENDING",
            ))
        }
    };
    let now_ms = Utc::now().timestamp_millis();
    let since_raw = get("since");
    let until_raw = get("until");
    let since_ms = since_raw.map(|v| parse_time("since", v)).transpose()?;
    let until_ms = until_raw.map(|v| parse_time("until", v)).transpose()?;
    if since_ms.is_some_and(|s| now_ms - s > 180 * DAY_MS) {
        return Err(bad_request(
            E::E0000053,
            "since parameter is over 180 days prior to the current day",
        ));
    }
    let self_url = match uri.query() {
        Some(q) => format!("{}{}?{q}", app.base_url, uri.path()),
        None => format!("{}{}", app.base_url, uri.path()),
    };
    let next_with = |cursor: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != "after") {
            s.append_pair(k, v);
        }
        s.append_pair("after", cursor);
        format!("{}/api/v1/logs?{}", app.base_url, s.finish())
    };
    let after = get("after");
    let mut log = lock(&app.log);
    log.catch_up();

    if until_raw.is_none() && !descending {
        // Polling: ingestion order, infinite pages.
        let cursor = match after {
            Some(a) => app
                .cursor
                .open_polling(a, since_raw)
                .ok()
                .filter(|c| c.pos <= log.len())
                .ok_or_else(|| bad_request(E::E0000001, "after: invalid cursor"))?,
            None => PollingCursor {
                pos: log.position_for_since(since_ms.unwrap_or(now_ms - 7 * DAY_MS)),
                generation: 0,
            },
        };
        let range = log.range(cursor.pos, limit);
        let count = range.len();
        let body = log.render(range);
        drop(log);
        let next_url = if count > 0 {
            let c = PollingCursor {
                pos: cursor.pos + count,
                generation: 0,
            };
            next_with(&app.cursor.mint_polling(c, since_raw))
        } else {
            match app.empty_page_mode {
                EmptyPageMode::RepeatUrl => self_url.clone(),
                EmptyPageMode::Advance => {
                    let c = PollingCursor {
                        pos: cursor.pos,
                        generation: cursor.generation + 1,
                    };
                    next_with(&app.cursor.mint_polling(c, since_raw))
                }
            }
        };
        return Ok(Page {
            body,
            count,
            self_url,
            next_url: Some(next_url),
            bounded: false,
            limit,
        });
    }

    // Bounded: by `published`, finite.
    let until = until_ms.unwrap_or(now_ms);
    let since = since_ms.unwrap_or(until - 7 * DAY_MS);
    let binding = format!(
        "{}|{}|{}",
        since_raw.unwrap_or(""),
        until_raw.unwrap_or(""),
        descending
    );
    let offset = match after {
        Some(a) => app
            .cursor
            .open_bounded(a, &binding)
            .map_err(|_| bad_request(E::E0000001, "after: invalid cursor"))?,
        None => 0,
    };
    let idx = log.bounded(since, until, descending);
    let end = offset.saturating_add(limit).min(idx.len());
    let chosen = idx.get(offset.min(end)..end).unwrap_or_default();
    let count = chosen.len();
    let body = log.render(chosen.iter().copied());
    drop(log);
    let next_url = (end < idx.len()).then(|| next_with(&app.cursor.mint_bounded(end, &binding)));
    Ok(Page {
        body,
        count,
        self_url,
        next_url,
        bounded: true,
        limit,
    })
}

/// `POST /oauth2/v1/token`.
pub async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    lock(&app.stats).token_requests += 1;
    let Some(oauth) = &app.oauth else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client is not registered in this org.",
        );
    };
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token_url = format!("{}/oauth2/v1/token", app.base_url);
    let (resp, challenged) = lock(oauth).token_request(&form, &headers, &token_url);
    let mut s = lock(&app.stats);
    if challenged {
        s.dpop_nonce_challenges += 1;
    }
    if resp.status() == StatusCode::OK {
        s.tokens_issued += 1;
    }
    resp
}

/// Any other path: Okta's 404.
pub async fn not_found(uri: Uri) -> Response {
    okta_error(E::E0000007, uri.path())
}
