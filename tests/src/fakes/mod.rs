//! Fakes of the external services, each following `docs/contracts.md` strictly.

pub mod identity;
pub mod key_vault;
pub mod log_analytics;
pub mod okta;
pub mod okta_events;
pub mod token;
