//! The collector killed at each named failpoint (DESIGN.md §2 step boundaries), then
//! restarted: every published event lands, once. A page whose checkpoint was written is
//! enqueued at most twice as the *same* envelope (a twin the shipper absorbs); a page killed
//! before its checkpoint write is fetched again as a new page and its orphan blob is never
//! enqueued.

mod support;

use std::time::Duration;

use support::procs::wait_failpoint_exit;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};
use world::storage_proxy::CountingProxy;

async fn crash_at(point: &str) -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 21,
            initial_events: 3_500,
            repeat_probability: 0.005,
            ..OktaFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    // Both collectors enqueue through a counting proxy: how often each page was sent.
    let queue: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
    let proxy = CountingProxy::start(queue, "queue").await?;
    let conn = world
        .azurite
        .connection_string_via(None, Some(proxy.addr()));
    let via_proxy = ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str());
    // Fire on the second page, so a first page was fully handed off before.
    let spec = format!("{point}@2");
    let mut first = world.start_collector(
        "collector-1",
        &[("OKTA_SENTINEL_FAILPOINTS", &spec), via_proxy],
    )?;
    wait_failpoint_exit(&mut first, point, Duration::from_secs(60)).await?;
    assert!(first
        .log_text()
        .contains(&format!("failpoint {point} fired")));

    let storage = support::storage(&world);
    let pages_after_crash = support::blob_names(&storage, "pages/").await;

    let _collector = world.start_collector("collector-2", &[via_proxy])?;
    let _shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(Duration::from_secs(120)).await?;
    assert_eq!(d.duplicates, 0, "{point}: {d:?}");

    // Enqueued once per recorded page; only a kill between the enqueue and the clearing of
    // `pending` sends that one envelope twice (the same one, which the shipper absorbs).
    let cp = support::worlds::checkpoint(&world, &storage)
        .await
        .expect("checkpoint");
    let pages = cp["seq"].as_u64().unwrap_or(0);
    let sent = proxy
        .counts()
        .requests
        .get("queue POST messages")
        .copied()
        .unwrap_or(0);
    let twins = u64::from(point == "collector.after_enqueue");
    assert_eq!(
        sent,
        pages + twins,
        "{point}: {sent} sends for {pages} pages"
    );

    let left = support::blob_names(&storage, "pages/").await;
    if point == "collector.after_page_blob" {
        // The killed hand-off left its page blob without an envelope. The page is fetched
        // again: with the same content it lands under the same content-addressed name (and is
        // shipped and deleted); with other content the orphan stays, never enqueued.
        assert!(
            left.iter().all(|p| pages_after_crash.contains(p)),
            "{left:?} vs {pages_after_crash:?}"
        );
        assert!(left.len() <= 1, "{left:?}");
    } else {
        assert!(left.is_empty(), "{point}: pages not shipped: {left:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_page_blob() -> anyhow::Result<()> {
    crash_at("collector.after_page_blob").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_checkpoint_with_pending() -> anyhow::Result<()> {
    crash_at("collector.after_checkpoint").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_enqueue() -> anyhow::Result<()> {
    crash_at("collector.after_enqueue").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_clear_pending() -> anyhow::Result<()> {
    crash_at("collector.after_clear_pending").await
}

/// The completeness audit killed at each of its failpoints (`collector/src/audit/`), then run
/// again: the repeated audit finds what is still missing (or in flight), every event lands
/// exactly once, and a last audit finds nothing missing. A crash repeats the audit, never the
/// repair.
async fn audit_crash_at(point: &str) -> anyhow::Result<()> {
    use world::fakes::log_analytics::Discard;
    let world = LocalWorld::start(WorldOptions {
        okta: support::worlds::okta(31, 1_200),
        la: support::worlds::strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    world.la.discard(Some(Discard::EveryNth(50)));
    let env = support::audit::env(&world);
    let _collector = world.start_collector("collector", &support::audit::pairs(&env))?;
    let mut shipper = world.start_shipper("shipper", &[])?;
    support::audit::wait_accepted(&world, 1_200).await?;
    world.la.discard(None);
    let lost = world.la.stats().discarded_rows;
    assert_eq!(lost, 24);
    // No shipper while the audits run: a repair handed off stays in flight, so a repeated
    // audit that repaired it again would create duplicates once a shipper runs.
    support::procs::terminate_cleanly(&mut shipper, point)?;

    let spec = point.to_string();
    let (st, _, log) =
        support::audit::run(&world, "1h", "0s", &[("OKTA_SENTINEL_FAILPOINTS", &spec)]).await?;
    assert_eq!(
        st.code(),
        Some(common::failpoint::EXIT_CODE),
        "{point}: {log}"
    );
    assert!(log.contains(&format!("failpoint {point} fired")), "{log}");

    // Repeated (after the killed audit's lock lease expired): before a repair page was
    // recorded, the events are repaired now; after, they are in flight and not repaired again.
    let (st, records, log) = support::audit::run(&world, "1h", "0s", &[]).await?;
    assert!(st.success(), "{point}: {log}");
    let f = |k: &str| support::audit::sum(&records, k);
    assert_eq!(f("missing"), lost, "{point}: {records:?}");
    let repaired_before_kill = !matches!(point, "audit.before_repair" | "audit.after_repair_blob");
    if repaired_before_kill {
        assert_eq!(
            (f("in_flight"), f("repaired")),
            (lost, 0),
            "{point}: {records:?}"
        );
    } else {
        assert_eq!(
            (f("in_flight"), f("repaired")),
            (0, lost),
            "{point}: {records:?}"
        );
    }

    let _shipper = world.start_shipper("shipper-2", &[])?;
    let d = world.wait_all_landed(Duration::from_secs(120)).await?;
    assert_eq!(d.duplicates, 0, "{point}: {d:?}");
    assert_eq!(world.la.stats().duplicate_rows, 0, "{point}");
    let (st, records, log) = support::audit::run(&world, "1h", "0s", &[]).await?;
    assert!(st.success(), "{point}: {log}");
    assert_eq!(
        support::audit::sum(&records, "missing"),
        0,
        "{point}: {records:?}"
    );
    assert_eq!(support::audit::sum(&records, "duplicated"), 0, "{point}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_before_repair() -> anyhow::Result<()> {
    audit_crash_at("audit.before_repair").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_after_repair_blob() -> anyhow::Result<()> {
    audit_crash_at("audit.after_repair_blob").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_after_repair_recorded() -> anyhow::Result<()> {
    audit_crash_at("audit.after_repair_recorded").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_after_repair_enqueue() -> anyhow::Result<()> {
    audit_crash_at("audit.after_repair_enqueue").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_after_repair_cleared() -> anyhow::Result<()> {
    audit_crash_at("audit.after_repair_cleared").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_kill_after_record() -> anyhow::Result<()> {
    audit_crash_at("audit.after_record").await
}
