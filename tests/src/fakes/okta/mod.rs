//! An in-process fake Okta org serving the System Log API (`GET /api/v1/logs`) and the org
//! authorization server's token endpoint (`POST /oauth2/v1/token`), strictly following
//! `docs/contracts.md` §1.
//!
//! The fake refuses what Okta refuses (bad tokens, forged cursors, missing scopes, DPoP
//! without a nonce, too many requests), implements polling semantics with an
//! ever-present `next` link, and can be told to misbehave ([`OktaFault`]) so the
//! collector's error paths are exercised. Plain HTTP on `127.0.0.1:0`.

mod cursor;
mod error;
mod keys;
mod log;
mod logs_api;
mod oauth;
mod rate_limit;

pub use keys::{
    access_token_hash, client_assertion, dpop_proof, test_ec_key_pem, test_rsa_key_pem,
};
pub use oauth::OAuthAppConfig;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use cursor::CursorKey;
use log::{EventLog, LogConfig};
use oauth::OAuthState;
use rand::RngExt;
use rate_limit::RateLimiter;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What an empty polling page's `next` link points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyPageMode {
    /// `next` is exactly the URL just requested (observed Okta behaviour, the default).
    #[default]
    RepeatUrl,
    /// `next` carries a new cursor at the same position.
    Advance,
}

/// Configuration of a fake org.
#[derive(Clone)]
pub struct OktaFakeConfig {
    /// Seed of every generated event (uuids included).
    pub seed: u64,
    /// Accepted `Authorization: SSWS <token>` values. Kept out of `Debug`.
    pub ssws_tokens: Vec<String>,
    /// The OAuth service app, if the org has one.
    pub oauth: Option<OAuthAppConfig>,
    /// Requests allowed per token per window.
    pub rate_limit_per_window: u32,
    pub rate_window_secs: u64,
    pub empty_page_mode: EmptyPageMode,
    /// Events already in the log at start, published over the last `history`.
    pub initial_events: usize,
    pub history: chrono::Duration,
    /// Events published per second after start (0 = none); see also `live_cap`.
    pub live_rate_per_sec: f64,
    /// Stop live publishing after this many events.
    pub live_cap: Option<usize>,
    /// Probability that a released event is followed by a repeat of an earlier one.
    pub repeat_probability: f64,
    /// Probability that a released event is late (`published` older than served events).
    pub late_probability: f64,
    /// Largest accepted `limit`.
    pub max_limit: usize,
}

impl std::fmt::Debug for OktaFakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaFakeConfig")
            .field("seed", &self.seed)
            .field(
                "ssws_tokens",
                &format_args!("[{} redacted]", self.ssws_tokens.len()),
            )
            .field("oauth", &self.oauth)
            .field("rate_limit_per_window", &self.rate_limit_per_window)
            .field("rate_window_secs", &self.rate_window_secs)
            .field("empty_page_mode", &self.empty_page_mode)
            .field("initial_events", &self.initial_events)
            .field("history", &self.history)
            .field("live_rate_per_sec", &self.live_rate_per_sec)
            .field("live_cap", &self.live_cap)
            .field("repeat_probability", &self.repeat_probability)
            .field("late_probability", &self.late_probability)
            .field("max_limit", &self.max_limit)
            .finish()
    }
}

impl Default for OktaFakeConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            ssws_tokens: vec!["test-ssws-token".into()],
            oauth: None,
            rate_limit_per_window: 600,
            rate_window_secs: 60,
            empty_page_mode: EmptyPageMode::RepeatUrl,
            initial_events: 0,
            history: chrono::Duration::minutes(30),
            live_rate_per_sec: 0.0,
            live_cap: None,
            repeat_probability: 0.0,
            late_probability: 0.0,
            max_limit: 1000,
        }
    }
}

/// A misbehaviour applied to the next `count` authenticated `/api/v1/logs` requests
/// (faults queue up and apply in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaFault {
    /// 500 E0000009 (Okta's query timeout).
    Status500 { count: usize },
    /// 429 E0000047 with `X-Rate-Limit-Remaining: 0`.
    Status429 { count: usize },
    /// 401 E0000011.
    Unauthorized { count: usize },
    /// 403 E0000006.
    Forbidden { count: usize },
    /// Wait `delay` before answering normally (client timeouts).
    Delay { count: usize, delay: Duration },
    /// 502 with an HTML body, as a gateway in front of Okta would send.
    HtmlErrorPage { count: usize },
    /// 200 with the page cut in the middle (the `next` link still advances).
    TruncatedJson { count: usize },
    /// 200 with a JSON object instead of the array.
    ObjectInsteadOfArray { count: usize },
    /// 200 with bytes that are not UTF-8 inside a string.
    InvalidUtf8 { count: usize },
    /// 200 with a normal page whose `next` link points at `url` (another origin).
    ForeignNextLink { count: usize, url: String },
}

impl OktaFault {
    fn count_mut(&mut self) -> &mut usize {
        match self {
            Self::Status500 { count }
            | Self::Status429 { count }
            | Self::Unauthorized { count }
            | Self::Forbidden { count }
            | Self::Delay { count, .. }
            | Self::HtmlErrorPage { count }
            | Self::TruncatedJson { count }
            | Self::ObjectInsteadOfArray { count }
            | Self::InvalidUtf8 { count }
            | Self::ForeignNextLink { count, .. } => count,
        }
    }
}

/// What the fake has seen. Token values never appear: buckets are named `ssws#<index>`
/// or `oauth:<client_id>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OktaStats {
    /// Every HTTP request, any path.
    pub requests_total: u64,
    /// Requests to `/api/v1/logs`.
    pub logs_requests: u64,
    /// Responses by status code (all paths).
    pub by_status: BTreeMap<u16, u64>,
    /// 429 responses of `/api/v1/logs`.
    pub rate_limited: u64,
    /// Largest number of requests one bucket made within one rate window.
    pub max_requests_per_window: BTreeMap<String, u32>,
    /// Per request path: authorization scheme (`SSWS`, `Bearer`, `DPoP`, `other`, `none`)
    /// → number of requests.
    pub auth_schemes_by_path: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests to the token endpoint and tokens issued.
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// `use_dpop_nonce` challenges (token endpoint and resource).
    pub dpop_nonce_challenges: u64,
    /// Events (array elements) sent in 200 pages, repeats included.
    pub events_served: u64,
    /// 200 pages of bounded requests (`since` + `until`: the completeness audit's).
    pub bounded_requests: u64,
    /// Every 200 page of `/api/v1/logs`, in the order served.
    pub trace: Vec<LogsRequest>,
}

/// One answered `/api/v1/logs` request, for tests that check the order of polling and
/// bounded requests (an audit must never run while the collector is behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsRequest {
    /// `since` + `until` (a bounded request), not a polling one.
    pub bounded: bool,
    /// Events in the page.
    pub events: usize,
    /// The request's `limit`: a polling page with fewer events means "caught up".
    pub limit: usize,
    /// `X-Rate-Limit-Remaining` of the answer.
    pub remaining: u32,
}

/// State shared by the handlers.
pub(crate) struct App {
    base_url: String,
    ssws_tokens: Vec<String>,
    empty_page_mode: EmptyPageMode,
    max_limit: usize,
    log: Mutex<EventLog>,
    cursor: CursorKey,
    limiter: Mutex<RateLimiter>,
    oauth: Option<Mutex<OAuthState>>,
    faults: Mutex<VecDeque<OktaFault>>,
    stats: Mutex<OktaStats>,
    /// Arrival of every `/api/v1/logs` request, in order (how a client spaces its polls).
    logs_arrivals: Mutex<Vec<std::time::Instant>>,
    logs_seq: AtomicU64,
}

/// Locks a mutex, recovering from poisoning: a panicking test thread must not wedge the
/// fake for the other tests sharing it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    fn next_fault(&self) -> Option<OktaFault> {
        let mut q = lock(&self.faults);
        loop {
            let front = q.front_mut()?;
            if *front.count_mut() == 0 {
                q.pop_front();
                continue;
            }
            *front.count_mut() -= 1;
            return Some(front.clone());
        }
    }
}

/// A running fake org; the server stops when this is dropped.
pub struct OktaFake {
    app: Arc<App>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl OktaFake {
    /// Binds `127.0.0.1:0`, seeds the log and starts serving.
    pub async fn start(cfg: OktaFakeConfig) -> anyhow::Result<OktaFake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let base_url = format!("http://127.0.0.1:{port}");
        let mut log = EventLog::new(&LogConfig {
            seed: cfg.seed,
            repeat_probability: cfg.repeat_probability,
            late_probability: cfg.late_probability,
            live_rate_per_sec: cfg.live_rate_per_sec,
            live_cap: cfg.live_cap,
        });
        log.seed_history(cfg.initial_events, chrono::Utc::now(), cfg.history);
        let app = Arc::new(App {
            base_url,
            ssws_tokens: cfg.ssws_tokens,
            empty_page_mode: cfg.empty_page_mode,
            max_limit: cfg.max_limit,
            log: Mutex::new(log),
            cursor: CursorKey::new(rand::rng().random()),
            limiter: Mutex::new(RateLimiter::new(
                cfg.rate_limit_per_window,
                Duration::from_secs(cfg.rate_window_secs),
            )),
            oauth: cfg.oauth.map(|o| Mutex::new(OAuthState::new(o))),
            faults: Mutex::new(VecDeque::new()),
            stats: Mutex::new(OktaStats::default()),
            logs_arrivals: Mutex::new(Vec::new()),
            logs_seq: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/api/v1/logs", get(logs_api::logs))
            .route("/oauth2/v1/token", post(logs_api::token))
            .fallback(logs_api::not_found)
            .layer(middleware::from_fn_with_state(app.clone(), record))
            .with_state(app.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "okta fake stopped");
            }
        });
        Ok(OktaFake { app, port, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.app.base_url.clone()
    }

    /// `127.0.0.1:PORT` (what an Okta domain setting would hold).
    pub fn domain(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The token endpoint URL (the `aud` of client assertions, the `htu` of token proofs).
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v1/token", self.app.base_url)
    }

    /// The logs URL without query (the `htu` of resource proofs).
    pub fn logs_url(&self) -> String {
        format!("{}/api/v1/logs", self.app.base_url)
    }

    /// Publishes `n` more events now.
    pub fn release(&self, n: usize) {
        lock(&self.app.log).release(n);
    }

    /// Every distinct uuid released so far, in release order: what a collector must deliver.
    pub fn released_uuids(&self) -> Vec<String> {
        let mut log = lock(&self.app.log);
        log.catch_up();
        log.released_uuids().to_vec()
    }

    pub fn released_count(&self) -> usize {
        let mut log = lock(&self.app.log);
        log.catch_up();
        log.released_uuids().len()
    }

    pub fn stats(&self) -> OktaStats {
        let mut s = lock(&self.app.stats).clone();
        s.max_requests_per_window = lock(&self.app.limiter).max_seen();
        s
    }

    /// `/api/v1/logs` requests that arrived since `from` (all of them when `None`).
    pub fn logs_requests_since(&self, from: Option<std::time::Instant>) -> usize {
        let arrivals = lock(&self.app.logs_arrivals);
        match from {
            None => arrivals.len(),
            Some(t) => arrivals.iter().filter(|a| **a >= t).count(),
        }
    }

    /// The most `/api/v1/logs` requests that arrived within any span shorter than `span`,
    /// counting only requests that arrived at or after `from`: 1 means the client never
    /// polled twice within `span` (by the fake's own clock).
    pub fn most_logs_requests_within(
        &self,
        span: Duration,
        from: Option<std::time::Instant>,
    ) -> usize {
        let arrivals = lock(&self.app.logs_arrivals);
        let times: Vec<_> = arrivals
            .iter()
            .copied()
            .filter(|a| from.is_none_or(|f| *a >= f))
            .collect();
        let mut most = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= span {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    /// Queues a fault for the next authenticated `/api/v1/logs` requests.
    pub fn inject(&self, fault: OktaFault) {
        lock(&self.app.faults).push_back(fault);
    }

    /// Rotates the DPoP nonces: the resource challenges the next DPoP request again.
    pub fn rotate_dpop_nonce(&self) {
        if let Some(o) = &self.app.oauth {
            lock(o).rotate_nonces();
        }
    }

    /// Expires every issued access token (the next use gets 401 E0000011).
    pub fn expire_tokens(&self) {
        if let Some(o) = &self.app.oauth {
            lock(o).expire_all();
        }
    }
}

impl Drop for OktaFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The authorization scheme of a request, for statistics (never the credential).
fn auth_scheme(req: &Request) -> String {
    let Some(v) = req.headers().get(axum::http::header::AUTHORIZATION) else {
        return "none".into();
    };
    let scheme = v
        .to_str()
        .ok()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    match scheme.to_ascii_lowercase().as_str() {
        "ssws" => "SSWS".into(),
        "bearer" => "Bearer".into(),
        "dpop" => "DPoP".into(),
        _ => "other".into(),
    }
}

/// Middleware counting every request by path, scheme and status.
async fn record(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let scheme = auth_scheme(&req);
    let resp = next.run(req).await;
    let mut s = lock(&app.stats);
    s.requests_total += 1;
    *s.by_status.entry(resp.status().as_u16()).or_insert(0) += 1;
    *s.auth_schemes_by_path
        .entry(path)
        .or_default()
        .entry(scheme)
        .or_insert(0) += 1;
    resp
}
