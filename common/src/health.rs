//! Health endpoints: `/healthz` (liveness), `/readyz` (readiness) and `/metrics`.
//!
//! *Liveness* answers "should this container be restarted?": it fails only when a named
//! liveness condition says the process is wedged, or when a watched main loop stopped turning
//! (the watchdog below). A dependency outage is **not** a liveness failure — restarting does
//! not fix Key Vault. That is why the Container Apps probes (infra/modules/apps.bicep) point at
//! `/healthz` only: a probe on `/readyz` would keep a revision from provisioning while a role
//! assignment propagates or before the Okta secret is set (docs/design.md §5).
//!
//! *The watchdog*: a service's main loop calls [`Health::beat`] once per turn. `/healthz` fails
//! when a beating loop has not turned for longer than its stall limit ([`LOOP_STALL_LIMIT`] by
//! default: longer than any legitimate single turn — a 5-minute backoff, an Okta rate-limit
//! wait, HTTP timeouts). A loop that waits on purpose for an unbounded time (a standby
//! collector waiting for the leader lease) calls [`Health::park`] first. It is evaluated when
//! `/healthz` is asked, so no extra task can itself die silently.
//!
//! *Readiness* answers "is this replica doing its job?": every component owns named
//! conditions (`storage`, `okta`, `sink`, `secrets`, …) and sets them with a reason an
//! operator can act on. `/readyz` returns 503 with the failing conditions and their reasons as
//! JSON, so `curl /readyz` explains a stall without reading logs (docs/design.md §5: no silent
//! stops). A standby collector is ready: it is healthy, just not leading.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

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

/// How long a main loop may go without turning before `/healthz` fails. Generous on purpose:
/// a false alarm restarts a healthy replica. The longest legitimate turn is a storage or Okta
/// backoff (at most 5 minutes) plus the HTTP timeouts of one request.
pub const LOOP_STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The watchdog's view of one main loop.
#[derive(Clone, Copy, Debug)]
enum Loop {
    /// Turned last at this instant.
    Turned(Instant),
    /// Waiting on purpose for an unbounded time (standby); not watched until it beats again.
    Parked,
}

#[derive(Default, Debug)]
struct Conditions {
    ready: BTreeMap<&'static str, Condition>,
    live: BTreeMap<&'static str, Condition>,
    loops: BTreeMap<&'static str, Loop>,
}

/// One failing condition, as reported by `/readyz` and `/healthz`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Failing {
    pub condition: &'static str,
    pub reason: String,
}

/// Shared health state. Cheap to clone; every component keeps a clone and sets its own
/// conditions. No condition registered means ready and live.
#[derive(Clone, Debug)]
pub struct Health {
    state: Arc<RwLock<Conditions>>,
    stall_limit: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self::with_stall_limit(LOOP_STALL_LIMIT)
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// A health state whose watchdog allows `stall_limit` between two turns of a main loop.
    pub fn with_stall_limit(stall_limit: Duration) -> Self {
        Self {
            state: Arc::default(),
            stall_limit,
        }
    }

    /// Records one turn of the main loop `name` (and starts watching it): `/healthz` fails
    /// once the loop has not turned again within the stall limit.
    pub fn beat(&self, name: &'static str) {
        self.beat_at(name, Instant::now());
    }

    fn beat_at(&self, name: &'static str, at: Instant) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .loops
            .insert(name, Loop::Turned(at));
    }

    /// The main loop `name` is about to wait on purpose for an unbounded time (a standby
    /// waiting for a lease): the watchdog ignores it until its next [`Health::beat`].
    pub fn park(&self, name: &'static str) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .loops
            .insert(name, Loop::Parked);
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

    /// Failing liveness conditions, then every watched loop that stalled.
    pub fn failing_live(&self) -> Vec<Failing> {
        self.failing_live_at(Instant::now())
    }

    fn failing_live_at(&self, now: Instant) -> Vec<Failing> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = failing(&st.live);
        for (name, state) in &st.loops {
            let Loop::Turned(at) = state else { continue };
            let idle = now.saturating_duration_since(*at);
            if idle > self.stall_limit {
                out.push(Failing {
                    condition: name,
                    reason: format!(
                        "the main loop has not turned for {} s (limit {} s): the process is wedged; the platform restarts it",
                        idle.as_secs(),
                        self.stall_limit.as_secs()
                    ),
                });
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    // Time is passed explicitly (`beat_at`, `failing_live_at`): no test waits for a clock.

    const LIMIT: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_loop_that_keeps_turning_is_live() {
        let h = Health::with_stall_limit(LIMIT);
        let t0 = Instant::now();
        for i in 0..5 {
            h.beat_at("main", t0 + secs(59 * i));
            let failing = h.failing_live_at(t0 + secs(59 * (i + 1)));
            assert!(failing.is_empty(), "{failing:?}");
        }
    }

    #[test]
    fn a_stalled_loop_fails_liveness_and_recovers_when_it_turns() {
        let h = Health::with_stall_limit(LIMIT);
        let t0 = Instant::now();
        h.beat_at("main", t0);
        let failing = h.failing_live_at(t0 + secs(61));
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].condition, "main");
        assert!(
            failing[0].reason.contains("has not turned for 61 s"),
            "{failing:?}"
        );
        h.beat_at("main", t0 + secs(62));
        assert!(h.failing_live_at(t0 + secs(63)).is_empty());
    }

    #[test]
    fn a_parked_loop_is_not_watched_until_it_beats_again() {
        let h = Health::with_stall_limit(LIMIT);
        let t0 = Instant::now();
        h.beat_at("main", t0);
        h.park("main");
        assert!(h.failing_live_at(t0 + secs(3600)).is_empty());
        h.beat_at("main", t0 + secs(3600));
        assert_eq!(h.failing_live_at(t0 + secs(3661)).len(), 1);
    }

    #[test]
    fn a_service_that_never_beats_is_live() {
        // Nothing watched yet (e.g. still starting): the watchdog has no opinion.
        let h = Health::with_stall_limit(Duration::ZERO);
        assert!(h.is_live().0);
    }

    #[tokio::test]
    async fn healthz_answers_503_naming_the_stalled_loop() {
        let h = Health::with_stall_limit(LIMIT);
        let st = State(AppState {
            health: h.clone(),
            metrics: Metrics::new("test"),
        });
        h.beat("shipper");
        assert_eq!(healthz(st.clone()).await.status(), StatusCode::OK);
        // The loop turned last long ago.
        let long_ago = Instant::now()
            .checked_sub(secs(120))
            .expect("the monotonic clock is past 120 s on any running machine");
        h.beat_at("shipper", long_ago);
        let stalled = healthz(st).await;
        assert_eq!(stalled.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(stalled.into_body(), 4096)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.starts_with("shipper: the main loop has not turned"),
            "{body}"
        );
    }

    #[test]
    fn readiness_never_feeds_liveness() {
        let h = Health::new();
        h.set_ready("storage", false, "storage: 403");
        assert!(h.is_live().0);
        assert!(!h.is_ready().0);
    }
}
