//! Every end-to-end suite of the project in one test binary.
//!
//! Each suite is a module (one file per suite, named for what it proves); they share the
//! helpers in the test library (`world::support`) and the real binaries built by
//! `scripts/test.sh`. One binary instead of one per suite: the workspace links once, and the
//! helpers compile once (a fresh `.ci/run` spent most of its time linking twenty near-identical
//! test binaries). Run one suite with `cargo test -p okta-sentinel-tests --test suite chaos::`.

mod audit;
mod azurite_launcher;
mod bench_summary;
mod chaos;
mod collector_behaviour;
mod collector_commands;
mod collector_config;
mod crash_collector;
mod crash_shipper;
mod doctor;
mod e2e_pipeline;
mod fake_identity_kv;
mod fake_log_analytics;
mod fake_okta;
mod fault_matrix;
mod hostile_input;
mod infra;
mod infra_bicep;
mod run_local;
mod security_scan;
mod shipper_behaviour;
mod shipper_faults;
mod shipper_poison;
