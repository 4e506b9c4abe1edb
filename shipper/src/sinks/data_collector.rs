//! The legacy HTTP Data Collector API sink (docs/contracts.md §2), for classic `Okta_CL` tables.
//!
//! The *service* flattens and adds the type suffixes, so the body is the JSON array of the
//! original nested events (plus `domain`), with `time-generated-field: published`. Posting our
//! flattened rows here would produce `client_ipAddress_s_s`. Best-effort and legacy: the API's
//! support ended in September 2026 (docs/contracts.md §2.5).

use async_trait::async_trait;
use common::secrets::{SecretSource, SecretString};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use url::Url;

use super::outcome::{from_transport, service_code, service_message, Outcome};
use super::shared_key::{rfc1123, signature};
use super::{Payload, Sink, SinkConfigError, SinkMetrics};
use crate::chunk::{Chunk, DATA_COLLECTOR_MAX};

/// The API version of the Data Collector API.
pub const API_VERSION: &str = "2016-04-01";

/// Posts original Okta events to `{uri}/api/logs` with SharedKey authorisation.
pub struct DataCollectorSink {
    http: reqwest::Client,
    uri: Url,
    workspace_id: String,
    key: SecretSource,
    log_type: String,
    post_url: Url,
    metrics: SinkMetrics,
}

impl std::fmt::Debug for DataCollectorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataCollectorSink")
            .field("uri", &self.uri.as_str())
            .field("workspace_id", &self.workspace_id)
            .field("key", &self.key)
            .field("log_type", &self.log_type)
            .finish_non_exhaustive()
    }
}

/// One attempt's answer, before deciding whether to re-read the key.
enum Attempt {
    Done(Outcome),
    Forbidden(Outcome),
}

impl DataCollectorSink {
    /// Validates the settings, then builds the sink: `uri` is the origin
    /// (`https://{workspace_id}.ods.opinsights.azure.com` by default; `/api/logs` is
    /// appended); `log_type` becomes the table `{log_type}_CL`.
    pub fn try_new(
        http: reqwest::Client,
        uri: Url,
        workspace_id: impl Into<String>,
        key: SecretSource,
        log_type: impl Into<String>,
    ) -> Result<Self, SinkConfigError> {
        let workspace_id = workspace_id.into();
        let log_type = log_type.into();
        super::check_origin("LOG_ANALYTICS_URI", &uri)?;
        if workspace_id.is_empty()
            || !workspace_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(SinkConfigError::Invalid {
                setting: "WORKSPACE_ID",
                reason: "must be the workspace GUID".into(),
            });
        }
        if log_type.is_empty()
            || log_type.len() > 100
            || !log_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SinkConfigError::Invalid {
                setting: "LOG_TYPE",
                reason: format!("{log_type:?} must be 1-100 letters, digits or '_'"),
            });
        }
        Ok(Self::new(http, uri, workspace_id, key, log_type))
    }

    /// Builds the sink without validating the settings (use [`Self::try_new`] unless they were
    /// validated already); a wrong value shows up as a sink-wide 400/403/404 naming them.
    pub fn new(
        http: reqwest::Client,
        uri: Url,
        workspace_id: impl Into<String>,
        key: SecretSource,
        log_type: impl Into<String>,
    ) -> Self {
        let mut post_url = uri.clone();
        if let Ok(mut segs) = post_url.path_segments_mut() {
            segs.pop_if_empty().extend(["api", "logs"]);
        }
        post_url.set_query(Some(&format!("api-version={API_VERSION}")));
        DataCollectorSink {
            http,
            uri,
            workspace_id: workspace_id.into(),
            key,
            log_type: log_type.into(),
            post_url,
            metrics: SinkMetrics::default(),
        }
    }

    /// Feeds `metrics` (the status of every answer).
    pub fn with_metrics(mut self, metrics: SinkMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    async fn attempt(&self, key: &SecretString, chunk: &Chunk) -> Attempt {
        let date = rfc1123(chrono::Utc::now());
        let auth = match signature(&self.workspace_id, key.expose(), &date, chunk.body_len()) {
            Ok(a) => a,
            Err(e) => {
                return Attempt::Forbidden(Outcome::sink_wide(format!(
                    "{} ({}): {e}",
                    self.key.describe(),
                    self.name()
                )))
            }
        };
        let sent = self
            .http
            .post(self.post_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, auth)
            .header("Log-Type", &self.log_type)
            .header("x-ms-date", &date)
            .header("time-generated-field", "published")
            .body(chunk.body_shared())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.metrics.status(None);
                return Attempt::Done(from_transport(self.name(), &e));
            }
        };
        let status = resp.status();
        self.metrics.status(Some(status));
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        let msg = service_message(&body);
        let outcome = match status.as_u16() {
            200 => Outcome::Accepted,
            // The API answers 200 on success; another 2xx is not the Data Collector API.
            201..=299 => Outcome::sink_wide(format!(
                "the Data Collector endpoint answered {status}, not 200: check LOG_ANALYTICS_URI"
            )),
            400 => match service_code(&body).as_deref() {
                // Only a data format error is this page's fault; every other 400 is the
                // configuration (workspace closed, bad Log-Type, api-version…).
                Some("InvalidDataFormat") | None => Outcome::PageFault {
                    reason: format!("Data Collector API refused the data (400): {msg}"),
                },
                Some(_) => Outcome::sink_wide(format!(
                    "Data Collector API refused the request (400): {msg}: check WORKSPACE_ID and LOG_TYPE"
                )),
            },
            403 => {
                return Attempt::Forbidden(Outcome::sink_wide(format!(
                    "Data Collector API refused the SharedKey signature (403): check WORKSPACE_ID and the workspace key ({}): {msg}",
                    self.key.describe()
                )))
            }
            404 => Outcome::sink_wide(format!(
                "Data Collector API answered 404 at {}: check LOG_ANALYTICS_URI and WORKSPACE_ID: {msg}",
                self.uri
            )),
            413 => Outcome::TooLarge,
            408 | 429 | 500..=599 => Outcome::transient(
                common::backoff::retry_after(&headers, chrono::Utc::now()),
                format!("Data Collector API answered {status}: {msg}"),
            ),
            _ => Outcome::sink_wide(format!("Data Collector API answered {status}: {msg}")),
        };
        Attempt::Done(outcome)
    }
}

#[async_trait]
impl Sink for DataCollectorSink {
    async fn post(&self, chunk: &Chunk) -> Outcome {
        let key = match self.key.get().await {
            Ok(k) => k,
            Err(e) if e.is_transient() => return Outcome::transient(None, e.to_string()),
            Err(e) => return Outcome::sink_wide(e.to_string()),
        };
        match self.attempt(&key, chunk).await {
            Attempt::Done(o) => o,
            Attempt::Forbidden(first) => {
                // The key may have been rotated: re-read it once, and retry only if it changed.
                if !self.key.can_rotate() {
                    return first;
                }
                match self.key.refresh().await {
                    Ok(fresh) if fresh != key => match self.attempt(&fresh, chunk).await {
                        Attempt::Done(o) | Attempt::Forbidden(o) => o,
                    },
                    Ok(_) => first,
                    Err(e) => Outcome::sink_wide(format!(
                        "{}; re-reading the key failed: {e}",
                        match first {
                            Outcome::SinkWide { reason } => reason,
                            other => format!("{other:?}"),
                        }
                    )),
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        "data-collector"
    }

    fn max_body_bytes(&self) -> usize {
        DATA_COLLECTOR_MAX
    }

    fn payload(&self) -> Payload {
        Payload::OriginalEvents
    }
}
