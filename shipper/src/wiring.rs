//! Builds the shipper's clients from its configuration: the shared Azure transport, the
//! managed identity (only when something needs it), Key Vault, and the sink.

use std::sync::Arc;

use anyhow::Context;
use azure_core::credentials::TokenCredential;
use common::secrets::SecretSource;
use common::service::AzureClients;
use common::storage::StorageAuth;

use crate::config::{ShipperConfig, SinkSettings, WorkspaceKey};
use crate::sinks::{DataCollectorSink, LogsIngestionSink, Sink, SinkMetrics};

/// The clients the shipper's commands talk through, built once from the configuration.
pub struct Clients {
    /// The HTTP client shared by the Azure SDK clients and the sinks (test CA, no automatic
    /// decompression).
    pub azure_http: reqwest::Client,
    /// The managed identity, when storage or the Logs Ingestion sink needs it.
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// `None` for the poison commands.
    pub sink: Option<Arc<dyn Sink>>,
}

impl Clients {
    /// Builds the sink when the configuration has one (not for the poison commands).
    pub async fn new(cfg: &ShipperConfig, metrics: SinkMetrics) -> anyhow::Result<Clients> {
        let azure = AzureClients::build(
            matches!(cfg.storage.auth, StorageAuth::ManagedIdentity)
                || matches!(cfg.sink, Some(SinkSettings::LogsIngestion { .. })),
            cfg.azure_client_id.as_deref(),
            cfg.key_vault_url.as_ref(),
        )?;
        let AzureClients {
            http: azure_http,
            credential,
            vault,
        } = azure;
        let Some(settings) = &cfg.sink else {
            return Ok(Clients {
                azure_http,
                credential,
                sink: None,
            });
        };
        let sink: Arc<dyn Sink> = match settings {
            SinkSettings::LogsIngestion {
                endpoint,
                dcr_immutable_id,
                stream,
                audience,
            } => Arc::new(
                LogsIngestionSink::try_new(
                    azure_http.clone(),
                    endpoint.clone(),
                    dcr_immutable_id.clone(),
                    stream.clone(),
                    // Its own token cache: a 401 can force a new token (sinks/logs_ingestion.rs).
                    common::token_cache::TokenCache::managed_identity(
                        cfg.azure_client_id.as_deref(),
                        azure_http.clone(),
                    )
                    .context("AZURE_CLIENT_ID: cannot build the managed identity credential")?,
                    audience.clone(),
                )?
                .with_gzip(cfg.tuning.gzip)
                .with_metrics(metrics),
            ),
            SinkSettings::DataCollector {
                workspace_id,
                key,
                log_type,
                uri,
            } => {
                let key = match key {
                    WorkspaceKey::Value(v) => SecretSource::from_value("WORKSPACE_KEY", v.clone()),
                    WorkspaceKey::Vault { secret } => SecretSource::key_vault(
                        vault
                            .clone()
                            .context("KEY_VAULT_URL is required for WORKSPACE_KEY_SECRET")?,
                        secret.clone(),
                    ),
                };
                Arc::new(
                    DataCollectorSink::try_new(
                        azure_http.clone(),
                        uri.clone(),
                        workspace_id.clone(),
                        key,
                        log_type.clone(),
                    )?
                    .with_metrics(metrics),
                )
            }
        };
        Ok(Clients {
            azure_http,
            credential,
            sink: Some(sink),
        })
    }
}
