//! A strict fake of Azure Monitor's two ingestion APIs, on one local port:
//!
//! - the **Logs Ingestion API** (DCR-based, `contracts.md` §3) — what the shipper uses;
//! - the legacy **HTTP Data Collector API** (`contracts.md` §2) — SharedKey-signed posts that
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
mod rows;
mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
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
    dc_tables: HashMap<String, DcTableState>,
    stats: LaStats,
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

    fn down_until(&self) -> Option<Instant> {
        self.faults().down_until()
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
        }
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
        for id in &parsed.uuids {
            if !s.seen.insert(id) {
                s.stats.duplicate_rows += 1;
            }
        }
        if self.cfg.store_rows {
            s.rows.extend(parsed.rows);
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
        });
        let router = axum::Router::new()
            .route(
                "/dataCollectionRules/{dcr}/streams/{stream}",
                post(logs_ingestion::handle),
            )
            .route("/api/logs", post(data_collector::handle))
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> LaStats {
        self.shared.store().stats.clone()
    }

    /// Schedules a failure (see [`LaFault`]).
    pub fn inject(&self, fault: LaFault) {
        self.shared.faults().inject(fault);
        self.shared.faults_changed.notify_one();
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
