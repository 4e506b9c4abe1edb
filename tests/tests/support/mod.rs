//! Helpers shared by the end-to-end suites (each suite includes this with `mod support;`).
#![allow(dead_code)]

use std::time::Duration;

use common::storage::Storage;
use world::local::LocalWorld;

/// The shipper's column manifest as `(name, type)` pairs: the DCR stream the fake enforces.
pub fn manifest_columns() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shipper/manifest/okta_cl.v1.json"
    );
    let text = std::fs::read_to_string(path).expect("manifest");
    let v: serde_json::Value = serde_json::from_str(&text).expect("manifest json");
    v["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["type"].as_str().expect("type").to_string(),
            )
        })
        .collect()
}

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

/// The `addr` the service logged for its health endpoints (HTTP_ADDR=127.0.0.1:0).
pub async fn health_addr(svc: &world::procs::Service) -> String {
    world::procs::eventually(
        Duration::from_secs(90),
        "the health address in the log",
        || async {
            let log = svc.log_text();
            for line in log.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(a) = v
                        .get("addr")
                        .or_else(|| v.pointer("/fields/addr"))
                        .and_then(|a| a.as_str())
                    {
                        return Some(a.to_string());
                    }
                }
            }
            None
        },
    )
    .await
    .expect("health addr")
}

/// GET a path on a service's health server; returns (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Value of a metric (first sample line starting with `name`) on `/metrics`.
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
}
