//! Key Vault secrets: each secret the service will read exists and is readable.
//!
//! The read goes through the service's own [`SecretSource`] (the same Key Vault client, the
//! same cache), so a later check that uses the secret (the Okta request, the SharedKey
//! signature) does not read it again. The value is never printed: only the secret's name and
//! where it lives.

use crate::secrets::{SecretError, SecretSource};

use super::Check;

/// Key Vault Secrets User grants this data action (docs/contracts.md §7.2).
const GET_SECRET_ACTION: &str = "Microsoft.KeyVault/vaults/secrets/getSecret/action";

/// Reads `source` once. `setting` is the variable that names the secret
/// (`OKTA_API_TOKEN_SECRET`, `WORKSPACE_KEY_SECRET`); `identity` says whose identity reads it.
pub async fn secret(source: &SecretSource, setting: &str, identity: &str) -> Check {
    let name = format!("secret: {}", source.describe());
    if !source.can_rotate() {
        // A value from the environment: nothing to reach, only whether it is set.
        return match source.get().await {
            Ok(_) => Check::ok_with(name, "set in the environment, not read from Key Vault"),
            Err(e) => Check::failed(
                name,
                e.to_string(),
                "set the variable, or better store the value in Key Vault and set KEY_VAULT_URL",
            ),
        };
    }
    match source.get().await {
        Ok(_) => Check::ok_with(name, "exists and is readable"),
        Err(e) => {
            let fix = match &e {
                SecretError::NotFound { .. } => format!(
                    "create the secret in the vault (az keyvault secret set --vault-name <vault> --name <name> --file <file>), or set {setting} to the name it has"
                ),
                SecretError::Forbidden { .. } => format!(
                    "grant {identity} the role Key Vault Secrets User (data action {GET_SECRET_ACTION}) on this secret (or on the vault); a new assignment can take several minutes to apply"
                ),
                SecretError::Unauthorized => {
                    "check AZURE_CLIENT_ID and that the vault is in the identity's tenant".into()
                }
                SecretError::Empty { .. } => {
                    "store the value in the secret (it is empty)".into()
                }
                SecretError::Unavailable(_) => {
                    "check KEY_VAULT_URL, the vault's firewall / private endpoint, and the identity line above".into()
                }
                SecretError::Config(_) => format!("correct {setting} or KEY_VAULT_URL"),
            };
            Check::failed(name, e.to_string(), fix)
        }
    }
}
