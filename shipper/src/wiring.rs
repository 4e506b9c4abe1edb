//! Builds the shipper's clients from its configuration: the shared Azure transport, the
//! managed identity (only when something needs it), Key Vault, and the sink.

use std::sync::Arc;

use anyhow::Context;
use azure_core::credentials::TokenCredential;
use common::secrets::{KeyVault, SecretSource};
use common::storage::StorageAuth;

use crate::config::{ShipperConfig, SinkSettings, WorkspaceKey};
use crate::sinks::{DataCollectorSink, LogsIngestionSink, Sink};

pub struct Wiring {
    pub azure_http: reqwest::Client,
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// `None` for the poison commands.
    pub sink: Option<Arc<dyn Sink>>,
}

impl Wiring {
    /// `with_sink = false` for the poison commands, which never post.
    pub async fn new(cfg: &ShipperConfig, with_sink: bool) -> anyhow::Result<Wiring> {
        let azure_http = common::http::azure_client().map_err(anyhow::Error::msg)?;
        let needs_identity = matches!(cfg.storage.auth, StorageAuth::ManagedIdentity)
            || cfg.key_vault_url.is_some()
            || (with_sink && matches!(cfg.sink, SinkSettings::LogsIngestion { .. }));
        let credential = if needs_identity {
            Some(
                common::identity::managed_identity(
                    cfg.azure_client_id.as_deref(),
                    azure_http.clone(),
                )
                .context("AZURE_CLIENT_ID: cannot build the managed identity credential")?,
            )
        } else {
            None
        };
        let vault = match (&cfg.key_vault_url, &credential) {
            (Some(url), Some(cred)) => Some(
                KeyVault::new(url.as_str(), cred.clone(), azure_http.clone())
                    .context("KEY_VAULT_URL")?,
            ),
            _ => None,
        };
        if !with_sink {
            return Ok(Wiring {
                azure_http,
                credential,
                sink: None,
            });
        }
        let sink: Arc<dyn Sink> = match &cfg.sink {
            SinkSettings::LogsIngestion {
                endpoint,
                dcr_immutable_id,
                stream,
                audience,
            } => Arc::new(LogsIngestionSink::try_new(
                azure_http.clone(),
                endpoint.clone(),
                dcr_immutable_id.clone(),
                stream.clone(),
                credential
                    .clone()
                    .context("the Logs Ingestion sink needs a managed identity")?,
                audience.clone(),
            )?),
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
                Arc::new(DataCollectorSink::try_new(
                    azure_http.clone(),
                    uri.clone(),
                    workspace_id.clone(),
                    key,
                    log_type.clone(),
                )?)
            }
        };
        Ok(Wiring {
            azure_http,
            credential,
            sink: Some(sink),
        })
    }
}
