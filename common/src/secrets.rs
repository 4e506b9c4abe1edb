//! Secret values that cannot leak by accident, and where they come from.
//!
//! [`SecretString`] never prints its value through `Debug` or `Display`, is not `Serialize`,
//! and must be opened explicitly with [`SecretString::expose`] at the one place that sends it.
//!
//! [`SecretSource`] is one named secret (the Okta token, the private key, the workspace key):
//! either a value given in the environment, or a Key Vault secret read by the service itself
//! through its managed identity ([`KeyVault`]). A vault secret is read once and cached;
//! [`SecretSource::refresh`] re-reads it, so a rotated credential is picked up without a
//! restart (callers refresh after a 401 from the service the secret is for). Errors name the
//! secret and tell the operator what to fix; they never contain the value.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ExponentialRetryOptions, RetryOptions, StatusCode};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use tokio::sync::Mutex;

use crate::identity::sdk_client_options;

/// A secret (Okta API token, private key, workspace key). Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The value itself. Call it only where the secret goes on the wire or into a signature.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Why a secret could not be read. Messages name the secret and the fix, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{name} does not exist (404); create it, or point the *_SECRET setting at the right name"
    )]
    NotFound { name: String },
    #[error("access to {name} was denied (403): the service's managed identity needs the \"Key Vault Secrets User\" role on that secret or vault (a new role assignment can take several minutes to apply)")]
    Forbidden { name: String },
    #[error("Key Vault rejected the managed identity's token (401): check AZURE_CLIENT_ID and that the vault is in the identity's tenant")]
    Unauthorized,
    #[error("{name} is empty")]
    Empty { name: String },
    #[error("secret unavailable: {0}")]
    Unavailable(String),
    #[error("secret configuration: {0}")]
    Config(String),
}

impl SecretError {
    /// True when retrying later can help (an outage or throttling), false for a configuration
    /// or permission problem an operator must fix (although RBAC propagation means a 403 may
    /// also heal by itself; callers keep retrying slowly and report not-ready meanwhile).
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

/// Retry policy of Key Vault reads: a few quick retries (Key Vault reads are idempotent and
/// throttling answers carry `Retry-After`, which the SDK honours), then the error surfaces to
/// the caller's own slower loop instead of the SDK's 60 s default (docs/azure-sdk-notes.md §Q5).
fn vault_retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(250),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(10),
        max_delay: azure_core::time::Duration::seconds(4),
    })
}

/// A Key Vault, read with the shared managed-identity credential. Cheap to clone.
#[derive(Clone)]
pub struct KeyVault {
    client: Arc<SecretClient>,
    url: Arc<str>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault").field("url", &self.url).finish()
    }
}

impl KeyVault {
    /// A client for `vault_url` (`KEY_VAULT_URL`, e.g. `https://my-vault.vault.azure.net/`).
    ///
    /// Key Vault is https-only: the SDK refuses to send a bearer token over plain http, so an
    /// http URL is rejected here with a clear message instead of failing on first use.
    ///
    /// The SDK checks that the resource named in Key Vault's 401 challenge
    /// (`https://vault.azure.net`) is a parent domain of the vault host, so a hostile endpoint
    /// cannot obtain a vault token for itself. A local fake on `127.0.0.1` can never pass that
    /// check, and a real vault is never on a loopback address, so the check is turned off for
    /// loopback hosts only and stays on everywhere else.
    pub fn new(
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
        http: reqwest::Client,
    ) -> Result<KeyVault, SecretError> {
        let url = url::Url::parse(vault_url.trim()).map_err(|e| {
            SecretError::Config(format!("KEY_VAULT_URL {vault_url:?} is not a URL: {e}"))
        })?;
        if url.scheme() != "https" {
            return Err(SecretError::Config(format!(
                "KEY_VAULT_URL {url} must use https (Key Vault never accepts a token over plain http)"
            )));
        }
        if url.host().is_none() {
            return Err(SecretError::Config(format!(
                "KEY_VAULT_URL {url} has no host"
            )));
        }
        let loopback = crate::config::is_loopback_url(&url);
        let options = SecretClientOptions {
            client_options: sdk_client_options(http, vault_retry_options()),
            verify_challenge_resource: Some(!loopback),
            ..Default::default()
        };
        let client = SecretClient::new(url.as_str(), credential, Some(options)).map_err(|e| {
            SecretError::Config(format!("cannot create a Key Vault client for {url}: {e}"))
        })?;
        Ok(KeyVault {
            client: Arc::new(client),
            url: Arc::from(url.as_str()),
        })
    }

    /// The vault URL (for operator messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads the current version of secret `name`.
    pub async fn read(&self, name: &str) -> Result<SecretString, SecretError> {
        validate_secret_name(name)?;
        let what = format!("Key Vault secret {name} in {}", self.url);
        let response = self
            .client
            .get_secret(name, None)
            .await
            .map_err(|e| map_sdk_error(&e, &what))?;
        // The body holds the value: a decoding error could quote it, so it is not passed on.
        let secret = response.into_model().map_err(|_| {
            SecretError::Unavailable(format!("unreadable Key Vault answer for {what}"))
        })?;
        match secret.value {
            Some(v) if !v.is_empty() => Ok(SecretString::new(v)),
            _ => Err(SecretError::Empty { name: what }),
        }
    }
}

/// Key Vault secret names: 1–127 characters of `[0-9a-zA-Z-]`.
pub fn validate_secret_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SecretError::Config(format!(
            "{name:?} is not a valid Key Vault secret name (1-127 characters of 0-9, a-z, A-Z and -)"
        )))
    }
}

fn map_sdk_error(e: &azure_core::Error, what: &str) -> SecretError {
    match e.http_status() {
        Some(StatusCode::NotFound) => SecretError::NotFound {
            name: what.to_string(),
        },
        Some(StatusCode::Forbidden) => SecretError::Forbidden {
            name: what.to_string(),
        },
        Some(StatusCode::Unauthorized) => SecretError::Unauthorized,
        Some(status) => {
            SecretError::Unavailable(format!("Key Vault answered HTTP {status} for {what}"))
        }
        None => match e.kind() {
            ErrorKind::Credential => SecretError::Unavailable(format!(
                "no managed-identity token for Key Vault (reading {what}): {}",
                chain(e)
            )),
            ErrorKind::Connection | ErrorKind::Io => {
                SecretError::Unavailable(format!("cannot reach Key Vault for {what}: {}", chain(e)))
            }
            _ => SecretError::Unavailable(format!("reading {what} failed: {}", e.kind())),
        },
    }
}

/// The error and its causes, `a: b: c`. Only used for errors raised before or outside a Key
/// Vault response body, so no secret value can be in the chain.
fn chain(e: &azure_core::Error) -> String {
    crate::storage::error::error_chain(e)
}

enum Origin {
    Value {
        label: &'static str,
        value: SecretString,
    },
    Vault {
        vault: KeyVault,
        name: String,
        cache: Mutex<Option<SecretString>>,
    },
}

/// One named secret and where it comes from. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SecretSource {
    origin: Arc<Origin>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretSource")
            .field(&self.describe())
            .finish()
    }
}

impl SecretSource {
    /// A secret given directly (an environment variable such as `OKTA_API_TOKEN`); `label`
    /// names it in messages.
    pub fn from_value(label: &'static str, value: SecretString) -> Self {
        Self {
            origin: Arc::new(Origin::Value { label, value }),
        }
    }

    /// A secret read from `vault` on first use and cached.
    pub fn key_vault(vault: KeyVault, secret_name: String) -> Self {
        Self {
            origin: Arc::new(Origin::Vault {
                vault,
                name: secret_name,
                cache: Mutex::new(None),
            }),
        }
    }

    /// The value: the cached one, or read from the vault the first time. Concurrent first
    /// calls wait for one read instead of each reading.
    pub async fn get(&self) -> Result<SecretString, SecretError> {
        match &*self.origin {
            Origin::Value { label, value } => non_empty(label, value),
            Origin::Vault { vault, name, cache } => {
                let mut cached = cache.lock().await;
                if let Some(v) = cached.as_ref() {
                    return Ok(v.clone());
                }
                let v = vault.read(name).await?;
                *cached = Some(v.clone());
                Ok(v)
            }
        }
    }

    /// Reads the vault again (after the service the secret is for rejected it, e.g. a 401
    /// from Okta: the secret may have been rotated). The cache keeps the old value when the
    /// read fails. A value from the environment cannot change: it is returned as is.
    pub async fn refresh(&self) -> Result<SecretString, SecretError> {
        match &*self.origin {
            Origin::Value { label, value } => non_empty(label, value),
            Origin::Vault { vault, name, cache } => {
                let mut cached = cache.lock().await;
                let v = vault.read(name).await?;
                *cached = Some(v.clone());
                Ok(v)
            }
        }
    }

    /// Whether [`refresh`](Self::refresh) can ever return a different value.
    pub fn can_rotate(&self) -> bool {
        matches!(&*self.origin, Origin::Vault { .. })
    }

    /// Where the secret comes from, for operator messages (never the value):
    /// `Key Vault secret okta-acme-token` or `env OKTA_API_TOKEN`.
    pub fn describe(&self) -> String {
        match &*self.origin {
            Origin::Value { label, .. } => format!("env {label}"),
            Origin::Vault { name, .. } => format!("Key Vault secret {name}"),
        }
    }
}

fn non_empty(label: &str, value: &SecretString) -> Result<SecretString, SecretError> {
    if value.is_empty() {
        Err(SecretError::Empty {
            name: format!("env {label}"),
        })
    } else {
        Ok(value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("00abcSUPERSECRET");
        assert!(!format!("{s:?}").contains("SUPERSECRET"));
        assert!(!format!("{s}").contains("SUPERSECRET"));
        assert!(!format!("{:#?}", Some(&s)).contains("SUPERSECRET"));
        assert_eq!(s.expose(), "00abcSUPERSECRET");
    }
}
