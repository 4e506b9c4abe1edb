//! The collector killed at each named failpoint (docs/design.md §2 step boundaries), then
//! restarted: every published event lands, once. A page whose checkpoint was written is
//! enqueued at most twice as the *same* envelope (a twin the shipper absorbs); a page killed
//! before its checkpoint write is fetched again as a new page and its orphan blob is never
//! enqueued.
//!
//! The last page's envelope stays recorded in the checkpoint after it was sent (the next
//! checkpoint write replaces it: three storage requests per page, not four), so a kill while
//! caught up sends it again at start-up — one twin; a clean stop clears it — none.

use world::support;

use std::time::Duration;

use support::procs::wait_failpoint_exit;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};
use world::procs::eventually;
use world::storage_proxy::CountingProxy;

/// How the first collector ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    /// Killed by the failpoint at its second hit (so a first page was fully handed off).
    Failpoint,
    /// Asked to stop (SIGTERM) once every page was handed off; the failpoint fires during the
    /// clean stop.
    FailpointInCleanShutdown,
    /// `kill -9` once every page was handed off and it is caught up (no failpoint).
    KillWhileCaughtUp,
}

async fn crash_at(point: &str) -> anyhow::Result<()> {
    crash(point, Stop::Failpoint).await
}

async fn crash(point: &str, stop: Stop) -> anyhow::Result<()> {
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
    let storage = support::storage(&world);
    let spec = match stop {
        // Fire on the second page, so a first page was fully handed off before.
        Stop::Failpoint => format!("{point}@2"),
        Stop::FailpointInCleanShutdown => point.to_string(),
        Stop::KillWhileCaughtUp => String::new(),
    };
    let mut first = world.start_collector(
        "collector-1",
        &[("OKTA_SENTINEL_FAILPOINTS", &spec), via_proxy],
    )?;
    let sent = || {
        proxy
            .counts()
            .requests
            .get("queue POST messages")
            .copied()
            .unwrap_or(0)
    };
    if stop != Stop::Failpoint {
        support::health_addr(&first).await; // the container exists once it serves
                                            // 3,500 events with a few repeats: four pages, all sent, then caught up.
        eventually(Duration::from_secs(60), "every page handed off", || async {
            let cp = support::worlds::checkpoint(&world, &storage).await?;
            let pages = cp["seq"].as_u64()?;
            (pages == 4 && sent() == pages).then_some(())
        })
        .await?;
    }
    match stop {
        Stop::Failpoint => {}
        Stop::FailpointInCleanShutdown => {
            let pid = first.pid().map(|p| nix::unistd::Pid::from_raw(p as i32));
            nix::sys::signal::kill(pid.expect("running"), nix::sys::signal::Signal::SIGTERM)?;
        }
        Stop::KillWhileCaughtUp => first.kill9()?,
    }
    if stop != Stop::KillWhileCaughtUp {
        wait_failpoint_exit(&mut first, point, Duration::from_secs(60)).await?;
        assert!(first
            .log_text()
            .contains(&format!("failpoint {point} fired")));
    }

    let storage = support::storage(&world);
    let pages_after_crash = support::blob_names(&storage, "pages/").await;

    let _collector = world.start_collector("collector-2", &[via_proxy])?;
    let _shipper = world.start_shipper("shipper", &[])?;
    if stop == Stop::KillWhileCaughtUp {
        // The next leader (once the killed one's lease lapsed) sends the last envelope again;
        // the shipper absorbs it: the queue drains.
        eventually(
            Duration::from_secs(120),
            "the last envelope sent again",
            || async { (sent() == 5).then_some(()) },
        )
        .await?;
        eventually(Duration::from_secs(120), "the twin absorbed", || async {
            (storage.queue.approximate_count().await.ok()? == 0).then_some(())
        })
        .await?;
    }
    let d = world.wait_all_landed(Duration::from_secs(120)).await?;
    assert_eq!(d.duplicates, 0, "{point}: {d:?}");

    // Enqueued once per recorded page; only a kill after an envelope was sent and before the
    // next checkpoint write replaced it sends it twice (the same one, which the shipper
    // absorbs): after the enqueue, after the next page's blob, or any time while caught up.
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
    let twins = u64::from(
        point == "collector.after_enqueue"
            || point == "collector.after_page_blob"
            || stop == Stop::KillWhileCaughtUp,
    );
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

/// The clearing of the last envelope moved from every page to the clean stop: killed right
/// after it, the next collector sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_clear_pending() -> anyhow::Result<()> {
    crash(
        "collector.after_clear_pending",
        Stop::FailpointInCleanShutdown,
    )
    .await
}

/// Killed while caught up, its last page's envelope still recorded: the next collector sends
/// it again — one twin, absorbed by the shipper — and nothing lands twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_caught_up_sends_the_last_envelope_once_more() -> anyhow::Result<()> {
    crash("while caught up", Stop::KillWhileCaughtUp).await
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
