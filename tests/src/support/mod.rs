//! Helpers shared by the end-to-end suites (`tests/tests/suite/`, as `world::support`).
//!
//! The re-exports below keep the short `support::name` paths every suite uses. One concept
//! per file:
//!
//! - [`audit`]: the completeness audit against the world's fakes;
//! - [`health`]: the health address a service logged, `/readyz` waits;
//! - [`metrics`]: reading samples from `/metrics`;
//! - [`logs`]: searching a service's JSON log the way an operator's alert would;
//! - [`blobs`]: listing, reading and snapshotting storage;
//! - [`pages`]: pages and envelopes a test writes itself, and checking they landed;
//! - [`worlds`]: starting a world, the fake org's configuration and checkpoint;
//! - [`procs`]: stopping a service cleanly, or at a failpoint;
//! - [`secret_scan`]: finding secrets in everything a run produced;
//! - [`trap`]: a listener standing in for a foreign origin.

pub mod audit;
pub mod blobs;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod procs;
pub mod secret_scan;
pub mod trap;
pub mod worlds;

pub use blobs::{blob_names, storage};
pub use health::{
    health_addr, health_addr_within, http_get, wait_not_ready, wait_ready, wait_readyz,
};
pub use metrics::{metric, metric_sum};

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
