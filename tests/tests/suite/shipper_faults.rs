//! The shipper's fault matrix (issue #6): the real collector and shipper against the fake Okta
//! org, Azurite and a fake Log Analytics that fails on purpose. Each cell asserts no loss, the
//! right retry / breaker / poison outcome, and what an operator sees (`/readyz`, metrics).
//!
//! | fault | expected |
//! |---|---|
//! | 10 % 429/500/503 | retried; nothing lost, nothing twice |
//! | 403 / 401 for a while | breaker open, not ready (reason names the fix), no poison, resumes by itself |
//! | accepted, then the answer lost | re-posted: duplicates == exactly the dropped request's rows |
//! | sink unreachable | breaker, no poison, resumes |
//! | 429 storm longer than its `Retry-After` | breaker opens; one probe per `Retry-After`, no burst |
//! | token revoked (401) | one new token at once, rows land; not at the token's expiry |
//! | 413 | chunk split and shipped |
//! | 413 on a single row (service limit below ours) | the row is cut, lands; page not parked |
//! | identity endpoint down at start-up | retried until it answers, then ships |
//! | progress write lost (never arrived / answer lost) | read back and retried: nothing twice |
//!
//! Assertions are on counts and states, never on durations.

use world::support;

use std::time::Duration;

use common::storage::Storage;
use support::blobs::read_page_state;
use support::logs::wait_operator_line;
use support::pages::{envelope, gzip, uuid_of, ORG};
use support::worlds::{la_status, okta, strict_la};
use support::{health_addr_within, metric, wait_not_ready, wait_ready};
use world::fakes::log_analytics::LaFault;
use world::local::{Delivery, LocalWorld, WorldOptions};
use world::procs::eventually;
use world::storage_proxy::{CountingProxy, FaultMode, FaultRule};

const LANDING: Duration = Duration::from_secs(120);

/// Bound of the wait for an operator's log line (it is written before the wait starts).
const LOG_LINE: Duration = Duration::from_secs(10);

/// Bound of the wait for a service's health address in its log.
const ADDR: Duration = Duration::from_secs(30);

async fn world(seed: u64, events: usize) -> anyhow::Result<LocalWorld> {
    LocalWorld::start(WorldOptions {
        okta: okta(seed, events),
        ..WorldOptions::default()
    })
    .await
}

async fn poison_records(storage: &Storage) -> Vec<String> {
    support::blob_names(storage, "poison/").await
}

/// Page states present now, with their failure counts.
async fn state_failures(storage: &Storage) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for name in support::blob_names(storage, "state/").await {
        if let Some(st) = read_page_state(storage, &name).await? {
            out.push((name, st.failures));
        }
    }
    Ok(out)
}

fn assert_no_duplicates(world: &LocalWorld, d: &Delivery) {
    assert_eq!(d.duplicates, 0, "{d:?}");
    assert_eq!(world.la.stats().duplicate_rows, 0, "{:?}", world.la.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_throttling_and_server_errors_lose_nothing_and_duplicate_nothing(
) -> anyhow::Result<()> {
    let world = world(61, 3_000).await?;
    world.la.set_fault_rate(0.1, vec![429, 500, 503], 61);
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.released, 3_000);
    assert_no_duplicates(&world, &d);
    let injected: u64 = [429, 500, 503].iter().map(|s| la_status(&world, *s)).sum();
    assert!(
        injected > 0,
        "no fault was injected: {:?}",
        world.la.stats()
    );
    // What an operator sees: the retry, with the service's answer.
    wait_operator_line(
        &shipper,
        &["transient sink failure", "Logs Ingestion answered"],
        LOG_LINE,
    )
    .await?;
    let addr = health_addr_within(&shipper, ADDR).await?;
    assert!(
        metric(&addr, "okta_sentinel_retries_total")
            .await
            .unwrap_or(0.0)
            >= injected as f64
    );
    // Requests by status, as the service answered them.
    for status in [204, 429, 500, 503] {
        let label = format!("status=\"{status}\"");
        let counted = support::metric_sum(&addr, "okta_sentinel_sink_responses_total", &[&label])
            .await
            .unwrap_or(0.0);
        assert_eq!(counted, la_status(&world, status) as f64, "{status}");
    }
    assert!(poison_records(&support::storage(&world)).await.is_empty());
    Ok(())
}

/// The sink refuses every request with `status` for `duration` (credentials, RBAC still
/// propagating): the breaker opens, readiness drops naming `hint`, nothing is poisoned and
/// shipping resumes by itself.
async fn auth_outage(status: u16, hint: &str, seed: u64) -> anyhow::Result<()> {
    let world = world(seed, 1_500).await?;
    let storage = support::storage(&world);
    world.la.inject(LaFault::StatusFor {
        status,
        duration: Duration::from_secs(20),
    });
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    let addr = health_addr_within(&shipper, ADDR).await?;

    // While it lasts: not ready, with the reason; the breaker is open.
    let body = wait_not_ready(&addr, &["\"sink\""], Duration::from_secs(60)).await?;
    assert!(
        body.contains(hint),
        "/readyz does not say what to fix: {body}"
    );
    eventually(Duration::from_secs(30), "the breaker gauge", || async {
        (metric(&addr, "okta_sentinel_breaker_open").await == Some(1.0)).then_some(())
    })
    .await?;
    // Several probes failed by now, more than SHIPPER_MAX_DEQUEUE: none counted toward poison.
    eventually(Duration::from_secs(60), "repeated probes", || async {
        (la_status(&world, status) > 3).then_some(())
    })
    .await?;
    assert!(
        poison_records(&storage).await.is_empty(),
        "a sink-wide failure poisoned a page"
    );
    for (name, failures) in state_failures(&storage).await? {
        assert_eq!(
            failures, 0,
            "{name}: a sink-wide failure was counted against the page"
        );
    }
    assert_eq!(world.la.stats().accepted_rows, 0);

    // It clears by itself: everything lands once, readiness and the breaker recover.
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    assert!(poison_records(&storage).await.is_empty());
    wait_ready(&addr, Duration::from_secs(30)).await?;
    assert_eq!(metric(&addr, "okta_sentinel_breaker_open").await, Some(0.0));
    assert!(
        shipper.log_text().contains("breaker open"),
        "no log line for the operator"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_opens_the_breaker_poisons_nothing_and_resumes() -> anyhow::Result<()> {
    auth_outage(403, "Monitoring Metrics Publisher", 62).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_opens_the_breaker_poisons_nothing_and_resumes() -> anyhow::Result<()> {
    auth_outage(401, "401", 63).await
}

/// A throttling storm that outlasts its own `Retry-After` (issue #11 item 3): once the breaker
/// has opened, the shipper probes with one POST per `Retry-After` — it does not send a burst
/// each time the breaker half-opens. Counted by the fake: every POST during the storm was
/// answered 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_is_probed_once_per_retry_after() -> anyhow::Result<()> {
    /// Consecutive transient failures that open the breaker (`shipper::breaker::STORM_THRESHOLD`).
    const STORM_THRESHOLD: u64 = 12;
    /// The shipper's default `SHIPPER_CONCURRENCY`: pages whose retries were under way.
    const CONCURRENCY: u64 = 4;
    const STORM_SECS: u64 = 40;
    const RETRY_AFTER_SECS: u64 = 4;
    let world = world(68, 6_000).await?;
    let storage = support::storage(&world);
    let _collector = world.start_collector("collector", &[])?;
    // The breaker's own open time (2 s in tests) is shorter than Retry-After: the header rules.
    world.la.inject(LaFault::StormFor {
        status: 429,
        duration: Duration::from_secs(STORM_SECS),
        retry_after_secs: RETRY_AFTER_SECS,
    });
    let shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    assert!(poison_records(&storage).await.is_empty());
    wait_operator_line(&shipper, &["breaker open"], LOG_LINE).await?;
    // Until the storm opens the breaker, each page in flight retries on its own after
    // Retry-After; from then on one probe per Retry-After. A burst per half-opening (the
    // old behaviour) sends up to STORM_THRESHOLD POSTs each time.
    let throttled = la_status(&world, 429);
    println!("POSTs during the storm: {throttled}");
    let bound = STORM_THRESHOLD + CONCURRENCY + STORM_SECS.div_ceil(RETRY_AFTER_SECS) + 2;
    assert!(
        throttled > STORM_THRESHOLD,
        "the storm never opened the breaker: {throttled} POSTs throttled"
    );
    assert!(
        throttled <= bound,
        "{throttled} POSTs during a {STORM_SECS} s storm with Retry-After {RETRY_AFTER_SECS} s (at most {bound} expected): {:?}",
        world.la.stats()
    );
    Ok(())
}

/// The Logs Ingestion API refuses the token the shipper holds (401: revoked), while the
/// identity endpoint would issue a good one (issue #11 item 9). The shipper fetches a new token
/// at once — one, for all its pages — and the rows land; it does not wait for the refused
/// token to expire (an hour here) with the sink down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_at_once_not_at_expiry() -> anyhow::Result<()> {
    const MONITOR: &str = "https://monitor.azure.com";
    let world = world(69, 1_500).await?;
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    let issued = world.identity.tokens_issued_for(MONITOR);
    assert!(issued >= 1);
    world
        .la
        .revoke_tokens(world.identity.token_ids_issued_for(MONITOR));
    world.okta.release(800);
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.released, 2_300);
    assert_no_duplicates(&world, &d);
    assert!(la_status(&world, 401) >= 1, "{:?}", world.la.stats());
    assert_eq!(
        world.identity.tokens_issued_for(MONITOR),
        issued + 1,
        "one new token for every page"
    );
    wait_operator_line(
        &shipper,
        &["refused the token (401)", "new token"],
        LOG_LINE,
    )
    .await?;
    assert!(poison_records(&support::storage(&world)).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_then_answer_lost_duplicates_exactly_that_request() -> anyhow::Result<()> {
    let world = world(64, 2_000).await?;
    world.la.inject(LaFault::AcceptThenDrop { count: 1 });
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    wait_operator_line(
        &shipper,
        &["transient sink failure", "connection lost"],
        LOG_LINE,
    )
    .await?;
    let s = world.la.stats();
    assert_eq!(s.accepted_then_dropped_requests, 1, "{s:?}");
    assert!(s.accepted_then_dropped_rows > 0);
    assert_eq!(
        d.duplicates as u64, s.accepted_then_dropped_rows,
        "{d:?} {s:?}"
    );
    assert_eq!(s.duplicate_rows, s.accepted_then_dropped_rows, "{s:?}");
    assert!(poison_records(&support::storage(&world)).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_unreachable_opens_the_breaker_and_resumes() -> anyhow::Result<()> {
    let world = world(65, 1_200).await?;
    let storage = support::storage(&world);
    world.la.inject(LaFault::Down {
        duration: Duration::from_secs(10),
    });
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    let addr = health_addr_within(&shipper, ADDR).await?;
    let body = wait_not_ready(&addr, &["\"sink\""], Duration::from_secs(60)).await?;
    assert!(body.contains("cannot connect"), "{body}");
    wait_operator_line(&shipper, &["breaker open", "cannot connect"], LOG_LINE).await?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    assert!(poison_records(&storage).await.is_empty());

    // Again mid-run, with new events arriving.
    world.la.inject(LaFault::Down {
        duration: Duration::from_secs(6),
    });
    world.okta.release(800);
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.released, 2_000);
    assert_no_duplicates(&world, &d);
    assert!(poison_records(&storage).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_the_chunk_and_ships_it() -> anyhow::Result<()> {
    let world = world(66, 1_500).await?;
    world.la.inject(LaFault::Status {
        status: 413,
        count: 1,
        retry_after_secs: None,
    });
    let _collector = world.start_collector("collector", &[])?;
    let shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    assert_eq!(la_status(&world, 413), 1);
    wait_operator_line(&shipper, &["413", "splitting"], LOG_LINE).await?;
    assert!(poison_records(&support::storage(&world)).await.is_empty());
    Ok(())
}

/// Issue 11 item 6. The fake refuses (413) every body above 200,000 bytes, a limit lower than
/// the one the shipper packs for, and one event of the page makes a row of ≈ 600 KB (ten
/// `debugData` values of 60,000 bytes, each under the field limit). The chunk is split down to
/// that single row, which is then cut like any over-long value — its largest values shortened,
/// every value still valid, the cut counted — until the service takes it. Every event lands
/// once and the page is shipped, not parked (before: "a single row was refused as too large
/// (413)" counted as the page's fault until the whole page was poisoned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_on_a_single_row_cuts_that_row_and_ships_the_page() -> anyhow::Result<()> {
    const LIMIT: usize = 200_000;
    let world = LocalWorld::start(WorldOptions {
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    storage.ensure_created().await?;
    let from = chrono::Utc::now() - chrono::Duration::minutes(10);
    let mut evs =
        world::fakes::okta_events::generate(67, 5, from, chrono::Duration::milliseconds(9));
    let big_keys = [
        "initiationType",
        "signOnMode",
        "attributesModified",
        "attributesAdded",
        "attributesDeleted",
        "groupAppAssignmentId",
        "loginResult",
        "jobId",
        "importType",
        "detailedmessage",
    ];
    for k in big_keys {
        evs[2]["debugContext"]["debugData"][k] =
            serde_json::Value::String(k.repeat(60_000 / k.len()));
    }
    let bytes = gzip(&serde_json::to_vec(&evs)?);
    let env = envelope(ORG, 1, &bytes, evs.len());
    storage
        .blobs
        .write(&env.page_blob(), bytes::Bytes::from(bytes), None)
        .await?;
    storage.queue.send(&env.encode(), None).await?;
    world.la.inject(LaFault::RefuseLargerThan { bytes: LIMIT });
    let shipper = world.start_shipper(
        "shipper",
        &[("SHIPPER_MAX_DEQUEUE", "2"), ("HAND_BACK_DELAY", "1s")],
    )?;
    let done = common::org::names::done(&env.org, env.epoch, env.seq);
    let poison = common::org::names::poison(&env.org, env.epoch, env.seq);
    eventually(LANDING, "the page to be shipped or parked", || async {
        let d = storage.blobs.exists(&done).await.unwrap_or(false);
        let p = storage.blobs.exists(&poison).await.unwrap_or(false);
        (d || p).then_some(())
    })
    .await?;
    assert!(
        poison_records(&storage).await.is_empty(),
        "the page was parked; logs in {}",
        world.log_dir.display()
    );
    let rows = world.la.rows();
    assert_eq!(rows.len(), evs.len(), "every event landed once");
    for (row, ev) in rows.iter().zip(&evs) {
        assert_eq!(row["uuid_g"].as_str(), Some(uuid_of(ev).as_str()));
    }
    assert_no_duplicates(&world, &world.delivery());
    // The big row: cut under the service's limit, its small values whole, the big ones
    // shortened prefixes (never dropped, never invalid).
    let big = &rows[2];
    assert!(serde_json::to_vec(big)?.len() <= LIMIT);
    assert_eq!(big["displayMessage_s"], evs[2]["displayMessage"]);
    assert_eq!(big["client_ipAddress_s"], evs[2]["client"]["ipAddress"]);
    let target: Vec<serde_json::Value> =
        serde_json::from_str(big["target_s"].as_str().unwrap_or("[]"))?;
    assert!(target.len() <= evs[2]["target"].as_array().map_or(0, Vec::len));
    for k in big_keys {
        let col = format!("debugContext_debugData_{k}_s");
        let v = big[&col].as_str().unwrap_or_default();
        let full = evs[2]["debugContext"]["debugData"][k]
            .as_str()
            .unwrap_or_default();
        assert!(
            !v.is_empty() && v.len() < full.len() && full.starts_with(v),
            "{col}"
        );
    }
    // The other rows are untouched by the cut.
    assert_eq!(
        rows[3]["debugContext_debugData_requestUri_s"],
        evs[3]["debugContext"]["debugData"]["requestUri"]
    );
    assert!(la_status(&world, 413) >= 3, "{:?}", world.la.stats());
    wait_operator_line(&shipper, &["413", "cutting"], LOG_LINE).await?;
    let addr = health_addr_within(&shipper, ADDR).await?;
    let truncations = metric(&addr, "okta_sentinel_truncations_total").await;
    assert!(truncations.is_some_and(|n| n >= 10.0), "{truncations:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_endpoint_down_at_start_up_is_retried_then_ships() -> anyhow::Result<()> {
    let world = world(67, 1_200).await?;
    world.identity.set_down(true);
    let _collector = world.start_collector("collector", &[])?;
    let mut shipper = world.start_shipper("shipper", &[])?;
    // The shipper asks for a token, reports why it cannot ship, and keeps asking; it does not
    // give up or post without a token.
    let addr = health_addr_within(&shipper, ADDR).await?;
    let body = wait_not_ready(&addr, &["\"sink\""], Duration::from_secs(60)).await?;
    assert!(
        body.contains("managed identity") || body.contains("token"),
        "{body}"
    );
    wait_operator_line(&shipper, &["breaker open", "managed identity"], LOG_LINE).await?;
    let asked = world.identity.requests();
    eventually(Duration::from_secs(60), "more token requests", || async {
        (world.identity.requests() > asked).then_some(())
    })
    .await?;
    assert!(
        shipper.is_running(),
        "the shipper exited:\n{}",
        shipper.log_text()
    );
    assert_eq!(world.la.stats().accepted_rows, 0);

    world.identity.set_down(false);
    let d = world.wait_all_landed(LANDING).await?;
    assert_no_duplicates(&world, &d);
    assert!(poison_records(&support::storage(&world)).await.is_empty());
    Ok(())
}

/// Recording `posted_upto` after an accepted chunk fails with an unknown outcome, once because
/// the write never reached storage and once because its answer was lost after it landed. The
/// shipper reads the state back and goes on; giving the page up instead would make the next
/// holder post the accepted chunk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_write_with_an_unknown_outcome_posts_nothing_twice() -> anyhow::Result<()> {
    let world = world(67, 3_000).await?;
    let progress = |nth, mode| FaultRule::new("PUT", "/state/", Some("if-match"), nth, mode);
    let blob: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
    let proxy = CountingProxy::with_faults(
        blob,
        "blob",
        vec![
            progress(2, FaultMode::DropRequest),
            progress(5, FaultMode::LoseAnswer),
        ],
    )
    .await?;
    let conn = world
        .azurite
        .connection_string_via(Some(proxy.addr()), None);
    let _collector = world.start_collector("collector", &[])?;
    let _shipper = world.start_shipper(
        "shipper",
        &[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
    )?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(
        proxy.faults_fired(),
        2,
        "faults injected; {:?}",
        proxy.counts()
    );
    assert_no_duplicates(&world, &d);
    let storage = support::storage(&world);
    support::blobs::wait_queue_empty(&storage, LANDING).await?;
    eventually(LANDING, "no page state left", || async {
        support::blob_names(&storage, "state/")
            .await
            .is_empty()
            .then_some(())
    })
    .await?;
    assert_no_duplicates(&world, &world.delivery());
    assert!(poison_records(&storage).await.is_empty());
    Ok(())
}
