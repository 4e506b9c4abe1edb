//! The rules, one module per concern. Each takes the parsed context and pushes problems as
//! `path:line:col: message`.

pub(crate) mod allocations;
pub(crate) mod app_names;
pub(crate) mod columns;
pub(crate) mod deployment;
pub(crate) mod identifiers;
pub(crate) mod resources;
pub(crate) mod roles;
