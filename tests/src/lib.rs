//! The local world: the Azurite launcher and strict fakes of the services that have no
//! emulator (Okta, Log Analytics, Key Vault, managed identity).
//!
//! Used by the test suites as library types, and by the `world` binary that runs the whole
//! pipeline locally.

pub mod azurite;
pub mod fakes;
pub mod tls;
