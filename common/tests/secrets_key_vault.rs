//! Key Vault secrets through the production code path: the real `ManagedIdentityCredential`
//! (pointed at the identity fake through `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, as Container
//! Apps does), the real `SecretClient` with its 401 challenge handshake, over https to the
//! Key Vault fake, trusting only the test CA through the shared reqwest client.
//!
//! One test function on purpose: the credential reads its endpoint from the process
//! environment, which must be set before any credential is built and must not change under
//! another test running in parallel.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use common::http::{build_client, HttpOptions};
use common::identity::managed_identity;
use common::secrets::{KeyVault, SecretError, SecretSource};
use world::fakes::identity::{IdentityFake, IdentityFakeConfig};
use world::fakes::key_vault::{KeyVaultFake, KeyVaultFakeConfig};

const CLIENT_ID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";
const TOKEN_NAME: &str = "okta-acme-okta-com-token";
const V1: &str = "00v1-SUPERSECRET-one";
const V2: &str = "00v2-SUPERSECRET-two";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_secrets_through_managed_identity() {
    let identity = IdentityFake::start(IdentityFakeConfig {
        client_ids: vec![CLIENT_ID.to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    let kv = KeyVaultFake::start(KeyVaultFakeConfig::default())
        .await
        .unwrap();
    // Set before any credential exists; this binary has no other test that reads them.
    std::env::set_var("IDENTITY_ENDPOINT", identity.endpoint());
    std::env::set_var("IDENTITY_HEADER", identity.header_secret());
    for v in [
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "MSI_SECRET",
    ] {
        std::env::remove_var(v);
    }

    let http = build_client(&HttpOptions {
        extra_roots_pem: vec![kv.ca_pem().into_bytes()],
        ..Default::default()
    })
    .unwrap();
    let cred: Arc<dyn TokenCredential> = managed_identity(Some(CLIENT_ID), http.clone()).unwrap();
    let vault = KeyVault::new(&kv.url(), cred.clone(), http.clone()).unwrap();

    // --- get, and the cache: two gets, one vault read.
    kv.set_secret(TOKEN_NAME, V1);
    let token = SecretSource::key_vault(vault.clone(), TOKEN_NAME.to_string());
    assert_eq!(token.describe(), format!("Key Vault secret {TOKEN_NAME}"));
    assert_eq!(token.get().await.unwrap().expose(), V1);
    assert_eq!(token.clone().get().await.unwrap().expose(), V1);
    assert_eq!(
        kv.reads(TOKEN_NAME),
        1,
        "the second get must come from the cache"
    );
    assert!(!format!("{token:?}").contains("SUPERSECRET"));

    // Concurrent first reads of another secret wait for one vault read.
    kv.set_secret("workspace-key", "c2VjcmV0LWtleQ==");
    let key = SecretSource::key_vault(vault.clone(), "workspace-key".to_string());
    let (a, b) = tokio::join!(key.get(), key.get());
    assert_eq!(a.unwrap().expose(), "c2VjcmV0LWtleQ==");
    assert_eq!(b.unwrap().expose(), "c2VjcmV0LWtleQ==");
    assert_eq!(kv.reads("workspace-key"), 1);

    // --- rotation: get keeps the cached value, refresh reads the new one.
    kv.set_secret(TOKEN_NAME, V2);
    assert_eq!(token.get().await.unwrap().expose(), V1);
    assert_eq!(token.refresh().await.unwrap().expose(), V2);
    assert_eq!(token.get().await.unwrap().expose(), V2);
    assert_eq!(kv.reads(TOKEN_NAME), 2);

    // --- 404 names the secret.
    let missing = SecretSource::key_vault(vault.clone(), "okta-missing-token".to_string());
    let err = missing.get().await.unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("okta-missing-token"), "{err}");

    // --- 403 names the role; the cached value survives a failed refresh.
    kv.deny(TOKEN_NAME);
    let err = token.refresh().await.unwrap_err();
    assert!(matches!(err, SecretError::Forbidden { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Key Vault Secrets User"), "{msg}");
    assert!(msg.contains(TOKEN_NAME), "{msg}");
    assert!(!format!("{msg} {err:?}").contains("SUPERSECRET"), "{msg}");
    assert_eq!(token.get().await.unwrap().expose(), V2);
    kv.allow(TOKEN_NAME);

    // --- an outage is transient.
    kv.set_down(true);
    let err = token.refresh().await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    kv.set_down(false);
    assert_eq!(token.refresh().await.unwrap().expose(), V2);

    // One shared credential: one token for the vault audience, however many reads.
    assert_eq!(identity.tokens_issued_for("https://vault.azure.net"), 1);

    // --- an identity that is not assigned to this "resource": no token, a clear error.
    let stranger =
        managed_identity(Some("00000000-1111-2222-3333-444444444444"), http.clone()).unwrap();
    let vault2 = KeyVault::new(&kv.url(), stranger, http).unwrap();
    let err = SecretSource::key_vault(vault2, TOKEN_NAME.to_string())
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("managed-identity token"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&identity.header_secret()));
}
