//! Shared plumbing of okta-sentinel: everything the collector and the shipper both need.
//!
//! The two services never import each other; they meet only through the queue, the blobs and
//! the types defined here ([`envelope`], [`page_state`]).

pub mod backoff;
pub mod config;
pub mod doctor;
pub mod envelope;
pub mod failpoint;
pub mod gzip;
pub mod health;
pub mod http;
pub mod identity;
pub mod json_scan;
pub mod memory;
pub mod metrics;
pub mod org;
pub mod page_state;
pub mod secrets;
pub mod service;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod token_cache;
