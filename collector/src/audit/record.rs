//! Evidence: one record per audited window, `audit/{org}/windows/{from}-{to}.json`, rewritten
//! each time the window is audited again (the previous result is kept inside).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::org::OrgKey;
use common::storage::{Blobs, StorageError};
use serde::{Deserialize, Serialize};

use super::window::Window;

/// What one audit of one window found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Distinct events Okta returned for the window.
    pub okta_events: u64,
    /// Distinct `uuid_g` of the org Log Analytics holds for the window.
    pub la_events: u64,
    /// Okta events Log Analytics does not hold (= in flight + parked + repaired + unrepaired).
    pub missing: u64,
    /// Missing events handed off again as repair pages by this audit.
    pub repaired: u64,
    /// Missing events still in a page waiting to be shipped (`pages/`, not done).
    pub in_flight: u64,
    /// Missing events in a page parked as poison (`poison/`): an operator must act.
    pub parked: u64,
    /// Events Log Analytics holds more than once (the de-duplicated view covers them).
    pub duplicated: u64,
    /// Events Log Analytics holds that Okta did not return for the window (should be none).
    pub not_in_okta: u64,
    /// Okta requests and Logs Query requests this audit made.
    pub okta_requests: u64,
    pub la_queries: u64,
}

/// The record of a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub v: u32,
    pub org: OrgKey,
    pub window: Window,
    #[serde(flatten)]
    pub figures: Figures,
    /// `complete` (nothing missing), `repaired` (everything missing is repaired or in
    /// flight), `incomplete` (events parked, or still missing although an earlier audit of
    /// this window repaired it: the alert condition).
    pub result: String,
    /// An earlier audit of this window repaired events and this one still finds events
    /// missing that are not in flight: repair did not make the window complete.
    pub incomplete_after_repair: bool,
    /// How many times the window was audited (this one included).
    pub audits: u64,
    /// `background` or `command`.
    pub trigger: String,
    pub when: DateTime<Utc>,
    /// The previous audit's figures, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Figures>,
}

pub const CURRENT_VERSION: u32 = 1;

pub fn prefix(org: &OrgKey) -> String {
    format!("audit/{org}/windows/")
}

pub fn name(org: &OrgKey, w: &Window) -> String {
    format!("{}{}.json", prefix(org), w.key())
}

/// Reads a window's record (`None` when never audited, or unreadable: audited again).
pub async fn read(
    blobs: &Blobs,
    org: &OrgKey,
    w: &Window,
) -> Result<Option<AuditRecord>, StorageError> {
    let Some(c) = blobs.read_limited(&name(org, w), 1024 * 1024).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&c.bytes).ok())
}

pub async fn write(blobs: &Blobs, rec: &AuditRecord) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec_pretty(rec).unwrap_or_default();
    blobs
        .write(&name(&rec.org, &rec.window), Bytes::from(bytes), None)
        .await?;
    Ok(())
}

/// The windows that have a record (their keys), for choosing unaudited ones.
pub async fn audited_keys(
    blobs: &Blobs,
    org: &OrgKey,
) -> Result<std::collections::HashSet<String>, StorageError> {
    let p = prefix(org);
    Ok(blobs
        .list(&p)
        .await?
        .into_iter()
        .filter_map(|i| {
            i.name
                .strip_prefix(&p)
                .and_then(|k| k.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect())
}

/// The newest record by audit time, and the span of audited windows, for `collector status`.
pub async fn summary(
    blobs: &Blobs,
    org: &OrgKey,
) -> Result<Option<(AuditRecord, DateTime<Utc>, DateTime<Utc>, usize)>, StorageError> {
    let p = prefix(org);
    let items = blobs.list(&p).await?;
    let newest = items.iter().max_by_key(|i| i.last_modified);
    let Some(newest) = newest else {
        return Ok(None);
    };
    let Some(c) = blobs.read_limited(&newest.name, 1024 * 1024).await? else {
        return Ok(None);
    };
    let Ok(rec) = serde_json::from_slice::<AuditRecord>(&c.bytes) else {
        return Ok(None);
    };
    let parse = |k: &str| {
        chrono::NaiveDateTime::parse_from_str(k, "%Y%m%dT%H%M%S%.3fZ")
            .ok()
            .map(|n| n.and_utc())
    };
    let mut lo: Option<DateTime<Utc>> = None;
    let mut hi: Option<DateTime<Utc>> = None;
    for i in &items {
        let Some(key) = i
            .name
            .strip_prefix(&p)
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        let Some((a, b)) = key.split_once('-') else {
            continue;
        };
        if let (Some(a), Some(b)) = (parse(a), parse(b)) {
            lo = Some(lo.map_or(a, |l| l.min(a)));
            hi = Some(hi.map_or(b, |h| h.max(b)));
        }
    }
    Ok(Some((
        rec.clone(),
        lo.unwrap_or(rec.window.from),
        hi.unwrap_or(rec.window.to),
        items.len(),
    )))
}
