//! Shipping one queue message: docs/design.md §2 "Shipper, per message".
//!
//! The page state blob and its lease own the work, not the message: twins of an envelope and
//! a message held by two replicas after a visibility timeout are harmless, because the second
//! worker either finds the `done` marker or cannot take the lease. Progress (`posted_upto`,
//! an event index) is written after every accepted chunk but the last, whose acceptance the
//! `done` marker records, so a crash re-posts at most the chunk whose acceptance was not yet
//! recorded. Named failpoints mark each boundary.
//!
//! Storage requests for a page that fits one request: state create, lease, page read, done
//! check, done marker, page delete, state delete, message delete (plus the receive, shared by
//! up to 32 messages). The state is read back only when this worker did not create it.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::backoff::Backoff;
use common::envelope::{DecodeError, Envelope};
use common::failpoint;
use common::health::Health;
use common::org::names;
use common::page_state::{DoneMarker, PageState};
use common::storage::{Blobs, Queue, ReceivedMessage, StorageError};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::chunk::{self, Chunk};
use crate::config::Tuning;
use crate::keeper::{is_lease_gone, Keeper};
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

/// This shipper replica as each of its page workers sees it: the clients, the shared sink
/// state (breaker, readiness), the metrics and the settings every worker reads.
pub struct Replica {
    /// The container: page blobs, states, done markers, poison records.
    pub blobs: Blobs,
    /// The page queue.
    pub queue: Queue,
    /// Where rows go (Logs Ingestion or Data Collector API).
    pub sink: Arc<dyn Sink>,
    /// Opened by a sink-wide failure; while open, nothing is received and pages hand back.
    pub breaker: Breaker,
    /// Readiness conditions (`/readyz`): the sink and storage.
    pub health: Health,
    pub metrics: ShipperMetrics,
    pub tuning: Tuning,
    /// `SHIPPER_MAX_DEQUEUE`: page-caused failures before a page is parked.
    pub max_dequeue: u32,
    /// Cancelled when the grace period after SIGTERM is over: requests to the sink are cut
    /// and what is in flight is handed back.
    pub abort: CancellationToken,
    /// Chunks the sink accepted, all workers together: tells a chunk the sink keeps failing
    /// while it serves others from a sink that fails for everyone.
    pub sink_accepts: std::sync::atomic::AtomicU64,
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
///
/// Everything logged while the page is worked on carries one `page` span: the message id and
/// delivery count, and the page id once the envelope is decoded.
#[tracing::instrument(name = "page", skip_all, fields(message = %msg.id, deliveries = msg.dequeue_count, page = tracing::field::Empty))]
pub async fn process(ctx: &Replica, msg: ReceivedMessage) -> Disposition {
    let d = process_inner(ctx, &msg).await;
    ctx.metrics.pages.inc(d.label());
    d
}

async fn process_inner(ctx: &Replica, msg: &ReceivedMessage) -> Disposition {
    let env = match Envelope::decode(&msg.text) {
        Ok(e) => e,
        Err(DecodeError::NewerVersion(v)) => {
            tracing::warn!(
                version = v,
                "envelope from a newer collector; handing it back"
            );
            hand_back(ctx, &msg.id, &msg.pop_receipt, ctx.tuning.hand_back).await;
            return Disposition::HandedBack;
        }
        Err(DecodeError::Invalid(reason)) => return undecodable(ctx, msg, &reason).await,
    };
    let page_id = env.page_id();
    tracing::Span::current().record("page", tracing::field::display(&page_id));
    let keeper = Keeper::start(
        ctx.queue.clone(),
        ctx.blobs.clone(),
        msg.id.clone(),
        msg.pop_receipt.clone(),
        ctx.tuning.visibility,
        ctx.tuning.state_lease,
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
async fn undecodable(ctx: &Replica, msg: &ReceivedMessage, reason: &str) -> Disposition {
    tracing::warn!(message = %msg.id, deliveries = msg.dequeue_count, reason, "undecodable message");
    if msg.dequeue_count < u64::from(ctx.max_dequeue) {
        hand_back(ctx, &msg.id, &msg.pop_receipt, ctx.tuning.hand_back).await;
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
    ctx: &Replica,
    msg: &ReceivedMessage,
    env: &Envelope,
    keeper: &Keeper,
) -> Result<Disposition, Stop> {
    let blobs = &ctx.blobs;
    // The done marker is checked once, under the state lease (`ship_leased`): checking it
    // here as well would cost a request for every page to save a little work on rare twins.
    let state_name = names::state(&env.org, env.epoch, env.seq);
    let created = ensure_state(blobs, &state_name).await?;
    let sent = std::time::Instant::now();
    let acquired = match blobs
        .acquire_lease_at(&state_name, ctx.tuning.state_lease, None)
        .await
    {
        Ok(a) => a,
        Err(e) if e.is_lease_already_present() => {
            // Another replica works on this page (a twin, or this message after a visibility
            // timeout). Not a failure: look again later.
            hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.tuning.hand_back).await;
            return Ok(Disposition::HandedBack);
        }
        Err(e) => return Err(e.into()),
    };
    let lease_id = acquired.lease_id;
    keeper.set_lease(state_name.clone(), lease_id.clone(), sent);
    // The lease was taken on the very state this worker created (same ETag): its content is
    // known, reading it back would cost a request per page for nothing.
    let known = created.filter(|(_, etag)| acquired.etag.as_ref() == Some(etag));
    let result = match read_state(blobs, &state_name, known).await {
        Ok(Ok((state, etag))) => {
            let claim = Claim {
                msg,
                env,
                keeper,
                state_name: state_name.clone(),
                lease_id: lease_id.clone(),
                etag,
                state,
            };
            ship(ctx, claim).await
        }
        Ok(Err(unreadable)) => {
            // Never restart an unreadable state from zero (that would duplicate rows): park
            // the page at once, leaving the state for the operator to inspect.
            let mut st = PageState::new();
            st.failures = ctx.max_dequeue;
            match poison::park_page(blobs, env, &st, &unreadable, &msg.id).await {
                Ok(()) => {
                    delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
                    ctx.metrics.poisoned.inc();
                    Ok(Disposition::Poisoned)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    };
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

/// Creates the page state if missing (If-None-Match: *); returns the state and its ETag when
/// this call created it.
async fn ensure_state(
    blobs: &Blobs,
    name: &str,
) -> Result<Option<(PageState, String)>, StorageError> {
    // One conditional create instead of a HEAD and a create: a new page costs one request.
    let state = PageState::new();
    match blobs.create_only(name, Bytes::from(state.to_bytes())).await {
        Ok(etag) => Ok(Some((state, etag))),
        Err(e) if e.is_already_exists() || e.is_lease_lost() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A page this worker has claimed: what every step of shipping it needs, owned in one place.
/// It exists only while the state lease is held (or being regained).
struct Claim<'a> {
    /// The queue message (its id; the newest pop receipt is the keeper's).
    msg: &'a ReceivedMessage,
    /// The decoded envelope: which page, its blob and sha256.
    env: &'a Envelope,
    /// Keeps the message invisible and the lease renewed while the claim lasts.
    keeper: &'a Keeper,
    /// `state/{org}/{epoch}/{seq}.json`.
    state_name: String,
    /// The lease on the state.
    lease_id: String,
    /// ETag of the state as last read or written: the If-Match of the next write.
    etag: String,
    /// The page's progress and failure count, as last recorded (or about to be).
    state: PageState,
}

/// The page state under the lease and its ETag (`Ok(Err(reason))` when it is unreadable):
/// `known` when this worker created it and leased that very version, else read back — what
/// another replica recorded before we took the lease is final.
async fn read_state(
    blobs: &Blobs,
    state_name: &str,
    known: Option<(PageState, String)>,
) -> Result<Result<(PageState, String), String>, Stop> {
    if let Some(k) = known {
        return Ok(Ok(k));
    }
    let Some(content) = blobs.read_limited(state_name, 64 * 1024).await? else {
        return Err(Stop::Abandon("page state vanished"));
    };
    Ok(PageState::from_bytes(&content.bytes).map(|s| (s, content.etag)))
}

/// Ships a claimed page: the done check, then its chunks in order, then the clean-up.
async fn ship(ctx: &Replica, mut claim: Claim<'_>) -> Result<Disposition, Stop> {
    let blobs = &ctx.blobs;
    let (msg, env, keeper) = (claim.msg, claim.env, claim.keeper);
    let done_name = names::done(&env.org, env.epoch, env.seq);
    if let Some(marker) = blobs.read_limited(&done_name, 4096).await? {
        let other_page = match DoneMarker::from_bytes(&marker.bytes) {
            // A marker from before markers held a hash (compatibility), or this very page.
            Ok(None) => None,
            Ok(Some(m)) if m.sha256 == env.sha256 => None,
            Ok(Some(m)) => Some(format!("a page with sha256 {}", m.sha256)),
            Err(e) => Some(format!("a page ({e})")),
        };
        if let Some(shipped) = other_page {
            // Another page was shipped under this name (an epoch reused): this one was not.
            // Dropping it as a twin would lose it; park it, keep its blob.
            let reason = format!(
                "{done_name} says {shipped} was already shipped under this epoch and sequence, \
                     but this envelope's page has sha256 {}: two different pages share one name \
                     (an epoch used twice, e.g. by `collector reset`). Nothing of this page was \
                     posted and its blob is kept: re-collect its time window (`collector reset`) \
                     before purging this record",
                env.sha256
            );
            poison::park_page(blobs, env, &claim.state, &reason, &msg.id).await?;
            delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
            ctx.metrics.poisoned.inc();
            tracing::error!(page = %env.page_id(), reason, "page parked as poison");
            return Ok(Disposition::Poisoned);
        }
        // A twin of a shipped page (or a shipper died before its clean-up): remove what is
        // left — the state this twin recreated, a page blob — then the message.
        keeper.stop();
        clean_up_shipped(blobs, env, &claim.state_name).await?;
        delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
        return Ok(Disposition::Twin);
    }
    if claim.state.failures >= ctx.max_dequeue {
        // A twin of a parked page: make sure the record exists, drop the twin.
        if !blobs
            .exists(&names::poison(&env.org, env.epoch, env.seq))
            .await?
        {
            let reason = claim
                .state
                .last_error
                .clone()
                .unwrap_or_else(|| "too many failures".into());
            poison::park_page(blobs, env, &claim.state, &reason, &msg.id).await?;
        }
        delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
        return Ok(Disposition::Poisoned);
    }
    let rows = match load_rows(ctx, env, claim.state.posted_upto as usize).await {
        Ok(r) => r,
        Err(LoadError::Storage(e)) => return Err(Stop::Storage(e)),
        Err(LoadError::Page(reason)) => return claim.fault(ctx, &reason).await,
    };
    if claim.state.posted_upto == 0 && !claim.state.truncations_counted {
        // Counted once per page, not once per delivery: the flag goes out with the next
        // state write (a redelivery before any write counts again, a rare overcount).
        ctx.metrics.truncations.inc_by(rows.truncations);
        claim.state.truncations_counted = true;
    }
    ctx.metrics.unmapped_fields.inc_by(rows.unmapped_fields);
    let mut work: VecDeque<Chunk> = rows.chunks(ctx.sink.max_body_bytes()).into();
    let newest = rows.rows.iter().filter_map(|r| r.published).max();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    // Transient failures of the chunk at the head of `work`, and the replica's accepted
    // chunks when the first of them came.
    let mut chunk_failures: u32 = 0;
    let mut accepts_at_first_failure = 0;
    while let Some(c) = work.pop_front() {
        if keeper.lost.is_cancelled() {
            return Err(Stop::Abandon("page-state lease lost"));
        }
        if ctx.abort.is_cancelled() {
            return Err(Stop::Abandon("shutting down"));
        }
        if !ctx.breaker.admit() {
            // The sink is down (or another page is probing it): don't hammer it, hand back.
            hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
            return Ok(Disposition::SinkDown);
        }
        lease_for_post(ctx, &claim).await?;
        // Shutdown's grace ending cuts a request in flight (a sink may take a minute to
        // answer, longer than the margin before the platform kills the process): its outcome
        // is unknown, and the page is handed back exactly as after a kill at
        // `shipper.after_chunk_accepted` — the next holder posts that chunk again, the one
        // duplicate docs/design.md §2 allows for an answer that never arrived.
        let outcome = tokio::select! {
            o = ctx.sink.post(&c) => o,
            () = ctx.abort.cancelled() => {
                tracing::warn!(page = %env.page_id(), "shutting down with a request to the sink in flight: its outcome is unknown, the page is handed back as after a kill");
                return Err(Stop::Abandon("shutting down with a request in flight"));
            }
        };
        ctx.metrics.requests.inc(outcome_label(&outcome));
        match outcome {
            Outcome::Accepted => {
                ctx.sink_accepts.fetch_add(1, Ordering::Relaxed);
                chunk_failures = 0;
                ctx.breaker.success();
                ctx.health.set_ready(READY_SINK, true, "");
                backoff.reset();
                ctx.metrics.rows.inc_by(c.len() as u64);
                ctx.metrics.bytes_uncompressed.inc_by(c.body_len() as u64);
                if ctx.sink.payload() == Payload::OriginalEvents {
                    // The legacy API takes the body as it is (the gzip sink counts its own).
                    ctx.metrics.bytes_on_wire.inc_by(c.body_len() as u64);
                }
                failpoint::hit("shipper.after_chunk_accepted");
                if work.is_empty() {
                    // The last chunk: the done marker, written next, records it (a page that
                    // fits one request costs no progress write at all).
                    break;
                }
                claim.state.posted_upto = c.end_event as u64;
                claim.state.updated = Utc::now();
                claim.record(ctx).await?;
                failpoint::hit("shipper.after_progress");
            }
            Outcome::Transient {
                retry_after,
                reason,
            } => {
                ctx.metrics.retries.inc();
                if ctx.breaker.transient(&reason, retry_after) {
                    let storm = format!("storm of transient failures, last: {reason}");
                    tracing::error!(reason = %storm, "the sink keeps failing: pausing (breaker open)");
                    return sink_down(ctx, &claim, &storm).await;
                }
                if ctx.breaker.is_open() {
                    // Another worker found the sink down: hand back now rather than keep
                    // retrying on this page's own backoff while nothing else is received.
                    hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
                    return Ok(Disposition::SinkDown);
                }
                chunk_failures += 1;
                let accepts = ctx.sink_accepts.load(Ordering::Relaxed);
                if chunk_failures == 1 {
                    accepts_at_first_failure = accepts;
                }
                if chunk_failures >= ctx.tuning.chunk_max_transient
                    && accepts > accepts_at_first_failure
                {
                    // The sink accepted other chunks meanwhile, so it is not down: this chunk
                    // is what it keeps failing on. Retrying for ever would hold a worker slot
                    // and the message; counted as the page's fault, it ends in poison with
                    // the last error if it persists.
                    let reason = format!(
                        "the sink failed this page's chunk {chunk_failures} times in a row while accepting others; last: {reason}"
                    );
                    return claim.fault(ctx, &reason).await;
                }
                let wait = backoff.next_delay_with_hint(retry_after);
                if backoff.attempt() == 1 {
                    tracing::warn!(page = %env.page_id(), reason = %reason, "transient sink failure; retrying with backoff");
                } else {
                    tracing::debug!(reason = %reason, wait_ms = wait.as_millis() as u64, "transient sink failure; retrying");
                }
                work.push_front(c);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = ctx.abort.cancelled() => {}
                    () = keeper.lost.cancelled() => {}
                }
            }
            Outcome::SinkWide { reason } => return sink_down(ctx, &claim, &reason).await,
            Outcome::PageFault { reason } => return claim.fault(ctx, &reason).await,
            Outcome::TooLarge => {
                tracing::error!(
                    events = c.len(),
                    bytes = c.body_len(),
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
                                bytes = c.body_len(),
                                now = smaller.body_len(),
                                cuts,
                                "a single row was refused as too large (413): cutting its largest values"
                            );
                            ctx.metrics.truncations.inc_by(cuts);
                            work.push_front(smaller);
                        }
                        None => {
                            let reason = "a single row was refused as too large (413)".to_string();
                            return claim.fault(ctx, &reason).await;
                        }
                    },
                }
            }
        }
    }
    if let Some(p) = newest {
        ctx.metrics.observe_latency(p);
    }
    claim.finish(ctx).await
}

/// Writes the done marker, which also records the last chunk's acceptance (no progress write
/// precedes it): like [`Claim::record`] it does not give up while storage does not answer —
/// a page handed back now would have its last chunk posted again — except when shutdown's
/// grace is over (as after a kill). The marker is create-only: finding it already there
/// after an answer that never came means our earlier attempt landed.
async fn write_done(ctx: &Replica, name: &str, marker: Bytes) -> Result<(), Stop> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match ctx.blobs.create_only(name, marker.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_already_exists() => return Ok(()),
            Err(e) if e.is_transient() => {
                if ctx.abort.is_cancelled() {
                    tracing::warn!(error = %e, done = name, "shutting down before the done marker was written: the last chunk may be posted again");
                    return Err(Stop::Abandon("shutting down"));
                }
                tracing::debug!(error = %e, done = name, "writing the done marker failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = ctx.abort.cancelled() => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Claim<'_> {
    /// All rows posted: done marker, then delete the page and the state, then the message.
    async fn finish(self, ctx: &Replica) -> Result<Disposition, Stop> {
        let blobs = &ctx.blobs;
        let (msg, env, keeper) = (self.msg, self.env, self.keeper);
        let done = names::done(&env.org, env.epoch, env.seq);
        write_done(
            ctx,
            &done,
            Bytes::from(DoneMarker::new(&env.sha256).to_bytes()),
        )
        .await?;
        failpoint::hit("shipper.after_done");
        // Clean up before deleting the message: if this fails or the process dies, the message
        // comes back, finds the done marker, and the twin path finishes the clean-up.
        if let Err(e) = blobs.delete(&env.page_blob(), None).await {
            tracing::warn!(error = %e, blob = %env.page_blob(), "could not delete the shipped page; a redelivery retries");
            return Err(e.into());
        }
        failpoint::hit("shipper.after_page_delete");
        keeper.stop();
        if let Err(e) = blobs.delete(&self.state_name, Some(&self.lease_id)).await {
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
    async fn fault(mut self, ctx: &Replica, reason: &str) -> Result<Disposition, Stop> {
        self.state.failures += 1;
        self.state.last_error = Some(reason.chars().take(2000).collect());
        self.state.updated = Utc::now();
        self.record(ctx).await?;
        let (msg, env, keeper, state) = (self.msg, self.env, self.keeper, &self.state);
        tracing::warn!(page = %env.page_id(), failures = state.failures, max = ctx.max_dequeue, reason, "page failed");
        if state.failures >= ctx.max_dequeue {
            poison::park_page(&ctx.blobs, env, state, reason, &msg.id).await?;
            failpoint::hit("shipper.after_poison_record");
            delete_message(ctx, &msg.id, &keeper.pop_receipt()).await;
            ctx.metrics.poisoned.inc();
            tracing::error!(page = %env.page_id(), reason, "page parked as poison; inspect with `shipper poison show {}`", env.page_id());
            return Ok(Disposition::Poisoned);
        }
        let delay = ctx.tuning.hand_back * state.failures;
        hand_back(ctx, &msg.id, &keeper.pop_receipt(), delay).await;
        Ok(Disposition::Failed)
    }
}

/// Sink-wide failure: open the breaker, hand the message back for the open time.
async fn sink_down(ctx: &Replica, claim: &Claim<'_>, reason: &str) -> Result<Disposition, Stop> {
    let (msg, keeper) = (claim.msg, claim.keeper);
    if !ctx.breaker.is_open() || ctx.breaker.wait().is_none() {
        tracing::error!(reason, "the sink is failing for every page: pausing (breaker open); nothing counts toward poison");
    }
    ctx.breaker.trip(reason);
    ctx.health
        .set_ready(READY_SINK, false, format!("sink failing: {reason}"));
    hand_back(ctx, &msg.id, &keeper.pop_receipt(), ctx.breaker.open_for()).await;
    Ok(Disposition::SinkDown)
}

/// No POST starts unless the lease is known held for at least half its duration from now
/// (docs/design.md §2 step 3). The background keeper renews every third of it while the POST
/// runs; should storage stop answering meanwhile, [`Claim::record`] regains the lease before it
/// records the progress. A lease that cannot be vouched for — storage not answering the
/// keeper, or a process that was paused — is renewed here first, waiting as long as storage
/// does not answer: posting now could leave an accepted chunk that nobody can record.
async fn lease_for_post(ctx: &Replica, claim: &Claim<'_>) -> Result<(), Stop> {
    let (keeper, state_name, lease_id) = (claim.keeper, &claim.state_name, &claim.lease_id);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while keeper.lease_left() < ctx.tuning.state_lease / 2 {
        let sent = std::time::Instant::now();
        match ctx.blobs.renew_lease(state_name, lease_id).await {
            Ok(()) => keeper.lease_renewed(sent),
            Err(e) if is_lease_gone(&e) => return Err(Stop::Abandon("page-state lease lost")),
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "cannot renew the page-state lease before posting; waiting");
                if pause(ctx, keeper, backoff.next_delay()).await {
                    return Err(Stop::Abandon("page-state lease lost or shutting down"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sleeps `d`; `true` when shutdown's grace ended or the lease was lost meanwhile.
async fn pause(ctx: &Replica, keeper: &Keeper, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = ctx.abort.cancelled() => true,
        () = keeper.lost.cancelled() => true,
    }
}

impl Claim<'_> {
    /// Records the state under the lease and If-Match on the ETag we last wrote: a state that
    /// another replica deleted (page shipped) or rewrote can never be recreated or overwritten by
    /// a replica that lost it.
    ///
    /// The write runs without SDK retries; this loop decides, because giving up is not free: the
    /// progress after an accepted chunk that is never recorded makes the next holder post that
    /// chunk again. So it does not give up while the page may still be ours:
    /// - after an error whose outcome is unknown (a 5xx, a timeout, a broken connection) the
    ///   state is read back: if it holds what we wrote, an earlier attempt landed and only its
    ///   answer was lost; if it still has our last ETag, the write did not land and is tried again;
    /// - a write refused for the lease (it expired while storage did not answer) first regains
    ///   the lease: renewing an expired lease succeeds when nobody leased the blob since
    ///   (<https://learn.microsoft.com/rest/api/storageservices/lease-blob>), and then nobody can
    ///   have changed the state either.
    ///
    /// It ends on success, on an answer proving the page is someone else's now (the lease renewed
    /// by another replica, another ETag), or when shutdown's grace period is over — which leaves
    /// the page as a kill at `shipper.after_chunk_accepted` would.
    async fn record(&mut self, ctx: &Replica) -> Result<(), Stop> {
        let blobs = &ctx.blobs;
        let (keeper, name, lease_id) = (
            self.keeper,
            self.state_name.as_str(),
            self.lease_id.as_str(),
        );
        let (state, etag) = (&self.state, &mut self.etag);
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
                Err(e) if e.is_not_found() => return Err(Stop::Abandon("page state vanished")),
                Err(e) if e.is_lease_lost() => {
                    let sent = std::time::Instant::now();
                    match blobs.renew_lease(name, lease_id).await {
                        Ok(()) => {
                            tracing::info!(state = name, "the page-state lease had lapsed while storage did not answer; regained it");
                            keeper.lease_renewed(sent);
                            continue;
                        }
                        Err(r) if is_lease_gone(&r) => {
                            tracing::error!(state = name, error = %r, "the page-state lease was taken by another replica before the progress was recorded: the last accepted chunk may be posted again");
                            return Err(Stop::Abandon("page-state lease lost"));
                        }
                        Err(r) if r.is_transient() => r,
                        Err(r) => return Err(r.into()),
                    }
                }
                // A 412 right away: someone else changed the state. After an unknown outcome it may
                // be our own earlier attempt: the read-back below tells.
                Err(e) if e.is_condition_not_met() && !uncertain => {
                    return Err(Stop::Abandon("page-state lease lost"))
                }
                Err(e) if e.is_transient() || e.is_condition_not_met() => {
                    uncertain = true;
                    e
                }
                Err(e) => return Err(e.into()),
            };
            if ctx.abort.is_cancelled() {
                tracing::warn!(error = %err, state = name, "shutting down before the progress was recorded: the last accepted chunk may be posted again");
                return Err(Stop::Abandon("shutting down"));
            }
            tracing::debug!(error = %err, state = name, "recording progress failed; trying again");
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = ctx.abort.cancelled() => {}
            }
            if !uncertain {
                continue;
            }
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
}

enum LoadError {
    Storage(StorageError),
    Page(String),
}

/// Loads the page (bounded, sha256 verified) and builds the rows after `from`.
async fn load_rows(
    ctx: &Replica,
    env: &Envelope,
    from: usize,
) -> Result<rows::RowBatch, LoadError> {
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
    let columns = ctx.tuning.columns;
    let sha = env.sha256.clone();
    // Hashing, inflating and row building are CPU work: keep them off the async workers, and
    // run no more of them at once than there are CPUs (see `build_slots`).
    let _slot = build_slots().acquire().await.ok();
    let built = tokio::task::spawn_blocking(move || -> Result<rows::RowBatch, String> {
        let got = hex::encode(Sha256::digest(&content.bytes));
        if got != sha {
            return Err(format!(
                "sha256 mismatch: the page blob hashes to {got}, the envelope says {sha}"
            ));
        }
        with_inflated(&content.bytes, chunk::Integrity::VerifiedBySha256, |json| {
            if payload == Payload::OriginalEvents {
                rows::build_dc_events(json, from).map_err(|e| e.to_string())
            } else {
                rows::build_rows_for(json, from, &RowLimits::default(), columns)
                    .map_err(|e| e.to_string())
            }
        })
    })
    .await;
    match built {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(reason)) => Err(LoadError::Page(reason)),
        Err(e) => Err(LoadError::Page(format!("building rows failed: {e}"))),
    }
}

/// Pages whose rows may be built at the same time: the CPUs this process may use.
///
/// More pages are in flight than that (`SHIPPER_CONCURRENCY`, so that posting one overlaps
/// building another), but building more at once than there are CPUs only time-slices them:
/// each holds its inflated page and its rows (≈ 6 MB for 1,000 events) while it waits, in
/// memory and in the CPU's caches.
fn build_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cpus)
    })
}

/// Runs `f` on the inflated page `gz` (at most [`MAX_PAGE_JSON`] bytes, checked as `integrity`
/// says), inflated into a buffer kept for the next page ([`rows::pool`]): a page of a few MB
/// allocated fresh each time is a new `mmap` whose every memory page the kernel zeroes on first
/// touch.
fn with_inflated<T>(
    gz: &[u8],
    integrity: chunk::Integrity,
    f: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    let mut buf = rows::pool::take_as_left();
    let result = if chunk::gunzip_fast_into(gz, MAX_PAGE_JSON, &mut buf, integrity) {
        f(&buf)
    } else {
        gunzip_streaming(gz, MAX_PAGE_JSON).and_then(|json| f(&json))
    };
    rows::pool::give_back(buf);
    result
}

/// Inflates at most `limit` bytes; more is refused (a gzip bomb is the page's fault).
pub fn gunzip_bounded(gz: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    match chunk::gunzip_fast(gz, limit) {
        Some(json) => Ok(json),
        None => gunzip_streaming(gz, limit),
    }
}

/// [`gunzip_bounded`]'s careful path, for what the whole-buffer inflater could not vouch for:
/// it decides and explains (not gzip, truncated, or inflating beyond `limit`).
fn gunzip_streaming(gz: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity((gz.len() * 6).min(limit as usize));
    let mut dec = flate2::read::GzDecoder::new(gz).take(limit + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| format!("the page is not valid gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("the page inflates beyond {limit} bytes"));
    }
    Ok(out)
}

async fn hand_back(ctx: &Replica, id: &str, pop: &str, delay: Duration) {
    if pop.is_empty() {
        return; // the pop receipt was lost: the message reappears by itself
    }
    if let Err(e) = ctx.queue.update_visibility(id, pop, delay).await {
        tracing::debug!(error = %e, "could not hand the message back; it reappears after its visibility timeout");
    }
}

async fn delete_message(ctx: &Replica, id: &str, pop: &str) {
    if pop.is_empty() {
        return;
    }
    match ctx.queue.delete(id, pop).await {
        Ok(()) => {}
        // Another replica holds it now; it will find the done marker and delete it.
        Err(e) if e.is_pop_receipt_mismatch() || e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not delete the message; a redelivery will find the page done");
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
