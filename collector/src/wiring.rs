//! Builds the collector's clients from its configuration: the shared Azure transport, the
//! managed identity (only when something needs it), Key Vault, and the Okta credential.

use std::sync::Arc;

use anyhow::Context;
use azure_core::credentials::TokenCredential;
use common::http::extra_roots_from_env;
use common::secrets::{KeyVault, SecretSource};
use common::service::AzureClients;
use common::storage::StorageAuth;

use crate::config::{CollectorConfig, CredentialSpec};
use crate::okta::Credential;

pub struct Wiring {
    /// Transport of the Azure SDK (no automatic decompression).
    pub azure_http: reqwest::Client,
    /// Okta's client: gzip on, a timeout above Okta's own 30 s.
    pub okta_http: reqwest::Client,
    pub credential: Option<Arc<dyn TokenCredential>>,
    pub vault: Option<KeyVault>,
}

impl Wiring {
    pub async fn new(cfg: &CollectorConfig) -> anyhow::Result<Wiring> {
        // Redirects off: a redirect must never carry the credential anywhere.
        let okta_http = crate::okta::build_http_client_with_timeout(
            &extra_roots_from_env().context("OKTA_SENTINEL_EXTRA_CA")?,
            cfg.request_timeout,
        )
        .context("building the Okta HTTP client")?;
        let azure = AzureClients::build(
            matches!(cfg.storage.auth, StorageAuth::ManagedIdentity),
            cfg.azure_client_id.as_deref(),
            cfg.key_vault_url.as_ref(),
        )?;
        Ok(Wiring {
            azure_http: azure.http,
            okta_http,
            credential: azure.credential,
            vault: azure.vault,
        })
    }

    /// The Okta credential as configured: a value from the environment or a Key Vault secret.
    pub fn okta_credential(&self, cfg: &CollectorConfig) -> anyhow::Result<Credential> {
        let vault = |secret: &str| -> anyhow::Result<SecretSource> {
            let v = self
                .vault
                .clone()
                .context("KEY_VAULT_URL is required for a Key Vault secret")?;
            Ok(SecretSource::key_vault(v, secret.to_string()))
        };
        Ok(match &cfg.credential {
            CredentialSpec::SswsValue(v) => {
                Credential::Ssws(SecretSource::from_value("OKTA_API_TOKEN", v.clone()))
            }
            CredentialSpec::SswsVault { secret } => Credential::Ssws(vault(secret)?),
            CredentialSpec::JwtValue {
                client_id,
                key,
                key_id,
            } => Credential::PrivateKeyJwt {
                client_id: client_id.clone(),
                key: SecretSource::from_value("OKTA_PRIVATE_KEY", key.clone()),
                key_id: key_id.clone(),
                scope: "okta.logs.read".into(),
            },
            CredentialSpec::JwtVault {
                client_id,
                secret,
                key_id,
            } => Credential::PrivateKeyJwt {
                client_id: client_id.clone(),
                key: vault(secret)?,
                key_id: key_id.clone(),
                scope: "okta.logs.read".into(),
            },
        })
    }
}
