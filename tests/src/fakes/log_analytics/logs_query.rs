//! The Logs Query API (`docs/contracts.md` §5.4): `POST /v1/workspaces/{workspaceId}/query`, the
//! read side the collector's completeness audit uses.
//!
//! Real service: <https://learn.microsoft.com/rest/api/loganalytics/query/execute> (request
//! `{"query", "timespan"}`), response shape
//! <https://learn.microsoft.com/azure/azure-monitor/logs/api/response-format> (`tables` of
//! `name`/`columns`/`rows`; a non-fatal error keeps 200 and adds an `error` object with code
//! `PartialError`), limits <https://learn.microsoft.com/azure/azure-monitor/service-limits>
//! (at most 500,000 records per result; configurable here so tests reach it).
//!
//! The fake runs no KQL. It answers exactly one query shape — the audit's — over the rows it
//! accepted (minus those [`super::Discard`] threw away), and refuses any other text with the
//! service's 400 `BadArgumentError`, so a change to the audit's query cannot pass here and fail
//! in Azure:
//!
//! ```text
//! <Table>
//! | where domain_s == '<domain>'
//! | where published_t >= datetime(<RFC 3339>) and published_t < datetime(<RFC 3339>)
//! | summarize n = count() by uuid_g
//! ```
//!
//! Whitespace between tokens is free, as in KQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Shared;
use crate::fakes::token;

/// The audience a query token must carry.
pub const QUERY_AUDIENCE: &str = "https://api.loganalytics.io";

/// Rows one result holds at most (the service's documented limit).
pub const QUERY_ROW_LIMIT: usize = 500_000;

/// The service's error body.
fn query_error(status: StatusCode, code: &str, message: &str, inner: Option<Value>) -> Response {
    let mut error = json!({
        "message": message,
        "code": code,
        "correlationId": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(i) = inner {
        error["innererror"] = i;
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn bad_query(detail: &str) -> Response {
    query_error(
        StatusCode::BAD_REQUEST,
        "BadArgumentError",
        "The request had some invalid properties",
        Some(json!({
            "code": "SyntaxError",
            "message": "A recognition error occurred in the query.",
            "innererror": { "code": "SYN0002", "message": detail },
        })),
    )
}

/// A parsed audit query.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    pub table: String,
    pub domain: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Parses the one shape the fake answers (see the module docs).
pub fn parse_query(text: &str) -> Result<AuditQuery, String> {
    let parts: Vec<String> = text
        .split('|')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let [table, domain, window, summarize] = parts.as_slice() else {
        return Err(format!("expected 4 pipeline stages, found {}", parts.len()));
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !ident(table) {
        return Err(format!("`{table}` is not a table name"));
    }
    let domain = domain
        .strip_prefix("where domain_s == '")
        .and_then(|d| d.strip_suffix('\''))
        .filter(|d| !d.contains('\''))
        .ok_or_else(|| format!("unexpected stage `{domain}`"))?;
    let window_err = || format!("unexpected stage `{window}`");
    let rest = window
        .strip_prefix("where published_t >= datetime(")
        .ok_or_else(window_err)?;
    let (from, rest) = rest.split_once(')').ok_or_else(window_err)?;
    let to = rest
        .strip_prefix(" and published_t < datetime(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(window_err)?;
    let time = |t: &str| {
        DateTime::parse_from_rfc3339(t.trim())
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| format!("datetime({t}): {e}"))
    };
    if summarize != "summarize n = count() by uuid_g" {
        return Err(format!("unexpected stage `{summarize}`"));
    }
    Ok(AuditQuery {
        table: table.clone(),
        domain: domain.to_string(),
        from: time(from)?,
        to: time(to)?,
    })
}

/// Parses an ISO 8601 interval `start/end` (the only `timespan` form the audit sends).
fn parse_timespan(s: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (a, b) = s.split_once('/')?;
    let a = DateTime::parse_from_rfc3339(a).ok()?.with_timezone(&Utc);
    let b = DateTime::parse_from_rfc3339(b).ok()?.with_timezone(&Utc);
    Some((a, b))
}

fn row_time(row: &super::Row, column: &str) -> Option<DateTime<Utc>> {
    row.get(column)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// The query handler.
pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let resp = process(&shared, &workspace, &headers, &body);
    shared.count_status(resp.status());
    shared.store().stats.query_requests += 1;
    resp
}

fn process(shared: &Shared, workspace: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Err(e) = token::verify_bearer(auth, &shared.cfg.query_audience) {
        return query_error(
            StatusCode::UNAUTHORIZED,
            "InvalidTokenError",
            &format!("The provided authentication is not valid for this resource: {e}"),
            None,
        );
    }
    if let Some(code) = shared.take_query_status() {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return query_error(
            status,
            "ServiceError",
            "Injected by the fake Log Analytics.",
            None,
        );
    }
    if shared.query_forbidden() {
        return query_error(
            StatusCode::FORBIDDEN,
            "InsufficientAccessError",
            "The provided credentials have insufficient access to perform the requested operation",
            None,
        );
    }
    if workspace != shared.cfg.workspace_id {
        return query_error(
            StatusCode::NOT_FOUND,
            "WorkspaceNotFoundError",
            &format!("Workspace {workspace} not found"),
            None,
        );
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad_query("the body is not a JSON object"),
    };
    let Some(text) = req.get("query").and_then(Value::as_str) else {
        return bad_query("no query in the body");
    };
    let timespan = match req.get("timespan") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_timespan(s) {
            Some(t) => Some(t),
            None => return bad_query(&format!("invalid timespan {s}")),
        },
        Some(_) => return bad_query("timespan must be a string"),
    };
    let q = match parse_query(text) {
        Ok(q) => q,
        Err(e) => return bad_query(&e),
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let found = shared.for_table_rows(&q.table, |row| {
        if row.get("domain_s").and_then(Value::as_str) != Some(q.domain.as_str()) {
            return;
        }
        let Some(published) = row_time(row, "published_t") else {
            return;
        };
        if published < q.from || published >= q.to {
            return;
        }
        if let Some((a, b)) = timespan {
            match row_time(row, "TimeGenerated") {
                Some(t) if t >= a && t < b => {}
                _ => return,
            }
        }
        if let Some(u) = row.get("uuid_g").and_then(Value::as_str) {
            *counts.entry(u.to_ascii_lowercase()).or_default() += 1;
        }
    });
    if !found {
        return query_error(
            StatusCode::BAD_REQUEST,
            "BadArgumentError",
            "The request had some invalid properties",
            Some(json!({
                "code": "SemanticError",
                "message": "A semantic error occurred.",
                "innererror": {
                    "code": "SEM0100",
                    "message": format!("'where' operator: Failed to resolve table or column expression named '{}'", q.table),
                },
            })),
        );
    }
    let limit = shared.cfg.query_row_limit;
    let truncated = counts.len() > limit;
    let out: Vec<Value> = counts
        .into_iter()
        .take(limit)
        .map(|(u, n)| json!([u, n]))
        .collect();
    let mut doc = json!({
        "tables": [{
            "name": "PrimaryResult",
            "columns": [{"name": "uuid_g", "type": "guid"}, {"name": "n", "type": "long"}],
            "rows": out,
        }]
    });
    if truncated {
        doc["error"] = json!({
            "message": "There were some errors when processing your query.",
            "code": "PartialError",
            "details": [{
                "code": "EngineError",
                "message": format!("Query result set has exceeded the internal record count limit {limit} records"),
                "innererror": {"code": "-2133196797", "severity": 2, "severityName": "Error"},
            }],
        });
    }
    (StatusCode::OK, axum::Json(doc)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_audit_shape_and_refuses_others() {
        let q = parse_query(
            "Okta_CL\n| where domain_s == 'acme.okta.com'\n| where published_t >= datetime(2026-12-01T10:00:00Z) and published_t < datetime(2026-12-01T11:00:00Z)\n| summarize n = count() by uuid_g",
        )
        .unwrap();
        assert_eq!(q.table, "Okta_CL");
        assert_eq!(q.domain, "acme.okta.com");
        assert!(q.from < q.to);
        for bad in [
            "Okta_CL | take 10",
            "Okta_CL | where domain_s == 'a' | where published_t >= datetime(x) and published_t < datetime(y) | summarize n = count() by uuid_g",
            "Okta_CL | where domain_s == 'a' | where published_t >= datetime(2026-12-01T10:00:00Z) and published_t < datetime(2026-12-01T11:00:00Z) | summarize count() by uuid_g",
            "Okta_CL; drop table x | where domain_s == 'a' | x | y",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
