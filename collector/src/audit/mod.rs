//! Proof of completeness (`docs/design.md` §2 "Audit"): re-read settled past windows from
//! Okta, ask Log Analytics which of their events it holds, hand the missing ones back to the
//! shippers as repair pages through the normal exactly-once pipeline, and leave evidence.
//!
//! - [`settings`]: `AUDIT_*` and `LOG_ANALYTICS_WORKSPACE_ID`;
//! - [`window`]: windows of `published` time, which ones are settled;
//! - [`okta_side`]: the bounded Okta request, paced by [`budget`] (spare budget only);
//! - [`logs_query`]: the Logs Query API request;
//! - [`waiting`]: events still in waiting or parked pages (reported, never repaired);
//! - [`repair`]: repair pages and their crash-safe hand-off;
//! - [`check`]: one audit of one window, end to end;
//! - [`record`], [`metrics`]: the evidence;
//! - [`lock`]: one audit per org at a time;
//! - [`command`]: `collector audit --from --to`; [`background`]: the running collector's.
//!
//! Failpoints (each has a kill test in `tests/tests/crash_collector.rs`):
//! `audit.before_repair`, `audit.after_repair_blob`, `audit.after_repair_recorded`,
//! `audit.after_repair_enqueue`, `audit.after_repair_cleared`, `audit.after_record`.

pub mod background;
pub mod budget;
pub mod check;
pub mod command;
pub mod lock;
pub mod logs_query;
pub mod metrics;
pub mod okta_side;
pub mod record;
pub mod repair;
pub mod settings;
pub mod waiting;
pub mod window;

pub use background::AuditHook;
