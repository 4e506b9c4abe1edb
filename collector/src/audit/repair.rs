//! Repair: missing events go back through the normal pipeline as *repair pages*.
//!
//! A repair page is an ordinary page — stored create-only under its content address, announced
//! by an ordinary envelope, shipped by the ordinary shipper with page state and a `done/`
//! marker — so a repair is crash-safe and exactly-once for the same reasons a live page is
//! (`docs/design.md` §2). Its name lives in its own epoch space: epochs from
//! [`REPAIR_EPOCH`] (10⁹) on are never reached by `collector reset`, which bumps the live
//! epoch by one, so a repair page can never share a name, a page state or a `done/` marker
//! with a live page, and a shipper of any version handles it without knowing it is one.
//!
//! Sequence numbers of repair pages come from `audit/{org}/repair.json` (written with If-Match,
//! like the checkpoint) and are at least the current Unix time in milliseconds, so even a lost
//! state file can never reuse a number whose `done/` marker would swallow the new page. The
//! same file records the envelope still to be enqueued (`pending`), exactly like the
//! checkpoint does for live pages:
//!
//! 1. store the page blob (`audit.after_repair_blob`): a kill leaves an unrecorded orphan the
//!    next audit ignores; the events are found missing again and repaired under a new number;
//! 2. record the envelope as pending (`audit.after_repair_recorded`): from here on the page
//!    counts as in flight, never repaired twice; the next audit enqueues it first;
//! 3. enqueue (`audit.after_repair_enqueue`): a kill re-sends the same envelope, a twin the
//!    shipper absorbs;
//! 4. clear pending (`audit.after_repair_cleared`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::envelope::{self, Envelope};
use common::failpoint;
use common::org::{names, OrgKey};
use common::storage::{Blobs, Queue, StorageError};
use serde::{Deserialize, Serialize};

use crate::dedupe::RecentUuids;
use crate::okta::Event;

/// First epoch of the repair space.
pub const REPAIR_EPOCH: u64 = 1_000_000_000;

/// Events per repair page (the size of a full live page).
const PAGE_EVENTS: usize = 1000;

/// Whether `epoch` names repair pages.
pub fn is_repair_epoch(epoch: u64) -> bool {
    epoch >= REPAIR_EPOCH
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairState {
    pub v: u32,
    pub org: OrgKey,
    /// The lowest sequence number the next repair page may get.
    pub next_seq: u64,
    /// A repair page stored and recorded but perhaps not enqueued yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Envelope>,
    pub updated: DateTime<Utc>,
}

/// The state with the ETag it was read or written at (`None`: not created yet).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub state: RepairState,
    etag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("repair hand-off failed: {0}")]
    Storage(#[from] StorageError),
    #[error("the repair state was changed by another audit; this audit stops and repeats")]
    LostRace,
    #[error("{0}")]
    Page(String),
}

pub fn state_name(org: &OrgKey) -> String {
    format!("audit/{org}/repair.json")
}

pub async fn read(blobs: &Blobs, org: &OrgKey) -> Result<Versioned, RepairError> {
    let name = state_name(org);
    match blobs.read_limited(&name, 1024 * 1024).await? {
        None => Ok(Versioned {
            state: RepairState {
                v: 1,
                org: org.clone(),
                next_seq: 0,
                pending: None,
                updated: Utc::now(),
            },
            etag: None,
        }),
        Some(c) => {
            let state: RepairState = serde_json::from_slice(&c.bytes).map_err(|e| {
                RepairError::Page(format!("{name} is unreadable ({e}); inspect or delete it"))
            })?;
            if &state.org != org {
                return Err(RepairError::Page(format!(
                    "{name} belongs to org {}",
                    state.org
                )));
            }
            Ok(Versioned {
                state,
                etag: Some(c.etag),
            })
        }
    }
}

async fn replace(
    blobs: &Blobs,
    current: &Versioned,
    next: RepairState,
) -> Result<Versioned, RepairError> {
    let name = state_name(&next.org);
    let bytes = Bytes::from(serde_json::to_vec_pretty(&next).unwrap_or_default());
    let written = match &current.etag {
        None => blobs.create_only(&name, bytes).await,
        Some(etag) => blobs.write_if_match(&name, bytes, etag, None).await,
    };
    match written {
        Ok(etag) => Ok(Versioned {
            state: next,
            etag: Some(etag),
        }),
        Err(e) if e.is_already_exists() || e.is_condition_not_met() => {
            // An earlier attempt whose answer was lost may have written exactly this.
            let found = read(blobs, &next.org).await?;
            if found.state == next {
                Ok(found)
            } else {
                Err(RepairError::LostRace)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Enqueues a pending repair envelope (left by a killed audit) and clears it.
pub async fn flush_pending(
    blobs: &Blobs,
    queue: &Queue,
    current: Versioned,
) -> Result<Versioned, RepairError> {
    let Some(env) = &current.state.pending else {
        return Ok(current);
    };
    queue.send(&env.encode(), None).await?;
    tracing::info!(page = %env.page_id(), events = env.events, "repair page enqueued");
    failpoint::hit("audit.after_repair_enqueue");
    let mut next = current.state.clone();
    next.pending = None;
    next.updated = Utc::now();
    let written = replace(blobs, &current, next).await?;
    failpoint::hit("audit.after_repair_cleared");
    Ok(written)
}

/// Hands `events` (raw Okta events, each once) off as repair pages; returns the new state and
/// how many events were handed off.
pub async fn hand_off(
    blobs: &Blobs,
    queue: &Queue,
    org: &OrgKey,
    domain: &str,
    events: &[String],
    mut current: Versioned,
) -> Result<(Versioned, u64), RepairError> {
    let mut handed = 0u64;
    for chunk in events.chunks(PAGE_EVENTS) {
        let mut once = RecentUuids::new(chunk.len() * 2);
        let prepared =
            crate::okta::prepare_page(chunk.iter().map(|e| Event::unread(e)), domain, &mut once)
                .map_err(|e| RepairError::Page(e.to_string()))?;
        if prepared.count == 0 {
            continue;
        }
        let (gz, sha) = crate::handoff::compress(&prepared.json)
            .map_err(|e| RepairError::Page(format!("compressing a repair page: {e}")))?;
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let seq = current.state.next_seq.max(now_ms);
        let size = gz.len() as u64;
        match blobs
            .create_only(&names::page(org, REPAIR_EPOCH, seq, &sha), Bytes::from(gz))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        failpoint::hit("audit.after_repair_blob");
        let env = Envelope {
            v: envelope::CURRENT_VERSION,
            org: org.clone(),
            epoch: REPAIR_EPOCH,
            seq,
            sha256: sha,
            events: prepared.count as u64,
            bytes: size,
            newest_published: prepared.newest_published,
            created: Utc::now(),
        };
        let mut next = current.state.clone();
        next.next_seq = seq + 1;
        next.pending = Some(env);
        next.updated = Utc::now();
        current = replace(blobs, &current, next).await?;
        failpoint::hit("audit.after_repair_recorded");
        current = flush_pending(blobs, queue, current).await?;
        handed += prepared.count as u64;
    }
    Ok((current, handed))
}
