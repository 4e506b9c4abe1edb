//! `collector::run::run` driven in-process: the shutdown signal is a parameter, so a test
//! (or an embedding) starts the service with its own token and stops it without a process
//! signal. Against the fake Okta org and the real Azurite, as every storage test.

use std::time::Duration;

use clap::Parser;
use collector::config::Cli;
use tokio_util::sync::CancellationToken;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions, TEST_SSWS_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_collects_until_its_shutdown_token_fires_then_returns_ok() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 5,
            initial_events: 1_500,
            ..OktaFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    let conn = world.azurite.connection_string();
    let origin = world.okta.base_url();
    let cli = Cli::try_parse_from([
        "collector",
        "--connection-string",
        conn.as_str(),
        // The world's own queue and container in the test binary's shared Azurite.
        "--queue",
        world.queue_name(),
        "--container",
        world.container_name(),
        "--okta-domain",
        origin.as_str(),
        "--okta-api-token",
        TEST_SSWS_TOKEN,
        "--okta-start",
        "2h",
        "--okta-poll-interval",
        "500ms",
        "--leader-lease-duration",
        "15s",
        "--http-addr",
        "127.0.0.1:0",
    ])?;
    let cfg = cli.args.validate(chrono::Utc::now())?;
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(collector::run::run(cfg, shutdown.clone()));

    // Both pages handed off: two messages on the queue.
    let storage = world.storage()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if storage.queue.approximate_count().await.unwrap_or(0) >= 2 {
            break;
        }
        assert!(!service.is_finished(), "run returned early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pages handed off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), service).await???;
    // A clean stop releases the leader lease at once.
    let leader = format!("leader/{}", world.okta.domain().replace(':', "-"));
    let lease = storage
        .blobs
        .acquire_lease(&leader, Duration::from_secs(15), None)
        .await?;
    storage.blobs.release_lease(&leader, &lease).await?;
    Ok(())
}
