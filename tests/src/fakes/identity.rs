//! Fake managed-identity token endpoint, App Service / Container Apps flavour
//! (docs/contracts.md §5.3, docs/azure-sdk-notes.md §Q3).
//!
//! The production `azure_identity::ManagedIdentityCredential` picks this flavour when
//! `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, and sends (azure_identity 1.0.0,
//! `imds_managed_identity_credential.rs`):
//!
//! ```text
//! GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<scope without /.default>[&client_id=|&object_id=]
//! metadata: true
//! x-identity-header: {IDENTITY_HEADER}
//! ```
//!
//! and requires `expires_on` as a *string* of epoch seconds. The IMDS flavour is not served:
//! the SDK hard-codes its address, so no test could reach a fake of it.
//!
//! The endpoint is plain http, as the real one is (it is local to the host); the credential's
//! pipeline has no bearer policy, so it accepts http.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::token;

/// The only api-version the App Service flavour speaks.
pub const API_VERSION: &str = "2019-08-01";
/// Path of the token endpoint on the fake's base URL.
const TOKEN_PATH: &str = "/msi/token";
/// What `appid` a system-assigned identity gets in issued tokens.
pub const SYSTEM_ASSIGNED: &str = "system";

/// Configuration of [`IdentityFake`].
#[derive(Clone, Debug)]
pub struct IdentityFakeConfig {
    /// Lifetime of issued tokens (and `expires_on`).
    pub token_ttl_secs: i64,
    /// User-assigned client ids this "resource" has. Empty = any id (and system-assigned) is
    /// accepted; otherwise a request for another id gets the 400 the real endpoint sends for an
    /// identity that is not assigned.
    pub client_ids: Vec<String>,
}

impl Default for IdentityFakeConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 3600,
            client_ids: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    secret: String,
    client_ids: Vec<String>,
    ttl: AtomicI64,
    down: AtomicBool,
    requests: AtomicUsize,
    issued: Mutex<HashMap<String, usize>>,
    /// Ids (`jti`) of the tokens issued, by resource.
    issued_ids: Mutex<HashMap<String, Vec<String>>>,
}

/// A running fake token endpoint. Dropping it stops the server.
pub struct IdentityFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for IdentityFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The header secret stays out of test output.
        f.debug_struct("IdentityFake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl IdentityFake {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: IdentityFakeConfig) -> anyhow::Result<IdentityFake> {
        let shared = Arc::new(Shared {
            secret: format!("fake-identity-header-{}", uuid::Uuid::new_v4().simple()),
            client_ids: config.client_ids,
            ttl: AtomicI64::new(config.token_ttl_secs),
            down: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            issued: Mutex::new(HashMap::new()),
            issued_ids: Mutex::new(HashMap::new()),
        });
        let router = axum::Router::new()
            .route(TOKEN_PATH, axum::routing::get(token_handler))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "identity fake stopped with an error");
            }
        });
        Ok(IdentityFake {
            addr,
            shared,
            shutdown,
        })
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.addr)
    }

    /// The value for `IDENTITY_HEADER`.
    pub fn header_secret(&self) -> String {
        self.shared.secret.clone()
    }

    /// While down, every request gets 500 (the platform's identity endpoint is failing).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Changes the lifetime of tokens issued from now on (token-expiry tests).
    pub fn set_token_ttl_secs(&self, ttl: i64) {
        self.shared.ttl.store(ttl, Ordering::SeqCst);
    }

    /// Requests received, including rejected ones.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Tokens issued for `resource` (with or without `/.default` and trailing slash).
    pub fn tokens_issued_for(&self, resource: &str) -> usize {
        let key = normalize_resource(resource);
        self.shared
            .issued
            .lock()
            .map(|m| m.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Ids (`jti`) of the tokens issued for `resource` so far, oldest first: to revoke them
    /// at a fake service ([`crate::fakes::log_analytics::LogAnalyticsFake::revoke_tokens`]).
    pub fn token_ids_issued_for(&self, resource: &str) -> Vec<String> {
        let key = normalize_resource(resource);
        self.shared
            .issued_ids
            .lock()
            .map(|m| m.get(&key).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Stops the server; later requests are refused.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for IdentityFake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn normalize_resource(resource: &str) -> String {
    let r = resource.strip_suffix("/.default").unwrap_or(resource);
    r.trim_end_matches('/').to_string()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "fake identity endpoint is down",
        );
    }
    let presented = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok());
    if presented != Some(shared.secret.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-IDENTITY-HEADER",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version must be 2019-08-01",
        );
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "resource is required",
        );
    };
    let selectors: Vec<&String> = ["client_id", "object_id", "principal_id", "mi_res_id"]
        .iter()
        .filter_map(|k| query.get(*k))
        .collect();
    if selectors.len() > 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "only one identity selector may be given",
        );
    }
    let identity = selectors
        .first()
        .map(|s| s.as_str())
        .unwrap_or(SYSTEM_ASSIGNED);
    if !shared.client_ids.is_empty() && !shared.client_ids.iter().any(|c| c == identity) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the requested identity has not been assigned to this resource",
        );
    }
    let resource = normalize_resource(resource);
    let ttl = shared.ttl.load(Ordering::SeqCst);
    let (access_token, jti) = token::issue_with_id(&resource, identity, ttl);
    let expires_on = chrono::Utc::now().timestamp() + ttl;
    if let Ok(mut issued) = shared.issued.lock() {
        *issued.entry(resource.clone()).or_insert(0) += 1;
    }
    if let Ok(mut ids) = shared.issued_ids.lock() {
        ids.entry(resource.clone()).or_default().push(jti);
    }
    Json(json!({
        "access_token": access_token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": identity,
    }))
    .into_response()
}
