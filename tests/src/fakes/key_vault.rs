//! Fake Azure Key Vault (secrets only), https (docs/contracts.md §5.1/§5.2, docs/azure-sdk-notes.md §Q4).
//!
//! It behaves like the real data plane where the client can tell the difference:
//! * a request without a valid bearer token gets the `401` challenge
//!   (`WWW-Authenticate: Bearer authorization=…, resource="https://vault.azure.net"`), which
//!   the SDK's challenge policy needs before it sends any token;
//! * tokens must come from the identity fake and carry the vault audience;
//! * `GET /secrets/{name}[/{version}]?api-version=…` answers 200 / 403 Forbidden / 404
//!   SecretNotFound with the service's JSON shapes.
//!
//! It is served over https only, because the SDK refuses to send bearer tokens over http.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::token;
use crate::tls;

/// The tenant named in the challenge.
pub const TENANT: &str = "00000000-0000-0000-0000-000000000000";

/// Configuration of [`KeyVaultFake`].
#[derive(Clone, Debug)]
pub struct KeyVaultFakeConfig {
    /// The audience tokens must carry; also the `resource` of the challenge.
    pub audience: String,
}

impl Default for KeyVaultFakeConfig {
    fn default() -> Self {
        Self {
            audience: "https://vault.azure.net".into(),
        }
    }
}

#[derive(Clone)]
struct Version {
    id: String,
    value: String,
    created: i64,
}

#[derive(Default)]
struct Vault {
    /// Versions of each secret, oldest first.
    secrets: HashMap<String, Vec<Version>>,
    denied: HashSet<String>,
    reads: HashMap<String, usize>,
}

struct Shared {
    audience: String,
    base_url: String,
    vault: Mutex<Vault>,
    down: AtomicBool,
    throttled: AtomicBool,
    requests: AtomicUsize,
    challenges: AtomicUsize,
}

/// A running fake vault. Dropping it stops the server.
pub struct KeyVaultFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for KeyVaultFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret values stay out of test output.
        f.debug_struct("KeyVaultFake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl KeyVaultFake {
    /// Starts the fake on an ephemeral port of 127.0.0.1, with a certificate from
    /// [`tls::shared_ca`].
    pub async fn start(config: KeyVaultFakeConfig) -> anyhow::Result<KeyVaultFake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            audience: config.audience,
            base_url: format!("https://{addr}/"),
            vault: Mutex::new(Vault::default()),
            down: AtomicBool::new(false),
            throttled: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            challenges: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let tls_config = tls::shared_ca().issue_server_cert()?.rustls_config()?;
        let shutdown = CancellationToken::new();
        tokio::spawn(tls::serve_https(
            listener,
            tls_config,
            router,
            shutdown.clone(),
        ));
        Ok(KeyVaultFake {
            addr,
            shared,
            shutdown,
        })
    }

    /// The vault URL, `https://127.0.0.1:PORT/` (clients must trust [`tls::shared_ca`]).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The CA certificate clients must trust, PEM.
    pub fn ca_pem(&self) -> String {
        tls::shared_ca().ca_pem()
    }

    /// Stores a new version of `name` (it becomes the current version). Returns the version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut v) = self.shared.vault.lock() {
            v.secrets
                .entry(name.to_string())
                .or_default()
                .push(Version {
                    id: id.clone(),
                    value: value.to_string(),
                    created: chrono::Utc::now().timestamp(),
                });
        }
        id
    }

    /// Makes reads of `name` fail with 403 Forbidden (identity lacks Key Vault Secrets User).
    pub fn deny(&self, name: &str) {
        if let Ok(mut v) = self.shared.vault.lock() {
            v.denied.insert(name.to_string());
        }
    }

    /// Undoes [`Self::deny`].
    pub fn allow(&self, name: &str) {
        if let Ok(mut v) = self.shared.vault.lock() {
            v.denied.remove(name);
        }
    }

    /// While down, every request gets 503 ServiceUnavailable.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// While throttled, authorized requests get 429 with `Retry-After: 1`.
    pub fn set_throttled(&self, throttled: bool) {
        self.shared.throttled.store(throttled, Ordering::SeqCst);
    }

    /// Authorized GETs of `name` (any version, whatever the outcome: 200, 403 or 404).
    pub fn reads(&self, name: &str) -> usize {
        self.shared
            .vault
            .lock()
            .map(|v| v.reads.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every request received, including challenges.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// 401 challenges sent (missing, invalid, expired or wrong-audience token).
    pub fn challenges(&self) -> usize {
        self.shared.challenges.load(Ordering::SeqCst)
    }

    /// Stops the server; later connections are refused.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for KeyVaultFake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn challenge(shared: &Shared, message: &str) -> Response {
    shared.challenges.fetch_add(1, Ordering::SeqCst);
    let mut resp = error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    let value = format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", resource=\"{}\"",
        shared.audience.trim_end_matches('/')
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "fake vault is down",
        );
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match token::verify_bearer(auth, &shared.audience) {
        Ok(_) => {}
        Err(token::TokenError::Missing) => {
            return challenge(
                &shared,
                "AKV10000: Request is missing a Bearer or PoP token.",
            )
        }
        Err(e) => return challenge(&shared, &format!("AKV10032: {e}")),
    }
    let has_api_version = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "api-version")
    });
    if !has_api_version {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version",
        );
    }
    // `/secrets/{name}`, `/secrets/{name}/` (what the SDK sends) or `/secrets/{name}/{version}`.
    let segments: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let (name, version) = match segments.as_slice() {
        ["secrets", name] | ["secrets", name, ""] if !name.is_empty() => (*name, None),
        ["secrets", name, version] if !name.is_empty() => (*name, Some(*version)),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such route in the fake",
            )
        }
    };
    if req.method() != axum::http::Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            "the fake vault only serves GET",
        );
    }
    if shared.throttled.load(Ordering::SeqCst) {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received.",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let Ok(mut vault) = shared.vault.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "poisoned",
        );
    };
    *vault.reads.entry(name.to_string()).or_insert(0) += 1;
    if vault.denied.contains(name) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {
                "code": "Forbidden",
                "message": format!("Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action' Resource: 'secrets/{name}'"),
                "innererror": {"code": "ForbiddenByRbac"}
            }})),
        )
            .into_response();
    }
    let found = vault.secrets.get(name).and_then(|versions| match version {
        None => versions.last(),
        Some(v) => versions.iter().find(|x| x.id == v),
    });
    let Some(secret) = found else {
        let which = version
            .map(|v| format!(" with version ({v})"))
            .unwrap_or_default();
        return error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!("A secret with (name/id) {name}{which} was not found in this key vault."),
        );
    };
    Json(json!({
        "value": secret.value,
        "id": format!("{}secrets/{name}/{}", shared.base_url, secret.id),
        "attributes": {
            "enabled": true,
            "created": secret.created,
            "updated": secret.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90
        },
        "tags": {}
    }))
    .into_response()
}
