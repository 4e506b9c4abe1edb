//! Managed-identity tokens: one per audience the service talks to.
//!
//! A token request is the first thing every Azure call needs, and its failure hides behind
//! every later error ("cannot read the secret", "storage transport error"): checking it on its
//! own says whether the identity itself works before any role is blamed.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use super::{chain, Check};

/// Storage's token audience (docs/azure-sdk-notes.md §Q2).
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";
/// Key Vault's token audience (docs/contracts.md §5.2).
pub const VAULT_AUDIENCE: &str = "https://vault.azure.net";

/// Asks `credential` for a token for `audience` (`{audience}/.default`, as the SDK clients and
/// the Logs Ingestion sink do). The token itself is dropped unseen.
pub async fn token(
    credential: &Arc<dyn TokenCredential>,
    what: &str,
    audience: &str,
    client_id: Option<&str>,
) -> Check {
    let name = format!("identity: token for {what} ({audience})");
    let scope = format!("{}/.default", audience.trim_end_matches('/'));
    match credential.get_token(&[scope.as_str()], None).await {
        Ok(_) => Check::ok(name),
        Err(e) => {
            let selector = match client_id {
                Some(id) => format!("AZURE_CLIENT_ID={id} must be the client id of a user-assigned identity attached to this app"),
                None => "AZURE_CLIENT_ID is unset, so the app's system-assigned identity is used: enable it, or set AZURE_CLIENT_ID to the client id of the user-assigned identity attached to the app".into(),
            };
            Check::failed(
                name,
                format!("no token from the managed identity: {}", chain(&e)),
                format!(
                    "attach the managed identity to the app; {selector}; on Container Apps the platform sets IDENTITY_ENDPOINT and IDENTITY_HEADER (do not set them yourself)"
                ),
            )
        }
    }
}

/// The line for account-key storage (Azurite, dev accounts), which needs no token.
pub fn storage_shared_key(account: &str) -> Check {
    Check::ok_with(
        "identity: storage",
        format!(
            "shared key / SAS (local): account {account} from AZURE_STORAGE_CONNECTION_STRING, no token needed; production uses AZURE_STORAGE_ACCOUNT with managed identity"
        ),
    )
}
