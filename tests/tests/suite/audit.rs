//! The completeness audit (docs/design.md §2 "Audit", issue 15) against a real pipeline: events
//! lost inside Log Analytics after acceptance are found exactly, repaired once through the
//! normal pipeline, and a second audit finds nothing missing; a page parked as poison is
//! reported as parked and never repaired; the background audit stays inside the pacing budget
//! and never runs while the collector is behind.

use world::support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use support::audit;
use support::worlds::{okta, org_key, start_with_storage, strict_la};
use world::fakes::log_analytics::Discard;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};
use world::procs::eventually;

/// A world whose collector and shipper run; rows matching `discard` are lost after acceptance.
async fn world_with_losses(
    seed: u64,
    events: usize,
    discard: Discard,
) -> anyhow::Result<(LocalWorld, Vec<world::procs::Service>)> {
    let world = LocalWorld::start(WorldOptions {
        okta: okta(seed, events),
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    world.la.discard(Some(discard));
    let env = audit::env(&world);
    let c = world.start_collector("collector", &audit::pairs(&env))?;
    let s = world.start_shipper("shipper", &[])?;
    audit::wait_accepted(&world, events).await?;
    Ok((world, vec![c, s]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_lost_after_acceptance_are_found_repaired_once_and_then_complete() -> anyhow::Result<()>
{
    let (world, _procs) = world_with_losses(151, 2_500, Discard::EveryNth(97)).await?;
    let lost: HashSet<String> = world.la.stats().discarded_uuids.into_iter().collect();
    assert_eq!(lost.len(), 2_500 / 97, "rows discarded by the fake");
    world.la.discard(None);
    assert_eq!(world.delivery().missing.len(), lost.len());

    // An absolute span, so the second audit is of the same window (and finds its record).
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339();
    let to = now.to_rfc3339();
    let (st, records, log) = audit::run(&world, &from, &to, &[]).await?;
    assert!(st.success(), "{log}");
    assert_eq!(audit::sum(&records, "okta_events"), 2_500, "{records:?}");
    assert_eq!(
        audit::sum(&records, "missing"),
        lost.len() as u64,
        "{records:?}"
    );
    assert_eq!(audit::sum(&records, "repaired"), lost.len() as u64);
    assert_eq!(audit::sum(&records, "in_flight"), 0);
    assert_eq!(audit::sum(&records, "parked"), 0);
    assert_eq!(audit::sum(&records, "duplicated"), 0);
    assert_eq!(audit::sum(&records, "not_in_okta"), 0);
    assert_eq!(records[0]["result"], "repaired");

    // The repair went through the pipeline: every event landed, none twice.
    let d = world.wait_all_landed(Duration::from_secs(120)).await?;
    assert_eq!(d.duplicates, 0, "{d:?}");
    assert_eq!(world.la.stats().duplicate_rows, 0);

    // Audited again: nothing missing, nothing repaired, the record says so.
    let (st, again, log) = audit::run(&world, &from, &to, &[]).await?;
    assert!(st.success(), "{log}");
    assert_eq!(audit::sum(&again, "missing"), 0, "{again:?}");
    assert_eq!(audit::sum(&again, "repaired"), 0);
    assert_eq!(audit::sum(&again, "duplicated"), 0);
    assert_eq!(again[0]["result"], "complete");
    assert_eq!(again[0]["audits"], 2);
    assert_eq!(world.la.stats().duplicate_rows, 0);

    // The evidence stays in storage, and `collector status` shows it.
    let storage = support::storage(&world);
    let records_in_storage =
        support::blob_names(&storage, &format!("audit/{}/windows/", org_key(&world))).await;
    assert_eq!(records_in_storage.len(), 1, "{records_in_storage:?}");
    let mut env = world.collector_env();
    env.extend(audit::env(&world));
    let (st, out, err) = tokio::task::spawn_blocking(move || {
        world::procs::run_command("collector", &["status", "--json"], &env)
    })
    .await??;
    assert!(st.success(), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(status["audit"]["windows"], 1, "{status}");
    assert_eq!(status["audit"]["last"]["result"], "complete", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_one_answer_is_split() -> anyhow::Result<()> {
    // The service answers at most N rows and says so (PartialError); the audit splits.
    let mut la = strict_la();
    la.query_row_limit = 400;
    let world = LocalWorld::start(WorldOptions {
        okta: okta(152, 1_500),
        la,
        ..WorldOptions::default()
    })
    .await?;
    world.la.discard(Some(Discard::EveryNth(101)));
    let env = audit::env(&world);
    let _c = world.start_collector("collector", &audit::pairs(&env))?;
    let _s = world.start_shipper("shipper", &[])?;
    audit::wait_accepted(&world, 1_500).await?;
    world.la.discard(None);
    let lost = world.la.stats().discarded_rows;
    let (st, records, log) = audit::run(&world, "1h", "0s", &[]).await?;
    assert!(st.success(), "{log}");
    assert_eq!(audit::sum(&records, "missing"), lost, "{records:?}");
    assert_eq!(audit::sum(&records, "la_events"), 1_500 - lost);
    assert!(audit::sum(&records, "la_queries") >= 4, "{records:?}");
    let d = world.wait_all_landed(Duration::from_secs(120)).await?;
    assert_eq!(d.duplicates, 0);
    Ok(())
}

/// Re-compresses a stored page with other settings: the same events, other bytes, so the
/// shipper finds a sha256 mismatch and parks the page.
async fn spoil_page(storage: &common::storage::Storage, name: &str) -> anyhow::Result<()> {
    let c = storage.blobs.read(name).await?.expect("page");
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&c.bytes[..]).read_to_end(&mut json)?;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&json)?;
    let gz = enc.finish()?;
    assert_ne!(&gz[..], &c.bytes[..]);
    storage.blobs.write(name, gz.into(), None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_page_is_reported_as_parked_and_never_repaired() -> anyhow::Result<()> {
    let (world, storage) = start_with_storage(WorldOptions {
        okta: okta(153, 1_800),
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    let env = audit::env(&world);
    let collector = world.start_collector("collector", &audit::pairs(&env))?;
    let org = org_key(&world);
    let pages = eventually(Duration::from_secs(60), "two pages stored", || async {
        let p = support::blob_names(&storage, &format!("pages/{org}/")).await;
        (p.len() >= 2).then_some(p)
    })
    .await?;
    // The first page (1000 events) is spoiled before any shipper saw it.
    let first = pages
        .iter()
        .find(|p| p.contains("/1/0-"))
        .expect("page 0")
        .clone();
    spoil_page(&storage, &first).await?;
    let _s = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "1")])?;
    eventually(Duration::from_secs(60), "page 0 parked", || async {
        (!support::blob_names(&storage, &format!("poison/{org}/"))
            .await
            .is_empty())
        .then_some(())
    })
    .await?;
    audit::wait_accepted(&world, 800).await?;
    drop(collector);

    for round in 1..=2 {
        let (st, records, log) = audit::run(&world, "1h", "0s", &[]).await?;
        assert_eq!(
            st.code(),
            Some(3),
            "round {round}: incomplete exits 3\n{log}"
        );
        assert_eq!(audit::sum(&records, "okta_events"), 1_800, "{records:?}");
        assert_eq!(audit::sum(&records, "missing"), 1_000, "{records:?}");
        assert_eq!(audit::sum(&records, "parked"), 1_000);
        assert_eq!(audit::sum(&records, "repaired"), 0);
        assert_eq!(records[0]["result"], "incomplete");
        assert!(
            log.contains("FAILED") || log.contains("incomplete"),
            "{log}"
        );
    }
    // No repair page was ever written for the parked events.
    let repair_pages = support::blob_names(&storage, &format!("pages/{org}/1000000000/")).await;
    assert!(repair_pages.is_empty(), "{repair_pages:?}");
    assert_eq!(world.la.stats().accepted_rows, 800);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_audit_repairs_on_spare_budget_only_and_never_while_behind() -> anyhow::Result<()>
{
    // A small bucket: 20 requests per 10 s window, 6 of them reserved (OKTA_RATE_LIMIT_RESERVE
    // 0.3; the pacer keeps ceil(0.3 × limit) unused). A backlog of nine full pages first; then
    // ten-minute windows to audit, three requests each; while they are audited, a second
    // backlog of five full pages.
    let limit = 20u32;
    let reserve_share = 0.3;
    let reserve = (reserve_share * f64::from(limit)).ceil() as u32;
    assert_eq!(reserve, 6);
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 154,
            initial_events: 9_000,
            rate_limit_per_window: limit,
            rate_window_secs: 10,
            ..OktaFakeConfig::default()
        },
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    // Lose a few early events (published about half an hour ago: in settled windows).
    let released = world.okta.released_uuids();
    let lost: HashSet<String> = released[100..110]
        .iter()
        .map(|u| u.to_ascii_lowercase())
        .collect();
    world.la.discard(Some(Discard::Uuids(lost.clone())));
    let mut env = audit::env(&world);
    env.insert("AUDIT_ENABLED".into(), "true".into());
    env.insert("AUDIT_WINDOW".into(), "10m".into());
    env.insert("AUDIT_SETTLE".into(), "1s".into());
    env.insert("OKTA_START".into(), "50m".into());
    env.insert("OKTA_POLL_INTERVAL".into(), "2s".into());
    env.insert("OKTA_RATE_LIMIT_RESERVE".into(), reserve_share.to_string());
    let _c = world.start_collector("collector", &audit::pairs(&env))?;
    let _s = world.start_shipper("shipper", &[])?;

    // Once the audit is under way, the org publishes five pages at once: the collector is
    // behind again, and the audit must pause until it has caught up.
    eventually(
        Duration::from_secs(240),
        "a first audit request",
        || async { (world.okta.stats().bounded_requests >= 1).then_some(()) },
    )
    .await?;
    world.okta.release(5_000);

    let d = world.wait_all_landed(Duration::from_secs(240)).await?;
    assert_eq!(d.duplicates, 0, "{d:?}");
    assert_eq!(world.la.stats().discarded_rows, 10);
    let storage = support::storage(&world);
    let prefix = format!("audit/{}/windows/", org_key(&world));
    // Every settled window is audited in the end (newest first, then random older ones), and
    // re-reading the 9,000 initial events takes at least nine requests: waiting for both
    // (not for "3 windows", which empty windows of one request each could make up).
    eventually(
        Duration::from_secs(240),
        "3 windows audited, with 9 audit requests",
        || async {
            let windows = support::blob_names(&storage, &prefix).await.len();
            (windows >= 3 && world.okta.stats().bounded_requests >= 9).then_some(())
        },
    )
    .await?;
    let stats = world.okta.stats();
    // Never over the pacing budget: no 429, and no window used more than limit − reserve.
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    let busiest = stats
        .max_requests_per_window
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= limit - reserve,
        "{busiest} requests in one window: {stats:?}"
    );
    // The audit itself never dips into the reserve (nor takes the live feed's next request).
    let lowest = stats
        .trace
        .iter()
        .filter(|r| r.bounded)
        .map(|r| r.remaining)
        .min()
        .unwrap_or(limit);
    assert!(
        lowest > reserve,
        "an audit request left {lowest}: {:?}",
        stats.trace
    );
    // Never while behind. The first backlog (nine full pages) was collected before the first
    // audit request. In the second, at most one audit request is answered after the first
    // full page: the one already on its way when Okta answered that page (the collector
    // learns it is behind from that answer); none after it, until a polling page is not full.
    let first_bounded = stats.trace.iter().position(|r| r.bounded).unwrap_or(0);
    let full_before = stats.trace[..first_bounded]
        .iter()
        .filter(|r| !r.bounded && r.events == r.limit)
        .count();
    assert_eq!(full_before, 9, "{:?}", stats.trace);
    let mut behind = false;
    let mut backlogs = 0;
    let mut during = 0;
    let mut before_second = 0;
    let mut after_second = 0;
    for r in &stats.trace {
        if !r.bounded {
            let full = r.events >= r.limit;
            if full && !behind {
                backlogs += 1;
                during = 0;
            }
            behind = full;
        } else if behind {
            during += 1;
            assert!(
                during <= 1,
                "audit requests while behind: {:?}",
                stats.trace
            );
        } else if backlogs < 2 {
            before_second += 1;
        } else {
            after_second += 1;
        }
    }
    assert_eq!(backlogs, 2, "two backlogs: {:?}", stats.trace);
    // Not vacuous: the audit ran before the second backlog and resumed after it.
    assert!(
        before_second >= 1 && after_second >= 1,
        "{before_second} audit requests before the second backlog, {after_second} after: {:?}",
        stats.trace
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_fake_answers_only_the_audit_shape_and_refuses_like_the_service(
) -> anyhow::Result<()> {
    use world::fakes::log_analytics::{logs_query, LogAnalyticsFake, LogAnalyticsFakeConfig};
    let la = LogAnalyticsFake::start(LogAnalyticsFakeConfig::default()).await?;
    let ws = la.config().workspace_id.clone();
    let url = format!("{}/v1/workspaces/{ws}/query", la.query_endpoint());
    let good = "Okta_CL\n| where domain_s == 'acme.okta.com'\n| where published_t >= datetime(2026-12-01T10:00:00.000Z) and published_t < datetime(2026-12-01T11:00:00.000Z)\n| summarize n = count() by uuid_g";
    let token = world::fakes::token::issue(logs_query::QUERY_AUDIENCE, "system", 3600);
    let http = reqwest::Client::new();
    let post = |url: String, token: String, query: &str| {
        http.post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "query": query }).to_string())
            .send()
    };
    let r = post(url.clone(), token.clone(), good).await?;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
    assert_eq!(doc["tables"][0]["name"], "PrimaryResult");
    assert_eq!(doc["tables"][0]["columns"][0]["name"], "uuid_g");

    let r = post(url.clone(), token.clone(), "Okta_CL | take 10").await?;
    assert_eq!(r.status(), 400);
    let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
    assert_eq!(doc["error"]["code"], "BadArgumentError");

    let wrong_audience = world::fakes::token::issue("https://monitor.azure.com", "system", 3600);
    assert_eq!(post(url.clone(), wrong_audience, good).await?.status(), 401);
    let other = format!(
        "{}/v1/workspaces/00000000-0000-0000-0000-00000000ffff/query",
        la.query_endpoint()
    );
    assert_eq!(post(other, token.clone(), good).await?.status(), 404);
    la.set_query_forbidden(true);
    assert_eq!(post(url.clone(), token.clone(), good).await?.status(), 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_auto_stays_off_when_the_identity_cannot_read_the_table() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        okta: okta(155, 500),
        ..WorldOptions::default()
    })
    .await?;
    world.la.set_query_forbidden(true);
    let mut env = audit::env(&world);
    env.remove("AUDIT_ENABLED"); // auto
    env.insert("AUDIT_SETTLE".into(), "1s".into());
    let c = world.start_collector("collector", &audit::pairs(&env))?;
    eventually(
        Duration::from_secs(60),
        "the start-up check's verdict",
        || async {
            let log = c.log_text();
            log.contains("audit off (AUDIT_ENABLED=auto)").then_some(())
        },
    )
    .await?;
    assert!(
        c.log_text().contains("table-level read on Okta_CL"),
        "{}",
        c.log_text()
    );
    assert_eq!(world.okta.stats().bounded_requests, 0);
    Ok(())
}
