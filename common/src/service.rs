//! Start-up, shared clients and exit codes of the two service binaries.
//!
//! Both binaries boot the same way (memory settings, logging, failpoint check, runtime), build
//! the same Azure clients (one shared HTTP transport, the managed identity only when something
//! needs it, Key Vault when configured) and map outcomes to the same exit codes: 2 for bad
//! configuration, 1 for a failure at run time, 0 for a clean stop.

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use azure_core::credentials::TokenCredential;
use url::Url;

use crate::secrets::KeyVault;
use crate::telemetry::LogFormat;

/// Exit code for configuration errors (the message names the variable).
pub const CONFIG_EXIT: u8 = 2;

/// Boots a service: caps malloc arenas, starts logging, checks the failpoint spec and builds
/// the runtime. `Err` carries the exit code to return from `main`.
pub fn boot(
    name: &'static str,
    log_format: Option<LogFormat>,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    crate::memory::limit_malloc_arenas();
    crate::telemetry::init(log_format, name);
    if let Err(e) = crate::failpoint::validate_env() {
        eprintln!("{name}: {e}");
        return Err(ExitCode::from(CONFIG_EXIT));
    }
    runtime().map_err(|e| {
        eprintln!("{name}: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The services' runtime: one async worker unless `TOKIO_WORKER_THREADS` says otherwise
/// (tokio reads that variable only when no count is set here).
///
/// Their async side is mostly I/O (and gzip of request bodies or pages); the shipper's heaviest
/// work, inflating pages and building rows, runs on tokio's blocking pool, at most one page
/// per CPU at a time. On a 2-core machine a second async worker cost more than it gave: ≈ 4 % more
/// shipper CPU and ≈ 6 % more collector CPU at the same throughput, from work stealing and
/// wake-ups between the two (BENCHMARKS.md, issue 14).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(1);
    }
    runtime.enable_all().build()
}

/// Reports a configuration error (log and stderr) and returns its exit code.
pub fn config_failed(name: &str, e: &dyn Display) -> ExitCode {
    tracing::error!("configuration error: {e}");
    eprintln!("{name}: configuration error: {e}");
    ExitCode::from(CONFIG_EXIT)
}

/// Maps the outcome of a command to the exit code, reporting an error with its context.
pub fn finish(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Azure side of a service: the shared transport, the managed identity and Key Vault.
pub struct AzureClients {
    /// Transport of the Azure SDK and of our own Azure calls (no automatic decompression).
    pub http: reqwest::Client,
    pub credential: Option<Arc<dyn TokenCredential>>,
    pub vault: Option<KeyVault>,
}

impl AzureClients {
    /// Builds the clients; the identity only when `needs_identity` or a vault is configured.
    pub fn build(
        needs_identity: bool,
        client_id: Option<&str>,
        key_vault_url: Option<&Url>,
    ) -> anyhow::Result<AzureClients> {
        let http = crate::http::azure_client().map_err(anyhow::Error::msg)?;
        let credential = if needs_identity || key_vault_url.is_some() {
            Some(
                crate::identity::managed_identity(client_id, http.clone())
                    .context("AZURE_CLIENT_ID: cannot build the managed identity credential")?,
            )
        } else {
            None
        };
        let vault = match (key_vault_url, &credential) {
            (Some(url), Some(cred)) => Some(
                KeyVault::new(url.as_str(), cred.clone(), http.clone()).context("KEY_VAULT_URL")?,
            ),
            _ => None,
        };
        Ok(AzureClients {
            http,
            credential,
            vault,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One async worker by default (the suite does not set `TOKIO_WORKER_THREADS`).
    #[test]
    fn the_runtime_has_one_async_worker_by_default() {
        if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            return; // an operator's count wins; nothing to check here
        }
        let rt = runtime().map_err(|e| e.to_string());
        assert_eq!(rt.map(|rt| rt.metrics().num_workers()), Ok(1));
    }
}
