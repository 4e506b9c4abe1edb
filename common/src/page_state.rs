//! The shipper's progress on one page: `state/{org}/{epoch}/{seq}.json`.
//!
//! The state blob, and the lease on it, is what owns a page's work — not the queue message,
//! whose pop receipt can be lost or whose twin can be held by another replica. Progress is an
//! event index (`posted_upto`), not a chunk number, so a shipper of another version with other
//! chunk boundaries resumes exactly after the last accepted event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version written by this build.
pub const CURRENT_VERSION: u32 = 1;

/// Progress and failure count of one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageState {
    pub v: u32,
    /// Events `[0, posted_upto)` were accepted by the sink.
    pub posted_upto: u64,
    /// Page-caused failures so far (missing blob, sha mismatch, 400). Sink-wide failures
    /// never count here.
    pub failures: u32,
    /// The last page-caused failure, for the poison record and the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated: DateTime<Utc>,
    /// The page's truncated values were added to the metric already (by a delivery that
    /// loaded it from the start): a redelivery does not count them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncations_counted: bool,
}

impl PageState {
    pub fn new() -> PageState {
        PageState {
            v: CURRENT_VERSION,
            posted_upto: 0,
            failures: 0,
            last_error: None,
            updated: Utc::now(),
            truncations_counted: false,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a state blob; an unreadable state is an error the caller reports (it never
    /// silently restarts a page from zero, which would duplicate rows).
    pub fn from_bytes(bytes: &[u8]) -> Result<PageState, String> {
        if bytes.len() > 64 * 1024 {
            return Err("page state larger than 64 KiB".into());
        }
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable page state: {e}"))
    }
}

/// The content of `done/{org}/{epoch}/{seq}`: which page was shipped under that name.
///
/// A twin envelope is recognised by the marker; the hash makes sure it is a twin of *this*
/// page and not of another page that got the same epoch and sequence (a reused epoch): such
/// an envelope is parked as poison, never dropped with its page unshipped. Markers written
/// before the hash existed are empty and keep meaning "shipped".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneMarker {
    pub v: u32,
    /// sha256 (hex) of the stored page that was shipped, as in its envelope.
    pub sha256: String,
}

impl DoneMarker {
    pub fn new(sha256: &str) -> DoneMarker {
        DoneMarker {
            v: 1,
            sha256: sha256.to_string(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `Ok(None)` for an empty marker (written before markers held a hash).
    pub fn from_bytes(bytes: &[u8]) -> Result<Option<DoneMarker>, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| format!("unreadable done marker: {e}"))
    }
}

impl Default for PageState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = PageState::new();
        s.posted_upto = 500;
        s.failures = 2;
        s.last_error = Some("400 from the sink".into());
        assert_eq!(PageState::from_bytes(&s.to_bytes()).unwrap(), s);
        assert!(PageState::from_bytes(b"{}").is_err());
    }

    #[test]
    fn done_markers_old_and_new() {
        let m = DoneMarker::new("ab12");
        assert_eq!(DoneMarker::from_bytes(&m.to_bytes()).unwrap(), Some(m));
        assert_eq!(DoneMarker::from_bytes(b"").unwrap(), None);
        assert!(DoneMarker::from_bytes(b"garbage").is_err());
    }
}
