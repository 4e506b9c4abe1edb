//! The local world: the Azurite launcher and strict fakes of the services that have no
//! emulator (Okta, Log Analytics, Key Vault, managed identity), the process harness that runs
//! the real binaries, and [`local::LocalWorld`], which wires them all together for the
//! end-to-end suites and for the `okta-sentinel-local` run command.

pub mod azurite;
pub mod fakes;
pub mod local;
pub mod procs;
pub mod storage_proxy;
pub mod strict_json;
pub mod support;
pub mod tls;
