//! The queue message that hands a stored page from the collector to the shippers.
//!
//! Version 1, JSON, a few hundred bytes (queue messages are limited to 64 KiB):
//!
//! ```json
//! {"v":1,"org":"acme.okta.com","epoch":1,"seq":42,
//!  "sha256":"<64 hex of the stored gzip bytes>","events":1000,"bytes":812345,
//!  "newest_published":"2026-11-29T12:00:00.000Z","created":"2026-11-29T12:00:01Z"}
//! ```
//!
//! The page blob name is *derived* (`pages/{org}/{epoch}/{seq}-{sha256[:16]}.json.gz`), never
//! carried as a free string, so a hostile message cannot point a shipper at another prefix.
//! A collector and a shipper of different versions may run side by side during a rollout:
//! a shipper hands an envelope with a newer `v` back to the queue instead of poisoning it,
//! and fields added to v1 later are ignored by older readers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::org::{names, OrgKey};

/// The envelope version this build writes.
pub const CURRENT_VERSION: u32 = 1;

/// Longest message text we try to decode; anything longer is not ours.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// A page ready to be shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub org: OrgKey,
    pub epoch: u64,
    pub seq: u64,
    /// Hex sha256 of the stored (gzip) page bytes.
    pub sha256: String,
    /// Number of events in the page.
    pub events: u64,
    /// Size of the stored page in bytes.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_published: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

/// Why a message text is not a usable envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer collector: hand it back, do not poison it.
    #[error("envelope version {0} is newer than this shipper understands ({CURRENT_VERSION})")]
    NewerVersion(u32),
    #[error("not a valid envelope: {0}")]
    Invalid(String),
}

impl Envelope {
    /// The page blob this envelope refers to.
    pub fn page_blob(&self) -> String {
        names::page(&self.org, self.epoch, self.seq, &self.sha256)
    }

    /// A short stable id of the page, used in poison commands and logs: `{org}/{epoch}/{seq}`.
    pub fn page_id(&self) -> String {
        format!("{}/{}/{}", self.org, self.epoch, self.seq)
    }

    /// Serialises to the message text.
    pub fn encode(&self) -> String {
        // Serialising a struct of plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes and validates a message text.
    pub fn decode(text: &str) -> Result<Envelope, DecodeError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(DecodeError::Invalid(format!(
                "{} bytes is longer than any envelope",
                text.len()
            )));
        }
        #[derive(Deserialize)]
        struct Version {
            v: Option<serde_json::Value>,
        }
        let version: Version = serde_json::from_str(text)
            .map_err(|e| DecodeError::Invalid(short(&format!("not a JSON object: {e}"))))?;
        match version.v.as_ref().and_then(azure_core::Value::as_u64) {
            Some(1) => {}
            Some(v) if v > 1 => {
                return Err(DecodeError::NewerVersion(v.min(u64::from(u32::MAX)) as u32))
            }
            _ => {
                return Err(DecodeError::Invalid(
                    "missing or unknown version `v`".into(),
                ))
            }
        }
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| DecodeError::Invalid(short(&e.to_string())))?;
        if env.sha256.len() != 64
            || !env
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(DecodeError::Invalid(
                "sha256 is not 64 lower-case hex digits".into(),
            ));
        }
        Ok(env)
    }
}

/// Error reasons are logged at every delivery and kept in poison records: quote at most a
/// few hundred characters of a hostile value.
fn short(reason: &str) -> String {
    const MAX: usize = 300;
    if reason.len() <= MAX {
        return reason.to_string();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            v: 1,
            org: OrgKey::parse("acme.okta.com").unwrap(),
            epoch: 2,
            seq: 42,
            sha256: "ab".repeat(32),
            events: 1000,
            bytes: 12345,
            newest_published: None,
            created: Utc::now(),
        }
    }

    #[test]
    fn round_trip_and_derived_blob_name() {
        let e = sample();
        let back = Envelope::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            back.page_blob(),
            "pages/acme.okta.com/2/42-abababababababab.json.gz"
        );
    }

    #[test]
    fn newer_versions_are_recognised_not_invalid() {
        let text = e_with(|v| v["v"] = 7.into());
        assert_eq!(Envelope::decode(&text), Err(DecodeError::NewerVersion(7)));
    }

    #[test]
    fn hostile_envelopes_are_invalid() {
        for text in [
            e_with(|v| v["org"] = "../checkpoints".into()),
            e_with(|v| v["seq"] = (-1).into()),
            e_with(|v| v["seq"] = "1/../../x".into()),
            e_with(|v| v["sha256"] = "../../../../etc".into()),
            e_with(|v| v["v"] = 0.into()),
            "not json".to_string(),
            "[1,2]".to_string(),
            "x".repeat(MAX_TEXT_LEN + 1),
        ] {
            assert!(
                matches!(Envelope::decode(&text), Err(DecodeError::Invalid(_))),
                "{text:.80}"
            );
        }
    }

    fn e_with(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v = serde_json::to_value(sample()).unwrap();
        f(&mut v);
        v.to_string()
    }
}
