//! A strict fake of Azure Monitor's two ingestion APIs, on one local port:
//!
//! - the **Logs Ingestion API** (DCR-based, `docs/contracts.md` §3) — what the shipper uses;
//! - the legacy **HTTP Data Collector API** (`docs/contracts.md` §2) — SharedKey-signed posts that
//!   the *service* flattens into suffixed `{Log-Type}_CL` columns.
//!
//! It enforces what the real services enforce (tokens, signatures, size limits, column types)
//! and answers with their status codes and error bodies, so a client that passes against the
//! fake does not meet a new failure in Azure. It records what was accepted for assertions
//! ([`LogAnalyticsFake::rows`], [`LogAnalyticsFake::dc_rows`], [`LogAnalyticsFake::stats`],
//! duplicates by `uuid_g`) and injects the failures a shipper must survive ([`LaFault`],
//! [`LogAnalyticsFake::set_fault_rate`]), including the one that causes the rare unavoidable
//! duplicate: rows accepted while the answer is lost ([`LaFault::AcceptThenDrop`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use world::fakes::log_analytics::{LogAnalyticsFake, LogAnalyticsFakeConfig};
//! let la = LogAnalyticsFake::start(LogAnalyticsFakeConfig {
//!     strict_decompressed_limit: true,
//!     ..Default::default()
//! })
//! .await?;
//! // LOGS_INGESTION_ENDPOINT = la.endpoint(); DCR id and stream from la.config().
//! # Ok(()) }
//! ```

mod body;
mod data_collector;
mod faults;
pub mod flatten;
mod logs_ingestion;
pub mod logs_query;
mod rows;
mod server;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use data_collector::{shared_key_signature, DC_MAX_POST_BYTES};
pub use faults::LaFault;
pub use logs_ingestion::{LI_MAX_BODY_BYTES, LI_MAX_DECOMPRESSED_BYTES};
pub use rows::LI_FIELD_LIMIT_BYTES;

use faults::{Before, FaultState};
use flatten::DcTable;
use rows::ColumnType;
use server::ConnKill;

/// A row as stored: column name → value.
pub type Row = Map<String, Value>;

/// How the fake behaves. `Default` gives the project's names (`Custom-Okta_CL`, `Okta`)
/// with plain http, no declared columns, the lenient size check and stored rows.
#[derive(Clone)]
pub struct LogAnalyticsFakeConfig {
    /// Serve https with a leaf from [`crate::tls::shared_ca`] (clients must trust that CA).
    pub https: bool,
    /// The audience a bearer token must carry, e.g. `https://monitor.azure.com`.
    pub audience: String,
    /// The DCR immutable id in the upload path.
    pub dcr_immutable_id: String,
    /// The stream name in the upload path.
    pub stream: String,
    /// `(name, type)` of the DCR stream's columns (`string int long real boolean dynamic
    /// datetime`). `None` accepts any column. Undeclared columns are dropped silently, as a
    /// DCR-based table does; a value of the wrong type is refused with 400.
    pub declared_columns: Option<Vec<(String, String)>>,
    /// Also refuse (413) a gzip body whose *decompressed* size exceeds 1,048,576 bytes
    /// (the stricter reading of the documented limit, which the shipper must respect).
    pub strict_decompressed_limit: bool,
    /// Data Collector: the workspace id in `Authorization: SharedKey {id}:{sig}`.
    pub workspace_id: String,
    /// Data Collector: the workspace key (Base64) the signature is keyed with.
    pub workspace_key_b64: String,
    /// Data Collector: the Log-Type whose table [`LogAnalyticsFake::dc_rows`] returns.
    pub log_type: String,
    /// Keep accepted rows for [`LogAnalyticsFake::rows`]; `false` only counts them
    /// (benchmarks), which avoids building every row.
    pub store_rows: bool,
    /// Logs Ingestion: the status of a post to a stream the DCR does not declare. docs/contracts.md
    /// §3.3 has 404 (unverified, [M]); 400 is the other plausible answer, so the fake runs
    /// both ways (docs/design.md §6) and the `doctor` suite covers both.
    pub unknown_stream_status: u16,
    /// Logs Query API: the audience a query token must carry.
    pub query_audience: String,
    /// Logs Query API: rows one result holds at most (beyond: 200 with a `PartialError`).
    pub query_row_limit: usize,
}

impl Default for LogAnalyticsFakeConfig {
    fn default() -> Self {
        LogAnalyticsFakeConfig {
            https: false,
            audience: "https://monitor.azure.com".into(),
            dcr_immutable_id: "dcr-00000000000000000000000000000000".into(),
            stream: "Custom-Okta_CL".into(),
            declared_columns: None,
            strict_decompressed_limit: false,
            workspace_id: "00000000-0000-0000-0000-0000000000aa".into(),
            workspace_key_b64: base64::engine::general_purpose::STANDARD
                .encode(b"okta-sentinel fake Log Analytics workspace key (test only)......"),
            log_type: "Okta".into(),
            store_rows: true,
            unknown_stream_status: 404,
            query_audience: logs_query::QUERY_AUDIENCE.into(),
            query_row_limit: logs_query::QUERY_ROW_LIMIT,
        }
    }
}

impl std::fmt::Debug for LogAnalyticsFakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The workspace key is a secret even in tests: it never goes to output.
        f.debug_struct("LogAnalyticsFakeConfig")
            .field("https", &self.https)
            .field("audience", &self.audience)
            .field("dcr_immutable_id", &self.dcr_immutable_id)
            .field("stream", &self.stream)
            .field("declared_columns", &self.declared_columns)
            .field("strict_decompressed_limit", &self.strict_decompressed_limit)
            .field("workspace_id", &self.workspace_id)
            .field("workspace_key_b64", &"<redacted>")
            .field("log_type", &self.log_type)
            .field("store_rows", &self.store_rows)
            .field("unknown_stream_status", &self.unknown_stream_status)
            .field("query_audience", &self.query_audience)
            .field("query_row_limit", &self.query_row_limit)
            .finish()
    }
}

/// Counters of what the fake saw. Rows of requests whose connection was dropped after
/// acceptance are included in the accepted counters (they landed) and also counted in the
/// `accepted_then_dropped_*` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaStats {
    /// Responses sent, by status code (both APIs; dropped connections have none).
    pub requests_by_status: BTreeMap<u16, u64>,
    /// Logs Ingestion requests accepted.
    pub accepted_requests: u64,
    /// Logs Ingestion rows accepted.
    pub accepted_rows: u64,
    /// Rows of each accepted Logs Ingestion request, in the order accepted.
    pub accepted_request_rows: Vec<u64>,
    /// Body bytes of accepted Logs Ingestion requests, as sent (compressed or not).
    pub bytes_on_wire: u64,
    /// Body bytes of accepted Logs Ingestion requests after gunzip.
    pub bytes_decompressed: u64,
    /// Logs Ingestion rows whose `uuid_g` was accepted before.
    pub duplicate_rows: u64,
    /// Logs Ingestion string values the service would truncate (> 64 KB).
    pub truncated_fields: u64,
    /// Requests (either API) accepted and then left without an answer.
    pub accepted_then_dropped_requests: u64,
    /// Rows of those requests.
    pub accepted_then_dropped_rows: u64,
    /// Requests whose connection was closed by a [`LaFault::Down`] outage.
    pub dropped_connections: u64,
    /// Requests held without an answer by a [`LaFault::Stall`] (counted when they arrive).
    pub stalled_requests: u64,
    /// Data Collector posts accepted.
    pub dc_accepted_requests: u64,
    /// Data Collector records accepted.
    pub dc_accepted_rows: u64,
    /// Data Collector rows whose flattened `uuid_g` was accepted before.
    pub dc_duplicate_rows: u64,
    /// Data Collector string values truncated to 32 KB.
    pub dc_truncated_fields: u64,
    /// Data Collector values dropped because the table had 500 columns.
    pub dc_dropped_fields: u64,
    /// Answers to empty batches (`[]`, both APIs) by status: the health probe `doctor` and the
    /// shippers' start-up self-check send (as Vector's health check does). They carry no data,
    /// so they are kept out of every counter above and never meet an injected [`LaFault`]:
    /// the suites count and break the requests that carry pages.
    pub probe_requests_by_status: BTreeMap<u16, u64>,
    /// Rows accepted and then thrown away by [`Discard`] (lost after acceptance).
    pub discarded_rows: u64,
    /// The `uuid_g` of those rows, in order.
    pub discarded_uuids: Vec<String>,
    /// Logs Query API requests (any answer).
    pub query_requests: u64,
}

/// Accepted rows to throw away, as if lost inside the service after a 204/200: the client
/// did everything right and the rows never become queryable. What the completeness audit
/// exists to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    /// Every `n`-th accepted row (counting from the first row accepted after this is set).
    EveryNth(u64),
    /// Rows with these `uuid_g` (lower-case), the first time each is accepted.
    Uuids(HashSet<String>),
}

#[derive(Debug, Default)]
struct DiscardState {
    rule: Option<Discard>,
    counter: u64,
}

impl DiscardState {
    /// Whether the row with `uuid` is to be thrown away.
    fn take(&mut self, uuid: Option<&str>) -> bool {
        match &mut self.rule {
            None => false,
            Some(Discard::EveryNth(n)) => {
                self.counter += 1;
                *n > 0 && self.counter.is_multiple_of(*n)
            }
            Some(Discard::Uuids(set)) => uuid.is_some_and(|u| set.remove(&u.to_ascii_lowercase())),
        }
    }
}

/// Which API a request is for (their error bodies differ).
#[derive(Debug, Clone, Copy)]
enum Api {
    LogsIngestion,
    DataCollector,
}

/// `uuid_g` values already accepted; GUIDs are kept as 16 bytes so a long benchmark does
/// not hold millions of strings.
#[derive(Debug, Default)]
struct Seen {
    guids: HashSet<u128>,
    others: HashSet<String>,
}

impl Seen {
    /// Records `id`; `true` if it was new.
    fn insert(&mut self, id: &str) -> bool {
        match uuid::Uuid::try_parse(id) {
            Ok(u) => self.guids.insert(u.as_u128()),
            Err(_) => self.others.insert(id.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct DcTableState {
    table: DcTable,
    rows: Vec<Row>,
}

#[derive(Debug, Default)]
struct Store {
    rows: Vec<Row>,
    discard: DiscardState,
    dc_tables: HashMap<String, DcTableState>,
    /// The caller lacks Monitoring Metrics Publisher on the DCR ([`LogAnalyticsFake::set_publisher_denied`]).
    publisher_denied: bool,
    stats: LaStats,
    /// Milliseconds from each accepted Logs Ingestion row's `published_t` to its acceptance.
    arrival_lags_ms: Vec<i64>,
    seen: Seen,
    dc_seen: Seen,
}

/// State shared by the handlers and the handle.
struct Shared {
    cfg: LogAnalyticsFakeConfig,
    columns: Option<HashMap<String, ColumnType>>,
    dc_key: Vec<u8>,
    store: Mutex<Store>,
    faults: Mutex<FaultState>,
    /// Wakes the accept loop when a fault is injected (an outage closes the listener).
    faults_changed: Notify,
    /// Ids (`jti`) of bearer tokens refused with 401 though valid otherwise (revoked).
    revoked: Mutex<HashSet<String>>,
    /// Statuses the next Logs Query requests get, in order.
    query_faults: Mutex<VecDeque<u16>>,
    /// Logs Query answers 403 (the identity has no read role on the table).
    query_forbidden: AtomicBool,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread cannot leave the counters half-updated in a way that
        // matters more than losing them, so a poisoned lock is used as is.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the token with id `jti` was revoked.
    fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(jti)
    }

    fn take_query_status(&self) -> Option<u16> {
        self.query_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn query_forbidden(&self) -> bool {
        self.query_forbidden.load(Ordering::Relaxed)
    }

    /// Calls `f` on each queryable row of `table` (the Logs Ingestion stream's table and every
    /// Data Collector table, each with `TimeGenerated`); `false` when there is no such table.
    fn for_table_rows(&self, table: &str, mut f: impl FnMut(&Row)) -> bool {
        let s = self.store();
        let mut found = false;
        if self.cfg.stream.strip_prefix("Custom-") == Some(table) {
            found = true;
            s.rows.iter().for_each(&mut f);
        }
        if let Some(t) = table
            .strip_suffix("_CL")
            .and_then(|log_type| s.dc_tables.get(log_type))
        {
            found = true;
            t.rows.iter().for_each(&mut f);
        }
        found
    }

    fn down_until(&self) -> Option<Instant> {
        self.faults().down_until()
    }

    fn count_probe_status(&self, status: StatusCode) {
        *self
            .store()
            .stats
            .probe_requests_by_status
            .entry(status.as_u16())
            .or_default() += 1;
    }

    fn publisher_denied(&self) -> bool {
        self.store().publisher_denied
    }

    fn count_status(&self, status: StatusCode) {
        *self
            .store()
            .stats
            .requests_by_status
            .entry(status.as_u16())
            .or_default() += 1;
    }

    /// Applies the fault a request meets on arrival: `Some(response)` to answer with, or the
    /// connection is closed (never returns), or `None` to process the request.
    async fn before(&self, api: Api, kill: &ConnKill) -> Option<Response> {
        let fault = self.faults().before();
        match fault? {
            Before::Drop => {
                self.store().stats.dropped_connections += 1;
                kill.0.cancel();
                std::future::pending().await
            }
            Before::Status {
                status,
                retry_after_secs,
            } => Some(fault_response(api, status, retry_after_secs)),
            Before::StallUntil(until) => {
                self.store().stats.stalled_requests += 1;
                tokio::time::sleep_until(until.into()).await;
                Some(fault_response(api, 503, Some(1)))
            }
        }
    }

    /// The injected answer for a request with this decompressed body, if a
    /// [`LaFault::StatusWhenBodyContains`] rule matches it.
    fn body_fault(&self, api: Api, body: &[u8]) -> Option<Response> {
        let status = self.faults().for_body(body)?;
        Some(fault_response(api, status, None))
    }

    /// Whether an accepted request must be left unanswered (counted if so).
    fn body_limit(&self) -> Option<usize> {
        self.faults().body_limit()
    }

    fn take_accept_then_drop(&self, rows: u64) -> bool {
        let drop = self.faults().take_accept_then_drop();
        if drop {
            let mut s = self.store();
            s.stats.accepted_then_dropped_requests += 1;
            s.stats.accepted_then_dropped_rows += rows;
        }
        drop
    }

    fn store_li(&self, parsed: rows::Parsed, wire: u64, decompressed: u64) {
        let mut guard = self.store();
        let s = &mut *guard;
        s.stats.accepted_requests += 1;
        s.stats.accepted_rows += parsed.count as u64;
        s.stats.accepted_request_rows.push(parsed.count as u64);
        s.stats.bytes_on_wire += wire;
        s.stats.bytes_decompressed += decompressed;
        s.stats.truncated_fields += parsed.truncated_fields;
        let now_ms = chrono::Utc::now().timestamp_millis();
        s.arrival_lags_ms
            .extend(parsed.published.iter().filter_map(|p| {
                chrono::DateTime::parse_from_rfc3339(p)
                    .ok()
                    .map(|t| now_ms - t.timestamp_millis())
            }));
        if !self.cfg.store_rows || s.discard.rule.is_none() {
            for id in &parsed.uuids {
                if !s.seen.insert(id) {
                    s.stats.duplicate_rows += 1;
                }
            }
            if self.cfg.store_rows {
                s.rows.extend(parsed.rows);
            }
            return;
        }
        for row in parsed.rows {
            let id = row
                .get("uuid_g")
                .and_then(Value::as_str)
                .map(str::to_string);
            if s.discard.take(id.as_deref()) {
                s.stats.discarded_rows += 1;
                s.stats.discarded_uuids.push(id.unwrap_or_default());
                continue;
            }
            if let Some(id) = &id {
                if !s.seen.insert(id) {
                    s.stats.duplicate_rows += 1;
                }
            }
            s.rows.push(row);
        }
    }

    fn store_dc(&self, log_type: &str, time_field: Option<&str>, records: &[Row]) {
        let now = chrono::Utc::now();
        let mut guard = self.store();
        let s = &mut *guard;
        let table = s.dc_tables.entry(log_type.to_string()).or_default();
        s.stats.dc_accepted_requests += 1;
        s.stats.dc_accepted_rows += records.len() as u64;
        for record in records {
            let flat = table.table.ingest(record);
            s.stats.dc_truncated_fields += flat.truncated_fields;
            s.stats.dc_dropped_fields += flat.dropped_fields;
            let mut row = flat.row;
            let id = row
                .get("uuid_g")
                .and_then(Value::as_str)
                .map(str::to_string);
            if s.discard.take(id.as_deref()) {
                s.stats.discarded_rows += 1;
                s.stats.discarded_uuids.push(id.unwrap_or_default());
                continue;
            }
            if let Some(Value::String(id)) = row.get("uuid_g") {
                if !s.dc_seen.insert(id) {
                    s.stats.dc_duplicate_rows += 1;
                }
            }
            row.insert(
                "TimeGenerated".into(),
                Value::String(data_collector::time_generated(record, time_field, now)),
            );
            if self.cfg.store_rows {
                table.rows.push(row);
            }
        }
    }
}

/// The answer of an injected status, in the API's error format.
fn fault_response(api: Api, status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = "Injected by the fake Log Analytics.";
    let mut resp = match (api, status) {
        (Api::LogsIngestion, 429) => logs_ingestion::li_error(code, "TooManyRequests", message),
        (Api::LogsIngestion, 503) => logs_ingestion::li_error(code, "ServiceUnavailable", message),
        (Api::LogsIngestion, _) => logs_ingestion::li_error(code, "InternalServerError", message),
        (Api::DataCollector, 503) => data_collector::dc_error(code, "ServiceUnavailable", message),
        (Api::DataCollector, 429) => data_collector::dc_error(code, "TooManyRequests", message),
        (Api::DataCollector, _) => data_collector::dc_error(code, "UnspecifiedError", message),
    };
    if let Some(secs) = retry_after_secs {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    resp
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Any other path: 404 in the Logs Ingestion format.
async fn fallback(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    uri: axum::http::Uri,
) -> Response {
    let resp = logs_ingestion::li_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("No route for {}", uri.path()),
    );
    shared.count_status(resp.status());
    resp
}

/// A running fake; stops when dropped.
pub struct LogAnalyticsFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for LogAnalyticsFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogAnalyticsFake")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl LogAnalyticsFake {
    /// Binds `127.0.0.1` on a free port and serves both APIs until dropped.
    pub async fn start(cfg: LogAnalyticsFakeConfig) -> anyhow::Result<Self> {
        let dc_key = base64::engine::general_purpose::STANDARD
            .decode(&cfg.workspace_key_b64)
            .context("workspace_key_b64 is not Base64")?;
        let columns = match &cfg.declared_columns {
            None => None,
            Some(cols) => Some(
                cols.iter()
                    .map(|(name, ty)| {
                        ColumnType::parse(ty)
                            .map(|t| (name.clone(), t))
                            .with_context(|| format!("column {name}: unknown type {ty}"))
                    })
                    .collect::<anyhow::Result<HashMap<_, _>>>()?,
            ),
        };
        let tls = if cfg.https {
            let cert = crate::tls::shared_ca().issue_server_cert()?;
            Some(tokio_rustls::TlsAcceptor::from(cert.rustls_config()?))
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake Log Analytics")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            columns,
            dc_key,
            store: Mutex::new(Store::default()),
            faults: Mutex::new(FaultState::default()),
            faults_changed: Notify::new(),
            revoked: Mutex::new(HashSet::new()),
            query_faults: Mutex::new(VecDeque::new()),
            query_forbidden: AtomicBool::new(false),
        });
        let router = axum::Router::new()
            .route(
                "/dataCollectionRules/{dcr}/streams/{stream}",
                post(logs_ingestion::handle),
            )
            .route("/api/logs", post(data_collector::handle))
            .route("/v1/workspaces/{workspace}/query", post(logs_query::handle))
            .fallback(fallback)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            listener,
            addr,
            tls,
            router,
            shared.clone(),
            shutdown.clone(),
        ));
        Ok(LogAnalyticsFake {
            shared,
            addr,
            shutdown,
        })
    }

    /// The configuration the fake runs with (e.g. the workspace key to sign with).
    pub fn config(&self) -> &LogAnalyticsFakeConfig {
        &self.shared.cfg
    }

    /// The origin for `LOGS_INGESTION_ENDPOINT`, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.shared.cfg.https {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The origin for `LOG_ANALYTICS_URI` (the client appends `/api/logs?api-version=…`).
    pub fn data_collector_uri(&self) -> String {
        self.endpoint()
    }

    /// The full upload URL of the configured DCR stream, with `api-version`.
    pub fn upload_url(&self) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
            self.endpoint(),
            self.shared.cfg.dcr_immutable_id,
            self.shared.cfg.stream
        )
    }

    /// The CA certificate (PEM) clients must trust when `https` is on.
    pub fn ca_pem(&self) -> Option<String> {
        self.shared
            .cfg
            .https
            .then(|| crate::tls::shared_ca().ca_pem())
    }

    /// Accepted Logs Ingestion rows in arrival order (declared columns only, `null`s
    /// omitted). Empty when `store_rows` is off.
    pub fn rows(&self) -> Vec<Row> {
        self.shared.store().rows.clone()
    }

    /// Data Collector rows of the configured Log-Type's table, after the service's
    /// flattening and suffixing, each with `TimeGenerated`.
    pub fn dc_rows(&self) -> Vec<Row> {
        self.dc_rows_of(&self.shared.cfg.log_type)
    }

    /// Data Collector rows of the table of `log_type` (without `_CL`).
    pub fn dc_rows_of(&self, log_type: &str) -> Vec<Row> {
        self.shared
            .store()
            .dc_tables
            .get(log_type)
            .map(|t| t.rows.clone())
            .unwrap_or_default()
    }

    /// Milliseconds from `published_t` to acceptance of every accepted Logs Ingestion row
    /// that carries one, in arrival order: how far behind the live log delivery runs.
    pub fn arrival_lags_ms(&self) -> Vec<i64> {
        self.shared.store().arrival_lags_ms.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LaStats {
        self.shared.store().stats.clone()
    }

    /// Takes away (`true`) or gives back the caller's Monitoring Metrics Publisher role on the
    /// DCR: every Logs Ingestion request to the existing DCR then gets the service's 403
    /// `OperationFailed` (docs/contracts.md §3.3), empty batches included.
    pub fn set_publisher_denied(&self, denied: bool) {
        self.shared.store().publisher_denied = denied;
    }

    /// The origin of the Logs Query API (`{origin}/v1/workspaces/{id}/query`); the same
    /// listener as the ingestion APIs.
    pub fn query_endpoint(&self) -> String {
        self.endpoint()
    }

    /// Throws away accepted rows from now on (see [`Discard`]); `None` stops it.
    pub fn discard(&self, rule: Option<Discard>) {
        let mut s = self.shared.store();
        s.discard = DiscardState { rule, counter: 0 };
    }

    /// The next Logs Query requests are answered with these statuses, in order.
    pub fn inject_query_statuses(&self, statuses: &[u16]) {
        self.shared
            .query_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(statuses.iter().copied());
    }

    /// Logs Query answers 403 while `on` (no read role on the table).
    pub fn set_query_forbidden(&self, on: bool) {
        self.shared.query_forbidden.store(on, Ordering::Relaxed);
    }

    /// Schedules a failure (see [`LaFault`]).
    pub fn inject(&self, fault: LaFault) {
        self.shared.faults().inject(fault);
        self.shared.faults_changed.notify_one();
    }

    /// Refuses the tokens with these ids (`jti`, see
    /// [`crate::fakes::identity::IdentityFake::token_ids_issued_for`]) from now on with the
    /// 401 the Logs Ingestion API gives an invalid token, as if they had been revoked: a client
    /// must fetch a new token, which is accepted.
    pub fn revoke_tokens(&self, ids: impl IntoIterator<Item = String>) {
        self.shared
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// Answers a fraction `rate` of requests with a status drawn from `statuses` (429 and
    /// 503 carry `Retry-After: 1`), reproducibly from `seed`. A rate of 0 turns it off.
    pub fn set_fault_rate(&self, rate: f64, statuses: Vec<u16>, seed: u64) {
        self.shared.faults().set_rate(rate, statuses, seed);
    }
}

impl Drop for LogAnalyticsFake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
