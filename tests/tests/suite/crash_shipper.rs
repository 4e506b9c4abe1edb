//! The shipper killed at each named failpoint, then restarted: nothing is lost, and no chunk
//! is posted twice — except when the kill falls between the sink accepting a chunk and the
//! progress write, which is exactly the "accepted, then the answer was lost" case: that one
//! chunk is posted again (counted, documented in the README), and nothing else. A kill after a
//! poison record is written leaves that one record, and the message is dropped on redelivery.

use world::support;

use std::time::Duration;

use support::procs::wait_failpoint_exit;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};

/// What a crash left: duplicate rows, and the rows of each request the sink accepted.
struct Crashed {
    duplicates: usize,
    request_rows: Vec<u64>,
}

async fn crash_at(point: &str) -> anyhow::Result<Crashed> {
    crash_at_hit(point, 2, 2_500).await
}

/// Kills the shipper at the `nth` hit of `point`, with a fake org holding `events` events.
async fn crash_at_hit(point: &str, nth: u32, events: usize) -> anyhow::Result<Crashed> {
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 31,
            initial_events: events,
            ..OktaFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    let _collector = world.start_collector("collector", &[])?;
    let spec = format!("{point}@{nth}");
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
    world.wait_all_landed(Duration::from_secs(150)).await?;
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
    // Counted once the page is cleaned up (a page of one request lands completely before
    // the kill; its re-post comes after), then again once the queue is empty too: a late
    // re-post would show up there.
    let d = world.delivery();
    support::blobs::wait_queue_empty(&storage, Duration::from_secs(60)).await?;
    let settled = world.delivery();
    assert_eq!(
        settled.duplicates, d.duplicates,
        "a late re-post: {settled:?}"
    );
    Ok(Crashed {
        duplicates: d.duplicates,
        request_rows: world.la.stats().accepted_request_rows,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_chunk_accepted_reposts_only_that_chunk() -> anyhow::Result<()> {
    let c = crash_at("shipper.after_chunk_accepted").await?;
    // The killed shipper (concurrency 1) died right after its 2nd accepted request; the page
    // resumes from the progress of the 1st, so exactly the rows of the 2nd come twice.
    let second = c.request_rows.get(1).copied().unwrap_or(0);
    assert!(second > 0, "{:?}", c.request_rows);
    assert_eq!(
        c.duplicates as u64, second,
        "requests: {:?}",
        c.request_rows
    );
    Ok(())
}

/// A page that fits one request has no progress write: the done marker records its only
/// chunk. Killed between the sink's acceptance and the marker, exactly that request's rows
/// come twice, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_only_chunk_accepted_reposts_only_that_chunk() -> anyhow::Result<()> {
    let c = crash_at_hit("shipper.after_chunk_accepted", 1, 150).await?;
    assert_eq!(
        c.request_rows.len(),
        2,
        "one page of one request, posted twice: {:?}",
        c.request_rows
    );
    assert_eq!(c.duplicates as u64, c.request_rows[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_progress() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_progress").await?.duplicates, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_done() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_done").await?.duplicates, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_delete() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_delete").await?.duplicates, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_page_delete() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_page_delete").await?.duplicates, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_state_delete() -> anyhow::Result<()> {
    assert_eq!(crash_at("shipper.after_state_delete").await?.duplicates, 0);
    Ok(())
}

/// Killed after a poison record is written, before the message is deleted: the redelivered
/// message finds the page parked and is dropped; the record is written once and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_poison_record() -> anyhow::Result<()> {
    let (world, storage) = support::worlds::start_with_storage(WorldOptions::default()).await?;
    // A page whose blob was never stored: a page fault on every delivery.
    let page = support::pages::make_page(7, 77, 20);
    storage.queue.send(&page.env.encode(), None).await?;
    let point = "shipper.after_poison_record";
    let mut first = world.start_shipper(
        "shipper-1",
        &[
            ("OKTA_SENTINEL_FAILPOINTS", point),
            ("SHIPPER_MAX_DEQUEUE", "1"),
        ],
    )?;
    wait_failpoint_exit(&mut first, point, Duration::from_secs(90)).await?;
    let record = common::org::names::poison(&page.env.org, page.env.epoch, page.env.seq);
    let written = storage
        .blobs
        .read(&record)
        .await?
        .expect("the poison record");

    let _second = world.start_shipper("shipper-2", &[("SHIPPER_MAX_DEQUEUE", "1")])?;
    support::blobs::wait_queue_empty(&storage, Duration::from_secs(90)).await?;
    assert_eq!(
        support::blob_names(&storage, "poison/").await,
        vec![record.clone()]
    );
    let kept = storage
        .blobs
        .read(&record)
        .await?
        .expect("the poison record");
    assert_eq!(kept.bytes, written.bytes, "the record was rewritten");
    assert!(
        world.la.stats().requests_by_status.is_empty(),
        "a broken page was posted"
    );
    Ok(())
}

/// Every failpoint in the services' code has a crash test (here or in `crash_collector.rs`):
/// a new step boundary cannot go unproven.
#[test]
fn every_failpoint_has_a_crash_test() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let mut points = std::collections::BTreeSet::new();
    let mut stack = vec![root.join("collector/src"), root.join("shipper/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)?;
                for part in text.split("failpoint::hit(\"").skip(1) {
                    if let Some(name) = part.split('"').next() {
                        points.insert(name.to_string());
                    }
                }
            }
        }
    }
    assert!(points.len() >= 8, "found only {points:?}");
    let tests = ["crash_collector.rs", "crash_shipper.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join("tests/tests/suite").join(f)))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    let untested: Vec<_> = points
        .iter()
        .filter(|p| !tests.contains(&format!("\"{p}\"")))
        .collect();
    assert!(
        untested.is_empty(),
        "failpoints without a crash test: {untested:?}"
    );
    Ok(())
}
