//! `shipper run`: drain the queue with `SHIPPER_CONCURRENCY` pages in flight.
//!
//! Only as many messages are received as there are free worker slots, so no message waits
//! invisible in a local buffer while its visibility timeout runs out. An empty queue is asked
//! again after between half and all of `SHIPPER_IDLE_POLL` (jittered so replicas drift apart):
//! a caught-up collector hands off a page every poll interval at a time the shipper cannot
//! know, so a steady short wait delivers sooner *and* receives less often than an exponential
//! backoff restarted by every page (BENCHMARKS.md, "Cost model"). While the
//! breaker is open nothing is received; when its time is up a single page probes the sink.
//! SIGTERM stops receiving, lets in-flight pages finish within the grace period, then hands
//! back what is left (progress is recorded per chunk, so nothing is lost or posted twice).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::backoff::{Backoff, Jitter};
use common::health::Health;
use common::org::names;
use common::storage::{Storage, StorageAuth};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::config::ShipperConfig;
use crate::page::{self, Replica};
use crate::stats::ShipperMetrics;
use crate::wiring::Clients;

const READY_STORAGE: &str = "storage";

/// Longest wait for in-flight pages once SHUTDOWN_GRACE is over and requests to the sink are
/// cut: inside the 15 s the Bicep leaves between SHUTDOWN_GRACE and the platform's kill.
const ABORT_MARGIN: Duration = Duration::from_secs(10);

pub async fn run(cfg: ShipperConfig) -> anyhow::Result<()> {
    let cancel = common::shutdown::install();
    let metrics = ShipperMetrics::new();
    let w = Clients::new(
        &cfg,
        crate::sinks::SinkMetrics {
            statuses: Some(metrics.responses.clone()),
            wire_bytes: Some(metrics.bytes_on_wire.clone()),
        },
    )
    .await?;
    let storage = Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone())
        .context("connecting to Azure Storage")?;
    if matches!(cfg.storage.auth, StorageAuth::AccountKey { .. }) {
        storage
            .ensure_created()
            .await
            .context("creating the queue and container (local storage)")?;
    }
    crate::doctor::spawn_self_check(cfg.clone());
    let sink = w.sink.clone().context("no sink configured")?;
    let health = Health::new();
    let (listener, addr) = common::health::bind(cfg.http_addr)
        .await
        .context("HTTP_ADDR")?;
    tracing::info!(%addr, sink = sink.name(), concurrency = cfg.concurrency, "shipper starting");
    tokio::spawn(common::health::serve_listener(
        listener,
        health.clone(),
        metrics.registry.clone(),
        cancel.clone(),
    ));
    common::metrics::spawn_stats_logger(
        metrics.registry.clone(),
        cfg.tuning.stats_interval,
        cancel.clone(),
    );
    let ctx = Arc::new(Replica {
        blobs: storage.blobs.clone(),
        queue: storage.queue.clone(),
        sink,
        breaker: Breaker::new(cfg.tuning.breaker_open),
        health,
        metrics,
        tuning: cfg.tuning.clone(),
        max_dequeue: cfg.max_dequeue,
        abort: CancellationToken::new(),
        sink_accepts: std::sync::atomic::AtomicU64::default(),
    });
    receive_loop(&ctx, &storage, cfg.concurrency, &cancel).await;
    Ok(())
}

async fn receive_loop(
    ctx: &Arc<Replica>,
    storage: &Storage,
    concurrency: usize,
    cancel: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut idle = Backoff::new(ctx.tuning.idle_poll / 2, ctx.tuning.idle_poll)
        .with_jitter(Jitter::Decorrelated);
    let mut trouble = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    // `None`: not yet done. (Not `now - 1 h`: that panics on a machine up for less than an hour.)
    let mut last_depth: Option<Instant> = None;
    let mut last_poison_count: Option<Instant> = None;
    loop {
        ctx.health.beat("main_loop"); // /healthz watchdog (common::health)
        while tasks.try_join_next().is_some() {}
        ctx.metrics
            .in_flight
            .set((concurrency - slots.available_permits()) as i64);
        ctx.metrics
            .breaker_open
            .set(i64::from(ctx.breaker.is_open()));
        if last_depth.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            last_depth = Some(Instant::now());
            if let Ok(n) = storage.queue.approximate_count().await {
                ctx.metrics.queue_depth.set(n as i64);
            }
        }
        if last_poison_count.is_none_or(|t| t.elapsed() > ctx.tuning.stats_interval) {
            last_poison_count = Some(Instant::now());
            // Counted in storage, not since this process started: the alert on it lasts
            // exactly as long as records wait, on every replica, across restarts.
            if let Ok(records) = storage.blobs.list(names::POISON_PREFIX).await {
                ctx.metrics.poison_waiting.set(records.len() as i64);
            }
        }
        // Breaker open: receive nothing until its time is up, then one probe at a time.
        let mut want = slots.available_permits().min(32);
        if ctx.breaker.is_open() {
            if let Some(wait) = ctx.breaker.wait() {
                if sleep_or_cancel(wait.min(Duration::from_secs(1)), cancel).await {
                    break;
                }
                continue;
            }
            want = if tasks.is_empty() { 1 } else { 0 };
        }
        if want == 0 {
            // Wait for a slot (or a finished probe) without spinning.
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let received = tokio::select! {
            () = cancel.cancelled() => break,
            r = storage.queue.receive(want as u8, ctx.tuning.visibility) => r,
        };
        match received {
            Ok(msgs) if msgs.is_empty() => {
                ctx.health.set_ready(READY_STORAGE, true, "");
                trouble.reset();
                if sleep_or_cancel(idle.next_delay(), cancel).await {
                    break;
                }
            }
            Ok(msgs) => {
                ctx.health.set_ready(READY_STORAGE, true, "");
                trouble.reset();
                idle.reset();
                for msg in msgs {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        page::process(&ctx, msg).await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                ctx.metrics.storage_errors.inc();
                tracing::warn!(error = %e, "cannot receive from the queue; retrying");
                ctx.health
                    .set_ready(READY_STORAGE, false, format!("queue: {e}"));
                if sleep_or_cancel(trouble.next_delay(), cancel).await {
                    break;
                }
            }
        }
    }
    // Shutdown: finish in-flight pages within the grace period, then hand back the rest.
    if !tasks.is_empty() {
        tracing::info!(
            in_flight = tasks.len(),
            grace_s = ctx.tuning.grace.as_secs(),
            "stopping: finishing in-flight pages"
        );
        let deadline = tokio::time::sleep(ctx.tuning.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                () = &mut deadline => {
                    // Requests to the sink are cut now; what is left is short storage steps
                    // (a progress write, a lease release, a hand-back), bounded so that the
                    // process ends inside the platform's margin after SHUTDOWN_GRACE. A page
                    // still at work after that is safe as after a kill (docs/design.md §2).
                    ctx.abort.cancel();
                    let drained = tokio::time::timeout(ABORT_MARGIN, async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    if drained.is_err() {
                        tracing::warn!(in_flight = tasks.len(), "stopping with pages still in flight; they are picked up again as after a kill");
                        tasks.abort_all();
                    }
                    break;
                }
            }
        }
    }
    tracing::info!("shipper stopped");
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}
