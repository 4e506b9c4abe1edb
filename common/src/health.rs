//! Health endpoints: `/healthz` (liveness), `/readyz` (readiness) and `/metrics`.
//!
//! *Liveness* answers "should this container be restarted?": it fails only when a named
//! liveness condition says the process is wedged (a loop that stopped turning). A dependency
//! outage is **not** a liveness failure — restarting does not fix Key Vault.
//!
//! *Readiness* answers "is this replica doing its job?": every component owns named
//! conditions (`storage`, `okta`, `sink`, `secrets`, …) and sets them with a reason an
//! operator can act on. `/readyz` returns 503 with the failing conditions and their reasons as
//! JSON, so `curl /readyz` explains a stall without reading logs (DESIGN.md §5: no silent
//! stops). A standby collector is ready: it is healthy, just not leading.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// Errors of the health server.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on HTTP_ADDR {addr}: {source} (is another process using the port? set HTTP_ADDR to a free address)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("health server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
struct Condition {
    ok: bool,
    reason: String,
}

#[derive(Default, Debug)]
struct Conditions {
    ready: BTreeMap<&'static str, Condition>,
    live: BTreeMap<&'static str, Condition>,
}

/// One failing condition, as reported by `/readyz` and `/healthz`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Failing {
    pub condition: &'static str,
    pub reason: String,
}

/// Shared health state. Cheap to clone; every component keeps a clone and sets its own
/// conditions. No condition registered means ready and live.
#[derive(Clone, Debug, Default)]
pub struct Health {
    state: Arc<RwLock<Conditions>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a readiness condition. `reason` explains a failure to the operator (what is wrong
    /// and what to do); it is also kept when `ok` so `/readyz` can show the last state.
    /// Never put a secret in it.
    pub fn set_ready(&self, condition: &'static str, ok: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let changed = st.ready.get(condition).is_none_or(|c| c.ok != ok);
        if changed {
            if ok {
                tracing::info!(condition, "ready: {reason}");
            } else {
                tracing::warn!(condition, "not ready: {reason}");
            }
        }
        st.ready.insert(condition, Condition { ok, reason });
    }

    /// Sets a liveness condition (see the module docs: only for a wedged process).
    pub fn set_live(&self, condition: &'static str, ok: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !ok && st.live.get(condition).is_none_or(|c| c.ok) {
            tracing::error!(condition, "not live: {reason}");
        }
        st.live.insert(condition, Condition { ok, reason });
    }

    /// Removes a readiness condition (a component that stopped, e.g. an org that was dropped).
    pub fn clear_ready(&self, condition: &'static str) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .ready
            .remove(condition);
    }

    /// Whether every readiness condition holds, and `"condition: reason"` for each that does not.
    pub fn is_ready(&self) -> (bool, Vec<String>) {
        let failing = self.failing_ready();
        (
            failing.is_empty(),
            failing.iter().map(fmt_failing).collect(),
        )
    }

    /// Whether every liveness condition holds, and `"condition: reason"` for each that does not.
    pub fn is_live(&self) -> (bool, Vec<String>) {
        let failing = self.failing_live();
        (
            failing.is_empty(),
            failing.iter().map(fmt_failing).collect(),
        )
    }

    pub fn failing_ready(&self) -> Vec<Failing> {
        failing(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .ready,
        )
    }

    pub fn failing_live(&self) -> Vec<Failing> {
        failing(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .live,
        )
    }
}

fn failing(map: &BTreeMap<&'static str, Condition>) -> Vec<Failing> {
    map.iter()
        .filter(|(_, c)| !c.ok)
        .map(|(name, c)| Failing {
            condition: name,
            reason: c.reason.clone(),
        })
        .collect()
}

fn fmt_failing(f: &Failing) -> String {
    format!("{}: {}", f.condition, f.reason)
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

#[derive(Serialize)]
struct Report {
    ready: bool,
    failing: Vec<Failing>,
}

/// The router, for callers that want to mount it themselves.
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AppState { health, metrics })
}

async fn healthz(State(st): State<AppState>) -> Response {
    let failing = st.health.failing_live();
    if failing.is_empty() {
        (StatusCode::OK, "ok").into_response()
    } else {
        let body = failing
            .iter()
            .map(fmt_failing)
            .collect::<Vec<_>>()
            .join("\n");
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let failing = st.health.failing_ready();
    let ready = failing.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(Report { ready, failing })).into_response()
}

async fn metrics_handler(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        st.metrics.render_prometheus(),
    )
        .into_response()
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with its real address,
/// so the address can be logged and tests can connect to it.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), HealthError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HealthError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves the endpoints on an already bound listener until `cancel` fires.
pub async fn serve_listener(
    listener: TcpListener,
    health: Health,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<(), HealthError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    axum::serve(listener, router(health, metrics))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .map_err(|source| HealthError::Serve { addr, source })
}

/// Binds `addr`, logs the real address and serves until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<(), HealthError> {
    let (listener, local) = bind(addr).await?;
    tracing::info!(addr = %local, "health endpoints listening (/healthz, /readyz, /metrics)");
    serve_listener(listener, health, metrics, cancel).await
}
