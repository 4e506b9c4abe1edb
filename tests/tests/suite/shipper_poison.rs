//! Poison records, end to end with the real `shipper` binary and its `poison` commands:
//!
//! - messages that are not envelopes (garbage, path characters in the org, sha or seq) end as
//!   `poison/_undecodable/{message id}.json` after `SHIPPER_MAX_DEQUEUE` deliveries, and
//!   nothing outside that prefix is touched;
//! - a missing page blob, a sha256 mismatch and a 400 from the sink end as
//!   `poison/{org}/{epoch}/{seq}.json` with the reason; after the cause is fixed `poison
//!   requeue` ships the page, resuming its progress (no row posted twice);
//! - hostile pages (a gzip bomb, 1,000-deep nesting, truncated gzip, non-UTF-8) are parked with
//!   a clear reason and the shipper survives to ship the next page;
//! - `poison list`, `show`, `purge` (refused without `--yes`).
//!
//! Assertions are on counts and contents, never on durations.

use world::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use common::envelope::Envelope;
use common::org::{names, OrgKey};
use common::page_state::PageState;
use common::storage::Storage;
use support::blobs::{blob_hashes, read_json, read_page_state, wait_queue_empty};
use support::pages::{
    assert_done, assert_landed_once, gzip, make_page, put_page, raw_page, wait_landed, ORG,
};
use support::worlds::start_with_storage;
use world::fakes::log_analytics::LaFault;
use world::local::{LocalWorld, WorldOptions};
use world::procs::{eventually, run_command, Service};

const WAIT: Duration = Duration::from_secs(90);

/// Waits for the poison record `name` and returns it.
async fn wait_record(
    storage: &Storage,
    svc: &Service,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    eventually(WAIT, &format!("poison record {name}"), || async {
        read_json(storage, name).await.ok().flatten()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n--- {} ---\n{}", svc.name, svc.log_text()))
}

fn page_record_name(env: &Envelope) -> String {
    names::poison(&env.org, env.epoch, env.seq)
}

fn page_id(env: &Envelope) -> String {
    format!("{}/{}/{}", env.org, env.epoch, env.seq)
}

/// The page's state blob, `None` when there is none.
async fn page_state(storage: &Storage, env: &Envelope) -> anyhow::Result<Option<PageState>> {
    read_page_state(storage, &names::state(&env.org, env.epoch, env.seq)).await
}

/// Runs `shipper poison …` with the shipper's environment; (success, stdout, stderr).
fn poison_cmd(world: &LocalWorld, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let mut full = vec!["poison"];
    full.extend_from_slice(args);
    let (st, out, err) = run_command("shipper", &full, &world.shipper_env())?;
    Ok((st.success(), out, err))
}

/// A world with its container created, and a storage client on it.
async fn world() -> anyhow::Result<(LocalWorld, Storage)> {
    start_with_storage(WorldOptions::default()).await
}

fn reason(rec: &serde_json::Value) -> String {
    rec["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_parked_in_their_prefix_and_nothing_else_is_touched(
) -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    // What a running pipeline has in storage: none of it may change.
    let org = OrgKey::parse(ORG)?;
    let bystander = make_page(5, 55, 10);
    put_page(&storage, &bystander).await?;
    storage
        .blobs
        .write(
            &names::checkpoint(&org),
            Bytes::from_static(b"{\"checkpoint\":1}"),
            None,
        )
        .await?;
    storage
        .blobs
        .write(
            &names::state(&org, 1, 5),
            Bytes::from(PageState::new().to_bytes()),
            None,
        )
        .await?;
    storage
        .blobs
        .write(&names::done(&org, 1, 4), Bytes::new(), None)
        .await?;
    storage
        .blobs
        .write("checkpoints/x.json", Bytes::from_static(b"precious"), None)
        .await?;

    let valid = serde_json::to_value(&bystander.env)?;
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };
    let texts = vec![
        ("garbage", "this is not an envelope <&>".to_string()),
        ("org", with(&|v| v["org"] = "../checkpoints".into())),
        (
            "sha",
            with(&|v| v["sha256"] = "../../checkpoints/x.json".into()),
        ),
        ("seq", with(&|v| v["seq"] = "1/../../checkpoints/x".into())),
        ("no version", with(&|v| v["v"] = serde_json::Value::Null)),
    ];
    let before = blob_hashes(&storage).await?;
    let mut sent = Vec::new();
    for (what, text) in &texts {
        let m = storage.queue.send(text, None).await?;
        sent.push((*what, text.clone(), m.id));
    }

    let s = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    for (what, text, id) in &sent {
        let name = names::undecodable(id);
        assert!(name.starts_with(names::UNDECODABLE_PREFIX));
        let rec = wait_record(&storage, &s, &name).await?;
        assert_eq!(rec["raw"].as_str(), Some(text.as_str()), "{what}: raw text");
        assert_eq!(
            rec["attempts"], 2,
            "{what}: parked after SHIPPER_MAX_DEQUEUE deliveries"
        );
        assert!(!reason(&rec).is_empty(), "{what}: no reason");
        assert!(
            rec.get("envelope").is_none_or(|e| e.is_null()),
            "{what}: {rec}"
        );
    }
    let org_rec = read_json(&storage, &names::undecodable(&sent[1].2))
        .await?
        .unwrap_or_default();
    assert!(reason(&org_rec).contains("org key"), "{}", reason(&org_rec));
    wait_queue_empty(&storage, Duration::from_secs(60)).await?;

    // Nothing outside poison/_undecodable/ changed, and nothing was posted.
    let after = blob_hashes(&storage).await?;
    let outside = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| !k.starts_with(names::UNDECODABLE_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        outside(&after),
        outside(&before),
        "blobs outside poison/_undecodable/ changed"
    );
    assert_eq!(after.len(), before.len() + texts.len());
    assert!(world.la.stats().requests_by_status.is_empty());

    // The operator's view.
    let (ok, out, err) = poison_cmd(&world, &["list"])?;
    assert!(ok, "poison list failed: {err}");
    for (_, _, id) in &sent {
        assert!(
            out.contains(&format!("_undecodable/{id}")),
            "list lacks {id}:\n{out}"
        );
    }
    let (ok, out, err) = poison_cmd(&world, &["show", &format!("_undecodable/{}", sent[0].2)])?;
    assert!(ok, "poison show failed: {err}");
    assert!(out.contains("this is not an envelope"), "{out}");
    // An id with path characters is refused, not followed.
    let (ok, _, _) = poison_cmd(&world, &["show", "../checkpoints/x"])?;
    assert!(!ok, "poison show followed a path out of its prefix");

    // Purge: refused without --yes, then removes every record and nothing else.
    let (ok, _, _) = poison_cmd(&world, &["purge"])?;
    assert!(!ok, "purge without --yes must refuse");
    assert_eq!(
        support::blob_names(&storage, names::UNDECODABLE_PREFIX)
            .await
            .len(),
        texts.len()
    );
    let (ok, _, err) = poison_cmd(&world, &["purge", "--yes"])?;
    assert!(ok, "purge --yes failed: {err}");
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    assert_eq!(blob_hashes(&storage).await?, outside(&before));
    let (ok, out, _) = poison_cmd(&world, &["list"])?;
    assert!(ok && out.contains("no poison records"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_page_and_sha_mismatch_are_parked_then_requeued_after_the_fix() -> anyhow::Result<()>
{
    let (world, storage) = world().await?;
    let missing = make_page(1, 11, 200);
    let tampered = make_page(2, 12, 200);
    // The tampered page's blob holds other bytes than the envelope's sha256.
    let other = make_page(2, 99, 200);
    storage
        .blobs
        .write(
            &tampered.env.page_blob(),
            Bytes::from(other.gz.clone()),
            None,
        )
        .await?;
    storage.queue.send(&missing.env.encode(), None).await?;
    storage.queue.send(&tampered.env.encode(), None).await?;

    let s = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    let rec_missing = wait_record(&storage, &s, &page_record_name(&missing.env)).await?;
    let rec_tampered = wait_record(&storage, &s, &page_record_name(&tampered.env)).await?;
    assert!(reason(&rec_missing).contains("missing"), "{rec_missing}");
    assert!(reason(&rec_tampered).contains("sha256"), "{rec_tampered}");
    for (rec, page) in [(&rec_missing, &missing), (&rec_tampered, &tampered)] {
        assert_eq!(rec["attempts"], 2, "{rec}");
        assert_eq!(rec["posted_upto"], 0, "{rec}");
        assert_eq!(rec["envelope"], serde_json::to_value(&page.env)?, "{rec}");
        // The state stays for the operator, with the count of page-caused failures.
        let st = page_state(&storage, &page.env).await?.expect("state kept");
        assert_eq!(st.failures, 2);
    }
    wait_queue_empty(&storage, Duration::from_secs(60)).await?;
    assert!(
        world.la.stats().requests_by_status.is_empty(),
        "a broken page was posted"
    );

    let (ok, out, err) = poison_cmd(&world, &["list"])?;
    assert!(ok, "{err}");
    assert!(
        out.contains(&page_id(&missing.env)) && out.contains("missing"),
        "{out}"
    );
    assert!(
        out.contains(&page_id(&tampered.env)) && out.contains("sha256"),
        "{out}"
    );
    let (ok, out, err) = poison_cmd(&world, &["show", &page_id(&tampered.env)])?;
    assert!(ok, "{err}");
    assert!(out.contains("sha256 mismatch"), "{out}");
    // What the alert watches: the records waiting in storage, on every replica.
    let addr = support::health_addr(&s).await;
    let waiting = |n: f64| {
        let addr = addr.clone();
        async move {
            eventually(WAIT, &format!("poison_waiting = {n}"), || async {
                (support::metric(&addr, "okta_sentinel_poison_waiting").await == Some(n))
                    .then_some(())
            })
            .await
        }
    };
    waiting(2.0).await?;

    // Fix the causes: the page is restored, the tampered blob rewritten with the right bytes.
    put_page(&storage, &missing).await?;
    put_page(&storage, &tampered).await?;
    let (ok, _, err) = poison_cmd(&world, &["requeue", &page_id(&missing.env)])?;
    assert!(ok, "requeue by id: {err}");
    let (ok, _, err) = poison_cmd(&world, &["requeue", "--all"])?;
    assert!(ok, "requeue --all: {err}");
    wait_landed(&world, &[&missing, &tampered], WAIT).await?;
    wait_queue_empty(&storage, Duration::from_secs(60)).await?;
    assert_landed_once(&world, &[&missing, &tampered]);
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    assert_done(&storage, &[&missing, &tampered]).await?;
    waiting(0.0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_after_progress_is_parked_and_requeue_resumes_without_reposting() -> anyhow::Result<()>
{
    let (world, storage) = world().await?;
    // ~3 KB per row: 900 events make several 1 MB chunks.
    let page = make_page(3, 33, 900);
    put_page(&storage, &page).await?;
    storage.queue.send(&page.env.encode(), None).await?;
    let knobs = [("VISIBILITY_TIMEOUT", "5s"), ("SHIPPER_MAX_DEQUEUE", "2")];

    // First shipper: dies right after recording the first accepted chunk.
    let mut first = world.start_shipper(
        "shipper-1",
        &[
            knobs[0],
            knobs[1],
            ("OKTA_SENTINEL_FAILPOINTS", "shipper.after_progress@1"),
        ],
    )?;
    support::procs::wait_failpoint_exit(&mut first, "shipper.after_progress", WAIT).await?;
    let posted = world.la.stats().accepted_rows;
    assert!(posted > 0 && posted < 900, "first chunk: {posted} rows");
    let state = page_state(&storage, &page.env).await?.expect("state");
    assert_eq!(state.posted_upto, posted);

    // The service now refuses this data (400), exactly SHIPPER_MAX_DEQUEUE times.
    world.la.inject(LaFault::Status {
        status: 400,
        count: 2,
        retry_after_secs: None,
    });
    let second = world.start_shipper("shipper-2", &knobs)?;
    let rec = wait_record(&storage, &second, &page_record_name(&page.env)).await?;
    let r = reason(&rec);
    assert!(
        r.contains("400") && r.contains("Injected by the fake Log Analytics"),
        "service text missing: {r}"
    );
    assert_eq!(rec["attempts"], 2, "{rec}");
    assert_eq!(rec["posted_upto"], posted, "{rec}");
    support::logs::wait_operator_line(
        &second,
        &["parked as poison", "400", "shipper poison show"],
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(
        world.la.stats().requests_by_status.get(&400).copied(),
        Some(2),
        "a 400 was retried in place"
    );
    wait_queue_empty(&storage, Duration::from_secs(60)).await?;

    // The cause is gone (the fault ran out): requeue resumes after the first chunk.
    let (ok, out, err) = poison_cmd(&world, &["requeue", "--all"])?;
    assert!(ok, "requeue: {out}{err}");
    wait_landed(&world, &[&page], WAIT).await?;
    wait_queue_empty(&storage, Duration::from_secs(60)).await?;
    assert_landed_once(&world, &[&page]);
    assert_eq!(
        world.la.stats().accepted_rows,
        900,
        "rows posted before the failure were posted again"
    );
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    Ok(())
}

/// A gzip stream of `n` zero bytes (about 1 KB per MB).
fn zeros_gzip(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        enc.write_all(&block[..k]).expect("gzip");
        left -= k;
    }
    enc.finish().expect("gzip")
}

/// Peak resident set of a process, in bytes (Linux `VmHWM`).
fn peak_rss(svc: &Service) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", svc.pid()?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pages_get_clear_reasons_and_the_shipper_survives() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    // 1 GiB of zeros from ~1 MB stored: sixteen times what the shipper may inflate (64 MiB).
    let bomb = raw_page(20, zeros_gzip(1 << 30));
    assert!(bomb.gz.len() < 2 << 20, "bomb is {} bytes", bomb.gz.len());
    let deep = {
        let nested = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        let text = format!(
            r#"[{{"uuid":"{}","published":"2026-01-01T00:00:00.000Z","eventType":"x","deep":{nested}}}]"#,
            uuid::Uuid::new_v4()
        );
        raw_page(21, gzip(text.as_bytes()))
    };
    let truncated = {
        let good = make_page(22, 222, 50).gz;
        raw_page(22, good[..good.len() / 2].to_vec())
    };
    let not_utf8 = raw_page(23, gzip(b"[{\"uuid\":\"\xff\xfe\xfd\"}]"));
    let hostile = [
        (&bomb, "inflates beyond"),
        (&deep, "deeper than"),
        (&truncated, "gzip"),
        (&not_utf8, "UTF-8"),
    ];
    for (p, _) in &hostile {
        put_page(&storage, p).await?;
        storage.queue.send(&p.env.encode(), None).await?;
    }
    let s = world.start_shipper(
        "shipper",
        &[("SHIPPER_MAX_DEQUEUE", "2"), ("SHIPPER_CONCURRENCY", "2")],
    )?;
    for (p, expect) in &hostile {
        let rec = wait_record(&storage, &s, &page_record_name(&p.env)).await?;
        assert!(
            reason(&rec).contains(expect),
            "seq {}: reason {:?} lacks {expect:?}",
            p.env.seq,
            reason(&rec)
        );
        assert_eq!(rec["attempts"], 2);
    }
    let mut s = s;
    assert!(s.is_running(), "the shipper died:\n{}", s.log_text());
    let peak = peak_rss(&s).unwrap_or(0);
    println!("shipper peak RSS after the gzip bomb: {} MiB", peak >> 20);
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
    assert!(
        world.la.stats().requests_by_status.is_empty(),
        "a hostile page was posted"
    );

    // The same replica still ships an ordinary page.
    let good = make_page(24, 244, 100);
    put_page(&storage, &good).await?;
    storage.queue.send(&good.env.encode(), None).await?;
    wait_landed(&world, &[&good], WAIT).await?;
    assert_landed_once(&world, &[&good]);
    // Memory stays bounded by the inflate limit (64 MiB), not by the bomb's 1 GiB.
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);

    // Purge gives the pages up for good: records, page blobs and states go, done markers
    // absorb any late twin.
    let (ok, out, err) = poison_cmd(&world, &["purge", "--yes"])?;
    assert!(ok, "purge: {out}{err}");
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    for (p, _) in &hostile {
        let e = &p.env;
        assert!(
            storage
                .blobs
                .exists(&names::done(&e.org, e.epoch, e.seq))
                .await?
        );
        assert!(!storage.blobs.exists(&e.page_blob()).await?);
        assert!(
            !storage
                .blobs
                .exists(&names::state(&e.org, e.epoch, e.seq))
                .await?
        );
    }
    Ok(())
}

/// Issue 11 item 7: `poison requeue` sends the envelope, then deletes the record. Should the
/// page be parked again in between (a new record written), the new record must survive: the
/// delete holds on to the record it read (If-Match), and the command says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_again_during_requeue_is_kept() -> anyhow::Result<()> {
    use world::storage_proxy::{CountingProxy, FaultMode, FaultRule, Hold};
    let (world, storage) = world().await?;
    let page = make_page(5, 505, 10);
    put_page(&storage, &page).await?;
    let name = page_record_name(&page.env);
    let record = |reason: &str| {
        serde_json::json!({
            "v": 1,
            "id": page_id(&page.env),
            "envelope": page.env,
            "reason": reason,
            "attempts": 5,
            "posted_upto": 0,
            "time": chrono::Utc::now(),
        })
        .to_string()
    };
    storage
        .blobs
        .write(&name, Bytes::from(record("first parking")), None)
        .await?;
    // The record's delete waits while the page is parked again.
    let hold = Hold::default();
    let blob: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
    let rule = FaultRule::new(
        "DELETE",
        "/poison/",
        None,
        1,
        FaultMode::Hold(Duration::from_secs(5)),
    );
    let proxy = CountingProxy::with_faults_and_hold(blob, "blob", vec![rule], hold.clone()).await?;
    let mut env = world.shipper_env();
    env.insert(
        "AZURE_STORAGE_CONNECTION_STRING".into(),
        world
            .azurite
            .connection_string_via(Some(proxy.addr()), None),
    );
    let id = page_id(&page.env);
    let cmd = tokio::task::spawn_blocking(move || {
        run_command("shipper", &["poison", "requeue", &id], &env)
    });
    eventually(WAIT, "the record's delete to be sent", || async {
        (hold.started() == 1).then_some(())
    })
    .await?;
    storage
        .blobs
        .write(&name, Bytes::from(record("parked again")), None)
        .await?;
    let (status, out, err) = cmd.await??;
    let kept = read_json(&storage, &name).await?;
    assert_eq!(
        kept.as_ref().map(reason).as_deref(),
        Some("parked again"),
        "the new record was deleted; requeue said: {out}{err}"
    );
    assert!(!status.success(), "requeue reported success: {out}");
    assert!(err.contains("parked again meanwhile"), "{err}");
    Ok(())
}

/// Issue 11 item 8: a chunk the sink always fails with a transient error (500) while it
/// accepts every other page is not retried for ever (holding a worker slot and its message):
/// after `CHUNK_MAX_TRANSIENT` failures it counts as the page's fault, and the page ends in
/// poison with the last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_the_sink_always_fails_while_serving_others_ends_in_poison() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let stuck = make_page(1, 801, 20);
    put_page(&storage, &stuck).await?;
    storage.queue.send(&stuck.env.encode(), None).await?;
    world.la.inject(LaFault::StatusWhenBodyContains {
        needle: stuck.uuids[0].clone(),
        status: 500,
    });
    let shipper = world.start_shipper(
        "shipper",
        &[
            ("SHIPPER_MAX_DEQUEUE", "2"),
            ("CHUNK_MAX_TRANSIENT", "3"),
            ("SHIPPER_CONCURRENCY", "2"),
        ],
    )?;
    // Other pages keep arriving and are shipped meanwhile: the sink is up.
    let feeder = {
        let storage = support::storage(&world);
        tokio::spawn(async move {
            for seq in 100.. {
                let p = make_page(seq, 900 + seq, 5);
                if put_page(&storage, &p).await.is_err()
                    || storage.queue.send(&p.env.encode(), None).await.is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let record = wait_record(&storage, &shipper, &page_record_name(&stuck.env)).await;
    feeder.abort();
    let record = record?;
    let why = reason(&record);
    assert!(
        why.contains("500") && why.contains("while accepting others"),
        "{why}"
    );
    assert!(world.la.stats().accepted_rows > 0, "no other page shipped");
    Ok(())
}

/// Issue 11 item 4 (defence in depth): the `done/` marker records the page's sha256. An
/// envelope of another page under a name already shipped (an epoch used twice) is parked as
/// poison with a clear reason, its page kept — never dropped as a twin. An old marker without
/// a hash still absorbs a twin (compatibility).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_page_under_a_shipped_name_is_parked_not_dropped() -> anyhow::Result<()> {
    let (world, storage) = world().await?;
    let shipped = make_page(9, 9_001, 10);
    put_page(&storage, &shipped).await?;
    storage.queue.send(&shipped.env.encode(), None).await?;
    let shipper = world.start_shipper("shipper", &[])?;
    wait_landed(&world, &[&shipped], WAIT).await?;
    wait_queue_empty(&storage, WAIT).await?;
    assert_done(&storage, &[&shipped]).await?;

    // Another page with the same epoch and sequence.
    let other = make_page(9, 9_002, 10);
    assert_ne!(other.env.sha256, shipped.env.sha256);
    put_page(&storage, &other).await?;
    storage.queue.send(&other.env.encode(), None).await?;
    let rec = wait_record(&storage, &shipper, &page_record_name(&other.env)).await?;
    let why = reason(&rec);
    assert!(
        why.contains(&other.env.sha256) && why.contains("already shipped"),
        "{why}"
    );
    assert!(
        storage.blobs.exists(&other.env.page_blob()).await?,
        "the unshipped page was deleted"
    );
    assert!(
        support::pages::landed(&world, &[&other])
            .values()
            .all(|n| *n == 0),
        "rows of the other page were posted"
    );

    // An empty marker, as older shippers wrote: still a twin.
    let old = make_page(10, 9_003, 10);
    put_page(&storage, &old).await?;
    let e = &old.env;
    storage
        .blobs
        .write(&names::done(&e.org, e.epoch, e.seq), Bytes::new(), None)
        .await?;
    storage.queue.send(&old.env.encode(), None).await?;
    wait_queue_empty(&storage, WAIT).await?;
    eventually(WAIT, "the twin's page blob to be cleaned up", || async {
        matches!(storage.blobs.exists(&e.page_blob()).await, Ok(false)).then_some(())
    })
    .await?;
    assert!(read_json(&storage, &page_record_name(e)).await?.is_none());
    assert_landed_once(&world, &[&shipped]);
    assert!(support::pages::landed(&world, &[&old])
        .values()
        .all(|n| *n == 0));
    Ok(())
}
