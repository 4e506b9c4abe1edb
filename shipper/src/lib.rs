//! The shipper: drains the page queue and posts each page's events to Log Analytics exactly
//! once per page (docs/design.md §2 "Shipper, per message", §4).
//!
//! `run` receives; `page` ships one message (claim, rows, chunks, progress, done); `keeper`
//! keeps its claim alive; `breaker` pauses on sink-wide failures; `poison` parks and
//! reprocesses pages; `rows` and `chunk` build request bodies; `sinks` post them; `doctor`
//! checks a live deployment.

pub mod breaker;
pub mod chunk;
pub mod config;
pub mod doctor;
pub mod keeper;
pub mod page;
pub mod poison;
pub mod rows;
pub mod run;
pub mod sinks;
pub mod stats;
pub mod wiring;
