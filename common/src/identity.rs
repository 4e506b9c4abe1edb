//! The one managed-identity credential of a process.
//!
//! Production authenticates to storage, Key Vault and Azure Monitor with managed identity only
//! (docs/design.md §5). One `ManagedIdentityCredential` is built at start-up and shared by every
//! SDK client: it caches a token per scope, so sharing it means one token request per audience
//! instead of one per client (docs/azure-sdk-notes.md §Q3).
//!
//! The credential follows Azure's conventions, read from the environment by `azure_identity`:
//! `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (Container Apps, App Service, Functions — and the
//! local fake in tests), otherwise the instance metadata service (VMs). `AZURE_CLIENT_ID`
//! selects a user-assigned identity.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_core::time::Duration;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};

/// Why the credential could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("AZURE_CLIENT_ID is set but empty; unset it to use the system-assigned identity")]
    EmptyClientId,
    #[error("cannot set up managed identity: {0} (on Container Apps both IDENTITY_ENDPOINT and IDENTITY_HEADER must be set; elsewhere the instance metadata service is used)")]
    Unsupported(String),
}

/// The retry policy of the token requests.
///
/// The SDK default retries 8 times over about 60 s, for every connection error too. A token
/// request is always made *inside* one of our own operations (a queue receive, a blob write, a
/// Key Vault read) which has its own retry loop, backoff, circuit breaker and readiness
/// reporting; a minute of silent retrying underneath would hide an outage from all of them and
/// hold a storage lease hostage meanwhile. So: a few quick retries (a token endpoint hiccup is
/// usually a blip), then the error surfaces within about ten seconds and our loop decides.
/// Token requests are idempotent GETs, so retrying them is always safe.
///
/// Note: on VMs (IMDS) azure_identity replaces this with its own IMDS guidance policy
/// (6 retries, ~72 s); Container Apps, our target, uses this one.
pub fn token_retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(250),
        max_retries: 4,
        max_total_elapsed: Duration::seconds(10),
        max_delay: Duration::seconds(4),
    })
}

/// Builds the shared credential. `client_id` is `AZURE_CLIENT_ID` (user-assigned identity);
/// `None` uses the system-assigned identity. `http` is the shared client (see
/// [`crate::http::build_client`]), so token requests share its connections and trusted roots.
pub fn managed_identity(
    client_id: Option<&str>,
    http: reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let user_assigned_id = match client_id.map(str::trim) {
        Some("") => return Err(IdentityError::EmptyClientId),
        Some(id) => Some(UserAssignedId::ClientId(id.to_string())),
        None => None,
    };
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id,
        client_options: sdk_client_options(http, token_retry_options()),
    };
    let credential = ManagedIdentityCredential::new(Some(options))
        .map_err(|e| IdentityError::Unsupported(e.to_string()))?;
    Ok(credential)
}

/// SDK client options that use our shared reqwest client as transport and an explicit retry
/// policy (never the SDK's implicit 60 s default).
pub fn sdk_client_options(http: reqwest::Client, retry: RetryOptions) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry,
        ..Default::default()
    }
}
