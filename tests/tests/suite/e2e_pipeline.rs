//! End to end: the real collector and shipper binaries against Azurite, the fake Okta org and
//! the fake Log Analytics. Every released event lands exactly once, with the legacy columns.

use world::support;

use std::time::Duration;

use support::procs::terminate_cleanly;
use support::worlds::strict_la;
use world::fakes::okta::{EmptyPageMode, OktaFakeConfig};
use world::local::{LocalWorld, SinkKind, WorldOptions};

const LANDING: Duration = Duration::from_secs(120);

fn okta(seed: u64, initial: usize, mode: EmptyPageMode) -> OktaFakeConfig {
    OktaFakeConfig {
        seed,
        initial_events: initial,
        repeat_probability: 0.01,
        late_probability: 0.02,
        empty_page_mode: mode,
        ..OktaFakeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_ingestion_every_event_lands_once_with_the_legacy_columns() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        okta: okta(11, 2_500, EmptyPageMode::RepeatUrl),
        la: strict_la(),
        ..WorldOptions::default()
    })
    .await?;
    let mut collector = world.start_collector("collector", &[])?;
    let mut shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.duplicates, 0, "{d:?}");

    // Live events keep flowing (late and repeated ones included).
    world.okta.release(700);
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.released, 3_200);
    assert_eq!(d.duplicates, 0, "{d:?}");
    assert_eq!(world.la.stats().duplicate_rows, 0);

    // The shipper's metrics agree with what the sink saw: rows, and bytes before/after gzip.
    let addr = support::health_addr(&shipper).await;
    // (The sink stores rows a moment before the shipper counts the accepted answer.)
    world::procs::eventually(
        Duration::from_secs(30),
        "the shipper to count every row",
        || async {
            let rows = support::metric(&addr, "okta_sentinel_rows_shipped_total").await;
            (rows == Some(3_200.0)).then_some(())
        },
    )
    .await?;
    let raw = support::metric(&addr, "okta_sentinel_bytes_shipped_total")
        .await
        .unwrap_or(0.0);
    let wire = support::metric(&addr, "okta_sentinel_bytes_on_wire_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(wire as u64, world.la.stats().bytes_on_wire);
    assert!(wire > 0.0 && wire < raw / 2.0, "gzip: {wire} of {raw}");

    // The rows carry what Sentinel's content reads.
    let rows = world.landed_rows();
    for row in rows.iter().take(50) {
        for col in [
            "TimeGenerated",
            "uuid_g",
            "published_t",
            "domain_s",
            "eventType_s",
            "actor_alternateId_s",
        ] {
            assert!(row.contains_key(col), "row lacks {col}: {row:?}");
        }
        assert_eq!(row["domain_s"], "127.0.0.1");
        assert_eq!(row["TimeGenerated"], row["published_t"]);
    }

    // SIGTERM: both stop cleanly.
    terminate_cleanly(&mut collector, "SIGTERM")?;
    terminate_cleanly(&mut shipper, "SIGTERM")?;

    // Nothing is left behind: pages and states of shipped pages are deleted, done markers stay.
    let storage = support::storage(&world);
    assert!(support::blob_names(&storage, "pages/").await.is_empty());
    assert!(support::blob_names(&storage, "state/").await.is_empty());
    assert!(support::blob_names(&storage, "poison/").await.is_empty());
    assert!(!support::blob_names(&storage, "done/").await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_collector_with_secrets_from_key_vault_and_the_advancing_cursor() -> anyhow::Result<()>
{
    let world = LocalWorld::start(WorldOptions {
        okta: okta(12, 1_800, EmptyPageMode::Advance),
        sink: SinkKind::DataCollector,
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await?;
    let mut collector = world.start_collector("collector", &[])?;
    let mut shipper = world.start_shipper("shipper", &[])?;
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.duplicates, 0, "{d:?}");
    world.okta.release(300);
    let d = world.wait_all_landed(LANDING).await?;
    assert_eq!(d.duplicates, 0, "{d:?}");
    // The service flattened the nested events itself: suffixed columns, no double suffix.
    let rows = world.landed_rows();
    let row = rows.first().expect("rows");
    assert!(row.contains_key("client_ipAddress_s"), "{row:?}");
    assert!(!row.keys().any(|k| k.ends_with("_s_s")), "{row:?}");
    // Secrets came from the vault, through managed identity.
    let vault = world.vault.as_ref().expect("vault");
    assert!(vault.reads("workspace-key") >= 1);
    assert!(world.identity.requests() >= 1);
    collector.terminate(Duration::from_secs(30))?;
    shipper.terminate(Duration::from_secs(30))?;
    for svc in [&collector, &shipper] {
        let log = svc.log_text();
        assert!(
            !log.contains(world::local::TEST_SSWS_TOKEN),
            "token in {} log",
            svc.name
        );
        assert!(
            !log.contains(&world.la.config().workspace_key_b64),
            "key in {} log",
            svc.name
        );
    }
    Ok(())
}
