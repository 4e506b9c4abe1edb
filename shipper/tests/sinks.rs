//! The two sinks against the local Log Analytics fake (`world::fakes::log_analytics`): what
//! each answer becomes as an [`Outcome`], that rows land with the manifest's columns, that the
//! legacy path fills the Sentinel content columns with the same values, and that no token,
//! key or signature ever appears in an outcome.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use common::gzip::Level;
use common::secrets::{SecretSource, SecretString};
use common::token_cache::TokenCache;
use serde_json::{Map, Value};
use shipper::chunk::{chunks, Chunk, DATA_COLLECTOR_MAX, MAX_UNCOMPRESSED};
use shipper::rows::{build_dc_events, build_rows, manifest, RowLimits};
use shipper::sinks::{DataCollectorSink, LogsIngestionSink, Outcome, Sink};
use url::Url;
use world::fakes::log_analytics::{LaFault, LogAnalyticsFake, LogAnalyticsFakeConfig};

const EVENTS: &str = include_str!("golden/events.json");
const AUDIENCE: &str = "https://monitor.azure.com";

/// Issues fake-identity tokens for the audience of the requested scope, and remembers the
/// last one so tests can check it never leaks.
#[derive(Debug, Default)]
struct TestCredential {
    audience_override: Option<String>,
    last: std::sync::Mutex<String>,
}

#[async_trait]
impl TokenCredential for TestCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let aud = match &self.audience_override {
            Some(a) => a.clone(),
            None => scopes[0].trim_end_matches("/.default").to_string(),
        };
        let t = world::fakes::token::issue(&aud, "client", 3600);
        *self.last.lock().unwrap() = t.clone();
        Ok(AccessToken::new(
            t,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

fn declared_columns() -> Vec<(String, String)> {
    manifest()
        .columns()
        .iter()
        .map(|c| (c.name.clone(), c.ty.as_str().to_string()))
        .collect()
}

async fn fake() -> LogAnalyticsFake {
    LogAnalyticsFake::start(LogAnalyticsFakeConfig {
        declared_columns: Some(declared_columns()),
        strict_decompressed_limit: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn li_sink(la: &LogAnalyticsFake, cred: Arc<TestCredential>) -> LogsIngestionSink {
    LogsIngestionSink::try_new(
        reqwest::Client::new(),
        Url::parse(&la.endpoint()).unwrap(),
        la.config().dcr_immutable_id.clone(),
        la.config().stream.clone(),
        TokenCache::over(cred),
        AUDIENCE,
    )
    .unwrap()
}

fn dc_sink(la: &LogAnalyticsFake, key_b64: &str) -> DataCollectorSink {
    DataCollectorSink::try_new(
        reqwest::Client::new(),
        Url::parse(&la.data_collector_uri()).unwrap(),
        la.config().workspace_id.clone(),
        SecretSource::from_value("WORKSPACE_KEY", SecretString::new(key_b64)),
        la.config().log_type.clone(),
    )
    .unwrap()
}

fn row_chunks() -> Vec<Chunk> {
    let rows = build_rows(EVENTS.as_bytes(), 0, &RowLimits::default()).unwrap();
    rows.chunks(MAX_UNCOMPRESSED)
}

fn dc_chunks() -> Vec<Chunk> {
    chunks(
        &build_dc_events(EVENTS.as_bytes(), 0).unwrap().rows,
        DATA_COLLECTOR_MAX,
    )
}

/// The corpus moved to today: the legacy API replaces a `published` older than two days by
/// the receive time, and the comparison needs `TimeGenerated` from the event on both paths.
fn recent_events() -> String {
    let today = chrono::Utc::now().format("%Y-%m-%dT").to_string();
    EVENTS.replace("2024-08-13T", &today)
}

fn reason(o: &Outcome) -> &str {
    match o {
        Outcome::Transient { reason, .. }
        | Outcome::SinkWide { reason }
        | Outcome::PageFault { reason } => reason,
        Outcome::Accepted | Outcome::TooLarge => "",
    }
}

#[tokio::test]
async fn logs_ingestion_rows_land_with_their_declared_columns() {
    let la = fake().await;
    let cred = Arc::new(TestCredential::default());
    let sink = li_sink(&la, cred);
    let cs = row_chunks();
    assert_eq!(cs.len(), 1);
    assert_eq!(sink.post(&cs[0]).await, Outcome::Accepted);
    let stored = la.rows();
    assert_eq!(stored.len(), 8);
    let sent: Vec<Map<String, Value>> = serde_json::from_slice(cs[0].body()).unwrap();
    for (got, want) in stored.iter().zip(&sent) {
        for (k, v) in want {
            let g = got
                .get(k)
                .unwrap_or_else(|| panic!("column {k} dropped by the table"));
            match (g, v) {
                (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{k}"),
                _ => assert_eq!(g, v, "{k}"),
            }
        }
    }
}

/// `SINK_GZIP_LEVEL=0`: the same rows land, sent uncompressed (no `Content-Encoding`: the
/// fake would refuse a gzip header on a plain body); the default compresses.
#[tokio::test]
async fn logs_ingestion_bodies_are_gzipped_unless_the_level_is_zero() {
    let chunk = &row_chunks()[0];
    let mut landed = Vec::new();
    for level in [None, Some(Level::Fast), Some(Level::Best)] {
        let la = fake().await;
        let sink = li_sink(&la, Arc::new(TestCredential::default())).with_gzip(level);
        assert_eq!(sink.post(chunk).await, Outcome::Accepted, "level {level:?}");
        let stats = la.stats();
        assert_eq!(stats.bytes_decompressed, chunk.body_len() as u64);
        if level.is_none() {
            assert_eq!(stats.bytes_on_wire, chunk.body_len() as u64, "sent as is");
        } else {
            assert!(
                stats.bytes_on_wire < chunk.body_len() as u64 / 2,
                "compressed"
            );
        }
        landed.push(la.rows());
    }
    assert_eq!(landed[0].len(), 8);
    let uuids = |rows: &[world::fakes::log_analytics::Row]| -> Vec<Value> {
        rows.iter().map(|r| r["uuid_g"].clone()).collect()
    };
    assert_eq!(uuids(&landed[0]), uuids(&landed[1]));
    assert_eq!(uuids(&landed[0]), uuids(&landed[2]));
}

#[tokio::test]
async fn logs_ingestion_statuses_become_outcomes() {
    let la = fake().await;
    let cred = Arc::new(TestCredential::default());
    let sink = li_sink(&la, cred.clone());
    let chunk = &row_chunks()[0];
    let inject = |status: u16, retry: Option<u64>| {
        la.inject(LaFault::Status {
            status,
            count: 1,
            retry_after_secs: retry,
        });
    };

    inject(429, Some(7));
    match sink.post(chunk).await {
        Outcome::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        o => panic!("429 gave {o:?}"),
    }
    inject(503, Some(2));
    match sink.post(chunk).await {
        Outcome::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
        }
        o => panic!("503 gave {o:?}"),
    }
    for status in [500, 502, 504] {
        inject(status, None);
        let o = sink.post(chunk).await;
        assert!(
            matches!(
                o,
                Outcome::Transient {
                    retry_after: None,
                    ..
                }
            ),
            "{status}: {o:?}"
        );
    }
    inject(400, None);
    assert!(matches!(sink.post(chunk).await, Outcome::PageFault { .. }));
    inject(413, None);
    assert_eq!(sink.post(chunk).await, Outcome::TooLarge);
    // A 401 is answered by one more POST with a new token; refused again, it is sink-wide.
    la.inject(LaFault::Status {
        status: 401,
        count: 2,
        retry_after_secs: None,
    });
    let o = sink.post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "401: {o:?}");
    assert_eq!(la.stats().requests_by_status.get(&401), Some(&2));
    inject(404, None);
    let o = sink.post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "404: {o:?}");
    // Only 204 is success: a 200 or 202 (a proxy, a wrong endpoint) must not count as shipped.
    for status in [200, 202] {
        inject(status, None);
        let o = sink.post(chunk).await;
        assert!(matches!(o, Outcome::SinkWide { .. }), "{status}: {o:?}");
        assert!(reason(&o).contains("LOGS_INGESTION_ENDPOINT"), "{o:?}");
    }
    inject(403, None);
    let o = sink.post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "{o:?}");
    assert!(reason(&o).contains("Monitoring Metrics Publisher"), "{o:?}");
    assert!(reason(&o).contains("30 minutes"), "{o:?}");
    // Faults used up: the next post goes through, and nothing was stored before.
    assert_eq!(la.rows().len(), 0);
    assert_eq!(sink.post(chunk).await, Outcome::Accepted);
    assert_eq!(la.rows().len(), 8);
    let token = cred.last.lock().unwrap().clone();
    assert!(!token.is_empty());
}

/// A refused token (401) is replaced at once, not when it expires: the sink fetches a new
/// token and posts once more; a second refusal within a minute forces no further refresh.
#[tokio::test]
async fn a_refused_token_is_replaced_once_a_minute() {
    let la = fake().await;
    let cred = Arc::new(TestCredential::default());
    let sink = li_sink(&la, cred.clone());
    let chunk = &row_chunks()[0];
    assert_eq!(sink.post(chunk).await, Outcome::Accepted);
    let first = cred.last.lock().unwrap().clone();
    la.inject(LaFault::Status {
        status: 401,
        count: 1,
        retry_after_secs: None,
    });
    assert_eq!(sink.post(chunk).await, Outcome::Accepted);
    let second = cred.last.lock().unwrap().clone();
    assert_ne!(first, second, "the refused token was sent again");
    assert_eq!(la.rows().len(), 2 * chunk.len());
    // Within the minute: the next 401 is reported, with no new token.
    la.inject(LaFault::Status {
        status: 401,
        count: 1,
        retry_after_secs: None,
    });
    let o = sink.post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "{o:?}");
    assert_eq!(*cred.last.lock().unwrap(), second);
}

#[tokio::test]
async fn logs_ingestion_real_refusals_are_classified() {
    let la = fake().await;
    let chunk = &row_chunks()[0];

    // A token for another audience: the service answers 401.
    let wrong = Arc::new(TestCredential {
        audience_override: Some("https://vault.azure.net".into()),
        ..Default::default()
    });
    let o = li_sink(&la, wrong.clone()).post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "{o:?}");
    let token = wrong.last.lock().unwrap().clone();
    assert!(
        !format!("{o:?}").contains(&token),
        "token leaked into {o:?}"
    );

    // An unknown DCR: 404, sink-wide, naming the settings to check.
    let cred = Arc::new(TestCredential::default());
    let sink = LogsIngestionSink::try_new(
        reqwest::Client::new(),
        Url::parse(&la.endpoint()).unwrap(),
        "dcr-ffffffffffffffffffffffffffffffff",
        la.config().stream.clone(),
        TokenCache::over(cred.clone()),
        AUDIENCE,
    )
    .unwrap();
    let o = sink.post(chunk).await;
    assert!(
        matches!(o, Outcome::SinkWide { .. }) && reason(&o).contains("DCR_IMMUTABLE_ID"),
        "{o:?}"
    );

    // A body above 1 MiB decompressed: 413.
    let rows = build_rows(
        serde_json::to_string(&vec![
            serde_json::from_str::<Vec<Value>>(EVENTS).unwrap()[0]
                .clone();
            600
        ])
        .unwrap()
        .as_bytes(),
        0,
        &RowLimits::default(),
    )
    .unwrap();
    let big = rows.chunks(2_000_000).remove(0);
    assert!(big.body_len() > 1_048_576, "{}", big.body_len());
    assert_eq!(
        li_sink(&la, cred.clone()).post(&big).await,
        Outcome::TooLarge
    );
    let (a, b) = shipper::chunk::split(&big).unwrap();
    assert_eq!(li_sink(&la, cred.clone()).post(&a).await, Outcome::Accepted);
    assert_eq!(li_sink(&la, cred).post(&b).await, Outcome::Accepted);
    assert_eq!(la.rows().len(), 600);
}

#[tokio::test]
async fn transport_failures_are_classified() {
    let la = fake().await;
    let cred = Arc::new(TestCredential::default());
    let chunk = &row_chunks()[0];

    // Accepted, but the answer is lost: transient (the one unavoidable duplicate).
    la.inject(LaFault::AcceptThenDrop { count: 1 });
    let o = li_sink(&la, cred.clone()).post(chunk).await;
    assert!(matches!(o, Outcome::Transient { .. }), "{o:?}");

    // Nothing listening: cannot connect, sink-wide.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sink = LogsIngestionSink::try_new(
        reqwest::Client::new(),
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        "dcr-00000000000000000000000000000000",
        "Custom-Okta_CL",
        TokenCache::over(cred),
        AUDIENCE,
    )
    .unwrap();
    let o = sink.post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "{o:?}");
}

#[test]
fn settings_are_validated() {
    let cred = Arc::new(TestCredential::default());
    let http = reqwest::Client::new();
    let ok = |e: &str, dcr: &str, stream: &str| {
        LogsIngestionSink::try_new(
            http.clone(),
            Url::parse(e).unwrap(),
            dcr,
            stream,
            TokenCache::over(cred.clone()),
            AUDIENCE,
        )
        .is_ok()
    };
    assert!(ok(
        "https://x.ingest.monitor.azure.com",
        "dcr-1",
        "Custom-Okta_CL"
    ));
    assert!(!ok(
        "http://x.ingest.monitor.azure.com",
        "dcr-1",
        "Custom-Okta_CL"
    ));
    assert!(!ok(
        "https://x.ingest.monitor.azure.com",
        "dcr-1/../x",
        "Custom-Okta_CL"
    ));
    assert!(!ok("https://x.ingest.monitor.azure.com", "dcr-1", ""));
    let key = SecretSource::from_value("WORKSPACE_KEY", SecretString::new("a2V5"));
    let dc = |uri: &str, ws: &str, lt: &str| {
        DataCollectorSink::try_new(http.clone(), Url::parse(uri).unwrap(), ws, key.clone(), lt)
            .is_ok()
    };
    assert!(dc("https://ws.ods.opinsights.azure.com", "ws-1", "Okta"));
    assert!(!dc(
        "https://ws.ods.opinsights.azure.com",
        "ws-1",
        "Okta-CL"
    ));
    assert!(!dc("http://ws.ods.opinsights.azure.com", "ws-1", "Okta"));
}

/// The content columns of docs/okta-cl-columns.md that both sinks must fill with the same values.
const CONTENT: &[&str] = &[
    "eventType_s",
    "legacyEventType_s",
    "displayMessage_s",
    "severity_s",
    "version_s",
    "uuid_g",
    "published_t",
    "TimeGenerated",
    "outcome_result_s",
    "outcome_reason_s",
    "actor_alternateId_s",
    "actor_displayName_s",
    "actor_id_s",
    "actor_type_s",
    "client_ipAddress_s",
    "client_device_s",
    "client_id_s",
    "client_zone_s",
    "client_userAgent_browser_s",
    "client_userAgent_os_s",
    "client_userAgent_rawUserAgent_s",
    "client_geographicalContext_city_s",
    "client_geographicalContext_state_s",
    "client_geographicalContext_country_s",
    "client_geographicalContext_postalCode_s",
    "client_geographicalContext_geolocation_lat_d",
    "client_geographicalContext_geolocation_lon_d",
    "authenticationContext_externalSessionId_s",
    "authenticationContext_credentialType_s",
    "authenticationContext_authenticationProvider_s",
    "authenticationContext_authenticationStep_d",
    "authenticationContext_credentialProvider_s",
    "authenticationContext_interface_s",
    "authenticationContext_issuer_id_s",
    "authenticationContext_issuer_type_s",
    "securityContext_asNumber_d",
    "securityContext_asOrg_s",
    "securityContext_domain_s",
    "securityContext_isp_s",
    "securityContext_isProxy_b",
    "target_s",
    "request_ipChain_s",
    "transaction_id_s",
    "transaction_type_s",
    "debugContext_debugData_logOnlySecurityData_s",
    "debugContext_debugData_threatSuspected_s",
    "debugContext_debugData_threatDetections_s",
    "debugContext_debugData_factor_s",
    "debugContext_debugData_privilegeGranted_s",
    "domain_s",
];

fn same_value(col: &str, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) if col.ends_with("_t") || col == "TimeGenerated" => {
            let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            p(x).is_some() && p(x) == p(y)
        }
        (Value::String(x), Value::String(y)) if col == "target_s" || col == "request_ipChain_s" => {
            serde_json::from_str::<Value>(x).ok() == serde_json::from_str::<Value>(y).ok()
        }
        _ => a == b,
    }
}

/// The column without its type suffix (`version_s` → `version`).
fn base(col: &str) -> &str {
    match col.rsplit_once('_') {
        Some((b, s)) if s.len() == 1 => b,
        _ => col,
    }
}

#[tokio::test]
async fn data_collector_rows_fill_the_content_columns_like_logs_ingestion() {
    let la = fake().await;
    let key = la.config().workspace_key_b64.clone();
    let dc = dc_sink(&la, &key);
    let li = li_sink(&la, Arc::new(TestCredential::default()));
    let events = recent_events();
    let dc_events = build_dc_events(events.as_bytes(), 0).unwrap().rows;
    for c in chunks(&dc_events, DATA_COLLECTOR_MAX) {
        assert_eq!(dc.post(&c).await, Outcome::Accepted);
    }
    let rows = build_rows(events.as_bytes(), 0, &RowLimits::default()).unwrap();
    for c in rows.chunks(MAX_UNCOMPRESSED) {
        assert_eq!(li.post(&c).await, Outcome::Accepted);
    }
    let (dc_rows, li_rows) = (la.dc_rows(), la.rows());
    assert_eq!((dc_rows.len(), li_rows.len()), (8, 8));
    let mut compared = 0;
    for (i, (d, l)) in dc_rows.iter().zip(&li_rows).enumerate() {
        for &col in CONTENT {
            match (l.get(col), d.get(col)) {
                // No usable `published`: both APIs stamp the time of ingestion.
                (Some(lv), Some(dv))
                    if col == "TimeGenerated" && l.get("published_t").is_none() =>
                {
                    let t = |v: &Value| {
                        v.as_str()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .unwrap_or_else(|| panic!("event {i}: TimeGenerated {v}"))
                    };
                    assert!(
                        (t(lv) - t(dv)).num_seconds().abs() < 60,
                        "event {i}: {lv} vs {dv}"
                    );
                    compared += 1;
                }
                (Some(lv), Some(dv)) => {
                    assert!(
                        same_value(col, lv, dv),
                        "event {i} {col}: LI {lv} vs DC {dv}"
                    );
                    compared += 1;
                }
                (None, None) => {}
                (Some(lv), None) => {
                    // The legacy API infers a column's type per value, so an odd value type
                    // (numeric `version`, string-typed numbers, a boolean in debugData) lands
                    // in a sibling column with another suffix (docs/design.md §4): allowed, but only
                    // then.
                    let sibling = d.keys().find(|k| base(k) == base(col) && k.as_str() != col);
                    assert!(
                        sibling.is_some(),
                        "event {i}: {col} = {lv} missing on the DC path"
                    );
                }
                (None, Some(dv)) => {
                    // Only the datetime columns may exist on the DC path alone (TimeGenerated
                    // is always set there, from ingestion time if `published` is not a date).
                    assert!(
                        col == "TimeGenerated" && i == 7,
                        "event {i}: {col} = {dv} only on the DC path"
                    );
                }
            }
        }
    }
    assert!(compared >= 230, "only {compared} values compared");
    // The §1.5 sample (event 0) has every one of its content columns identical.
    for &col in CONTENT {
        assert_eq!(
            li_rows[0].contains_key(col),
            dc_rows[0].contains_key(col),
            "{col}"
        );
    }
}

#[tokio::test]
async fn data_collector_statuses_become_outcomes_without_secrets() {
    let la = fake().await;
    let key = la.config().workspace_key_b64.clone();
    let chunk = &dc_chunks()[0];
    let sink = dc_sink(&la, &key);

    la.inject(LaFault::Status {
        status: 429,
        count: 1,
        retry_after_secs: Some(3),
    });
    match sink.post(chunk).await {
        Outcome::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        o => panic!("429 gave {o:?}"),
    }
    la.inject(LaFault::Status {
        status: 500,
        count: 1,
        retry_after_secs: None,
    });
    assert!(matches!(sink.post(chunk).await, Outcome::Transient { .. }));

    // Malformed data: 400 InvalidDataFormat is the page's fault.
    let bad = Chunk::new(0, 1, b"{\"a\":1},");
    let o = sink.post(&bad).await;
    assert!(matches!(o, Outcome::PageFault { .. }), "{o:?}");

    // A wrong key: 403, sink-wide; neither key nor signature in the outcome.
    let wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk=";
    let o = dc_sink(&la, wrong_key).post(chunk).await;
    assert!(matches!(o, Outcome::SinkWide { .. }), "{o:?}");
    let text = format!("{o:?}");
    assert!(!text.contains(wrong_key) && !text.contains(&key), "{text}");
    let ws = &la.config().workspace_id;
    assert!(!text.contains(&format!("SharedKey {ws}:")), "{text}");
    // A key that is not Base64: sink-wide, no key in the message.
    let o = dc_sink(&la, "not-base64!!").post(chunk).await;
    assert!(
        matches!(o, Outcome::SinkWide { .. }) && !format!("{o:?}").contains("not-base64!!"),
        "{o:?}"
    );
    assert!(format!("{sink:?}").find(&key).is_none());
    assert!(la.dc_rows().is_empty());
    assert_eq!(sink.post(chunk).await, Outcome::Accepted);
}

#[test]
fn signature_matches_the_fakes_independent_implementation() {
    let key = LogAnalyticsFakeConfig::default().workspace_key_b64;
    let date = "Mon, 04 Apr 2016 08:00:00 GMT";
    let ours = shipper::sinks::shared_key::signature("ws", &key, date, 12345).unwrap();
    let theirs = world::fakes::log_analytics::shared_key_signature(&key, date, 12345);
    assert_eq!(ours, format!("SharedKey ws:{theirs}"));
}

/// A group change with thousands of targets: over the Data Collector API's 32 KB field limit,
/// the service would cut `target_s` mid-array (invalid JSON, counted nowhere). We cut whole
/// trailing elements first and count it; what lands parses, and the service cut nothing.
#[tokio::test]
async fn data_collector_arrays_over_the_field_limit_stay_valid_json() {
    let la = fake().await;
    let key = la.config().workspace_key_b64.clone();
    let dc = dc_sink(&la, &key);
    let mut events: Vec<Value> = serde_json::from_str(&recent_events()).unwrap();
    events.truncate(1);
    let targets: Vec<Value> = (0..2_000)
        .map(|i| serde_json::json!({"id": format!("00u{i:05}"), "type": "User", "alternateId": format!("user{i}@example.com"), "displayName": format!("User {i}")}))
        .collect();
    events[0]["target"] = Value::Array(targets);
    let page = serde_json::to_string(&events).unwrap();
    let batch = build_dc_events(page.as_bytes(), 0).unwrap();
    assert_eq!(batch.truncations, 1);
    for c in batch.chunks(DATA_COLLECTOR_MAX) {
        assert_eq!(dc.post(&c).await, Outcome::Accepted);
    }
    let rows = la.dc_rows();
    assert_eq!(rows.len(), 1);
    let target_s = rows[0]["target_s"].as_str().expect("target_s");
    let landed: Vec<Value> = serde_json::from_str(target_s).expect("target_s is valid JSON");
    assert!(
        landed.len() > 100 && landed.len() < 2_000,
        "{}",
        landed.len()
    );
    assert_eq!(landed[0]["id"], "00u00000");
    assert_eq!(la.stats().dc_truncated_fields, 0, "the service had to cut");
}
