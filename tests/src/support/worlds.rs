//! Starting a world, the fake Okta org's configuration, and what the collector records of it.

use crate::fakes::log_analytics::LogAnalyticsFakeConfig;
use crate::fakes::okta::OktaFakeConfig;
use crate::local::{LocalWorld, WorldOptions};
use common::storage::Storage;

use super::blobs::{read_json, storage};

/// A fake org with `initial` events from `seed`, the rest as by default.
pub fn okta(seed: u64, initial: usize) -> OktaFakeConfig {
    OktaFakeConfig {
        seed,
        initial_events: initial,
        ..OktaFakeConfig::default()
    }
}

/// A fake Log Analytics as strict as the real Logs Ingestion API: it refuses columns the
/// shipper's DCR manifest does not declare, and bodies over the decompressed size limit.
pub fn strict_la() -> LogAnalyticsFakeConfig {
    LogAnalyticsFakeConfig {
        declared_columns: Some(super::manifest_columns()),
        strict_decompressed_limit: true,
        ..LogAnalyticsFakeConfig::default()
    }
}

/// Starts a world and a storage client on it, with the container created: a test may read
/// or write blobs before any service ran.
pub async fn start_with_storage(options: WorldOptions) -> anyhow::Result<(LocalWorld, Storage)> {
    let world = LocalWorld::start(options).await?;
    let storage = storage(&world);
    storage.ensure_created().await?;
    Ok((world, storage))
}

/// Responses the fake Log Analytics sent with `status`.
pub fn la_status(world: &LocalWorld, status: u16) -> u64 {
    world
        .la
        .stats()
        .requests_by_status
        .get(&status)
        .copied()
        .unwrap_or(0)
}

/// The collector's key for the fake org (its domain, with the port's `:` made safe).
pub fn org_key(world: &LocalWorld) -> String {
    world.okta.domain().replace(':', "-")
}

/// Name of the fake org's checkpoint blob.
pub fn checkpoint_name(world: &LocalWorld) -> String {
    format!("checkpoints/{}.json", org_key(world))
}

/// The fake org's checkpoint, `None` before the collector wrote one.
pub async fn checkpoint(world: &LocalWorld, storage: &Storage) -> Option<serde_json::Value> {
    read_json(storage, &checkpoint_name(world))
        .await
        .expect("read checkpoint")
}
