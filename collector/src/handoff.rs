//! Handing a fetched page to the shippers (docs/design.md §2 collector steps 5–7).
//!
//! Order matters, and each boundary is a named failpoint so the crash suite can kill the
//! process exactly there:
//!
//! 1. write the page blob create-only under a content-addressed name
//!    (`collector.after_page_blob`): a kill here leaves an orphan that is never enqueued;
//!    the page is fetched again as a new page;
//! 2. move the checkpoint (If-Match) with the envelope as `pending`
//!    (`collector.after_checkpoint`): from here on the page is never fetched again;
//! 3. enqueue the envelope, `messagettl=-1` (`collector.after_enqueue`): a kill here re-sends
//!    the *same* envelope at start-up, a twin the shippers absorb.
//!
//! Three storage requests per page. The envelope stays recorded as `pending` after it was
//! sent: the next checkpoint write (the next page's step 2, or a moved next link) replaces it,
//! and a clean stop clears it ([`clear_pending`], `collector.after_clear_pending`). Clearing it
//! after every enqueue would cost a fourth write per page, and buys only this: after a *kill*,
//! the last page's envelope is sent again at start-up — a twin, which the shippers absorb
//! exactly like the twin of a kill after step 3. The run loop never fetches while a recorded
//! envelope is unsent in its term, so step 2 never replaces an envelope that was not sent.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::envelope::{self, Envelope};
use common::failpoint;
use common::org::{names, OrgKey};
use common::storage::{Blobs, Queue, StorageError};
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, CheckpointError, Versioned};

/// A page ready to be stored: a JSON array of events, each with `domain` added.
pub struct PageToStore<'a> {
    pub json: &'a [u8],
    pub events: u64,
    pub newest_published: Option<DateTime<Utc>>,
    /// Okta's `next` link that follows this page.
    pub next_url: String,
    /// The uuid window after this page ([`crate::checkpoint::encode_recent`]).
    pub recent: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("storing the page failed: {0}")]
    Storage(#[from] StorageError),
    #[error("compressing the page failed: {0}")]
    Compress(#[from] common::gzip::GzipError),
}

/// Gzips the page (igzip's fastest level, [`common::gzip`]); returns the bytes and their hex
/// sha256.
///
/// # Errors
/// Only if igzip refuses the page ([`common::gzip::gzip`]).
pub fn compress(json: &[u8]) -> Result<(Vec<u8>, String), common::gzip::GzipError> {
    let gz = common::gzip::gzip(json, common::gzip::Level::Fast)?;
    let sha = hex::encode(Sha256::digest(&gz));
    Ok((gz, sha))
}

/// Steps 1–2: stores the page and records it in the checkpoint as pending.
pub async fn store_and_record(
    blobs: &Blobs,
    org: &OrgKey,
    current: &Versioned,
    page: PageToStore<'_>,
) -> Result<Versioned, HandoffError> {
    let cp = &current.checkpoint;
    let (gz, sha) = compress(page.json)?;
    let name = names::page(org, cp.epoch, cp.seq, &sha);
    let size = gz.len() as u64;
    match blobs.create_only(&name, Bytes::from(gz)).await {
        Ok(_) => {}
        // Same name means same bytes (content-addressed): an earlier attempt stored it.
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    failpoint::hit("collector.after_page_blob");

    let env = Envelope {
        v: envelope::CURRENT_VERSION,
        org: org.clone(),
        epoch: cp.epoch,
        seq: cp.seq,
        sha256: sha,
        events: page.events,
        bytes: size,
        newest_published: page.newest_published,
        created: Utc::now(),
    };
    let mut next = cp.clone();
    next.seq += 1;
    next.next_url = page.next_url;
    next.pending = Some(env);
    next.recent = Some(page.recent);
    next.newest_published = match (cp.newest_published, page.newest_published) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    next.updated = Utc::now();
    let written = checkpoint::replace(blobs, current, next).await?;
    failpoint::hit("collector.after_checkpoint");
    Ok(written)
}

/// Step 3: enqueues the recorded envelope, if any. The checkpoint still records it: after a
/// kill it is sent again, a twin.
pub async fn send_pending(queue: &Queue, current: &Versioned) -> Result<(), HandoffError> {
    let Some(env) = &current.checkpoint.pending else {
        return Ok(());
    };
    queue.send(&env.encode(), None).await?;
    tracing::debug!(page = %env.page_id(), events = env.events, "page enqueued");
    failpoint::hit("collector.after_enqueue");
    Ok(())
}

/// Clears a recorded envelope that was sent (a clean stop, or `collector reset`), so the next
/// leader does not send it again.
pub async fn clear_pending(blobs: &Blobs, current: &Versioned) -> Result<Versioned, HandoffError> {
    if current.checkpoint.pending.is_none() {
        return Ok(current.clone());
    }
    let mut next = current.checkpoint.clone();
    next.pending = None;
    next.updated = Utc::now();
    let written = checkpoint::replace(blobs, current, next).await?;
    failpoint::hit("collector.after_clear_pending");
    Ok(written)
}

/// Enqueues the recorded envelope (if any) and clears it from the checkpoint.
/// `current` is borrowed: after a failure the caller keeps it (the page stays pending).
pub async fn flush_pending(
    blobs: &Blobs,
    queue: &Queue,
    current: &Versioned,
) -> Result<Versioned, HandoffError> {
    send_pending(queue, current).await?;
    clear_pending(blobs, current).await
}
