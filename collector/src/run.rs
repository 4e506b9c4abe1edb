//! `collector run`: lead the org, fetch pages, hand them off, forever.
//!
//! One pass of the loop is docs/design.md §2 "Collector, per org": send a pending envelope, GET
//! the next URL, store and record a non-empty page, enqueue it, pace. Every failure ends in a
//! retry with backoff and a readiness/metric signal — never in a skipped page, never in a
//! silent stop. Shutdown (SIGTERM) abandons a fetch that was not persisted (the checkpoint did
//! not move, so nothing is lost), lets a started hand-off finish, and releases the lease.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use common::backoff::Backoff;
use common::health::Health;
use common::storage::{Blobs, Queue, Storage, StorageAuth};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

use crate::checkpoint::{self, Checkpoint, CheckpointError, Versioned};
use crate::config::CollectorConfig;
use crate::dedupe::RecentUuids;
use crate::handoff::{self, HandoffError, PageToStore};
use crate::okta::{self, OktaClient, OktaError};
use crate::pacing::{self, Pacer};
use crate::stats::CollectorMetrics;
use crate::wiring;

/// Readiness conditions of the collector.
const READY_POLL: &str = "okta_poll";
const READY_AUTH: &str = "okta_auth";
const READY_PAGE: &str = "okta_page";
const READY_STORAGE: &str = "storage";
const READY_SECRETS: &str = "secrets";

/// Capacity of the recent-uuid filter (Okta can repeat an event on a later page).
const DEDUPE_CAPACITY: usize = 10_000;

/// Everything one leader term needs.
pub struct Collector {
    pub cfg: CollectorConfig,
    pub blobs: Blobs,
    pub queue: Queue,
    pub okta: OktaClient,
    pub health: Health,
    pub metrics: CollectorMetrics,
    pub cancel: CancellationToken,
}

/// How a leader term ended.
enum TermEnd {
    Shutdown,
    LostLeadership,
}

/// Runs the collector until `shutdown` fires (the binary passes SIGTERM/SIGINT, from
/// `common::shutdown::install`; a test can pass its own token and drive the service
/// in-process, as mini-redis's `server::run` takes its shutdown future).
pub async fn run(cfg: CollectorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cancel = shutdown;
    let w = wiring::Wiring::new(&cfg).await?;
    let storage = Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone())
        .context("connecting to Azure Storage")?;
    if matches!(cfg.storage.auth, StorageAuth::AccountKey { .. }) {
        // Local and test runs only: in production the Bicep creates them and the
        // collector's role cannot.
        storage
            .ensure_created()
            .await
            .context("creating the queue and container (local storage)")?;
    }
    let metrics = CollectorMetrics::new();
    let health = Health::new();
    let listener = common::health::bind(cfg.http_addr)
        .await
        .context("HTTP_ADDR")?;
    tracing::info!(addr = %listener.1, org = %cfg.org, "collector starting");
    tokio::spawn(common::health::serve_listener(
        listener.0,
        health.clone(),
        metrics.registry.clone(),
        cancel.clone(),
    ));
    common::metrics::spawn_stats_logger(
        metrics.registry.clone(),
        cfg.stats_interval,
        cancel.clone(),
    );

    let okta = OktaClient::new(
        cfg.origin.clone(),
        w.okta_credential(&cfg)?,
        w.okta_http.clone(),
    )
    .context("building the Okta client")?;
    crate::doctor::spawn_self_check(cfg.clone(), okta.credential().clone());
    let c = Collector {
        blobs: storage.blobs.clone(),
        queue: storage.queue.clone(),
        okta,
        health,
        metrics,
        cancel: cancel.clone(),
        cfg,
    };
    c.serve().await
}

impl Collector {
    /// Alternates between waiting for leadership and leading, until shutdown.
    pub async fn serve(&self) -> anyhow::Result<()> {
        loop {
            self.health.park("main_loop"); // standby waits for the lease without bound
            self.health
                .set_ready(READY_POLL, true, "standby: waiting for the leader lease");
            // A standby is healthy, just not leading: the previous term's alarms end with it.
            self.clear_okta_alarms();
            self.metrics.leader.set(0);
            self.metrics.caught_up.set(0);
            let org = self.cfg.org.clone();
            let lead =
                crate::leader::acquire(&self.blobs, &org, self.cfg.lease, &self.cancel, || {
                    tracing::info!(org = %org, "another collector leads this org; standing by");
                })
                .await;
            let lead = match lead {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the leader lease; retrying");
                    self.health
                        .set_ready(READY_STORAGE, false, format!("storage: {e}"));
                    if self.sleep(Duration::from_secs(5), None).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            self.health.set_ready(READY_STORAGE, true, "");
            self.metrics.leader.set(1);
            tracing::info!(org = %self.cfg.org, "leading this org");
            let end = self.lead(&lead).await;
            lead.release().await;
            match end {
                Ok(TermEnd::Shutdown) => {
                    tracing::info!("collector stopped");
                    return Ok(());
                }
                Ok(TermEnd::LostLeadership) => {
                    tracing::warn!("leadership lost; standing by");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One leader term. Its span carries the org, this process and the epoch, so the log
    /// lines inside do not repeat them.
    #[tracing::instrument(
        name = "term",
        skip_all,
        fields(org = %self.cfg.org, holder = %crate::leader::holder_id(), epoch = tracing::field::Empty)
    )]
    async fn lead(&self, lead: &crate::leader::Leadership) -> anyhow::Result<TermEnd> {
        let Some(mut cp) = self.load_or_create_checkpoint(lead).await? else {
            return Ok(TermEnd::Shutdown);
        };
        tracing::Span::current().record("epoch", cp.checkpoint.epoch);
        let last_success = Arc::new(AtomicI64::new(Utc::now().timestamp()));
        // Aborted when the term ends, however it ends (an early return included).
        let _watchdog =
            AbortOnDropHandle::new(self.spawn_watchdog(last_success.clone(), lead.lost.clone()));
        let pacer = Pacer::new(self.cfg.reserve);
        // The completeness audit runs beside the loop on spare budget (`crate::audit`).
        let audit = crate::audit::AuditHook::start(self, &lead.lost);
        let mut dedupe = RecentUuids::new(DEDUPE_CAPACITY);
        dedupe.restore(&checkpoint::decode_recent(cp.checkpoint.recent.as_deref()));
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        // Whether the envelope the checkpoint records as `pending` was enqueued in this term.
        // It stays recorded after the enqueue (see `handoff`): found at start-up, it is sent
        // again.
        let mut pending_sent = false;
        let end = loop {
            self.health.beat("main_loop"); // /healthz watchdog (common::health)
            if self.cancel.is_cancelled() {
                break TermEnd::Shutdown;
            }
            if lead.lost.is_cancelled() {
                break TermEnd::LostLeadership;
            }
            // A recorded envelope not yet sent in this term (found at start-up, or its enqueue
            // failed) is sent before anything is fetched: never re-fetched, and never replaced
            // by the next page's checkpoint write unsent.
            if !pending_sent {
                match handoff::send_pending(&self.queue, &cp).await {
                    Ok(()) => {
                        pending_sent = true;
                        self.health.set_ready(READY_STORAGE, true, "");
                    }
                    Err(e) => {
                        self.storage_trouble(&e.to_string());
                        self.sleep(backoff.next_delay(), Some(&lead.lost)).await;
                        continue;
                    }
                }
            }
            let url = match Url::parse(&cp.checkpoint.next_url) {
                Ok(u) => u,
                Err(e) => anyhow::bail!(
                    "the checkpoint's next URL is invalid ({e}); run `collector reset`"
                ),
            };
            let fetched = tokio::select! {
                () = self.cancel.cancelled() => break TermEnd::Shutdown,
                () = lead.lost.cancelled() => break TermEnd::LostLeadership,
                r = self.okta.fetch(&url) => r,
            };
            match &fetched {
                Ok(page) => audit.observe(&url, page),
                Err(e) => audit.observe_error(e),
            }
            let wait = match fetched {
                Ok(page) => {
                    self.metrics.request(200);
                    if let Some(rate) = &page.rate {
                        self.metrics
                            .rate_limit_remaining
                            .set(i64::from(rate.remaining));
                        lead.note_poll("ok", Some(rate.remaining), Some(rate.limit));
                    } else {
                        lead.note_poll("ok", None, None);
                    }
                    let Some(next) = page.next.clone() else {
                        // Polling always returns a next link; without one the page cannot
                        // be placed, so it is not stored (storing it would re-fetch it later).
                        self.alarm_page("the response had no rel=\"next\" link");
                        self.sleep(backoff.next_delay(), Some(&lead.lost)).await;
                        continue;
                    };
                    // docs/design.md §3 "Caught up means quiet": fewer events than the request's
                    // `limit` means the head of the log is reached.
                    let caught_up = page.events.is_empty()
                        || page.events.len() < okta::links::requested_limit(&url);
                    let outcome = self
                        .handle_page(&cp, &url, next, &page.events, &mut dedupe)
                        .await;
                    let pace = || match (&page.rate, page.date) {
                        (Some(rate), Some(date)) => pacer.delay_after(rate, date),
                        (Some(rate), None) => pacer.delay_after(rate, Utc::now()),
                        _ => Duration::ZERO,
                    };
                    match outcome {
                        Ok(Handled::Malformed) => backoff.next_delay(),
                        Ok(Handled::Unsent(pending, reason)) => {
                            cp = pending;
                            pending_sent = false;
                            self.storage_trouble(&reason);
                            backoff.next_delay()
                        }
                        Ok(Handled::Stored(next_cp) | Handled::Empty(next_cp)) => {
                            cp = next_cp;
                            backoff.reset();
                            self.poll_succeeded(&last_success);
                            self.note_caught_up(lead, caught_up);
                            if caught_up {
                                pacing::caught_up_wait(self.cfg.poll_interval, pace())
                            } else {
                                // A full page: more is waiting, follow at the pacer's spacing.
                                pace()
                            }
                        }
                        Err(HandoffError::Checkpoint(CheckpointError::LostRace)) => {
                            break TermEnd::LostLeadership
                        }
                        Err(e) => {
                            self.storage_trouble(&e.to_string());
                            backoff.next_delay()
                        }
                    }
                }
                Err(e) => {
                    lead.note_poll(&e.to_string(), None, None);
                    self.fetch_failed(&e, &pacer, &mut backoff)
                }
            };
            // Cancelled or deposed during the wait: the top of the loop sees it.
            let _interrupted = self.sleep(wait, Some(&lead.lost)).await;
        };
        if matches!(end, TermEnd::Shutdown) && pending_sent {
            // A clean stop: the last envelope is on the queue, so the next leader need not
            // send it again. If this write fails it does, and the shippers absorb the twin.
            if let Err(e) = handoff::clear_pending(&self.blobs, &cp).await {
                tracing::warn!(error = %e, "could not clear the last page's envelope; the next leader sends it again (harmless)");
            }
        }
        drop(audit);
        Ok(end)
    }

    /// Stores a non-empty page or moves the next link of an empty one.
    /// Returns the new checkpoint and what became of the page.
    async fn handle_page(
        &self,
        cp: &Versioned,
        url: &Url,
        next: Url,
        events: &okta::Events,
        dedupe: &mut RecentUuids,
    ) -> Result<Handled, HandoffError> {
        if events.is_empty() {
            return Ok(Handled::Empty(self.move_next_link(cp, url, &next).await?));
        }
        let prepared = match okta::prepare_page(events.iter(), &self.cfg.domain, dedupe) {
            Ok(p) => p,
            Err(e) => {
                // Not stored and the checkpoint unmoved: the page is fetched again.
                self.alarm_page(&e.to_string());
                return Ok(Handled::Malformed);
            }
        };
        self.metrics
            .duplicates
            .inc_by(prepared.dropped_duplicates as u64);
        if prepared.count == 0 {
            return Ok(Handled::Stored(self.move_next_link(cp, url, &next).await?));
        }
        let stored = handoff::store_and_record(
            &self.blobs,
            &self.cfg.org,
            cp,
            PageToStore {
                json: &prepared.json,
                events: prepared.count as u64,
                newest_published: prepared.newest_published,
                next_url: next.to_string(),
                recent: checkpoint::encode_recent(&dedupe.snapshot()),
            },
        )
        .await;
        let recorded = match stored {
            Ok(r) => r,
            Err(e) => {
                // Not recorded: the page will be fetched again, so its uuids must not count
                // as already seen (they would be dropped as repeats and lost).
                dedupe.forget(prepared.kept_uuids.iter().map(|u| &**u));
                return Err(e);
            }
        };
        self.metrics.pages.inc();
        self.metrics.events.inc_by(prepared.count as u64);
        self.metrics.bytes.inc_by(prepared.json.len() as u64);
        if let Some(p) = prepared.newest_published {
            self.metrics
                .lag_seconds
                .set((Utc::now() - p).num_seconds().max(0));
        }
        match handoff::send_pending(&self.queue, &recorded).await {
            Ok(()) => Ok(Handled::Stored(recorded)),
            // The page is recorded as pending: keep that checkpoint, so only the enqueue is
            // retried, never the fetch.
            Err(e) => Ok(Handled::Unsent(recorded, e.to_string())),
        }
    }

    /// docs/design.md §2 step 4: save the response's next link even for an empty page (skipping
    /// the write when unchanged).
    async fn move_next_link(
        &self,
        cp: &Versioned,
        url: &Url,
        next: &Url,
    ) -> Result<Versioned, HandoffError> {
        if next == url || next.as_str() == cp.checkpoint.next_url {
            return Ok(cp.clone());
        }
        let mut moved = cp.checkpoint.clone();
        moved.next_url = next.to_string();
        // Only called once the recorded envelope was sent in this term: this write clears it
        // for free.
        moved.pending = None;
        moved.updated = Utc::now();
        Ok(checkpoint::replace(&self.blobs, cp, moved).await?)
    }

    /// Classifies a failed fetch, reports it, and returns how long to wait.
    fn fetch_failed(&self, e: &OktaError, pacer: &Pacer, backoff: &mut Backoff) -> Duration {
        match e {
            OktaError::RateLimited { rate, date } => {
                self.metrics.request(429);
                tracing::warn!("Okta answered 429: waiting for the rate-limit reset");
                pacer.delay_after_429(rate.as_ref(), *date)
            }
            OktaError::SecretUnavailable(m) => {
                tracing::warn!(error = %m, hint = e.operator_hint(), "cannot read the Okta credential from Key Vault; retrying");
                self.health.set_ready(
                    READY_SECRETS,
                    false,
                    format!("cannot read the Okta credential: {m}"),
                );
                self.metrics.credential_unreadable.set(1);
                backoff.next_delay()
            }
            e if e.is_auth() => {
                match e {
                    OktaError::Unauthorized { .. } => self.metrics.request(401),
                    OktaError::Forbidden { .. } => self.metrics.request(403),
                    // Nothing was sent to Okta.
                    _ => {}
                }
                let msg = format!("{e}: {}", e.operator_hint());
                tracing::error!(error = %e, hint = e.operator_hint(), "Okta refused the credential");
                self.health.set_ready(READY_AUTH, false, msg);
                self.metrics.okta_auth_failing.set(1);
                // Slow: a refused credential does not heal in seconds, and each try costs
                // rate-limit budget shared with the org's other integrations.
                backoff.next_delay().max(self.cfg.refused_retry)
            }
            OktaError::Malformed(m) => {
                self.alarm_page(m);
                backoff.next_delay()
            }
            OktaError::ForeignOrigin(u) => {
                let msg = format!("refusing a next link to another origin ({u}); the credential was not sent; run `collector reset` if the org moved");
                tracing::error!("{msg}");
                self.health.set_ready(READY_PAGE, false, msg);
                backoff
                    .next_delay()
                    .max(self.cfg.refused_retry.saturating_mul(2))
            }
            other => {
                if let OktaError::Server { status, .. } = other {
                    self.metrics.request(*status);
                } else {
                    self.metrics.request(0);
                }
                tracing::warn!(error = %other, "fetching from Okta failed; retrying");
                backoff.next_delay()
            }
        }
    }

    /// A poll whose page was handed off (or was empty): every poll-related alarm ends.
    fn poll_succeeded(&self, last_success: &AtomicI64) {
        let now = Utc::now().timestamp();
        last_success.store(now, Ordering::Relaxed);
        self.metrics.last_success.set(now);
        self.health.set_ready(READY_POLL, true, "");
        self.clear_okta_alarms();
        self.health.set_ready(READY_STORAGE, true, "");
    }

    /// Publishes whether the last page reached the head of the log (metric `caught_up`, and
    /// the heartbeat that `collector status` reads); logs the changes.
    fn note_caught_up(&self, lead: &crate::leader::Leadership, caught_up: bool) {
        let was = self.metrics.caught_up.get() == 1;
        if caught_up != was {
            if caught_up {
                tracing::info!(
                    poll_interval = ?self.cfg.poll_interval,
                    "caught up with the head of the log; polling every OKTA_POLL_INTERVAL"
                );
            } else {
                tracing::info!("a full page: following the backlog at the pacer's spacing");
            }
        }
        self.metrics.caught_up.set(i64::from(caught_up));
        lead.note_caught_up(caught_up);
    }

    /// The credential was read and accepted, and the page was good: those alarms end.
    fn clear_okta_alarms(&self) {
        self.health.set_ready(READY_AUTH, true, "");
        self.health.set_ready(READY_PAGE, true, "");
        self.health.set_ready(READY_SECRETS, true, "");
        self.metrics.credential_unreadable.set(0);
        self.metrics.okta_auth_failing.set(0);
    }

    fn alarm_page(&self, what: &str) {
        self.metrics.malformed.inc();
        tracing::error!(
            problem = what,
            "Okta returned a malformed page; it is retried, never skipped"
        );
        self.health.set_ready(
            READY_PAGE,
            false,
            format!("malformed page from Okta: {what}"),
        );
    }

    fn storage_trouble(&self, what: &str) {
        tracing::warn!(error = what, "storage operation failed; retrying");
        self.metrics.storage_errors.inc();
        self.health
            .set_ready(READY_STORAGE, false, format!("storage: {what}"));
    }

    /// Sleeps unless shutdown (or, if given, loss of leadership) comes first.
    /// Returns true when interrupted.
    async fn sleep(&self, d: Duration, lost: Option<&CancellationToken>) -> bool {
        if d.is_zero() {
            return self.cancel.is_cancelled();
        }
        let lost_fut = async {
            match lost {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.cancel.cancelled() => true,
            () = lost_fut => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    /// Not ready when the leader's last successful poll is older than `stale_after`.
    fn spawn_watchdog(
        &self,
        last: Arc<AtomicI64>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.health.clone();
        let stale = self.cfg.stale_after;
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let age = Utc::now().timestamp() - last.load(Ordering::Relaxed);
                if age as u64 > stale.as_secs() {
                    health.set_ready(
                        READY_POLL,
                        false,
                        format!("no successful poll of Okta for {age} s"),
                    );
                }
            }
        })
    }

    /// Reads the checkpoint, or creates the first one — refusing when the org already has
    /// pages or page states (a lost checkpoint is not a first run).
    async fn load_or_create_checkpoint(
        &self,
        lead: &crate::leader::Leadership,
    ) -> anyhow::Result<Option<Versioned>> {
        let _ = lead;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match self.try_load_or_create().await {
                Ok(v) => return Ok(Some(v)),
                Err(LoadError::Fatal(e)) => return Err(e),
                Err(LoadError::Retry(e)) => {
                    self.storage_trouble(&e);
                    if self.sleep(backoff.next_delay(), Some(&lead.lost)).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn try_load_or_create(&self) -> Result<Versioned, LoadError> {
        let org = &self.cfg.org;
        match checkpoint::read(&self.blobs, org).await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(CheckpointError::Corrupt { name, reason }) => {
                return Err(LoadError::Fatal(anyhow::anyhow!(
                    "checkpoint {name} is unreadable ({reason}); inspect it, or run `collector reset`"
                )))
            }
            Err(e) => return Err(LoadError::Retry(e.to_string())),
        }
        let leftovers = checkpoint::org_has_data(&self.blobs, org)
            .await
            .map_err(|e| LoadError::Retry(e.to_string()))?;
        if let Some(prefix) = leftovers {
            return Err(LoadError::Fatal(anyhow::anyhow!(
                "no checkpoint for org {org}, but {prefix} has blobs: the checkpoint was lost, this is not a first run. \
                 Choose where to resume with `collector reset --start <time>` or `--next-url <url>`"
            )));
        }
        if self.cfg.start_is_absolute {
            crate::config::validate_start(
                &self.cfg.start_value,
                Utc::now(),
                self.cfg.allow_restamp,
            )
            .map_err(|e| LoadError::Fatal(e.into()))?;
        }
        let cp = Checkpoint {
            v: checkpoint::CURRENT_VERSION,
            org: org.clone(),
            epoch: 1,
            seq: 0,
            next_url: match &self.cfg.start_url {
                Some(saved) => saved.to_string(),
                None => okta::first_url(&self.cfg.origin, self.cfg.start).to_string(),
            },
            pending: None,
            newest_published: None,
            recent: None,
            updated: Utc::now(),
        };
        match &self.cfg.start_url {
            Some(saved) => {
                tracing::info!(org = %org, next_url = %saved, "first run: resuming at the saved next link");
            }
            None => {
                tracing::info!(org = %org, start = %self.cfg.start, "first run: creating the checkpoint");
            }
        }
        match checkpoint::create(&self.blobs, cp).await {
            Ok(v) => Ok(v),
            // Created meanwhile (a reset, or a previous leader): read it on the next pass.
            Err(CheckpointError::LostRace) => {
                Err(LoadError::Retry("checkpoint appeared meanwhile".into()))
            }
            Err(e) => Err(LoadError::Retry(e.to_string())),
        }
    }
}

enum LoadError {
    Fatal(anyhow::Error),
    Retry(String),
}

/// What became of a fetched page, with the checkpoint to go on from.
enum Handled {
    /// Stored, recorded and enqueued (or every event was a repeat).
    Stored(Versioned),
    /// No events: only the next link moved.
    Empty(Versioned),
    /// Stored and recorded as pending, but the enqueue failed; the loop sends it again before
    /// fetching anything.
    Unsent(Versioned, String),
    /// Refused (an event without a `uuid`, …): not stored, fetched again after a backoff.
    Malformed,
}
