//! The shipper killed at each named failpoint, then restarted: nothing is lost, and no chunk
//! is posted twice — except when the kill falls between the sink accepting a chunk and the
//! progress write, which is exactly the "accepted, then the answer was lost" case: that one
//! chunk is posted again (counted, documented in the README), and nothing else.

mod support;

use std::time::Duration;

use support::procs::wait_failpoint_exit;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};

async fn crash_at(point: &str) -> anyhow::Result<usize> {
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 31,
            initial_events: 2_500,
            ..OktaFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    let _collector = world.start_collector("collector", &[])?;
    let spec = format!("{point}@2");
    let mut first = world.start_shipper(
        "shipper-1",
        &[
            ("OKTA_SENTINEL_FAILPOINTS", &spec),
            ("SHIPPER_CONCURRENCY", "1"),
        ],
    )?;
    wait_failpoint_exit(&mut first, point, Duration::from_secs(90)).await?;

    // The state lease of the killed shipper lapses (15 s), then the page is resumed.
    let _second = world.start_shipper("shipper-2", &[])?;
    let d = world.wait_all_landed(Duration::from_secs(150)).await?;
    let storage = support::storage(&world);
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    // Nothing of a shipped page is left behind, whatever the kill interrupted.
    world::procs::eventually(
        Duration::from_secs(60),
        "pages and states cleaned up",
        || async {
            let left = support::blob_names(&storage, "state/").await.len()
                + support::blob_names(&storage, "pages/").await.len();
            (left == 0).then_some(())
        },
    )
    .await?;
    Ok(d.duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_chunk_accepted_reposts_only_that_chunk() -> anyhow::Result<()> {
    let dups = crash_at("shipper.after_chunk_accepted").await?;
    // One chunk is at most 1,000,000 bytes: with ~2.5 KB rows, a few hundred rows.
    assert!(dups > 0 && dups <= 1_000, "duplicates {dups}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_progress() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_progress").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_done() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_done").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_delete() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_delete").await?, 0);
    Ok(())
}
