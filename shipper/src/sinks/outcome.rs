//! What happened to one post, classified for the run loop (docs/design.md §2, shipper step 5).
//!
//! The classification decides who pays for a failure: a *transient* failure is retried with
//! backoff; a *sink-wide* one (credentials, RBAC still propagating, wrong DCR, DNS/TLS) trips
//! the circuit breaker and must never count against the page (it would poison the whole
//! backlog); only a *page fault* (the service refused this data) counts toward poison.

use std::time::Duration;

/// Result of posting one chunk. Reasons are for logs and poison records: they name what to
/// fix and never contain tokens, keys or signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service took the whole chunk (Logs Ingestion 204, Data Collector 200).
    Accepted,
    /// Retry the same chunk later; `retry_after` is the service's own hint (429/503).
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Nothing will succeed until the sink or its configuration recovers.
    SinkWide { reason: String },
    /// The service refused this data (400): counts toward the page's poison threshold.
    PageFault { reason: String },
    /// 413: split the chunk and post the halves (a packing bug; log it).
    TooLarge,
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted)
    }

    pub(crate) fn transient(retry_after: Option<Duration>, reason: impl Into<String>) -> Self {
        Outcome::Transient {
            retry_after,
            reason: reason.into(),
        }
    }

    pub(crate) fn sink_wide(reason: impl Into<String>) -> Self {
        Outcome::SinkWide {
            reason: reason.into(),
        }
    }
}

/// Longest service message quoted in a reason.
const MAX_MESSAGE: usize = 512;

/// The service's own explanation from an error body: `{"error":{"code","message"}}` (Logs
/// Ingestion), `{"Error","Message"}` (Data Collector), or the text itself, shortened.
pub(crate) fn service_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Inner {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Li {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Dc {
        error: Option<String>,
        message: Option<String>,
    }
    let text = if let Ok(li) = serde_json::from_slice::<Li>(body) {
        join(li.error.code, li.error.message)
    } else if let Ok(dc) = serde_json::from_slice::<Dc>(body) {
        join(dc.error, dc.message)
    } else {
        String::from_utf8_lossy(body).trim().to_string()
    };
    shorten(&text)
}

/// The error code alone, when the body carries one.
pub(crate) fn service_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/code")
        .or_else(|| v.get("Error"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
}

fn join(code: Option<String>, message: Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => String::new(),
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut cut = MAX_MESSAGE;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// Classifies a transport error (no HTTP status): a request that could not even connect (DNS,
/// refused, TLS) is sink-wide; a timeout or a connection lost after sending is transient.
pub(crate) fn from_transport(sink: &str, err: &reqwest::Error) -> Outcome {
    // reqwest's Display can include the URL, never headers: no secret reaches the reason.
    let detail = error_chain(err);
    if err.is_timeout() {
        Outcome::transient(None, format!("{sink}: request timed out: {detail}"))
    } else if err.is_connect() {
        Outcome::sink_wide(format!(
            "{sink}: cannot connect (DNS, refused or TLS): {detail}"
        ))
    } else {
        Outcome::transient(None, format!("{sink}: connection lost: {detail}"))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    shorten(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_shapes() {
        let li = br#"{"error":{"code":"InvalidStream","message":"bad stream"}}"#;
        assert_eq!(service_message(li), "InvalidStream: bad stream");
        assert_eq!(service_code(li).as_deref(), Some("InvalidStream"));
        let dc = br#"{"Error":"InvalidDataFormat","Message":"not json"}"#;
        assert_eq!(service_message(dc), "InvalidDataFormat: not json");
        assert_eq!(service_code(dc).as_deref(), Some("InvalidDataFormat"));
        assert_eq!(service_message(b"  plain  "), "plain");
        let long = "é".repeat(1000);
        assert!(service_message(long.as_bytes()).len() <= MAX_MESSAGE + 3);
    }
}
