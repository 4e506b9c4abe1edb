//! Events that are not in Log Analytics *yet*: those in a page still waiting in `pages/` to be
//! shipped, and those in a page parked as poison. The audit reports them and never repairs
//! them (the page will ship, or an operator requeues it; a repair would duplicate them).
//!
//! A page blob counts as waiting only when the pipeline knows it — recorded by the checkpoint
//! (live pages: an older epoch, or a sequence below the checkpoint's) or by the repair state
//! (repair pages) — and it has no `done/` marker. An orphan blob left by a kill before its
//! checkpoint write was never enqueued: its events are fetched again under another page, so it
//! must not hide them.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use chrono::{DateTime, Utc};
use common::org::{names, parse_number, OrgKey};
use common::storage::{Blobs, StorageError};
use serde::Deserialize;

use super::repair::{self, is_repair_epoch};
use super::window::Window;
use crate::checkpoint;

/// Where a missing event still is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    InFlight,
    Parked,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitingError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

#[derive(Deserialize)]
struct Head {
    uuid: Option<String>,
    published: Option<String>,
}

/// The uuids of `window` held in waiting or parked pages of `org`.
pub async fn scan(
    blobs: &Blobs,
    org: &OrgKey,
    window: &Window,
) -> Result<HashMap<String, Held>, WaitingError> {
    let cp = checkpoint::read(blobs, org)
        .await
        .map_err(|e| WaitingError::Other(e.to_string()))?
        .map(|v| v.checkpoint);
    let repair_state = repair::read(blobs, org)
        .await
        .map_err(|e| WaitingError::Other(e.to_string()))?
        .state;
    let poison_prefix = names::poison_prefix(org);
    let parked: HashSet<(u64, u64)> = blobs
        .list(&poison_prefix)
        .await?
        .into_iter()
        .filter_map(|i| {
            let rest = i.name.strip_prefix(&poison_prefix)?.strip_suffix(".json")?;
            let (e, s) = rest.split_once('/')?;
            Some((parse_number("epoch", e).ok()?, parse_number("seq", s).ok()?))
        })
        .collect();
    let pages_prefix = names::pages_prefix(org);
    let mut out = HashMap::new();
    for item in blobs.list(&pages_prefix).await? {
        // A page stored before the window began holds no event published in it.
        if item.last_modified.is_some_and(|m| m < window.from) {
            continue;
        }
        let Some((epoch, seq)) = item
            .name
            .strip_prefix(&pages_prefix)
            .and_then(|r| r.split_once('/'))
            .and_then(|(e, rest)| {
                let s = rest.split_once('-')?.0;
                Some((parse_number("epoch", e).ok()?, parse_number("seq", s).ok()?))
            })
        else {
            continue;
        };
        let held = if parked.contains(&(epoch, seq)) {
            Held::Parked
        } else {
            let recorded = if is_repair_epoch(epoch) {
                seq < repair_state.next_seq
            } else {
                cp.as_ref()
                    .is_some_and(|c| epoch < c.epoch || (epoch == c.epoch && seq < c.seq))
            };
            if !recorded || blobs.exists(&names::done(org, epoch, seq)).await? {
                continue;
            }
            Held::InFlight
        };
        let Some(content) = blobs.read(&item.name).await? else {
            continue; // shipped and deleted meanwhile
        };
        let mut json = Vec::new();
        if flate2::read::GzDecoder::new(&content.bytes[..])
            .read_to_end(&mut json)
            .is_err()
        {
            continue; // a corrupt page fails in the shipper and is parked; nothing to read
        }
        let Ok(events) = serde_json::from_slice::<Vec<Head>>(&json) else {
            continue;
        };
        for e in events {
            let (Some(u), Some(p)) = (e.uuid, e.published) else {
                continue;
            };
            let in_window = DateTime::parse_from_rfc3339(&p)
                .is_ok_and(|t| window.contains(t.with_timezone(&Utc)));
            if in_window {
                let entry = out.entry(u.to_ascii_lowercase()).or_insert(held);
                if held == Held::InFlight {
                    // In flight somewhere wins over parked elsewhere: it will land.
                    *entry = Held::InFlight;
                }
            }
        }
    }
    Ok(out)
}
