//! The collector's checkpoint: `checkpoints/{org}.json`, written with If-Match on its ETag.
//!
//! The checkpoint is the only thing that says how far an org has been collected. It moves
//! forward in one conditional write that also records the envelope still to be enqueued
//! (`pending`), so a kill between "page stored" and "message sent" re-sends the same envelope
//! at start-up instead of fetching the page again. No secret is ever written here: the next
//! URL is Okta's own link (its query holds `since`, `limit` and the opaque `after` cursor).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::envelope::Envelope;
use common::org::{names, parse_number, OrgKey};
use common::storage::{Blobs, StorageError};
use serde::{Deserialize, Serialize};

/// Version written by this build.
pub const CURRENT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub org: OrgKey,
    /// Bumped by `collector reset`, so pages of the new run never share names with old ones.
    pub epoch: u64,
    /// Sequence number the next stored page gets.
    pub seq: u64,
    /// The next URL to GET: Okta's `rel="next"` link, followed verbatim.
    pub next_url: String,
    /// An envelope whose page is stored and recorded but may not be on the queue yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Envelope>,
    /// Newest `published` handed off so far (for `status` and the lag metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_published: Option<DateTime<Utc>>,
    /// Hashes of the most recent event uuids (base64 of little-endian u64s), so Okta's
    /// occasional repeat of an event on a later page is dropped even across a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent: Option<String>,
    pub updated: DateTime<Utc>,
}

/// Encodes uuid hashes for [`Checkpoint::recent`].
pub fn encode_recent(hashes: &[u64]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`Checkpoint::recent`]; an unreadable value just starts an empty window.
pub fn decode_recent(text: Option<&str>) -> Vec<u64> {
    use base64::Engine;
    let Some(t) = text else { return Vec::new() };
    match base64::engine::general_purpose::STANDARD.decode(t) {
        Ok(bytes) => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A checkpoint together with the ETag it was read or written with.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub checkpoint: Checkpoint,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("checkpoint {name} is unreadable ({reason}); inspect it, or run `collector reset`")]
    Corrupt { name: String, reason: String },
    /// Someone else wrote the checkpoint: this collector is no longer the leader.
    #[error("the checkpoint was changed by another writer: leadership lost")]
    LostRace,
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Bytes {
        // A struct of plain fields always serialises.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    pub fn from_bytes(
        name: &str,
        bytes: &[u8],
        org: &OrgKey,
    ) -> Result<Checkpoint, CheckpointError> {
        let cp: Checkpoint =
            serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        if &cp.org != org {
            return Err(CheckpointError::Corrupt {
                name: name.to_string(),
                reason: format!("it belongs to org {}", cp.org),
            });
        }
        if cp.v > CURRENT_VERSION {
            return Err(CheckpointError::Corrupt {
                name: name.to_string(),
                reason: format!("version {} is newer than this collector", cp.v),
            });
        }
        Ok(cp)
    }
}

/// Reads the checkpoint of `org`, or `None` when there is none.
pub async fn read(blobs: &Blobs, org: &OrgKey) -> Result<Option<Versioned>, CheckpointError> {
    let name = names::checkpoint(org);
    match blobs.read_limited(&name, 1024 * 1024).await? {
        None => Ok(None),
        Some(content) => Ok(Some(Versioned {
            checkpoint: Checkpoint::from_bytes(&name, &content.bytes, org)?,
            etag: content.etag,
        })),
    }
}

/// Replaces an unreadable checkpoint (an operator's `collector reset`): the ETag of the blob as it
/// was read, so a concurrent change is refused rather than overwritten.
pub async fn replace_unreadable(
    blobs: &Blobs,
    org: &OrgKey,
    cp: Checkpoint,
) -> Result<Versioned, CheckpointError> {
    let name = names::checkpoint(org);
    let Some(content) = blobs.read_limited(&name, 1024 * 1024).await? else {
        return create(blobs, cp).await;
    };
    if Checkpoint::from_bytes(&name, &content.bytes, org).is_ok() {
        // It became readable meanwhile (another writer): let the caller start over.
        return Err(CheckpointError::LostRace);
    }
    match blobs
        .write_if_match(&name, cp.to_bytes(), &content.etag, None)
        .await
    {
        Ok(etag) => Ok(Versioned {
            checkpoint: cp,
            etag,
        }),
        Err(e) if e.is_condition_not_met() => Err(CheckpointError::LostRace),
        Err(e) => Err(e.into()),
    }
}

/// Creates the first checkpoint of an org; fails with `LostRace` if one appeared meanwhile.
pub async fn create(blobs: &Blobs, cp: Checkpoint) -> Result<Versioned, CheckpointError> {
    let name = names::checkpoint(&cp.org);
    match blobs.create_only(&name, cp.to_bytes()).await {
        Ok(etag) => Ok(Versioned {
            checkpoint: cp,
            etag,
        }),
        Err(e) if e.is_already_exists() => Err(CheckpointError::LostRace),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the checkpoint if it still has `current.etag` (docs/design.md §2 step 6).
///
/// The write runs without SDK retries; this loop decides. After a 412 or an error whose
/// outcome is unknown (a timeout, a reset connection) the blob is read back: if it already
/// holds exactly what we wrote, an earlier attempt succeeded and only its answer was lost, so
/// we go on; if it still holds `current`, the write did not land and is tried again; anything
/// else means another collector wrote it and we are no longer the leader.
pub async fn replace(
    blobs: &Blobs,
    current: &Versioned,
    next: Checkpoint,
) -> Result<Versioned, CheckpointError> {
    let name = names::checkpoint(&next.org);
    let mut etag = current.etag.clone();
    let mut backoff = common::backoff::Backoff::new(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(5),
    );
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match blobs
            .write_if_match(&name, next.to_bytes(), &etag, None)
            .await
        {
            Ok(etag) => {
                return Ok(Versioned {
                    checkpoint: next,
                    etag,
                })
            }
            Err(e) if e.is_condition_not_met() || e.is_transient() => e,
            Err(e) => return Err(e.into()),
        };
        if !err.is_condition_not_met() {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        match read(blobs, &next.org).await? {
            Some(found) if found.checkpoint == next => return Ok(found),
            Some(found) if found.checkpoint == current.checkpoint && attempt < 8 => {
                etag = found.etag;
            }
            Some(found) if found.checkpoint == current.checkpoint => return Err(err.into()),
            _ => return Err(CheckpointError::LostRace),
        }
    }
}

/// Where an org's pipeline leaves traces: pages and page states while work is in flight, done
/// markers (kept for weeks) and poison records after it. A missing checkpoint next to any of them
/// means the checkpoint was lost, and reusing an epoch would let the shipper take new pages for
/// twins of shipped ones.
fn trace_prefixes(org: &OrgKey) -> [String; 4] {
    [
        names::pages_prefix(org),
        names::state_prefix(org),
        names::done_prefix(org),
        names::poison_prefix(org),
    ]
}

/// Returns the first prefix of [`trace_prefixes`] that holds any blob.
pub async fn org_has_data(blobs: &Blobs, org: &OrgKey) -> Result<Option<String>, StorageError> {
    for prefix in trace_prefixes(org) {
        if blobs.any_under(&prefix).await? {
            return Ok(Some(prefix));
        }
    }
    Ok(None)
}

/// Highest epoch named by any of the org's traces (so a reset never reuses an epoch, even
/// after a lost checkpoint). Lists every trace: a rare operator command can afford it.
pub async fn highest_epoch(blobs: &Blobs, org: &OrgKey) -> Result<u64, StorageError> {
    let mut max = 0;
    for prefix in trace_prefixes(org) {
        for item in blobs.list(&prefix).await? {
            let rest = item.name.strip_prefix(&prefix).unwrap_or_default();
            if let Some(epoch) = rest
                .split('/')
                .next()
                .and_then(|e| parse_number("epoch", e).ok())
                // Repair pages have their own epoch space; live epochs never reach it.
                .filter(|e| !crate::audit::repair::is_repair_epoch(*e))
            {
                max = max.max(epoch);
            }
        }
    }
    Ok(max)
}
