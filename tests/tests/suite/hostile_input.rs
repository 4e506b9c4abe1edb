//! Hostile input against the real `shipper` binary (Azurite, the fake Log Analytics): pages and
//! envelopes written straight into storage and the queue, as a compromised or buggy writer
//! could. One shipper process (`SHIPPER_MAX_DEQUEUE=2`) handles all of them at once:
//!
//! | input                                   | expected outcome                                  |
//! |-----------------------------------------|---------------------------------------------------|
//! | a normal page (control)                 | shipped                                           |
//! | a 10 MB `displayMessage`                | shipped, value cut to 64 KiB at a char boundary,  |
//! |                                         | counted in `okta_sentinel_truncations`            |
//! | an event with 10,000 targets            | shipped, `target_s` loses trailing elements only  |
//! | a truncated gzip stream                 | poison, reason "not valid gzip"                   |
//! | a page that is not UTF-8                | poison, reason "not valid UTF-8"                  |
//! | a page blob that does not match sha256  | poison, reason "sha256 mismatch"                  |
//! | one event nested 1,000 deep among good  | poison, reason "deeper than 128 levels"           |
//! | ones                                    |                                                   |
//! | an envelope with org `../checkpoints`   | `poison/_undecodable/{id}.json`, reason names the |
//! |                                         | org key; decoy blobs where `..` would lead untouched |
//! | an envelope with version 0              | `poison/_undecodable/{id}.json`, "unknown version" |
//!
//! And for all of them together: the shipper never dies (still running at the end, no panic in
//! its log), its peak RSS (VmHWM) stays under [`MAX_HWM_BYTES`], and a snapshot of every blob
//! (name and sha256 of its content) before and after differs only by the expected names.
//!
//! (Gzip bombs, a page that is deep nesting only, and a missing page blob are the poison
//! suite's cases, `shipper_poison.rs`.)

use world::support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::envelope::Envelope;
use common::org::names;
use common::storage::Storage;
use serde_json::{json, Value};
use support::blobs::{blob_hashes, read_json, sha256_hex};
use support::pages::{envelope, gzip, uuid_of, ORG};
use support::procs::terminate_cleanly;
use support::worlds::strict_la;
use support::{health_addr_within, metric_sum};
use world::fakes::log_analytics::LogAnalyticsFakeConfig;
use world::local::{LocalWorld, WorldOptions};
use world::procs::eventually;

/// A generous bound on the shipper's peak RSS: the largest input is a 10 MB field (about 7 MB
/// gzipped), held at most a few times over (gzip bytes, JSON, rows, one request body).
const MAX_HWM_BYTES: u64 = 512 * 1024 * 1024;
const OUTCOMES: Duration = Duration::from_secs(180);
/// Bound of the wait for the shipper's health address in its log.
const ADDR: Duration = Duration::from_secs(30);

/// `n` realistic events (unique uuids per `seed`).
fn events(seed: u64, n: usize) -> Vec<Value> {
    let from = Utc::now() - chrono::Duration::minutes(20);
    world::fakes::okta_events::generate(seed, n, from, chrono::Duration::milliseconds(11))
}

/// `n` bytes of pseudo-random letters (so the page does not gzip to nothing).
fn letters(n: usize, mut seed: u64) -> String {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + ((seed >> 33) % 26) as u8) as char
        })
        .collect()
}

/// Peak resident set of a process (VmHWM), in bytes.
fn vm_hwm(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad VmHWM line {line:?}"))?;
    Ok(kb * 1024)
}

/// A poison record, read back as JSON.
async fn record(storage: &Storage, name: &str) -> anyhow::Result<Value> {
    read_json(storage, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no poison record {name}"))
}

/// A page stored under its envelope's name.
struct Stored {
    label: &'static str,
    env: Envelope,
}

async fn put(
    storage: &Storage,
    label: &'static str,
    env: Envelope,
    bytes: Vec<u8>,
) -> anyhow::Result<Stored> {
    storage
        .blobs
        .write(&env.page_blob(), Bytes::from(bytes), None)
        .await?;
    storage.queue.send(&env.encode(), None).await?;
    Ok(Stored { label, env })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pages_and_envelopes_are_shipped_or_parked_and_touch_nothing_else(
) -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    storage.ensure_created().await?;

    // Blobs the collector owns, and decoys exactly where `pages/../checkpoints/…`,
    // `state/../checkpoints/…` and `done/../checkpoints/…` would resolve: if any hostile name
    // escaped its prefix, one of these would be read, shipped, overwritten or deleted.
    let decoy_events = events(90, 3);
    let decoy_page = gzip(&serde_json::to_vec(&decoy_events)?);
    let decoy_sha = sha256_hex(&decoy_page);
    for (name, body) in [
        (
            format!("checkpoints/{ORG}.json"),
            br#"{"v":1,"next":"x","seq":7}"#.to_vec(),
        ),
        (format!("leader/{ORG}"), Vec::new()),
        (
            format!("checkpoints/1/1-{}.json.gz", &decoy_sha[..16]),
            decoy_page.clone(),
        ),
        (
            "checkpoints/1/1.json".to_string(),
            br#"{"v":1,"posted_upto":0,"failures":0,"updated":"2026-01-01T00:00:00Z"}"#.to_vec(),
        ),
        ("checkpoints/1/1".to_string(), b"decoy".to_vec()),
    ] {
        storage.blobs.write(&name, Bytes::from(body), None).await?;
    }

    let mut shipped = Vec::new();
    let mut parked = Vec::new();

    // Control: a normal page.
    let control = events(1, 200);
    let bytes = gzip(&serde_json::to_vec(&control)?);
    shipped.push(
        put(
            &storage,
            "control",
            envelope(ORG, 1, &bytes, control.len()),
            bytes,
        )
        .await?,
    );

    // A 10 MB field.
    let mut big = events(2, 5);
    let ten_mb = format!("é{}", letters(10 * 1024 * 1024, 7));
    big[2]["displayMessage"] = Value::String(ten_mb.clone());
    let big_uuid = uuid_of(&big[2]);
    let bytes = gzip(&serde_json::to_vec(&big)?);
    shipped.push(
        put(
            &storage,
            "10 MB field",
            envelope(ORG, 2, &bytes, big.len()),
            bytes,
        )
        .await?,
    );

    // 10,000 targets.
    let mut many = events(3, 3);
    let targets: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("00u{i:017}"), "type": "User", "alternateId": format!("user{i}@example.com"), "displayName": format!("User \"{i}\" \\ é"), "detailEntry": null}))
        .collect();
    many[1]["target"] = Value::Array(targets.clone());
    let many_uuid = uuid_of(&many[1]);
    let bytes = gzip(&serde_json::to_vec(&many)?);
    shipped.push(
        put(
            &storage,
            "10,000 targets",
            envelope(ORG, 3, &bytes, many.len()),
            bytes,
        )
        .await?,
    );

    // A truncated gzip stream (the envelope's sha256 is of the truncated bytes: storage holds
    // exactly what the envelope says, the content is still broken).
    let full = gzip(&serde_json::to_vec(&events(4, 300))?);
    let bytes = full[..full.len() / 2].to_vec();
    parked.push((
        put(
            &storage,
            "truncated gzip",
            envelope(ORG, 4, &bytes, 300),
            bytes,
        )
        .await?,
        "not valid gzip",
    ));

    // Not UTF-8.
    let mut raw = serde_json::to_vec(&events(5, 10))?;
    let at = raw.len() / 2;
    raw.splice(at..at, [0xff, 0xfe, 0xc3]);
    let bytes = gzip(&raw);
    parked.push((
        put(&storage, "non-UTF-8", envelope(ORG, 5, &bytes, 10), bytes).await?,
        "UTF-8",
    ));

    // Wrong sha256: the blob sits where the envelope points, but its bytes hash differently.
    let bytes = gzip(&serde_json::to_vec(&events(6, 10))?);
    let mut env = envelope(ORG, 6, &bytes, 10);
    env.sha256 = sha256_hex(b"something else");
    parked.push((
        put(&storage, "wrong sha256", env, bytes).await?,
        "sha256 mismatch",
    ));

    // One event nested 1,000 deep among good ones.
    let deep = events(7, 4);
    let mut texts = deep
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    let nesting = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    texts[2] = texts[2].replacen('{', &format!("{{\"deep\":{nesting},"), 1);
    let text = format!("[{}]", texts.join(","));
    let bytes = gzip(text.as_bytes());
    parked.push((
        put(
            &storage,
            "1,000-deep nesting",
            envelope(ORG, 8, &bytes, 4),
            bytes,
        )
        .await?,
        "deeper than",
    ));

    // Undecodable envelopes: an org with path characters (pointing at the decoy page, with
    // its real sha256), and version 0.
    let mut hostile = serde_json::to_value(envelope(ORG, 1, &decoy_page, 3))?;
    hostile["org"] = json!("../checkpoints");
    let dotdot = storage.queue.send(&hostile.to_string(), None).await?;
    let mut v0 = serde_json::to_value(envelope(ORG, 9, b"x", 1))?;
    v0["v"] = json!(0);
    let version0 = storage.queue.send(&v0.to_string(), None).await?;
    let undecodable = [
        (dotdot.id.clone(), "../checkpoints", "not a DNS name"),
        (version0.id.clone(), "v0", "unknown version"),
    ];

    let before = blob_hashes(&storage).await?;

    let mut shipper = world.start_shipper(
        "shipper",
        &[
            ("SHIPPER_MAX_DEQUEUE", "2"),
            ("SHIPPER_CONCURRENCY", "2"),
            ("HAND_BACK_DELAY", "1s"),
        ],
    )?;
    let addr = health_addr_within(&shipper, ADDR).await?;

    // Wait for every outcome.
    let expected_done: Vec<String> = shipped
        .iter()
        .map(|p| names::done(&p.env.org, p.env.epoch, p.env.seq))
        .collect();
    let expected_poison: Vec<String> = parked
        .iter()
        .map(|(p, _)| names::poison(&p.env.org, p.env.epoch, p.env.seq))
        .chain(undecodable.iter().map(|(id, _, _)| names::undecodable(id)))
        .collect();
    let waited = eventually(
        OUTCOMES,
        "every hostile input to reach its outcome",
        || async {
            for n in expected_done.iter().chain(&expected_poison) {
                if !storage.blobs.exists(n).await.unwrap_or(false) {
                    return None;
                }
            }
            matches!(storage.queue.approximate_count().await, Ok(0)).then_some(())
        },
    )
    .await;
    if let Err(e) = waited {
        let now = blob_hashes(&storage).await.unwrap_or_default();
        anyhow::bail!(
            "{e}; blobs now: {:?}; log: {}",
            now.keys().collect::<Vec<_>>(),
            world.log_dir.display()
        );
    }

    // The shipper survived all of it, without a panic, in bounded memory.
    let pid = shipper
        .pid()
        .ok_or_else(|| anyhow::anyhow!("no shipper pid"))?;
    let hwm = vm_hwm(pid)?;
    assert!(
        shipper.is_running(),
        "the shipper died; log:\n{}",
        shipper.log_text()
    );
    let log = shipper.log_text();
    assert!(!log.contains("panicked"), "a panic in the shipper log");
    assert!(
        hwm < MAX_HWM_BYTES,
        "shipper VmHWM {hwm} bytes ≥ {MAX_HWM_BYTES}"
    );
    println!("shipper VmHWM: {:.1} MiB", hwm as f64 / (1024.0 * 1024.0));

    // Poison records say why, clearly.
    for (p, why) in &parked {
        let rec = record(&storage, &names::poison(&p.env.org, p.env.epoch, p.env.seq)).await?;
        let reason = rec["reason"].as_str().unwrap_or_default();
        println!("{:>20}: poison: {reason}", p.label);
        assert!(
            reason.contains(why),
            "{}: reason {reason:?} lacks {why:?}",
            p.label
        );
        assert_eq!(rec["attempts"], 2, "{}: {rec}", p.label);
        assert_eq!(rec["posted_upto"], 0, "{}: {rec}", p.label);
        assert_eq!(
            rec["envelope"],
            serde_json::to_value(&p.env)?,
            "{}",
            p.label
        );
    }
    for (id, label, why) in &undecodable {
        let rec = record(&storage, &names::undecodable(id)).await?;
        let reason = rec["reason"].as_str().unwrap_or_default();
        println!("{label:>20}: poison/_undecodable: {reason}");
        assert!(
            reason.contains(why),
            "{label}: reason {reason:?} lacks {why:?}"
        );
        assert!(
            rec.get("envelope").is_none_or(Value::is_null),
            "{label}: {rec}"
        );
        assert!(
            rec["raw"].as_str().is_some_and(|r| !r.is_empty()),
            "{label}: {rec}"
        );
    }

    // Shipped pages landed once, each row valid and within the field limit.
    let rows = world.la.rows();
    let by_uuid = |u: &str| -> Vec<&serde_json::Map<String, Value>> {
        rows.iter()
            .filter(|r| {
                r["uuid_g"]
                    .as_str()
                    .is_some_and(|g| g.eq_ignore_ascii_case(u))
            })
            .collect()
    };
    for ev in control.iter().chain(&big).chain(&many) {
        assert_eq!(
            by_uuid(&uuid_of(ev)).len(),
            1,
            "{} landed ≠ once",
            uuid_of(ev)
        );
    }
    let big_row = by_uuid(&big_uuid)[0];
    let msg = big_row["displayMessage_s"].as_str().unwrap_or_default();
    assert!(
        msg.len() <= 64 * 1024 && msg.len() > 60 * 1024,
        "displayMessage_s of {} bytes",
        msg.len()
    );
    assert!(
        ten_mb.starts_with(msg),
        "displayMessage_s is not a prefix of the value"
    );
    let many_row = by_uuid(&many_uuid)[0];
    let target_s = many_row["target_s"].as_str().unwrap_or_default();
    assert!(
        target_s.len() <= 64 * 1024,
        "target_s of {} bytes",
        target_s.len()
    );
    let kept: Vec<Value> = serde_json::from_str(target_s)?;
    assert!(
        !kept.is_empty() && kept.len() < targets.len(),
        "{} targets kept",
        kept.len()
    );
    assert_eq!(
        kept[..],
        targets[..kept.len()],
        "target_s lost more than trailing elements"
    );
    assert!(
        metric_sum(&addr, "okta_sentinel_truncations_total", &[])
            .await
            .unwrap_or(0.0)
            >= 2.0,
        "truncations not counted"
    );
    assert_eq!(
        world.la.stats().truncated_fields,
        0,
        "the sink had to truncate: {:?}",
        world.la.stats()
    );
    assert_eq!(world.la.stats().duplicate_rows, 0);

    // Storage: only the expected names changed; every other blob is byte for byte the same.
    let after = blob_hashes(&storage).await?;
    let expected_removed: BTreeSet<String> = shipped.iter().map(|p| p.env.page_blob()).collect();
    let mut expected_added: BTreeSet<String> = expected_done.iter().cloned().collect();
    expected_added.extend(expected_poison.iter().cloned());
    // A parked page keeps its state (failure count, last error) for the operator.
    expected_added.extend(
        parked
            .iter()
            .map(|(p, _)| names::state(&p.env.org, p.env.epoch, p.env.seq)),
    );
    let removed: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    let added: BTreeSet<String> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let changed: Vec<&String> = before
        .keys()
        .filter(|k| after.get(*k).is_some_and(|h| h != &before[*k]))
        .collect();
    assert_eq!(removed, expected_removed, "removed blobs");
    assert_eq!(added, expected_added, "added blobs");
    assert!(changed.is_empty(), "blobs rewritten: {changed:?}");
    for name in after.keys() {
        assert!(!name.contains(".."), "a blob name with ..: {name}");
    }

    // Still alive after all of it, and stops cleanly.
    terminate_cleanly(&mut shipper, "after the hostile inputs")?;
    Ok(())
}

/// One Okta event with a number out of f64 range (`1e999`, valid JSON syntax) in a `real`
/// column's source must not cost the whole page: the page ships, that column omitted.
///
/// A regression test: the row builder used to copy the literal into `…_lat_d`, the sink refused
/// the request (400), and after `SHIPPER_MAX_DEQUEUE` attempts all 50 events of the page were
/// parked as poison. See FUZZING.md, findings, and
/// `rows_fuzz.rs::out_of_range_numbers_do_not_reach_real_columns`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_number_does_not_poison_its_page() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        la: LogAnalyticsFakeConfig {
            declared_columns: Some(support::manifest_columns()),
            ..LogAnalyticsFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    storage.ensure_created().await?;
    let evs = events(20, 50);
    let mut texts = evs
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    // The generated event has its own `client`: drop it, then splice ours in as raw text
    // (serde_json cannot produce `1e999`).
    let mut ev10: serde_json::Map<String, Value> =
        serde_json::from_str(&serde_json::to_string(&evs[10])?)?;
    ev10.remove("client");
    texts[10] = serde_json::to_string(&ev10)?.replacen(
        '{',
        r#"{"client":{"geographicalContext":{"geolocation":{"lat":1e999,"lon":1.5}}},"#,
        1,
    );
    let bytes = gzip(format!("[{}]", texts.join(",")).as_bytes());
    let env = envelope(ORG, 1, &bytes, evs.len());
    put(&storage, "1e999", env.clone(), bytes).await?;
    let _shipper = world.start_shipper(
        "shipper",
        &[("SHIPPER_MAX_DEQUEUE", "2"), ("HAND_BACK_DELAY", "1s")],
    )?;
    let done = names::done(&env.org, env.epoch, env.seq);
    let poison = names::poison(&env.org, env.epoch, env.seq);
    eventually(OUTCOMES, "the page to be shipped or parked", || async {
        let d = storage.blobs.exists(&done).await.unwrap_or(false);
        let p = storage.blobs.exists(&poison).await.unwrap_or(false);
        (d || p).then_some(())
    })
    .await?;
    if let Ok(rec) = record(&storage, &poison).await {
        panic!("the page was parked: {}", rec["reason"]);
    }
    let rows = world.la.rows();
    assert_eq!(rows.len(), evs.len());
    Ok(())
}
