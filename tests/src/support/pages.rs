//! Pages and envelopes a test writes itself (so it controls exactly what reaches the queue),
//! and checking how often their events landed in the fake Log Analytics.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use crate::local::LocalWorld;
use crate::procs::eventually;
use bytes::Bytes;
use chrono::Utc;
use common::envelope::Envelope;
use common::org::{names, OrgKey};
use common::storage::Storage;

use super::blobs::sha256_hex;

/// The org of the pages the suites write.
pub const ORG: &str = "acme.okta.com";

/// A page written by the test: its envelope, stored bytes and event uuids.
pub struct TestPage {
    pub env: Envelope,
    pub gz: Vec<u8>,
    pub uuids: Vec<String>,
}

/// `data` gzipped, as the collector stores pages.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// A version-1 envelope of page `seq` (epoch 1) of `org`, whose blob holds `stored`.
pub fn envelope(org: &str, seq: u64, stored: &[u8], events: usize) -> Envelope {
    Envelope {
        v: 1,
        org: OrgKey::parse(org).expect("org"),
        epoch: 1,
        seq,
        sha256: sha256_hex(stored),
        events: events as u64,
        bytes: stored.len() as u64,
        newest_published: None,
        created: Utc::now(),
    }
}

/// An event's uuid as the fake Log Analytics counts it (lower case).
pub fn uuid_of(ev: &serde_json::Value) -> String {
    ev["uuid"].as_str().expect("uuid").to_ascii_lowercase()
}

/// `n` realistic events from `seed`, stored as page `seq` of epoch 1 of [`ORG`].
pub fn make_page(seq: u64, seed: u64, n: usize) -> TestPage {
    let from = Utc::now() - chrono::Duration::minutes(30);
    let events =
        crate::fakes::okta_events::generate(seed, n, from, chrono::Duration::milliseconds(7));
    let uuids = events.iter().map(uuid_of).collect();
    let gz = gzip(&serde_json::to_vec(&events).expect("json"));
    TestPage {
        env: envelope(ORG, seq, &gz, n),
        gz,
        uuids,
    }
}

/// A page of [`ORG`] whose stored bytes are `gz` as given (hostile content), claiming one
/// event.
pub fn raw_page(seq: u64, gz: Vec<u8>) -> TestPage {
    TestPage {
        env: envelope(ORG, seq, &gz, 1),
        gz,
        uuids: Vec::new(),
    }
}

/// Writes the page's blob, replacing whatever is there (to repair a page, too).
pub async fn put_page(storage: &Storage, page: &TestPage) -> anyhow::Result<()> {
    storage
        .blobs
        .write(&page.env.page_blob(), Bytes::from(page.gz.clone()), None)
        .await?;
    Ok(())
}

/// Writes the page's blob, failing when it already exists (as the collector does).
pub async fn create_page(storage: &Storage, page: &TestPage) -> anyhow::Result<()> {
    storage
        .blobs
        .create_only(&page.env.page_blob(), Bytes::from(page.gz.clone()))
        .await?;
    Ok(())
}

/// Every one of `pages` has its done marker: the shipper finished it and would absorb a late
/// twin envelope.
pub async fn assert_done(storage: &Storage, pages: &[&TestPage]) -> anyhow::Result<()> {
    for p in pages {
        let e = &p.env;
        let done = names::done(&e.org, e.epoch, e.seq);
        assert!(storage.blobs.exists(&done).await?, "no done marker {done}");
    }
    Ok(())
}

/// How many times each uuid of `pages` landed (0 for those that did not).
pub fn landed(world: &LocalWorld, pages: &[&TestPage]) -> HashMap<String, usize> {
    let counts = world.landed_counts();
    pages
        .iter()
        .flat_map(|p| p.uuids.iter())
        .map(|u| (u.clone(), counts.get(u).copied().unwrap_or(0)))
        .collect()
}

/// Waits up to `timeout` until every event of `pages` landed at least once.
pub async fn wait_landed(
    world: &LocalWorld,
    pages: &[&TestPage],
    timeout: Duration,
) -> anyhow::Result<()> {
    eventually(timeout, "every event of the pages to land", || async {
        landed(world, pages).values().all(|n| *n >= 1).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; logs in {}", world.log_dir.display()))
}

/// Every event of `pages` landed exactly once, and the sink saw no duplicate at all.
pub fn assert_landed_once(world: &LocalWorld, pages: &[&TestPage]) {
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
