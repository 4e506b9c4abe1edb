//! Shipping one queue message: DESIGN.md §2 "Shipper, per message".
//!
//! The page state blob and its lease own the work, not the message: twins of an envelope and
//! a message held by two replicas after a visibility timeout are harmless, because the second
//! worker either finds the `done` marker or cannot take the lease. Progress (`posted_upto`,
//! an event index) is written after every accepted chunk, so a crash re-posts at most the
//! chunk whose acceptance was not yet recorded. Named failpoints mark each boundary.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::backoff::Backoff;
use common::envelope::{DecodeError, Envelope};
use common::failpoint;
use common::health::Health;
use common::org::names;
use common::page_state::PageState;
use common::storage::{Blobs, Queue, ReceivedMessage, StorageError};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::chunk::{self, Chunk};
use crate::config::Knobs;
use crate::keeper::Keeper;
use crate::poison;
use crate::rows::{self, RowLimits};
use crate::sinks::{Outcome, Payload, Sink};
use crate::stats::ShipperMetrics;

/// Largest stored page we read (a page of 1,000 events is a few hundred KB gzipped).
pub const MAX_PAGE_BLOB: u64 = 64 * 1024 * 1024;
/// Largest decompressed page we accept (gzip bombs stop here). A page of 1,000 events is
/// a few MB; the cap bounds memory at `SHIPPER_CONCURRENCY` × this.
pub const MAX_PAGE_JSON: u64 = 64 * 1024 * 1024;

/// Readiness condition of the sink.
pub const READY_SINK: &str = "sink";

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// All rows posted; done marker written; message, page and state deleted.
    Shipped,
    /// A twin of a page already shipped (or parked): message deleted.
    Twin,
    /// Given back to the queue without counting a failure (lease held elsewhere, newer
    /// envelope version, shutdown, lost lease).
    HandedBack,
    /// A page-caused failure counted; the message comes back later.
    Failed,
    /// Parked as a poison record; message deleted.
    Poisoned,
    /// The sink is down for everyone: breaker opened, message handed back.
    SinkDown,
}

impl Disposition {
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Shipped => "shipped",
            Disposition::Twin => "twin",
            Disposition::HandedBack => "handed_back",
            Disposition::Failed => "failed",
            Disposition::Poisoned => "poisoned",
            Disposition::SinkDown => "sink_down",
        }
    }
}

/// Shared by every worker of a replica.
pub struct Ctx {
    pub blobs: Blobs,
    pub queue: Queue,
    pub sink: Arc<dyn Sink>,
    pub breaker: Breaker,
    pub health: Health,
    pub metrics: ShipperMetrics,
    pub knobs: Knobs,
    pub max_dequeue: u32,
    /// Cancelled when the grace period after SIGTERM is over: hand back what is in flight.
    pub abort: CancellationToken,
}

/// A failure that stops work on the page.
enum Stop {
    /// Lost ownership or shutting down: hand back, count nothing.
    Abandon(&'static str),
    /// Storage trouble: leave the message to reappear.
    Storage(StorageError),
}

impl From<StorageError> for Stop {
    fn from(e: StorageError) -> Self {
        Stop::Storage(e)
    }
}

/// Processes one message to its end.
pub async fn process(ctx: &Ctx, msg: ReceivedMessage) -> Disposition {
    let d = process_inner(ctx, &msg).await;
    ctx.metrics.pages.inc(d.label());
    d
}

async fn process_inner(ctx: &Ctx, msg: &ReceivedMessage) -> Disposition {
    let env = match Envelope::decode(&msg.text) {
        Ok(e) => e,
        Err(DecodeError::NewerVersion(v)) => {
            tracing::warn!(
                version = v,
                "envelope from a newer collector; handing it back"
            );
            hand_back(ctx, &msg.id, &msg.pop_receipt, ctx.knobs.hand_back).await;
            return Disposition::HandedBack;
        }
        Err(DecodeError::Invalid(reason)) => return undecodable(ctx, msg, &reason).await,
    };
    let page_id = env.page_id();
    let keeper = Keeper::start(
        ctx.queue.clone(),
        ctx.blobs.clone(),
        msg.id.clone(),
        msg.pop_receipt.clone(),
        ctx.knobs.visibility,
        ctx.knobs.state_lease,
    );
    let d = match claim_and_ship(ctx, msg, &env, &keeper).await {
        Ok(d) => d,
        Err(Stop::Storage(e)) => {
            tracing::warn!(page = %page_id, error = %e, "storage trouble; the message will come back");
            ctx.metrics.storage_errors.inc();
            Disposition::HandedBack
        }
        Err(Stop::Abandon(why)) => {
            tracing::info!(page = %page_id, why, "handing the page back");
            let pop = keeper.pop_receipt();
            keeper.stop();
            hand_back(ctx, &msg.id, &pop, Duration::ZERO).await;
            Disposition::HandedBack
        }
    };
    keeper.stop();
    d
}

/// An envelope that cannot be decoded: after `max_dequeue` deliveries it is parked under
/// `poison/_undecodable/`, touching nothing else.
async fn undecodable(ctx: &Ctx, msg: &ReceivedMessage, reason: &str) -> Disposition {
    tracing::warn!(message = %msg.id, deliveries = msg.dequeue_count, reason, "undecodable message");
    if msg.dequeue_count < ctx.max_dequeue as u64 {
        hand_back(ctx, &msg.id, &msg.pop_receipt, ctx.knobs.hand_back).await;
        return Disposition::Failed;
    }
    match poison::park_undecodable(&ctx.blobs, msg, reason).await {
        Ok(()) => {
            delete_message(ctx, &msg.id, &msg.pop_receipt).await;
            ctx.metrics.poisoned.inc();
            tracing::error!(message = %msg.id, reason, "undecodable message parked as poison");
            Disposition::Poisoned
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the poison record; the message will come back");
            Disposition::Failed
        }
    }
}

async fn claim_and_ship(
    ctx: &Ctx,
    msg: &ReceivedMessage,
    env: &Envelope,
    keeper: &Keeper,
) -> Result<Disposition, Stop> {
    let blobs = &ctx.blobs;
    // The done marker is checked once, under the state lease (`ship_leased`): checking it
    // here as well would cost a request for every page to save a little work on rare twins.
    let state_name = names::state(&env.org, env.epoch, env.seq);
    ensure_state(blobs, &state_name).await?;
    let lease_id = match blobs
        .acquire_lease(&state_name, ctx.knobs.state_lease, None)
        .await
    {
        Ok(id) => id,
        Err(e) if e.is_lease_already_present() => {
            // Another replica works on this page (a twin, or this message after a visibility
            // timeout). Not a failure: look again later.
            hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.knobs.hand_back).await;
            return Ok(Disposition::HandedBack);
        }
        Err(e) => return Err(e.into()),
    };
    keeper.set_lease(state_name.clone(), lease_id.clone());
    let result = ship_leased(ctx, msg, env, keeper, &state_name, &lease_id).await;
    match result {
        Ok(Disposition::Shipped) => Ok(Disposition::Shipped),
        other => {
            keeper.stop();
            if let Err(e) = blobs.release_lease(&state_name, &lease_id).await {
                tracing::debug!(error = %e, "releasing the page-state lease failed; it lapses");
            }
            other
        }
    }
}

/// Removes what a shipped page may have left (a replica died between the done marker and its
/// clean-up). The done marker makes this safe: nothing of the page is posted again.
async fn clean_up_shipped(
    blobs: &Blobs,
    env: &Envelope,
    state_name: &str,
) -> Result<(), StorageError> {
    blobs.delete(&env.page_blob(), None).await?;
    if blobs.exists(state_name).await? {
        // A lease left by a dead replica would block the delete for up to a minute.
        let _ = blobs.break_lease(state_name).await;
        if let Err(e) = blobs.delete(state_name, None).await {
            if !e.is_not_found() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Creates the page state if missing (If-None-Match: *).
async fn ensure_state(blobs: &Blobs, name: &str) -> Result<(), StorageError> {
    // One conditional create instead of a HEAD and a create: a new page costs one request.
    match blobs
        .create_only(name, Bytes::from(PageState::new().to_bytes()))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_already_exists() || e.is_lease_lost() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn ship_leased(
    ctx: &Ctx,
    msg: &ReceivedMessage,
    env: &Envelope,
    keeper: &Keeper,
    state_name: &str,
    lease_id: &str,
) -> Result<Disposition, Stop> {
    let blobs = &ctx.blobs;
    // Read under the lease: what another replica recorded before we took it is final.
    let Some(content) = blobs.read_limited(state_name, 64 * 1024).await? else {
        return Err(Stop::Abandon("page state vanished"));
    };
    let mut etag = content.etag.clone();
    let mut state = match PageState::from_bytes(&content.bytes) {
        Ok(s) => s,
        Err(e) => {
            // Never restart an unreadable state from zero (that would duplicate rows): park
            // the page at once, leaving the state for the operator to inspect.
            let mut st = PageState::new();
            st.failures = ctx.max_dequeue;
            poison::park_page(blobs, env, &st, &e, &msg.id).await?;
            delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
            ctx.metrics.poisoned.inc();
            return Ok(Disposition::Poisoned);
        }
    };
    if blobs
        .exists(&names::done(&env.org, env.epoch, env.seq))
        .await?
    {
        // A twin of a shipped page (or a shipper died before its clean-up): remove what is
        // left — the state this twin recreated, a page blob — then the message.
        keeper.stop();
        clean_up_shipped(blobs, env, state_name).await?;
        delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
        return Ok(Disposition::Twin);
    }
    if state.failures >= ctx.max_dequeue {
        // A twin of a parked page: make sure the record exists, drop the twin.
        if !blobs
            .exists(&names::poison(&env.org, env.epoch, env.seq))
            .await?
        {
            let reason = state
                .last_error
                .clone()
                .unwrap_or_else(|| "too many failures".into());
            poison::park_page(blobs, env, &state, &reason, &msg.id).await?;
        }
        delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
        return Ok(Disposition::Poisoned);
    }
    let rows = match load_rows(ctx, env, state.posted_upto as usize).await {
        Ok(r) => r,
        Err(LoadError::Storage(e)) => return Err(Stop::Storage(e)),
        Err(LoadError::Page(reason)) => {
            return page_fault(
                ctx, msg, env, keeper, state_name, lease_id, &mut etag, state, &reason,
            )
            .await
        }
    };
    ctx.metrics.truncations.inc_by(rows.truncations);
    ctx.metrics.unmapped_fields.inc_by(rows.unmapped_fields);
    let mut work: VecDeque<Chunk> = chunk::chunks(&rows.rows, ctx.sink.max_body_bytes()).into();
    let newest = rows.rows.iter().filter_map(|r| r.published).max();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    while let Some(c) = work.pop_front() {
        if keeper.lost.is_cancelled() {
            return Err(Stop::Abandon("page-state lease lost"));
        }
        if ctx.abort.is_cancelled() {
            return Err(Stop::Abandon("shutting down"));
        }
        if ctx.breaker.is_open() && ctx.breaker.wait().is_some() {
            // Another worker found the sink down: don't hammer it, hand back.
            hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
            return Ok(Disposition::SinkDown);
        }
        // Prove ownership before posting when the lease was not seen held recently: after a
        // pause (a stopped or starved process) the background keeper may not have noticed
        // yet that the lease lapsed and another replica took the page. The monotonic clock
        // counts the pause, so a fresh renewal is skipped only when it really is fresh.
        if keeper.lease_age() > ctx.knobs.state_lease / 2 {
            match blobs.renew_lease(state_name, lease_id).await {
                Ok(()) => keeper.lease_renewed(),
                Err(e) if e.is_lease_lost() || e.is_not_found() || e.status() == Some(409) => {
                    return Err(Stop::Abandon("page-state lease lost"))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let outcome = ctx.sink.post(&c).await;
        ctx.metrics.requests.inc(outcome_label(&outcome));
        match outcome {
            Outcome::Accepted => {
                ctx.breaker.success();
                ctx.health.set_ready(READY_SINK, true, "");
                backoff.reset();
                ctx.metrics.rows.inc_by(c.len() as u64);
                ctx.metrics.bytes_uncompressed.inc_by(c.body.len() as u64);
                if ctx.sink.payload() == Payload::OriginalEvents {
                    // The legacy API takes the body as it is (the gzip sink counts its own).
                    ctx.metrics.bytes_on_wire.inc_by(c.body.len() as u64);
                }
                failpoint::hit("shipper.after_chunk_accepted");
                state.posted_upto = c.end_event as u64;
                state.updated = Utc::now();
                write_state(
                    blobs,
                    state_name,
                    &state,
                    lease_id,
                    &mut etag,
                    ctx.knobs.state_lease * 2,
                )
                .await?;
                failpoint::hit("shipper.after_progress");
            }
            Outcome::Transient {
                retry_after,
                reason,
            } => {
                ctx.metrics.retries.inc();
                if ctx.breaker.transient(&reason) {
                    let storm = format!("storm of transient failures, last: {reason}");
                    tracing::error!(reason = %storm, "the sink keeps failing: pausing (breaker open)");
                    return sink_down(ctx, msg, keeper, &storm).await;
                }
                if ctx.breaker.is_open() {
                    // Another worker found the sink down: hand back now rather than keep
                    // retrying on this page's own backoff while nothing else is received.
                    hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
                    return Ok(Disposition::SinkDown);
                }
                let wait = backoff.next_delay_with_hint(retry_after);
                if backoff.attempt() == 1 {
                    tracing::warn!(page = %env.page_id(), reason = %reason, "transient sink failure; retrying with backoff");
                } else {
                    tracing::debug!(reason = %reason, wait_ms = wait.as_millis() as u64, "transient sink failure; retrying");
                }
                work.push_front(c);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.abort.cancelled() => {}
                    _ = keeper.lost.cancelled() => {}
                }
            }
            Outcome::SinkWide { reason } => return sink_down(ctx, msg, keeper, &reason).await,
            Outcome::PageFault { reason } => {
                return page_fault(
                    ctx, msg, env, keeper, state_name, lease_id, &mut etag, state, &reason,
                )
                .await
            }
            Outcome::TooLarge => {
                tracing::error!(
                    events = c.len(),
                    bytes = c.body.len(),
                    "the sink refused a chunk as too large (413): a packing bug; splitting it"
                );
                match chunk::split(&c) {
                    Some((a, b)) => {
                        work.push_front(b);
                        work.push_front(a);
                    }
                    // One row above the service's real limit: cut it like any over-long
                    // value (docs/design.md §4) and post it again; a page fault only when
                    // nothing is left to cut.
                    None => match chunk::shrink_single(&c) {
                        Some((smaller, cuts)) => {
                            tracing::warn!(
                                event = c.first_event,
                                bytes = c.body.len(),
                                now = smaller.body.len(),
                                cuts,
                                "a single row was refused as too large (413): cutting its largest values"
                            );
                            ctx.metrics.truncations.inc_by(cuts);
                            work.push_front(smaller);
                        }
                        None => {
                            let reason = "a single row was refused as too large (413)".to_string();
                            return page_fault(
                                ctx, msg, env, keeper, state_name, lease_id, &mut etag, state,
                                &reason,
                            )
                            .await;
                        }
                    },
                }
            }
        }
    }
    if let Some(p) = newest {
        ctx.metrics.observe_latency(p);
    }
    finish(ctx, msg, env, keeper, state_name, lease_id).await
}

/// All rows posted: done marker, then delete the page and the state, then the message.
async fn finish(
    ctx: &Ctx,
    msg: &ReceivedMessage,
    env: &Envelope,
    keeper: &Keeper,
    state_name: &str,
    lease_id: &str,
) -> Result<Disposition, Stop> {
    let blobs = &ctx.blobs;
    let done = names::done(&env.org, env.epoch, env.seq);
    match blobs.create_only(&done, Bytes::new()).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    failpoint::hit("shipper.after_done");
    // Clean up before deleting the message: if this fails or the process dies, the message
    // comes back, finds the done marker, and the twin path finishes the clean-up.
    if let Err(e) = blobs.delete(&env.page_blob(), None).await {
        tracing::warn!(error = %e, blob = %env.page_blob(), "could not delete the shipped page; a redelivery retries");
        return Err(e.into());
    }
    failpoint::hit("shipper.after_page_delete");
    keeper.stop();
    if let Err(e) = blobs.delete(state_name, Some(lease_id)).await {
        tracing::warn!(error = %e, "could not delete the page state; a redelivery retries");
        return Err(e.into());
    }
    failpoint::hit("shipper.after_state_delete");
    delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
    failpoint::hit("shipper.after_delete");
    tracing::debug!(page = %env.page_id(), events = env.events, "page shipped");
    Ok(Disposition::Shipped)
}

/// Counts a page-caused failure; parks the page after `max_dequeue` of them.
#[allow(clippy::too_many_arguments)]
async fn page_fault(
    ctx: &Ctx,
    msg: &ReceivedMessage,
    env: &Envelope,
    keeper: &Keeper,
    state_name: &str,
    lease_id: &str,
    etag: &mut String,
    mut state: PageState,
    reason: &str,
) -> Result<Disposition, Stop> {
    state.failures += 1;
    state.last_error = Some(reason.chars().take(2000).collect());
    state.updated = Utc::now();
    write_state(
        &ctx.blobs,
        state_name,
        &state,
        lease_id,
        etag,
        ctx.knobs.state_lease * 2,
    )
    .await?;
    tracing::warn!(page = %env.page_id(), failures = state.failures, max = ctx.max_dequeue, reason, "page failed");
    if state.failures >= ctx.max_dequeue {
        poison::park_page(&ctx.blobs, env, &state, reason, &msg.id).await?;
        failpoint::hit("shipper.after_poison_record");
        delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
        ctx.metrics.poisoned.inc();
        tracing::error!(page = %env.page_id(), reason, "page parked as poison; inspect with `shipper poison show {}`", env.page_id());
        return Ok(Disposition::Poisoned);
    }
    let delay = ctx.knobs.hand_back * state.failures;
    hand_back(ctx, &msg.id, &keeper.pop_receipt(), delay).await;
    Ok(Disposition::Failed)
}

/// Sink-wide failure: open the breaker, hand the message back for the open time.
async fn sink_down(
    ctx: &Ctx,
    msg: &ReceivedMessage,
    keeper: &Keeper,
    reason: &str,
) -> Result<Disposition, Stop> {
    if !ctx.breaker.is_open() || ctx.breaker.wait().is_none() {
        tracing::error!(reason, "the sink is failing for every page: pausing (breaker open); nothing counts toward poison");
    }
    ctx.breaker.trip(reason);
    ctx.health
        .set_ready(READY_SINK, false, format!("sink failing: {reason}"));
    hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
    Ok(Disposition::SinkDown)
}

/// Records the state under the lease and If-Match on the ETag we last wrote: a state that
/// another replica deleted (page shipped) or rewrote can never be recreated or overwritten by
/// a replica that lost it.
///
/// The write runs without SDK retries; this loop decides, because giving up is not free: the
/// progress after an accepted chunk that is never recorded makes the next holder post that
/// chunk again. After an error whose outcome is unknown (a 5xx, a timeout, a broken
/// connection) the state is read back: if it holds what we wrote, an earlier attempt landed and
/// only its answer was lost; if it still has our last ETag, the write did not land and is tried
/// again. Anything else, or a lease that is gone, means the page is no longer ours. While the
/// lease is ours nobody else can write the state, so the loop only ends on success, on a lost
/// lease (the keeper stops renewing when storage stays down), or after `patience`.
async fn write_state(
    blobs: &Blobs,
    name: &str,
    state: &PageState,
    lease_id: &str,
    etag: &mut String,
    patience: Duration,
) -> Result<(), Stop> {
    let give_up = tokio::time::Instant::now() + patience;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut uncertain = false;
    loop {
        let err = match blobs
            .write_if_match(name, Bytes::from(state.to_bytes()), etag, Some(lease_id))
            .await
        {
            Ok(new) => {
                *etag = new;
                return Ok(());
            }
            Err(e) if e.is_lease_lost() || e.is_not_found() => {
                return Err(Stop::Abandon("page-state lease lost"))
            }
            // A 412 right away: someone else changed the state. After an unknown outcome it may
            // be our own earlier attempt: the read-back below tells.
            Err(e) if e.is_condition_not_met() && !uncertain => {
                return Err(Stop::Abandon("page-state lease lost"))
            }
            Err(e) if e.is_transient() || e.is_condition_not_met() => e,
            Err(e) => return Err(e.into()),
        };
        uncertain = true;
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!(error = %err, state = name, "cannot record progress: giving the page back");
            return Err(Stop::Abandon("cannot record progress"));
        }
        tracing::debug!(error = %err, state = name, "recording progress failed; reading it back");
        tokio::time::sleep(backoff.next_delay()).await;
        match blobs.read_limited(name, 64 * 1024).await {
            Ok(Some(found)) => {
                if PageState::from_bytes(&found.bytes).is_ok_and(|s| s == *state) {
                    *etag = found.etag;
                    return Ok(());
                }
                if found.etag != *etag {
                    return Err(Stop::Abandon("page-state lease lost"));
                }
            }
            Ok(None) => return Err(Stop::Abandon("page state vanished")),
            // Still down: the next write attempt waits and reads back again.
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e.into()),
        }
    }
}

enum LoadError {
    Storage(StorageError),
    Page(String),
}

/// Loads the page (bounded, sha256 verified) and builds the rows after `from`.
async fn load_rows(ctx: &Ctx, env: &Envelope, from: usize) -> Result<rows::RowBatch, LoadError> {
    let blob = env.page_blob();
    let content = match ctx.blobs.read_limited(&blob, MAX_PAGE_BLOB).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(LoadError::Page(format!("page blob {blob} is missing"))),
        Err(e) if matches!(e, StorageError::Decode(_)) => {
            return Err(LoadError::Page(format!(
                "page blob {blob} is too large: {e}"
            )))
        }
        Err(e) => return Err(LoadError::Storage(e)),
    };
    let payload = ctx.sink.payload();
    let columns = ctx.knobs.columns;
    let sha = env.sha256.clone();
    // Hashing, inflating and row building are CPU work: keep them off the async workers.
    let built = tokio::task::spawn_blocking(move || -> Result<rows::RowBatch, String> {
        let got = hex::encode(Sha256::digest(&content.bytes));
        if got != sha {
            return Err(format!(
                "sha256 mismatch: the page blob hashes to {got}, the envelope says {sha}"
            ));
        }
        let json = gunzip_bounded(&content.bytes, MAX_PAGE_JSON)?;
        if payload == Payload::OriginalEvents {
            rows::build_dc_events(&json, from).map_err(|e| e.to_string())
        } else {
            rows::build_rows_for(&json, from, &RowLimits::default(), columns)
                .map_err(|e| e.to_string())
        }
    })
    .await;
    match built {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(reason)) => Err(LoadError::Page(reason)),
        Err(e) => Err(LoadError::Page(format!("building rows failed: {e}"))),
    }
}

/// Inflates at most `limit` bytes; more is refused (a gzip bomb is the page's fault).
pub fn gunzip_bounded(gz: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    if let Some(json) = chunk::gunzip_fast(gz, limit) {
        return Ok(json);
    }
    let mut out = Vec::with_capacity((gz.len() * 6).min(limit as usize));
    let mut dec = flate2::read::GzDecoder::new(gz).take(limit + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| format!("the page is not valid gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("the page inflates beyond {limit} bytes"));
    }
    Ok(out)
}

async fn hand_back(ctx: &Ctx, id: &str, pop: &str, delay: Duration) {
    if pop.is_empty() {
        return; // the pop receipt was lost: the message reappears by itself
    }
    if let Err(e) = ctx.queue.update_visibility(id, pop, delay).await {
        tracing::debug!(error = %e, "could not hand the message back; it reappears after its visibility timeout");
    }
}

async fn delete_message(ctx: &Ctx, id: &str, pop: &str) {
    if pop.is_empty() {
        return;
    }
    match ctx.queue.delete(id, pop).await {
        Ok(()) => {}
        // Another replica holds it now; it will find the done marker and delete it.
        Err(e) if e.is_pop_receipt_mismatch() || e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not delete the message; a redelivery will find the page done")
        }
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Transient { .. } => "transient",
        Outcome::SinkWide { .. } => "sink_wide",
        Outcome::PageFault { .. } => "page_fault",
        Outcome::TooLarge => "too_large",
    }
}
