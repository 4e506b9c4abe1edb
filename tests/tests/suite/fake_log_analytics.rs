//! The fake Log Analytics answers like the real services (`docs/contracts.md` §2, §3): these tests
//! drive it over real HTTP with reqwest, as the shipper and the benches do.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use world::fakes::log_analytics::{
    shared_key_signature, LaFault, LogAnalyticsFake, LogAnalyticsFakeConfig, LI_MAX_BODY_BYTES,
};
use world::fakes::token;

const AUDIENCE: &str = "https://monitor.azure.com";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

fn bearer() -> String {
    format!(
        "Bearer {}",
        token::issue(AUDIENCE, "shipper-client-id", 600)
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip write");
    e.finish().expect("gzip finish")
}

fn declared() -> Vec<(String, String)> {
    [
        ("TimeGenerated", "datetime"),
        ("uuid_g", "string"),
        ("published_t", "datetime"),
        ("eventType_s", "string"),
        ("securityContext_isProxy_b", "boolean"),
        ("authenticationContext_authenticationStep_d", "real"),
        ("target_s", "string"),
        ("padding_s", "string"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect()
}

async fn start(cfg: LogAnalyticsFakeConfig) -> LogAnalyticsFake {
    LogAnalyticsFake::start(cfg).await.expect("fake starts")
}

fn row(uuid: &str) -> Value {
    json!({
        "TimeGenerated": "2024-08-13T10:00:00.123Z",
        "uuid_g": uuid,
        "published_t": "2024-08-13T10:00:00.123Z",
        "eventType_s": "user.session.start",
        "securityContext_isProxy_b": false,
        "authenticationContext_authenticationStep_d": 0,
        "target_s": "[{\"type\":\"AppInstance\"}]",
        "notDeclared_s": "dropped by the DCR"
    })
}

async fn upload(la: &LogAnalyticsFake, body: Vec<u8>, gz: bool) -> reqwest::Response {
    let mut req = client()
        .post(la.upload_url())
        .header("authorization", bearer())
        .header("content-type", "application/json");
    if gz {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().await.expect("upload answered")
}

#[tokio::test]
async fn logs_ingestion_accepts_gzip_keeps_declared_columns_and_checks_types() {
    let la = start(LogAnalyticsFakeConfig {
        declared_columns: Some(declared()),
        strict_decompressed_limit: true,
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&json!([
        row("dc9fd3c0-598c-11ef-8478-2b7584bf8d5b"),
        row("dc9fd3c0-598c-11ef-8478-2b7584bf8d5c")
    ]))
    .expect("json");
    let resp = upload(&la, gzip(&body), true).await;
    assert_eq!(resp.status(), 204);
    let rows = la.rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0]["uuid_g"],
        json!("dc9fd3c0-598c-11ef-8478-2b7584bf8d5b")
    );
    assert_eq!(rows[1]["eventType_s"], json!("user.session.start"));
    assert!(!rows[0].contains_key("notDeclared_s"));

    let mut wrong = row("dc9fd3c0-598c-11ef-8478-2b7584bf8d5d");
    wrong["securityContext_isProxy_b"] = json!("false");
    let resp = upload(
        &la,
        serde_json::to_vec(&json!([wrong])).expect("json"),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = json_body(resp).await;
    assert!(err["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("securityContext_isProxy_b")));

    let resp = upload(&la, br#"{"not":"an array"}"#.to_vec(), false).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(la.rows().len(), 2);
    let stats = la.stats();
    assert_eq!(stats.accepted_requests, 1);
    assert_eq!(stats.accepted_rows, 2);
    assert_eq!(stats.bytes_decompressed, body.len() as u64);
    assert!(stats.bytes_on_wire < stats.bytes_decompressed);
    assert_eq!(stats.requests_by_status.get(&400), Some(&2));
}

/// A JSON array of rows whose serialisation exceeds `min_bytes`.
fn big_body(min_bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(10_000);
    let mut rows = Vec::new();
    let mut i = 0u32;
    let mut size = 0;
    while size <= min_bytes {
        let mut r = row(&format!("00000000-0000-0000-0000-{i:012}"));
        r["padding_s"] = json!(pad);
        size += 10_300;
        rows.push(r);
        i += 1;
    }
    serde_json::to_vec(&rows).expect("json")
}

#[tokio::test]
async fn bodies_over_one_mebibyte_get_413_on_the_wire_and_in_strict_mode_decompressed() {
    let strict = start(LogAnalyticsFakeConfig {
        declared_columns: Some(declared()),
        strict_decompressed_limit: true,
        ..Default::default()
    })
    .await;
    let body = big_body(LI_MAX_BODY_BYTES);
    assert!(body.len() > LI_MAX_BODY_BYTES);

    let resp = upload(&strict, body.clone(), false).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("ContentLengthLimitExceeded")
    );
    let err: Value = json_body(resp).await;
    assert_eq!(err["error"]["code"], json!("ContentLengthLimitExceeded"));
    assert!(err["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("Provided content length: {} bytes", body.len()))));

    // Small on the wire, too large once decompressed.
    let compressed = gzip(&body);
    assert!(compressed.len() < LI_MAX_BODY_BYTES);
    let resp = upload(&strict, compressed.clone(), true).await;
    assert_eq!(resp.status(), 413);
    assert!(strict.rows().is_empty());

    // The lenient reading (the gateway measures the body as sent) accepts it.
    let lenient = start(LogAnalyticsFakeConfig {
        declared_columns: Some(declared()),
        ..Default::default()
    })
    .await;
    let resp = upload(&lenient, compressed, true).await;
    assert_eq!(resp.status(), 204);
    assert!(lenient.stats().bytes_decompressed > LI_MAX_BODY_BYTES as u64);
}

#[tokio::test]
async fn missing_or_foreign_bearer_gets_401_and_unknown_dcr_or_stream_404() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    let body = serde_json::to_vec(&json!([row("a")])).expect("json");
    let c = client();

    let none = c.post(la.upload_url()).body(body.clone()).send().await;
    assert_eq!(none.map(|r| r.status().as_u16()).ok(), Some(401));

    let vault_token = format!(
        "Bearer {}",
        token::issue("https://vault.azure.net", "id", 600)
    );
    let resp = c
        .post(la.upload_url())
        .header("authorization", vault_token)
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 401);
    let err: Value = json_body(resp).await;
    assert!(err["error"]["code"].is_string());

    let expired = format!("Bearer {}", token::issue(AUDIENCE, "id", -60));
    let resp = c
        .post(la.upload_url())
        .header("authorization", expired)
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 401);

    let cfg = la.config();
    for (dcr, stream) in [
        (cfg.dcr_immutable_id.as_str(), "Custom-Other_CL"),
        ("dcr-11111111111111111111111111111111", cfg.stream.as_str()),
    ] {
        let url = format!(
            "{}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01",
            la.endpoint()
        );
        let resp = c
            .post(url)
            .header("authorization", bearer())
            .body(body.clone())
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), 404, "{dcr} {stream}");
    }
    assert!(la.rows().is_empty());
    assert_eq!(la.stats().requests_by_status.get(&401), Some(&3));
}

#[tokio::test]
async fn accept_then_drop_keeps_the_rows_but_the_client_sees_a_connection_error() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    la.inject(LaFault::AcceptThenDrop { count: 1 });
    let body =
        serde_json::to_vec(&json!([row("dc9fd3c0-598c-11ef-8478-2b7584bf8d5b")])).expect("json");
    let c = client();
    let first = c
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body.clone())
        .send()
        .await;
    let err = first.expect_err("the client must not hear an answer");
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(la.rows().len(), 1);

    // The client retries: the row lands twice and the fake counts the duplicate.
    let resp = c
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 204);
    let stats = la.stats();
    assert_eq!(stats.accepted_then_dropped_requests, 1);
    assert_eq!(stats.accepted_then_dropped_rows, 1);
    assert_eq!(stats.accepted_rows, 2);
    assert_eq!(stats.duplicate_rows, 1);
    assert_eq!(stats.requests_by_status.get(&204), Some(&1));
}

#[tokio::test]
async fn fault_rate_and_injected_statuses_answer_with_retry_after() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    la.set_fault_rate(1.0, vec![429], 42);
    let body = serde_json::to_vec(&json!([row("a")])).expect("json");
    let resp = upload(&la, body.clone(), false).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    la.set_fault_rate(0.0, vec![], 0);

    la.inject(LaFault::Status {
        status: 503,
        count: 1,
        retry_after_secs: Some(7),
    });
    let resp = upload(&la, body.clone(), false).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(upload(&la, body.clone(), false).await.status(), 204);

    // A 10 % rate over many requests fails some and not all (seeded: reproducible).
    la.set_fault_rate(0.1, vec![429, 500, 503], 7);
    let mut failed = 0;
    for _ in 0..100 {
        if upload(&la, body.clone(), false).await.status() != 204 {
            failed += 1;
        }
    }
    assert!((1..40).contains(&failed), "{failed}");
    assert_eq!(la.rows().len(), 1 + 100 - failed);
}

#[tokio::test]
async fn an_outage_refuses_connections_then_the_service_comes_back() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    let body = serde_json::to_vec(&json!([row("a")])).expect("json");
    // Warm a keep-alive connection so both new and pooled connections are exercised.
    let c = client();
    let ok = c
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(ok.status(), 204);

    // Long enough that the assertions below cannot outlive it on a slow machine.
    la.inject(LaFault::Down {
        duration: Duration::from_secs(120),
    });
    let during = c
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body.clone())
        .send()
        .await;
    assert!(during.is_err(), "{during:?}");
    let fresh = client()
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body.clone())
        .send()
        .await;
    assert!(fresh.is_err(), "{fresh:?}");

    // A zero-length outage replaces (ends) the current one; poll until the listener is back.
    la.inject(LaFault::Down {
        duration: Duration::ZERO,
    });
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(r) = client()
            .post(la.upload_url())
            .header("authorization", bearer())
            .body(body.clone())
            .send()
            .await
        {
            assert_eq!(r.status(), 204);
            back = true;
            break;
        }
    }
    assert!(back, "the fake did not come back after the outage");
    assert_eq!(la.rows().len(), 2);
    assert_eq!(
        la.stats().dropped_connections,
        1,
        "the pooled connection was closed"
    );
}

#[tokio::test]
async fn count_only_mode_counts_rows_and_duplicates_without_storing() {
    let la = start(LogAnalyticsFakeConfig {
        declared_columns: Some(declared()),
        store_rows: false,
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&json!([row("u1"), row("u2"), row("u1")])).expect("json");
    assert_eq!(upload(&la, gzip(&body), true).await.status(), 204);
    let mut bad = row("u3");
    bad["TimeGenerated"] = json!("not a date");
    let bad = serde_json::to_vec(&json!([bad])).expect("json");
    assert_eq!(upload(&la, bad, false).await.status(), 400);
    let stats = la.stats();
    assert_eq!(stats.accepted_rows, 3);
    assert_eq!(stats.duplicate_rows, 1);
    assert!(la.rows().is_empty());
}

#[tokio::test]
async fn https_mode_serves_with_the_shared_test_ca() {
    let la = start(LogAnalyticsFakeConfig {
        https: true,
        ..Default::default()
    })
    .await;
    assert!(la.endpoint().starts_with("https://127.0.0.1:"));
    let ca = reqwest::Certificate::from_pem(la.ca_pem().expect("ca").as_bytes()).expect("pem");
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let body = serde_json::to_vec(&json!([row("a")])).expect("json");
    let resp = c
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 204);
    // A client that does not trust the CA cannot connect.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .expect("client");
    let refused = untrusting
        .post(la.upload_url())
        .header("authorization", bearer())
        .body(body)
        .send()
        .await;
    assert!(refused.is_err());
}

// ---- Data Collector API ----

fn rfc1123(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn dc_post(
    la: &LogAnalyticsFake,
    body: &str,
    signature: &str,
    date: &str,
    content_type: &str,
) -> reqwest::Response {
    client()
        .post(format!(
            "{}/api/logs?api-version=2016-04-01",
            la.data_collector_uri()
        ))
        .header(
            "authorization",
            format!("SharedKey {}:{signature}", la.config().workspace_id),
        )
        .header("log-type", "Okta")
        .header("x-ms-date", date)
        .header("time-generated-field", "published")
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn data_collector_checks_the_shared_key_and_flattens_like_the_service() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    let key = la.config().workspace_key_b64.clone();
    let now = chrono::Utc::now();
    let published =
        (now - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let event = json!([{
        "uuid": "DC9FD3C0-598C-11EF-8478-2B7584BF8D5B",
        "published": published,
        "eventType": "user.session.start",
        "version": "0",
        "displayMessage": "Connexion réussie",
        "actor": {"id": "00u1", "alternateId": "ana@example.com", "detailEntry": null},
        "client": {"ipAddress": "198.51.100.7",
                   "geographicalContext": {"city": "Paris",
                                           "geolocation": {"lat": 48.85, "lon": 2.35}}},
        "securityContext": {"isProxy": false, "asNumber": 7922},
        "authenticationContext": {"authenticationStep": 0},
        "target": [{"id": "0oa1", "type": "AppInstance"}],
        "request": {"ipChain": [{"ip": "198.51.100.7"}]},
        "domain": "example.okta.com"
    }])
    .to_string();
    let date = rfc1123(now);
    let bytes = event.len();
    let chars = event.chars().count();
    assert!(bytes > chars, "the body must contain non-ASCII text");

    // Content-Length in characters (the PowerShell sample's bug) is refused.
    let wrong = shared_key_signature(&key, &date, chars);
    let resp = dc_post(&la, &event, &wrong, &date, "application/json").await;
    assert_eq!(resp.status(), 403);
    let err: Value = json_body(resp).await;
    assert_eq!(err["Error"], json!("InvalidAuthorization"));

    // A signature over "application/json" does not cover "application/json; charset=utf-8".
    let right = shared_key_signature(&key, &date, bytes);
    let resp = dc_post(
        &la,
        &event,
        &right,
        &date,
        "application/json; charset=utf-8",
    )
    .await;
    assert_eq!(resp.status(), 403);

    // A date too far from now is refused even when correctly signed.
    let stale = rfc1123(now - chrono::Duration::minutes(20));
    let stale_sig = shared_key_signature(&key, &stale, bytes);
    assert_eq!(
        dc_post(&la, &event, &stale_sig, &stale, "application/json")
            .await
            .status(),
        403
    );
    assert!(la.dc_rows().is_empty());

    let resp = dc_post(&la, &event, &right, &date, "application/json").await;
    assert_eq!(resp.status(), 200);
    let rows = la.dc_rows();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["uuid_g"], json!("dc9fd3c0-598c-11ef-8478-2b7584bf8d5b"));
    assert_eq!(r["published_t"], json!(published));
    assert_eq!(r["TimeGenerated"], json!(published));
    assert_eq!(r["eventType_s"], json!("user.session.start"));
    assert_eq!(r["version_s"], json!("0"));
    assert_eq!(r["displayMessage_s"], json!("Connexion réussie"));
    assert_eq!(r["actor_alternateId_s"], json!("ana@example.com"));
    assert!(!r.contains_key("actor_detailEntry_s"));
    assert_eq!(r["client_ipAddress_s"], json!("198.51.100.7"));
    assert_eq!(r["client_geographicalContext_city_s"], json!("Paris"));
    assert_eq!(
        r["client_geographicalContext_geolocation_lat_d"].as_f64(),
        Some(48.85)
    );
    assert_eq!(r["securityContext_isProxy_b"], json!(false));
    assert_eq!(r["securityContext_asNumber_d"].as_f64(), Some(7922.0));
    assert_eq!(
        r["authenticationContext_authenticationStep_d"].as_f64(),
        Some(0.0)
    );
    let target: Value =
        serde_json::from_str(r["target_s"].as_str().expect("target_s is a string")).expect("json");
    assert_eq!(target[0]["type"], json!("AppInstance"));
    assert!(r["request_ipChain_s"].is_string());
    assert_eq!(r["domain_s"], json!("example.okta.com"));

    let stats = la.stats();
    assert_eq!(stats.dc_accepted_rows, 1);
    assert_eq!(stats.requests_by_status.get(&403), Some(&3));
    assert_eq!(stats.requests_by_status.get(&200), Some(&1));
}

#[tokio::test]
async fn data_collector_refuses_bad_headers_and_reserved_names() {
    let la = start(LogAnalyticsFakeConfig::default()).await;
    let key = la.config().workspace_key_b64.clone();
    let date = rfc1123(chrono::Utc::now());
    let body = r#"[{"TimeGenerated":"2024-01-01T00:00:00Z","x":1}]"#;
    let sig = shared_key_signature(&key, &date, body.len());
    let resp = dc_post(&la, body, &sig, &date, "application/json").await;
    assert_eq!(resp.status(), 400);
    let err: Value = json_body(resp).await;
    assert_eq!(err["Error"], json!("InvalidDataFormat"));

    let resp = dc_post(&la, body, &sig, &date, "text/plain").await;
    assert_eq!(resp.status(), 400);

    let resp = client()
        .post(format!(
            "{}/api/logs?api-version=2016-04-01",
            la.data_collector_uri()
        ))
        .header(
            "authorization",
            format!("SharedKey {}:{sig}", la.config().workspace_id),
        )
        .header("log-type", "Okta-Logs")
        .header("x-ms-date", &date)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 400);
    let err: Value = json_body(resp).await;
    assert_eq!(err["Error"], json!("InvalidLogType"));
    assert!(la.dc_rows().is_empty());
}

/// The body of `resp` as JSON (what reqwest's `json` feature would do; the workspace does not
/// enable it for test helpers).
async fn json_body<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> T {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
