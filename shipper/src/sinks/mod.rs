//! Where rows go: the Logs Ingestion API (default) or the legacy Data Collector API.
//!
//! A [`Sink`] posts one [`Chunk`] and classifies the answer as an [`Outcome`]; it never
//! retries by itself (the run loop owns retries, the circuit breaker and poison accounting),
//! except the Data Collector sink re-reading a rotated workspace key once after a 403.

mod data_collector;
mod logs_ingestion;
mod outcome;
pub mod shared_key;

use async_trait::async_trait;
use url::Url;

pub use data_collector::DataCollectorSink;
pub use logs_ingestion::LogsIngestionSink;
pub use outcome::Outcome;

use crate::chunk::{Chunk, MAX_UNCOMPRESSED};

/// The counters a sink feeds itself, because only it sees the wire: the HTTP status of every
/// answer (`transport` when none came) and the bytes of accepted requests as sent.
#[derive(Clone, Default)]
pub struct SinkMetrics {
    /// Answers by HTTP status (`sink_responses{status}`).
    pub statuses: Option<common::metrics::CounterVec>,
    /// Bytes of accepted requests as sent (`bytes_on_wire`), for the sinks that compress.
    pub wire_bytes: Option<common::metrics::Counter>,
}

impl SinkMetrics {
    pub(crate) fn status(&self, status: Option<reqwest::StatusCode>) {
        if let Some(c) = &self.statuses {
            match &status {
                Some(s) => c.with(s.as_str()).inc(),
                None => c.with("transport").inc(),
            };
        }
    }
}

/// What a sink's chunks must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Flattened `okta_cl` rows ([`crate::rows::build_rows`]).
    Rows,
    /// The original nested events ([`crate::rows::build_dc_events`]).
    OriginalEvents,
}

/// One destination of chunks.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Posts one chunk once and says what happened.
    async fn post(&self, chunk: &Chunk) -> Outcome;

    /// Short name for logs and metrics (`logs-ingestion`, `data-collector`).
    fn name(&self) -> &'static str;

    /// Largest uncompressed body to pack for this sink (pass to [`crate::chunk::chunks`]).
    fn max_body_bytes(&self) -> usize {
        MAX_UNCOMPRESSED
    }

    /// Which builder makes this sink's rows.
    fn payload(&self) -> Payload {
        Payload::Rows
    }
}

/// A sink setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SinkConfigError {
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

/// https everywhere, plain http only for loopback test servers (docs/design.md §5), and a
/// base URL that paths can be appended to.
fn check_origin(setting: &'static str, url: &Url) -> Result<(), SinkConfigError> {
    common::config::require_https_or_loopback(url)
        .map_err(|reason| SinkConfigError::Invalid { setting, reason })?;
    if url.cannot_be_a_base() {
        return Err(SinkConfigError::Invalid {
            setting,
            reason: "not a base URL".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        let ok = |s: &str| check_origin("X", &Url::parse(s).unwrap()).is_ok();
        assert!(ok("https://x.ingest.monitor.azure.com"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://localhost:1"));
        assert!(ok("http://[::1]:1"));
        assert!(!ok("http://x.ingest.monitor.azure.com"));
        assert!(!ok("ftp://127.0.0.1"));
    }
}
