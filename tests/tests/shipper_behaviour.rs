//! The real `shipper` binary against Azurite and the fake Log Analytics, fed with pages the
//! test writes itself (so each case controls exactly which envelopes reach the queue):
//!
//! - twin envelopes of one page, two replicas: the page is posted once;
//! - two replicas holding the same message after a visibility timeout (one replica frozen with
//!   SIGSTOP, as a paused VM or container would be), within and past the state lease: the page
//!   is posted once;
//! - an envelope of a newer version is handed back, never poisoned;
//! - SIGTERM with pages in flight: exit 0, and a new replica finishes without loss or
//!   duplicates.
//!
//! Assertions are on counts and states, never on durations.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::envelope::Envelope;
use common::org::{names, OrgKey};
use common::storage::Storage;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use world::fakes::log_analytics::LaFault;
use world::local::{LocalWorld, WorldOptions};
use world::procs::{eventually, Service};

const ORG: &str = "acme.okta.com";

/// A page written by the test: its envelope, stored bytes and event uuids.
struct TestPage {
    env: Envelope,
    gz: Vec<u8>,
    uuids: Vec<String>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// `n` realistic events from `seed`, stored as page `seq` of epoch 1.
fn make_page(seq: u64, seed: u64, n: usize) -> TestPage {
    let from = Utc::now() - chrono::Duration::minutes(30);
    let events =
        world::fakes::okta_events::generate(seed, n, from, chrono::Duration::milliseconds(7));
    let uuids = events
        .iter()
        .map(|e| e["uuid"].as_str().expect("uuid").to_ascii_lowercase())
        .collect();
    let gz = gzip(&serde_json::to_vec(&events).expect("json"));
    let env = Envelope {
        v: 1,
        org: OrgKey::parse(ORG).expect("org"),
        epoch: 1,
        seq,
        sha256: hex::encode(Sha256::digest(&gz)),
        events: n as u64,
        bytes: gz.len() as u64,
        newest_published: None,
        created: Utc::now(),
    };
    TestPage { env, gz, uuids }
}

async fn put_page(storage: &Storage, page: &TestPage) -> anyhow::Result<()> {
    storage
        .blobs
        .create_only(&page.env.page_blob(), Bytes::from(page.gz.clone()))
        .await?;
    Ok(())
}

async fn world() -> anyhow::Result<(LocalWorld, Storage)> {
    let world = LocalWorld::start(WorldOptions::default()).await?;
    let storage = support::storage(&world);
    storage.ensure_created().await?;
    Ok((world, storage))
}

/// How many times each uuid of `pages` landed (0 for those that did not).
fn landed(world: &LocalWorld, pages: &[&TestPage]) -> HashMap<String, usize> {
    let counts = world.landed_counts();
    pages
        .iter()
        .flat_map(|p| p.uuids.iter())
        .map(|u| (u.clone(), counts.get(u).copied().unwrap_or(0)))
        .collect()
}

async fn wait_landed(
    world: &LocalWorld,
    pages: &[&TestPage],
    timeout: Duration,
) -> anyhow::Result<()> {
    eventually(timeout, "every event of the pages to land", || async {
        landed(world, pages).values().all(|n| *n >= 1).then_some(())
    })
    .await
}

/// Every event of `pages` landed exactly once, and the sink saw no duplicate at all.
fn assert_once(world: &LocalWorld, pages: &[&TestPage]) {
    let counts = landed(world, pages);
    let missing = counts.values().filter(|n| **n == 0).count();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        missing,
        0,
        "events missing; logs in {}",
        world.log_dir.display()
    );
    assert!(
        twice.is_empty(),
        "{} events landed more than once (e.g. {:?})",
        twice.len(),
        twice.first()
    );
    assert_eq!(world.la.stats().duplicate_rows, 0, "{:?}", world.la.stats());
}

/// The health address a service logged (`HTTP_ADDR=127.0.0.1:0`), wherever the JSON layer put
/// the field.
async fn addr_of(svc: &Service) -> anyhow::Result<String> {
    eventually(
        Duration::from_secs(30),
        "the health address in the log",
        || async {
            svc.log_text().lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                v.pointer("/fields/addr")
                    .or_else(|| v.pointer("/addr"))
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            })
        },
    )
    .await
}

/// Sum of the samples of metric `name` whose labels contain every one of `labels`.
async fn metric_sum(addr: &str, name: &str, labels: &[&str]) -> f64 {
    let (_, body) = support::http_get(addr, "/metrics").await;
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn pages_by(addr: &str, outcome: &str) -> f64 {
    metric_sum(
        addr,
        "okta_sentinel_pages_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
    .await
}

fn signal(svc: &Service, sig: Signal) -> anyhow::Result<()> {
    let pid = svc
        .pid()
        .ok_or_else(|| anyhow::anyhow!("{} is not running", svc.name))?;
    kill(Pid::from_raw(pid as i32), sig)?;
    Ok(())
}

async fn queue_empty(storage: &Storage, timeout: Duration) -> anyhow::Result<()> {
    eventually(timeout, "the queue to drain", || async {
        matches!(storage.queue.approximate_count().await, Ok(0)).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_envelopes_with_two_replicas_are_posted_once() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let pages: Vec<TestPage> = (1..=3).map(|s| make_page(s, 100 + s, 300)).collect();
    for p in &pages {
        put_page(&storage, p).await?;
        // The same envelope twice: an SDK-retried Put Message, a collector restart.
        storage.queue.send(&p.env.encode(), None).await?;
        storage.queue.send(&p.env.encode(), None).await?;
    }
    // A slow start keeps the first holders busy while the twins are received.
    world.la.inject(LaFault::Status {
        status: 503,
        count: 3,
        retry_after_secs: Some(1),
    });
    let knobs = [("SHIPPER_CONCURRENCY", "2")];
    let a = world.start_shipper("shipper-a", &knobs)?;
    let b = world.start_shipper("shipper-b", &knobs)?;
    let all: Vec<&TestPage> = pages.iter().collect();
    wait_landed(&world, &all, Duration::from_secs(90)).await?;
    queue_empty(&storage, Duration::from_secs(60)).await?;

    assert_once(&world, &all);
    for p in &pages {
        let e = &p.env;
        assert!(
            storage
                .blobs
                .exists(&names::done(&e.org, e.epoch, e.seq))
                .await?
        );
    }
    assert!(support::blob_names(&storage, "pages/").await.is_empty());
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    // One replica shipped each page; each twin was recognised as such and deleted.
    let (aa, ba) = (addr_of(&a).await?, addr_of(&b).await?);
    let shipped = pages_by(&aa, "shipped").await + pages_by(&ba, "shipped").await;
    let twins = pages_by(&aa, "twin").await + pages_by(&ba, "twin").await;
    assert_eq!(shipped, 3.0, "pages shipped");
    assert_eq!(twins, 3.0, "twin envelopes absorbed");
    // A twin must not leave a page state behind (it would sit there forever).
    let states = support::blob_names(&storage, "state/").await;
    assert!(
        states.is_empty(),
        "page states left behind by twins: {states:?}"
    );
    Ok(())
}

/// Shared set-up of the frozen-replica cases: one page, replica A posting it against a
/// briefly failing sink, then frozen (SIGSTOP) so its message's visibility timeout runs out
/// and replica B receives the same message.
async fn frozen_replica_setup(
    world: &LocalWorld,
    storage: &Storage,
) -> anyhow::Result<(TestPage, Service, Service)> {
    let page = make_page(7, 700, 250);
    put_page(storage, &page).await?;
    storage.queue.send(&page.env.encode(), None).await?;
    // A meets a few 503s (Retry-After 1 s): it holds the message and the state lease, and is
    // between two attempts when frozen. Fewer than the breaker's storm threshold.
    world.la.inject(LaFault::Status {
        status: 503,
        count: 4,
        retry_after_secs: Some(1),
    });
    let knobs = [("VISIBILITY_TIMEOUT", "5s"), ("SHIPPER_CONCURRENCY", "1")];
    let a = world.start_shipper("shipper-a", &knobs)?;
    eventually(
        Duration::from_secs(60),
        "replica A to meet the 503s",
        || async {
            let s = world.la.stats();
            (s.requests_by_status.get(&503).copied().unwrap_or(0) >= 2).then_some(())
        },
    )
    .await?;
    signal(&a, Signal::SIGSTOP)?;
    let b = world.start_shipper("shipper-b", &knobs)?;
    Ok((page, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_holding_one_message_within_the_lease_post_it_once() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let (page, a, b) = frozen_replica_setup(&world, &storage).await?;
    // B receives the message after its visibility timeout and finds the page's lease held.
    let b_addr = addr_of(&b).await?;
    let held = eventually(
        Duration::from_secs(60),
        "replica B to meet the held lease",
        || async { (pages_by(&b_addr, "handed_back").await >= 1.0).then_some(()) },
    )
    .await;
    signal(&a, Signal::SIGCONT)?;
    held?;
    // A wakes within its lease and finishes; B then finds the done marker and drops its copy.
    wait_landed(&world, &[&page], Duration::from_secs(90)).await?;
    queue_empty(&storage, Duration::from_secs(60)).await?;
    assert_once(&world, &[&page]);
    // A shipped it; whichever replica received the message next found the done marker.
    let a_addr = addr_of(&a).await?;
    assert_eq!(pages_by(&a_addr, "shipped").await, 1.0);
    assert_eq!(pages_by(&b_addr, "shipped").await, 0.0);
    let twins = pages_by(&a_addr, "twin").await + pages_by(&b_addr, "twin").await;
    assert_eq!(
        twins, 1.0,
        "the second holder's copy was not recognised as done"
    );
    assert!(support::blob_names(&storage, "state/").await.is_empty());
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_lease_does_not_post_the_page_again() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let (page, a, b) = frozen_replica_setup(&world, &storage).await?;
    // A's lease lapses while it is frozen; B takes over and ships the whole page.
    let e = &page.env;
    let done = names::done(&e.org, e.epoch, e.seq);
    let shipped = eventually(
        Duration::from_secs(120),
        "replica B to ship the page",
        || async { matches!(storage.blobs.exists(&done).await, Ok(true)).then_some(()) },
    )
    .await;
    if shipped.is_err() {
        signal(&a, Signal::SIGCONT)?;
    }
    shipped?;
    wait_landed(&world, &[&page], Duration::from_secs(30)).await?;
    let b_addr = addr_of(&b).await?;
    assert_eq!(pages_by(&b_addr, "shipped").await, 1.0);
    let before = world.la.stats();

    // A wakes up with a stale claim. It must find out it lost the page before posting again.
    let a_addr = addr_of(&a).await?;
    signal(&a, Signal::SIGCONT)?;
    eventually(
        Duration::from_secs(60),
        "replica A to finish with its message",
        || async {
            (metric_sum(&a_addr, "okta_sentinel_pages_total", &[]).await >= 1.0).then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n--- replica A ---\n{}", a.log_text()))?;
    let after = world.la.stats();
    assert_eq!(
        after.accepted_rows, before.accepted_rows,
        "the frozen replica posted rows of a page it no longer owned (a chunk posted twice)"
    );
    assert_once(&world, &[&page]);
    assert!(support::blob_names(&storage, "state/").await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_envelope_version_is_handed_back_not_poisoned() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let page = make_page(3, 300, 20);
    put_page(&storage, &page).await?;
    let mut v: serde_json::Value = serde_json::to_value(&page.env)?;
    v["v"] = 2.into();
    v["new_field"] = "from a newer collector".into();
    let text = v.to_string();
    storage.queue.send(&text, None).await?;
    let before = support::blob_names(&storage, "").await;

    let max_dequeue = 2;
    let mut s = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    // More deliveries than SHIPPER_MAX_DEQUEUE.
    eventually(
        Duration::from_secs(60),
        "repeated deliveries of the newer envelope",
        || async {
            (s.log_text()
                .matches("envelope from a newer collector")
                .count()
                > max_dequeue + 1)
                .then_some(())
        },
    )
    .await?;
    let st = s.terminate(Duration::from_secs(30))?;
    assert!(st.is_some_and(|st| st.success()), "exit: {st:?}");

    assert!(
        support::blob_names(&storage, "poison/").await.is_empty(),
        "a newer envelope was poisoned"
    );
    assert_eq!(
        support::blob_names(&storage, "").await,
        before,
        "the shipper touched storage"
    );
    assert!(
        world.la.stats().requests_by_status.is_empty(),
        "it posted a page it cannot read"
    );
    // The message is still in the queue, unchanged, for a newer shipper.
    let msg = eventually(
        Duration::from_secs(30),
        "the message to be visible again",
        || async {
            storage
                .queue
                .receive(1, Duration::from_secs(30))
                .await
                .ok()
                .and_then(|m| m.into_iter().next())
        },
    )
    .await?;
    assert_eq!(msg.text, text);
    assert!(
        msg.dequeue_count > max_dequeue as u64 + 1,
        "dequeue count {}",
        msg.dequeue_count
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_pages_in_flight_exits_zero_and_nothing_is_lost() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    // Pages of ~600 events are two or three chunks each: progress is recorded mid-page.
    let pages: Vec<TestPage> = (1..=8).map(|s| make_page(s, 900 + s, 600)).collect();
    for p in &pages {
        put_page(&storage, p).await?;
        storage.queue.send(&p.env.encode(), None).await?;
    }
    // A slow, flaky sink keeps pages in flight.
    world.la.set_fault_rate(0.5, vec![503], 5);
    let mut first = world.start_shipper("shipper-1", &[("SHUTDOWN_GRACE", "2s")])?;
    eventually(
        Duration::from_secs(60),
        "some chunks to be accepted",
        || async { (world.la.stats().accepted_requests >= 2).then_some(()) },
    )
    .await?;
    let all: Vec<&TestPage> = pages.iter().collect();
    let before = landed(&world, &all).values().filter(|n| **n > 0).count();
    assert!(
        before < all.iter().map(|p| p.uuids.len()).sum::<usize>(),
        "everything shipped before SIGTERM"
    );
    let st = first.terminate(Duration::from_secs(30))?;
    assert!(
        st.is_some_and(|st| st.success()),
        "exit: {st:?}\n{}",
        first.log_text()
    );
    assert!(
        first.log_text().contains("finishing in-flight pages"),
        "no page was in flight at SIGTERM"
    );

    world.la.set_fault_rate(0.0, vec![], 0);
    let _second = world.start_shipper("shipper-2", &[])?;
    wait_landed(&world, &all, Duration::from_secs(120)).await?;
    queue_empty(&storage, Duration::from_secs(60)).await?;
    assert_once(&world, &all);
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    assert!(support::blob_names(&storage, "pages/").await.is_empty());
    Ok(())
}
