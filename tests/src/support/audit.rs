//! The completeness audit from a test: its environment against the world's fakes, running
//! `collector audit`, and waiting until the shipper accepted every released event.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::local::LocalWorld;
use crate::procs::{eventually, run_command};

/// Environment that points the collector's audit at the world's Log Analytics fake.
/// The background audit is off unless a test turns it on.
pub fn env(world: &LocalWorld) -> BTreeMap<String, String> {
    let mut env = world.audit_env();
    // The fake makes accepted rows queryable at once: no ingestion delay to wait out.
    env.insert("AUDIT_CONFIRM_DELAY".into(), "0s".into());
    env.insert("AUDIT_PAUSE".into(), "200ms".into());
    env.insert("AUDIT_WINDOW".into(), "3h".into());
    env.insert("AUDIT_ENABLED".into(), "false".into());
    env
}

/// As `&[(&str, &str)]` for `start_collector`, plus `extra`.
pub fn pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs `collector audit --from {from} --to {to} --json` with `extra` environment; returns the
/// exit status, the records printed, and the stderr log.
pub async fn run(
    world: &LocalWorld,
    from: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(std::process::ExitStatus, Vec<serde_json::Value>, String)> {
    let mut e = world.collector_env();
    e.extend(env(world));
    for (k, v) in extra {
        e.insert(k.to_string(), v.to_string());
    }
    let args: Vec<String> = ["audit", "--from", from, "--to", to, "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (st, out, err) = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_command("collector", &a, &e)
    })
    .await??;
    let records = serde_json::from_str(&out).unwrap_or_default();
    Ok((st, records, err))
}

/// Sum of one figure over the records.
pub fn sum(records: &[serde_json::Value], figure: &str) -> u64 {
    records
        .iter()
        .map(|r| r[figure].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until the fake Log Analytics accepted `n` rows (landed or discarded).
pub async fn wait_accepted(world: &LocalWorld, n: usize) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(120),
        &format!("{n} rows accepted"),
        || async { (world.la.stats().accepted_rows >= n as u64).then_some(()) },
    )
    .await
}
