//! The Log Analytics side of the audit: one Logs Query API request per window (or sub-window)
//! that returns each `uuid_g` of the org in a `published_t` range with its row count.
//!
//! `POST {endpoint}/v1/workspaces/{workspace id}/query`, body `{"query", "timespan"}`, bearer
//! token of the managed identity for `https://api.loganalytics.io`
//! (<https://learn.microsoft.com/rest/api/loganalytics/query/execute>). The answer is
//! `{"tables":[{"name","columns","rows"}]}`; a non-fatal error keeps status 200 and adds an
//! `error` object (`PartialError`), for example when the result passed the service's limit of
//! 500,000 records (<https://learn.microsoft.com/azure/azure-monitor/logs/api/response-format>,
//! <https://learn.microsoft.com/azure/azure-monitor/service-limits>). A partial answer is never
//! read as "these are all the rows": the caller splits the window and asks again.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use url::Url;

use super::settings::AuditSettings;

/// Why a query gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Worth retrying later (429, 5xx, timeouts, connection errors).
    #[error("Log Analytics query failed (will retry): {0}")]
    Transient(String),
    /// The result was cut (too many rows, or another non-fatal error): split the window.
    #[error("Log Analytics returned a partial result: {0}")]
    Partial(String),
    /// Needs an operator: permissions, workspace id, audience.
    #[error("{0}")]
    Refused(String),
}

impl QueryError {
    pub fn is_refused(&self) -> bool {
        matches!(self, QueryError::Refused(_))
    }
}

/// The Logs Query client of one workspace.
#[derive(Clone)]
pub struct LogsQuery {
    http: reqwest::Client,
    url: Url,
    audience: String,
    table: String,
    credential: Arc<dyn TokenCredential>,
}

impl std::fmt::Debug for LogsQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsQuery")
            .field("url", &self.url.as_str())
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The one query shape the audit sends (the local fake answers exactly this shape).
/// `domain` is the org's host name, validated by the configuration (no quote can occur).
pub fn uuid_counts_query(
    table: &str,
    domain: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    format!(
        "{table}\n| where domain_s == '{domain}'\n| where published_t >= datetime({}) and published_t < datetime({})\n| summarize n = count() by uuid_g",
        ts(from),
        ts(to)
    )
}

impl LogsQuery {
    /// `None` when no workspace is configured.
    pub fn new(
        settings: &AuditSettings,
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
    ) -> Option<LogsQuery> {
        let id = settings.workspace_id.as_ref()?;
        let mut url = settings.query_endpoint.clone();
        url.set_path(&format!("/v1/workspaces/{id}/query"));
        Some(LogsQuery {
            http,
            url,
            audience: settings.query_audience.clone(),
            table: settings.table.clone(),
            credential,
        })
    }

    /// Each `uuid_g` (lower case) of `domain` with `from <= published_t < to`, and its rows.
    pub async fn uuid_counts(
        &self,
        domain: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<String, u64>, QueryError> {
        if domain.contains('\'') || domain.contains('\\') {
            return Err(QueryError::Refused(format!(
                "domain {domain:?} cannot be quoted in a query"
            )));
        }
        let scope = format!("{}/.default", self.audience);
        let token = self
            .credential
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| {
                QueryError::Transient(format!(
                    "cannot get a token for {} from the managed identity: {e}",
                    self.audience
                ))
            })?;
        // TimeGenerated is `published`, or the receive time when Azure restamped an old event:
        // never before `from`, never far in the future. The timespan lets the service prune.
        let timespan = format!(
            "{}/{}",
            ts(from - chrono::Duration::minutes(1)),
            ts(Utc::now() + chrono::Duration::hours(1))
        );
        let body = serde_json::json!({
            "query": uuid_counts_query(&self.table, domain, from, to),
            "timespan": timespan,
        });
        let resp = self
            .http
            .post(self.url.clone())
            .bearer_auth(token.token.secret())
            .header("Prefer", "wait=600")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| QueryError::Transient(format!("{}: {e}", self.url)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| QueryError::Transient(format!("reading the answer: {e}")))?;
        let doc: Option<Value> = serde_json::from_slice(&bytes).ok();
        let message = doc
            .as_ref()
            .and_then(|d| d.pointer("/error/message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        match status {
            200 => {}
            401 => {
                return Err(QueryError::Refused(format!(
                    "Log Analytics rejected the token (401): check AZURE_CLIENT_ID and LOG_ANALYTICS_QUERY_AUDIENCE ({}): {message}",
                    self.audience
                )))
            }
            403 => {
                return Err(QueryError::Refused(format!(
                    "the collector's identity may not read {} (403): grant it table-level read on {} in the workspace (see infra/README.md, \"Audit\"); role assignments can take 30 minutes to apply: {message}",
                    self.table, self.table
                )))
            }
            404 => {
                return Err(QueryError::Refused(format!(
                    "no workspace at {} (404): LOG_ANALYTICS_WORKSPACE_ID must be the workspace's customer id: {message}",
                    self.url
                )))
            }
            400 => {
                return Err(QueryError::Refused(format!(
                    "Log Analytics refused the audit query (400; is AUDIT_TABLE {} right?): {message}",
                    self.table
                )))
            }
            _ => {
                return Err(QueryError::Transient(format!(
                    "Log Analytics answered {status}: {message}"
                )))
            }
        }
        let doc = doc.ok_or_else(|| QueryError::Transient("the answer is not JSON".into()))?;
        if let Some(err) = doc.get("error").filter(|e| !e.is_null()) {
            let detail = err
                .pointer("/details/0/message")
                .or_else(|| err.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("partial result");
            return Err(QueryError::Partial(detail.chars().take(300).collect()));
        }
        parse_counts(&doc).map_err(QueryError::Transient)
    }
}

/// Reads `tables[0]` (`uuid_g`, `n`) of an answer.
fn parse_counts(doc: &Value) -> Result<HashMap<String, u64>, String> {
    let table = doc.pointer("/tables/0").ok_or("the answer has no table")?;
    let columns = table
        .get("columns")
        .and_then(Value::as_array)
        .ok_or("the answer's table has no columns")?;
    let index = |name: &str| {
        columns
            .iter()
            .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("the answer has no column {name}"))
    };
    let (iu, ini) = (index("uuid_g")?, index("n")?);
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .ok_or("the answer's table has no rows")?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let uuid = row
            .get(iu)
            .and_then(Value::as_str)
            .ok_or("a row without uuid_g")?;
        let n = row
            .get(ini)
            .and_then(Value::as_u64)
            .ok_or("a row without n")?;
        *out.entry(uuid.to_ascii_lowercase()).or_insert(0) += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_primary_result() {
        let doc = serde_json::json!({"tables":[{"name":"PrimaryResult",
            "columns":[{"name":"uuid_g","type":"guid"},{"name":"n","type":"long"}],
            "rows":[["AB-1",2],["cd-2",1]]}]});
        let c = parse_counts(&doc).unwrap();
        assert_eq!(c.get("ab-1"), Some(&2));
        assert_eq!(c.len(), 2);
        assert!(parse_counts(&serde_json::json!({"tables":[]})).is_err());
    }
}
