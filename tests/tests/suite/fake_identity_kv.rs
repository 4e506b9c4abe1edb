//! The managed-identity and Key Vault fakes speak the wire contracts (docs/contracts.md §5).

use std::collections::HashMap;

use world::fakes::identity::{IdentityFake, IdentityFakeConfig};
use world::fakes::key_vault::{KeyVaultFake, KeyVaultFakeConfig};
use world::fakes::token;

const VAULT: &str = "https://vault.azure.net";

fn https_client() -> reqwest::Client {
    let ca = world::tls::shared_ca().ca_pem();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn get_token(
    id: &IdentityFake,
    header: Option<&str>,
    query: &[(&str, &str)],
) -> reqwest::Response {
    let url = url::Url::parse_with_params(&id.endpoint(), query).unwrap();
    let mut req = reqwest::Client::new().get(url).header("metadata", "true");
    if let Some(h) = header {
        req = req.header("x-identity-header", h);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn identity_rejects_a_wrong_or_missing_identity_header() {
    let id = IdentityFake::start(IdentityFakeConfig::default())
        .await
        .unwrap();
    let q = [("api-version", "2019-08-01"), ("resource", VAULT)];
    assert_eq!(get_token(&id, Some("wrong"), &q).await.status(), 401);
    assert_eq!(get_token(&id, None, &q).await.status(), 401);
    assert_eq!(id.tokens_issued_for(VAULT), 0);
    assert_eq!(id.requests(), 2);
    let secret = id.header_secret();
    assert_eq!(get_token(&id, Some(&secret), &q).await.status(), 200);
    assert_eq!(id.tokens_issued_for(VAULT), 1);
    // The secret never shows in Debug output.
    assert!(!format!("{id:?}").contains(&secret));
}

#[tokio::test]
async fn identity_issues_a_token_with_string_expires_on_for_the_resource() {
    let id = IdentityFake::start(IdentityFakeConfig {
        token_ttl_secs: 600,
        client_ids: vec!["cid-1".into()],
    })
    .await
    .unwrap();
    let secret = id.header_secret();
    let resp = get_token(
        &id,
        Some(&secret),
        &[
            ("api-version", "2019-08-01"),
            ("resource", "https://storage.azure.com/.default"),
            ("client_id", "cid-1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = json_body(resp).await;
    let expires_on = body["expires_on"]
        .as_str()
        .expect("expires_on must be a string");
    let expires_on: i64 = expires_on.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 590..=now + 610).contains(&expires_on));
    assert_eq!(body["resource"], "https://storage.azure.com");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["client_id"], "cid-1");
    let access = body["access_token"].as_str().unwrap();
    let claims = token::verify_bearer(
        Some(&format!("Bearer {access}")),
        "https://storage.azure.com",
    )
    .unwrap();
    assert_eq!(claims.appid, "cid-1");
    assert_eq!(
        id.tokens_issued_for("https://storage.azure.com/.default"),
        1
    );
    assert_eq!(id.tokens_issued_for(VAULT), 0);

    // An identity not assigned to the "resource" → 400, as the platform answers.
    let other = get_token(
        &id,
        Some(&secret),
        &[
            ("api-version", "2019-08-01"),
            ("resource", VAULT),
            ("client_id", "other"),
        ],
    )
    .await;
    assert_eq!(other.status(), 400);
    // Wrong api-version and missing resource are refused too.
    let bad_version = get_token(
        &id,
        Some(&secret),
        &[
            ("api-version", "2018-02-01"),
            ("resource", VAULT),
            ("client_id", "cid-1"),
        ],
    )
    .await;
    assert_eq!(bad_version.status(), 400);
    let no_resource = get_token(
        &id,
        Some(&secret),
        &[("api-version", "2019-08-01"), ("client_id", "cid-1")],
    )
    .await;
    assert_eq!(no_resource.status(), 400);
}

#[tokio::test]
async fn identity_down_answers_500() {
    let id = IdentityFake::start(IdentityFakeConfig::default())
        .await
        .unwrap();
    let secret = id.header_secret();
    let q = [("api-version", "2019-08-01"), ("resource", VAULT)];
    id.set_down(true);
    assert_eq!(get_token(&id, Some(&secret), &q).await.status(), 500);
    id.set_down(false);
    assert_eq!(get_token(&id, Some(&secret), &q).await.status(), 200);
}

#[tokio::test]
async fn key_vault_challenges_before_serving_the_secret() {
    let kv = KeyVaultFake::start(KeyVaultFakeConfig::default())
        .await
        .unwrap();
    assert!(kv.url().starts_with("https://127.0.0.1:"));
    let v1 = kv.set_secret("okta-token", "v1");
    let v2 = kv.set_secret("okta-token", "v2-current");
    let client = https_client();
    let url = format!("{}secrets/okta-token/?api-version=7.4", kv.url());

    // 1. No token: the challenge, and no secret in the body.
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.starts_with("Bearer authorization=\"https://login.microsoftonline.com/"));
    assert!(www.contains("resource=\"https://vault.azure.net\""));
    let body = resp.text().await.unwrap();
    assert!(!body.contains("v2-current"));
    assert_eq!(kv.reads("okta-token"), 0);
    assert_eq!(kv.challenges(), 1);

    // 2. With a vault token: the current version.
    let tok = token::issue(VAULT, "system", 300);
    let resp = client.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = json_body(resp).await;
    assert_eq!(body["value"], "v2-current");
    assert_eq!(
        body["id"],
        format!("{}secrets/okta-token/{v2}", kv.url()).as_str()
    );
    assert_eq!(body["attributes"]["enabled"], true);
    assert_eq!(kv.reads("okta-token"), 1);

    // The path without trailing slash, an older version by id, and an unknown version.
    let read = |path: String| {
        client
            .get(format!("{}{path}?api-version=7.4", kv.url()))
            .bearer_auth(&tok)
            .send()
    };
    let resp = read("secrets/okta-token".into()).await.unwrap();
    assert_eq!(
        json_body::<serde_json::Value>(resp).await["value"],
        "v2-current"
    );
    let resp = read(format!("secrets/okta-token/{v1}")).await.unwrap();
    assert_eq!(json_body::<serde_json::Value>(resp).await["value"], "v1");
    let resp = read("secrets/okta-token/0123456789abcdef".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(kv.reads("okta-token"), 4);
}

#[tokio::test]
async fn key_vault_errors_follow_the_service() {
    let kv = KeyVaultFake::start(KeyVaultFakeConfig::default())
        .await
        .unwrap();
    kv.set_secret("denied", "nope");
    kv.deny("denied");
    let client = https_client();
    let get = |name: &str, tok: Option<String>| {
        let mut req = client.get(format!("{}secrets/{name}/?api-version=7.4", kv.url()));
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let good = || Some(token::issue(VAULT, "system", 300));

    let missing = get("missing", good()).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = json_body(missing).await;
    assert_eq!(body["error"]["code"], "SecretNotFound");

    let denied = get("denied", good()).await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = json_body(denied).await;
    assert_eq!(body["error"]["code"], "Forbidden");
    assert!(!body.to_string().contains("nope"));
    assert_eq!(kv.reads("denied"), 1);

    // A storage token is not a vault token: challenged again, nothing read.
    let storage = Some(token::issue("https://storage.azure.com", "system", 300));
    let wrong_aud = get("denied", storage).await.unwrap();
    assert_eq!(wrong_aud.status(), 401);
    assert!(wrong_aud.headers().contains_key("www-authenticate"));
    // An expired vault token is refused the same way.
    let expired = Some(token::issue(VAULT, "system", -30));
    assert_eq!(get("denied", expired).await.unwrap().status(), 401);
    // A token the identity fake did not sign is refused.
    assert_eq!(
        get("denied", Some("abc.def.ghi".into()))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(kv.reads("denied"), 1);

    kv.set_down(true);
    assert_eq!(get("denied", good()).await.unwrap().status(), 503);
    kv.set_down(false);
    kv.set_throttled(true);
    let throttled = get("missing", good()).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
}

#[tokio::test]
async fn identity_token_unlocks_the_vault_end_to_end() {
    let id = IdentityFake::start(IdentityFakeConfig::default())
        .await
        .unwrap();
    let kv = KeyVaultFake::start(KeyVaultFakeConfig::default())
        .await
        .unwrap();
    kv.set_secret("s", "value-from-vault");
    let secret = id.header_secret();
    let storage_tok: HashMap<String, serde_json::Value> = json_body(
        get_token(
            &id,
            Some(&secret),
            &[
                ("api-version", "2019-08-01"),
                ("resource", "https://storage.azure.com"),
            ],
        )
        .await,
    )
    .await;
    let vault_tok: HashMap<String, serde_json::Value> = json_body(
        get_token(
            &id,
            Some(&secret),
            &[("api-version", "2019-08-01"), ("resource", VAULT)],
        )
        .await,
    )
    .await;
    let client = https_client();
    let url = format!("{}secrets/s/?api-version=7.4", kv.url());
    let wrong = client
        .get(&url)
        .bearer_auth(storage_tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(&url)
        .bearer_auth(vault_tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        json_body::<serde_json::Value>(right).await["value"],
        "value-from-vault"
    );
}

/// The body of `resp` as JSON (what reqwest's `json` feature would do; the workspace does not
/// enable it for one test helper).
async fn json_body<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> T {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
