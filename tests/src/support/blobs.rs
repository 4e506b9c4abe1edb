//! Listing, reading and snapshotting what the services keep in storage.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::local::LocalWorld;
use crate::procs::eventually;
use bytes::Bytes;
use common::page_state::PageState;
use common::storage::Storage;
use sha2::{Digest, Sha256};

/// A storage client on the world's Azurite, as the binaries see it.
pub fn storage(world: &LocalWorld) -> Storage {
    world.storage().expect("storage")
}

/// Names of the blobs under `prefix`.
pub async fn blob_names(storage: &Storage, prefix: &str) -> Vec<String> {
    storage
        .blobs
        .list(prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect()
}

/// Every blob of the container: name → content, `None` for one deleted between the listing
/// and the read.
pub async fn all_blobs(storage: &Storage) -> anyhow::Result<BTreeMap<String, Option<Bytes>>> {
    let mut out = BTreeMap::new();
    for item in storage.blobs.list("").await? {
        let content = storage.blobs.read(&item.name).await?.map(|c| c.bytes);
        out.insert(item.name, content);
    }
    Ok(out)
}

/// Every blob of the container: name → hex sha256 of its content (`"gone"` for one deleted
/// meanwhile). Two snapshots are equal when no blob was added, removed or changed.
pub async fn blob_hashes(storage: &Storage) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(all_blobs(storage)
        .await?
        .into_iter()
        .map(|(name, content)| {
            let hash = content.map_or_else(|| "gone".into(), |b| sha256_hex(&b));
            (name, hash)
        })
        .collect())
}

/// Hex sha256 of `bytes`, as envelopes and snapshots carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A JSON blob (a poison record, a checkpoint…), `None` when it does not exist.
pub async fn read_json(storage: &Storage, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    match storage.blobs.read(name).await? {
        Some(c) => Ok(Some(serde_json::from_slice(&c.bytes)?)),
        None => Ok(None),
    }
}

/// A page state blob, `None` when it does not exist (never written, or shipped and deleted).
pub async fn read_page_state(storage: &Storage, name: &str) -> anyhow::Result<Option<PageState>> {
    match storage.blobs.read(name).await? {
        Some(c) => Ok(Some(
            PageState::from_bytes(&c.bytes).map_err(anyhow::Error::msg)?,
        )),
        None => Ok(None),
    }
}

/// Waits up to `timeout` until the queue reports no message.
pub async fn wait_queue_empty(storage: &Storage, timeout: Duration) -> anyhow::Result<()> {
    eventually(timeout, "the queue to drain", || async {
        matches!(storage.queue.approximate_count().await, Ok(0)).then_some(())
    })
    .await
}
