//! The collector: pulls one Okta org's System Log with polling requests, paced on Okta's rate
//! limits, and hands each page to the shippers through Azure Storage (docs/design.md §2).
//!
//! `run` is the loop; `leader`, `checkpoint` and `handoff` are its crash-safe steps; `okta`
//! talks to Okta; `pacing` and `dedupe` shape what is fetched; `commands` are the operator
//! commands (`status`, `reset`); `doctor` checks a live deployment; `audit` proves
//! completeness against Log Analytics.

pub mod audit;
pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod dedupe;
pub mod doctor;
pub mod handoff;
pub mod leader;
pub mod okta;
pub mod pacing;
pub mod run;
pub mod stats;
pub mod wiring;
