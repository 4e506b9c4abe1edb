//! The fault matrix (issue #6 item 3), the cells not covered by `shipper_faults.rs` and
//! `collector_behaviour.rs`: Key Vault and the managed-identity endpoint down at start-up and
//! mid-run, an Okta credential rotated in the vault, Okta 500/slow answers and 403, and Log
//! Analytics 404 (wrong DCR) and a 500 burst.
//!
//! Every cell runs the real binaries against Azurite and the fakes and asserts three things:
//! nothing is lost or duplicated (`wait_all_landed`, duplicates 0), the right retry / breaker /
//! poison outcome, and a WARN or ERROR log line that names the cause so an operator can act.
//! Waits are bounded by timeouts; no assertion is about a duration.

mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::page_state::PageState;
use common::storage::Storage;
use world::fakes::log_analytics::LaFault;
use world::fakes::okta::{OktaFakeConfig, OktaFault};
use world::local::{okta_secret_name, LocalWorld, SinkKind, WorldOptions};
use world::procs::{eventually, Service};

/// Bound of every "everything landed" wait.
const LANDING: Duration = Duration::from_secs(120);
/// Bound of waits for a log line or a readiness change.
const SIGNAL: Duration = Duration::from_secs(60);
/// Audience of the Logs Ingestion tokens.
const MONITOR: &str = "https://monitor.azure.com";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn okta(seed: u64, initial: usize) -> OktaFakeConfig {
    OktaFakeConfig {
        seed,
        initial_events: initial,
        ..OktaFakeConfig::default()
    }
}

/// WARN and ERROR lines of a service's JSON log: what an operator's alert rule would see.
fn operator_lines(svc: &Service) -> Vec<String> {
    svc.log_text()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("level").and_then(|x| x.as_str()).map(str::to_string))
                .is_some_and(|lvl| lvl == "WARN" || lvl == "ERROR")
        })
        .map(str::to_string)
        .collect()
}

/// Waits for a WARN/ERROR line containing every needle; returns it.
async fn wait_operator_line(svc: &Service, needles: &[&str]) -> anyhow::Result<String> {
    let what = format!("a WARN/ERROR line of {} naming {needles:?}", svc.name);
    let found = eventually(SIGNAL, &what, || async {
        operator_lines(svc)
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
    })
    .await;
    found.with_context(|| format!("log of {}:\n{}", svc.name, tail(&svc.log_text())))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Waits until `/readyz` answers 503 with a body containing every needle; returns the body.
async fn wait_not_ready(addr: &str, needles: &[&str]) -> anyhow::Result<String> {
    let what = format!("/readyz on {addr} to be 503 naming {needles:?}");
    eventually(SIGNAL, &what, || async {
        let (status, body) = support::http_get(addr, "/readyz").await;
        (status == 503 && needles.iter().all(|n| body.contains(n))).then_some(body)
    })
    .await
}

/// Waits until `/readyz` answers 200.
async fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let what = format!("/readyz on {addr} to be 200");
    eventually(SIGNAL, &what, || async {
        (support::http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await
}

/// Waits until a gauge has `value`.
async fn wait_metric(addr: &str, name: &str, value: f64) -> anyhow::Result<()> {
    let what = format!("{name} = {value} on {addr}");
    eventually(SIGNAL, &what, || async {
        (support::metric(addr, name).await == Some(value)).then_some(())
    })
    .await
}

/// Waits until the collector has put at least one page on the queue.
async fn wait_enqueued(storage: &Storage) -> anyhow::Result<u64> {
    eventually(SIGNAL, "a page on the queue", || async {
        storage
            .queue
            .approximate_count()
            .await
            .ok()
            .filter(|n| *n > 0)
    })
    .await
}

/// The health address a service logged (`HTTP_ADDR=127.0.0.1:0`). The JSON log flattens event
/// fields to the top level (`telemetry.rs`: `flatten_event(true)`), so `addr` is read there;
/// `/fields/addr` (the unflattened shape `support::health_addr` looks for) is accepted too.
async fn health_addr(svc: &Service) -> anyhow::Result<String> {
    let found = eventually(SIGNAL, "the health address in the log", || async {
        svc.log_text().lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            v.get("addr")
                .or_else(|| v.pointer("/fields/addr"))
                .and_then(|a| a.as_str())
                .map(str::to_string)
        })
    })
    .await;
    found.with_context(|| format!("log of {}:\n{}", svc.name, tail(&svc.log_text())))
}

/// Every released event landed exactly once.
async fn assert_all_landed_once(world: &LocalWorld, phase: &str) -> anyhow::Result<()> {
    let d = world
        .wait_all_landed(LANDING)
        .await
        .with_context(|| format!("phase: {phase}"))?;
    assert_eq!(d.duplicates, 0, "{phase}: {d:?}");
    assert_eq!(d.landed_distinct, d.released, "{phase}: {d:?}");
    Ok(())
}

/// No poison record, and no page state that counted a failure: sink-wide trouble and secret
/// outages must never count against a page.
async fn assert_nothing_counts_toward_poison(storage: &Storage, phase: &str) -> anyhow::Result<()> {
    let poison = support::blob_names(storage, "poison/").await;
    assert!(poison.is_empty(), "{phase}: poison records {poison:?}");
    for name in support::blob_names(storage, "state/").await {
        let Some(content) = storage.blobs.read_limited(&name, 64 * 1024).await? else {
            continue; // shipped and deleted meanwhile
        };
        let state = PageState::from_bytes(&content.bytes)
            .map_err(|e| anyhow::anyhow!("{phase}: unreadable page state {name}: {e}"))?;
        assert_eq!(state.failures, 0, "{phase}: {name} counted a failure: {state:?}");
    }
    Ok(())
}

/// No secret value in any log of the run.
fn assert_no_secret_in_logs(services: &[&Service], secrets: &[&str]) {
    for svc in services {
        let log = svc.log_text();
        for s in secrets {
            assert!(!log.contains(s), "a secret value is in the log of {}", svc.name);
        }
    }
}

/// Prints a phase with the time since the test began (read with `--nocapture`).
struct Phases(Instant);

impl Phases {
    fn new() -> Self {
        Phases(Instant::now())
    }
    fn say(&self, what: &str) {
        println!("[{:>6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

fn assert_running(svc: &mut Service) {
    assert!(
        svc.is_running(),
        "{} exited; log:\n{}",
        svc.name,
        tail(&svc.log_text())
    );
}

// ---------------------------------------------------------------------------------------
// Key Vault
// ---------------------------------------------------------------------------------------

/// Key Vault down when the collector starts, then when a Data Collector shipper (its workspace
/// key in the vault) starts with pages waiting, then mid-run.
///
/// Observed design: both services read their secret lazily, on first use, and retry forever
/// (they never exit): start-up "retries, then a clear error" means a WARN/ERROR line naming the
/// vault and the secret, and `/readyz` 503 saying why. Mid-run, the cached secrets keep
/// working: events keep landing while the vault is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_down_at_start_up_then_mid_run() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions {
        okta: okta(61, 1_200),
        sink: SinkKind::DataCollector,
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    let vault = world.vault.as_ref().context("the world has a vault")?;
    let okta_secret = okta_secret_name(&world.okta.domain());
    let t = Phases::new();

    // 1. Collector start-up with the vault down: it keeps running, says why, sends nothing.
    vault.set_down(true);
    let mut collector = world.start_collector("collector", &[])?;
    let c_addr = health_addr(&collector).await?;
    let line = wait_operator_line(&collector, &["Key Vault", &okta_secret, "503"]).await?;
    println!("collector, vault down at start-up: {line}");
    let body = wait_not_ready(&c_addr, &["Key Vault", &okta_secret]).await?;
    println!("collector /readyz: {body}");
    assert_running(&mut collector);
    assert_eq!(
        world.okta.stats().logs_requests,
        0,
        "no request may reach Okta without a credential"
    );

    // The vault comes back: the collector reads the token and events flow.
    t.say("collector: complained and not ready; vault back up");
    vault.set_down(false);
    wait_enqueued(&storage).await?;
    t.say("collector: pages on the queue");
    assert!(vault.reads(&okta_secret) >= 1);

    // 2. Shipper start-up with the vault down and pages waiting: it retries, never poisons,
    //    and says why.
    vault.set_down(true);
    let mut shipper = world.start_shipper("shipper", &[])?;
    let s_addr = health_addr(&shipper).await?;
    t.say("shipper started with the vault down");
    let line = wait_operator_line(&shipper, &["Key Vault", "workspace-key"]).await?;
    println!("shipper, vault down at start-up: {line}");
    let body = wait_not_ready(&s_addr, &["Key Vault", "workspace-key"]).await?;
    println!("shipper /readyz: {body}");
    assert_running(&mut shipper);
    assert!(world.landed_rows().is_empty(), "nothing can be signed without the key");
    assert_nothing_counts_toward_poison(&storage, "shipper start-up, vault down").await?;

    t.say("shipper: complained and not ready; vault back up");
    vault.set_down(false);
    assert_all_landed_once(&world, "after the vault came back").await?;
    t.say("all landed");
    wait_ready(&s_addr).await?;
    wait_ready(&c_addr).await?;

    // 3. Mid-run: the vault goes down again; the cached token and key keep working.
    vault.set_down(true);
    let vault_requests = vault.requests();
    world.okta.release(600);
    assert_all_landed_once(&world, "vault down mid-run").await?;
    t.say("mid-run: all landed while the vault was down");
    assert_eq!(
        vault.requests(),
        vault_requests,
        "cached secrets need no vault request"
    );
    assert_eq!(support::http_get(&c_addr, "/readyz").await.0, 200);
    assert_eq!(support::http_get(&s_addr, "/readyz").await.0, 200);
    vault.set_down(false);

    assert_nothing_counts_toward_poison(&storage, "end").await?;
    assert_no_secret_in_logs(
        &[&collector, &shipper],
        &[world::local::TEST_SSWS_TOKEN, &world.la.config().workspace_key_b64],
    );
    Ok(())
}
