//! The Logs Ingestion API sink (docs/contracts.md §3): one gzip POST per chunk to a DCR stream.
//!
//! `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01` with an
//! Entra bearer token for `{audience}/.default`. The call is all-or-nothing: 204 means every
//! row of the chunk was taken.
//!
//! Tokens come from our own [`TokenCache`], not straight from the credential: after a 401 the
//! refused token is dropped and the POST is sent once more with a new one (at most one forced
//! refresh a minute), instead of sending the refused token until it expires — the same
//! "re-read once" the Data Collector sink does for a rotated key after a 403.

use async_trait::async_trait;
use azure_core::credentials::AccessToken;
use bytes::Bytes;
use common::token_cache::TokenCache;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use url::Url;

use super::outcome::{from_transport, service_code, service_message, Outcome};
use super::{Payload, Sink, SinkConfigError, SinkMetrics};
use crate::chunk::{Chunk, DEFAULT_GZIP, MAX_UNCOMPRESSED};
use common::gzip::{gzip, Level};

/// The API version of the Logs Ingestion upload call.
pub const API_VERSION: &str = "2023-01-01";

/// Posts flattened `Okta_CL` rows to a DCR stream.
pub struct LogsIngestionSink {
    http: reqwest::Client,
    endpoint: Url,
    dcr_immutable_id: String,
    stream: String,
    tokens: TokenCache,
    audience: String,
    /// `{audience}/.default`.
    scope: String,
    upload_url: Url,
    /// `None`: bodies go uncompressed, without `Content-Encoding`.
    gzip: Option<Level>,
    metrics: SinkMetrics,
}

impl std::fmt::Debug for LogsIngestionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsIngestionSink")
            .field("endpoint", &self.endpoint.as_str())
            .field("dcr_immutable_id", &self.dcr_immutable_id)
            .field("stream", &self.stream)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl LogsIngestionSink {
    /// Validates the settings, then builds the sink: `endpoint` is the DCE or the DCR's own
    /// logs-ingestion endpoint (https; plain http only for loopback test servers); `audience`
    /// e.g. `https://monitor.azure.com`.
    pub fn try_new(
        http: reqwest::Client,
        endpoint: Url,
        dcr_immutable_id: impl Into<String>,
        stream: impl Into<String>,
        tokens: TokenCache,
        audience: impl Into<String>,
    ) -> Result<Self, SinkConfigError> {
        let dcr_immutable_id = dcr_immutable_id.into();
        let stream = stream.into();
        super::check_origin("LOGS_INGESTION_ENDPOINT", &endpoint)?;
        for (what, v) in [
            ("DCR_IMMUTABLE_ID", &dcr_immutable_id),
            ("DCR_STREAM", &stream),
        ] {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(SinkConfigError::Invalid {
                    setting: what,
                    reason: format!("{v:?} must be non-empty letters, digits, '-', '_' or '.'"),
                });
            }
        }
        Ok(Self::new(
            http,
            endpoint,
            dcr_immutable_id,
            stream,
            tokens,
            audience,
        ))
    }

    /// Builds the sink without validating the settings (use [`Self::try_new`] unless they were
    /// validated already). Path segments are percent-encoded, so odd values cannot change the
    /// URL's shape; a wrong value shows up as a 404 (sink-wide) naming the settings.
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        dcr_immutable_id: impl Into<String>,
        stream: impl Into<String>,
        tokens: TokenCache,
        audience: impl Into<String>,
    ) -> Self {
        let dcr_immutable_id = dcr_immutable_id.into();
        let stream = stream.into();
        let audience = audience.into().trim_end_matches('/').to_string();
        let mut upload_url = endpoint.clone();
        if let Ok(mut segs) = upload_url.path_segments_mut() {
            segs.pop_if_empty().extend([
                "dataCollectionRules",
                &dcr_immutable_id,
                "streams",
                &stream,
            ]);
        }
        upload_url.set_query(Some(&format!("api-version={API_VERSION}")));
        LogsIngestionSink {
            http,
            endpoint,
            dcr_immutable_id,
            stream,
            tokens,
            scope: format!("{audience}/.default"),
            audience,
            upload_url,
            gzip: Some(DEFAULT_GZIP),
            metrics: SinkMetrics::default(),
        }
    }

    /// Feeds `metrics` (statuses, and the compressed bytes of every accepted request).
    pub fn with_metrics(mut self, metrics: SinkMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Compression of request bodies (default [`DEFAULT_GZIP`]); `None` sends them
    /// uncompressed, without `Content-Encoding` (`SINK_GZIP_LEVEL`).
    pub fn with_gzip(mut self, gzip: Option<Level>) -> Self {
        self.gzip = gzip;
        self
    }

    /// The full upload URL (for logs and health messages).
    pub fn upload_url(&self) -> &Url {
        &self.upload_url
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Outcome {
        let msg = service_message(body);
        let dcr = &self.dcr_immutable_id;
        match status.as_u16() {
            204 => Outcome::Accepted,
            // The API answers 204 and nothing else on success: another 2xx comes from
            // something that is not Logs Ingestion (a proxy, a wrong endpoint), and counting it
            // as accepted would lose the rows without a trace.
            200..=299 => Outcome::sink_wide(format!(
                "{} answered {status}, not 204: it is not the Logs Ingestion API; check LOGS_INGESTION_ENDPOINT",
                self.endpoint
            )),
            413 => Outcome::TooLarge,
            400 => Outcome::PageFault {
                reason: format!("Logs Ingestion refused the data (400): {msg}"),
            },
            401 => Outcome::sink_wide(format!(
                "Logs Ingestion rejected the token (401): check the identity (AZURE_CLIENT_ID) and AZURE_MONITOR_AUDIENCE ({}): {msg}",
                self.audience
            )),
            403 => Outcome::sink_wide(format!(
                "Logs Ingestion denied access to DCR {dcr} (403): the shipper's identity needs the role \
                 Monitoring Metrics Publisher on the DCR; role assignments can take up to 30 minutes to propagate: {msg}"
            )),
            404 => Outcome::sink_wide(format!(
                "Logs Ingestion found no DCR {dcr} with stream {} at {} (404): check DCR_IMMUTABLE_ID, DCR_STREAM and LOGS_INGESTION_ENDPOINT: {msg}",
                self.stream, self.endpoint
            )),
            408 | 429 | 500..=599 => Outcome::transient(
                common::backoff::retry_after(headers, chrono::Utc::now()),
                format!("Logs Ingestion answered {status}: {msg}"),
            ),
            _ => Outcome::sink_wide(format!(
                "Logs Ingestion answered {status} ({}): {msg}",
                service_code(body).unwrap_or_default()
            )),
        }
    }
}

impl LogsIngestionSink {
    async fn token(&self) -> Result<AccessToken, Outcome> {
        self.tokens.token(&self.scope).await.map_err(|e| {
            Outcome::sink_wide(format!(
                "cannot get a token for {} from the managed identity: {e}",
                self.audience
            ))
        })
    }

    /// One POST: the answer's status, headers and body, or the outcome of a transport error.
    async fn send(
        &self,
        token: &AccessToken,
        body: Bytes,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), Outcome> {
        let mut request = self
            .http
            .post(self.upload_url.clone())
            .header(CONTENT_TYPE, "application/json");
        if self.gzip.is_some() {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let sent = request
            .header(AUTHORIZATION, format!("Bearer {}", token.token.secret()))
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.metrics.status(None);
                return Err(from_transport(self.name(), &e));
            }
        };
        let status = resp.status();
        self.metrics.status(Some(status));
        let headers = resp.headers().clone();
        // The status is known; a body lost afterwards only loses the message.
        let body = resp.bytes().await.unwrap_or_default();
        Ok((status, headers, body))
    }
}

#[async_trait]
impl Sink for LogsIngestionSink {
    async fn post(&self, chunk: &Chunk) -> Outcome {
        // Content-Encoding is optional (docs/contracts.md §3): level 0 trades bandwidth for the
        // shipper's largest CPU cost (BENCHMARKS.md, issue 14).
        let body = match self.gzip {
            None => chunk.body_shared(),
            Some(level) => match gzip(chunk.body(), level) {
                Ok(gz) => Bytes::from(gz),
                // Not expected (the output bound holds stored blocks); retried, and the page
                // ends in poison if it persists.
                Err(e) => return Outcome::transient(None, e.to_string()),
            },
        };
        let token = match self.token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let mut answer = self.send(&token, body.clone()).await;
        if let Ok((status, _, _)) = &answer {
            if *status == StatusCode::UNAUTHORIZED && self.tokens.refused(&self.scope, &token).await
            {
                tracing::warn!(
                    "Logs Ingestion refused the token (401): posting once more with a new token"
                );
                let token = match self.token().await {
                    Ok(t) => t,
                    Err(outcome) => return outcome,
                };
                answer = self.send(&token, body.clone()).await;
            }
        }
        let (status, headers, answer_body) = match answer {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let outcome = self.classify(status, &headers, &answer_body);
        if let (Outcome::Accepted, Some(c)) = (&outcome, &self.metrics.wire_bytes) {
            c.inc_by(body.len() as u64);
        }
        outcome
    }

    fn name(&self) -> &'static str {
        "logs-ingestion"
    }

    fn max_body_bytes(&self) -> usize {
        MAX_UNCOMPRESSED
    }

    fn payload(&self) -> Payload {
        Payload::Rows
    }
}
