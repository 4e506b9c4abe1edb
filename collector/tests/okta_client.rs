//! The collector's Okta client against the fake Okta org (`world::fakes::okta`) and, for
//! answers the fake does not give (a 200 with an HTML page), a tiny scripted HTTP server.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use collector::dedupe::RecentUuids;
use collector::okta::{
    build_http_client, first_url, prepare_page, Credential, OktaClient, OktaError,
};
use collector::pacing::Pacer;
use common::secrets::{SecretSource, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;
use world::fakes::okta::{
    test_ec_key_pem, test_rsa_key_pem, OAuthAppConfig, OktaFake, OktaFakeConfig, OktaFault,
};

const SSWS: &str = "test-ssws-token";
const CLIENT_ID: &str = "0oa-collector-test";

fn ssws(token: &str) -> Credential {
    Credential::Ssws(SecretSource::from_value(
        "OKTA_API_TOKEN",
        SecretString::new(token),
    ))
}

fn oauth(private_pem: &str) -> Credential {
    Credential::PrivateKeyJwt {
        client_id: CLIENT_ID.into(),
        key: SecretSource::from_value("OKTA_PRIVATE_KEY", SecretString::new(private_pem)),
        key_id: None,
        scope: "okta.logs.read".into(),
    }
}

fn client(fake_base: &str, credential: Credential) -> OktaClient {
    let http = build_http_client(&[]).expect("http client");
    OktaClient::new(Url::parse(fake_base).expect("url"), credential, http).expect("client")
}

async fn fake(cfg: OktaFakeConfig) -> OktaFake {
    OktaFake::start(cfg).await.expect("fake okta")
}

fn since() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(2)
}

/// Follows next links until an empty page; returns every uuid in order and the next link
/// of the empty page (where new events will appear).
async fn drain_from(c: &OktaClient, mut url: Url) -> (Vec<String>, Url) {
    let mut uuids = Vec::new();
    for _ in 0..100 {
        let page = c.fetch(&url).await.expect("page");
        let next = page.next.expect("polling pages always have a next link");
        if page.events.is_empty() {
            return (uuids, next);
        }
        for e in page.events.iter() {
            let v: serde_json::Value = serde_json::from_str(e.text()).expect("event json");
            uuids.push(v["uuid"].as_str().expect("uuid").to_string());
        }
        url = next;
    }
    panic!("did not reach an empty page");
}

async fn drain(c: &OktaClient) -> Vec<String> {
    drain_from(c, first_url(c.origin(), since())).await.0
}

#[tokio::test]
async fn pages_through_the_log_with_both_link_styles() {
    let f = fake(OktaFakeConfig {
        initial_events: 2_345,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let first = first_url(c.origin(), since());
    assert_eq!(first.path(), "/api/v1/logs");
    let q: Vec<(String, String)> = first.query_pairs().into_owned().collect();
    assert!(q.iter().any(|(k, v)| k == "limit" && v == "1000"));
    assert!(q.iter().any(|(k, _)| k == "since"));
    assert!(!q.iter().any(|(k, _)| k == "until"), "polling request only");

    let got = drain(&c).await;
    // 3 full/partial pages + the empty one: the fake alternates separate and joined link
    // headers, so both styles were followed.
    assert!(f.stats().logs_requests >= 4);
    assert_eq!(got.len(), 2_345);
    let want: HashSet<String> = f.released_uuids().into_iter().collect();
    let have: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(have, want);

    // New events appear behind the next link of the empty page (polling semantics).
    let (_, resume) = drain_from(&c, first_url(c.origin(), since())).await;
    f.release(7);
    let (more, _) = drain_from(&c, resume).await;
    assert_eq!(more.len(), 7);
    assert!(more.iter().all(|u| !have.contains(u)));
}

#[tokio::test]
async fn a_page_carries_rate_limit_and_date_headers() {
    let f = fake(OktaFakeConfig {
        initial_events: 3,
        rate_limit_per_window: 20,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let p = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect("page");
    let rate = p.rate.expect("rate headers");
    assert_eq!(rate.limit, 20);
    assert!(rate.remaining < 20);
    let date = p.date.expect("date header");
    assert!(rate.reset > date);
    // The pacer spaces requests by the headers: 60 s window, ≤ 19 left, 6 reserved.
    let d = Pacer::new(0.3).delay_after(&rate, date);
    assert!(d.as_secs_f64() > 0.0);
}

/// A listener that counts connections; nothing must ever reach it.
async fn foreign_listener() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://127.0.0.1:{port}"), hits)
}

#[tokio::test]
async fn a_foreign_next_link_is_refused_and_never_contacted() {
    let f = fake(OktaFakeConfig {
        initial_events: 5,
        ..Default::default()
    })
    .await;
    let (foreign, hits) = foreign_listener().await;
    let c = client(&f.base_url(), ssws(SSWS));
    f.inject(OktaFault::ForeignNextLink {
        count: 1,
        url: format!("{foreign}/api/v1/logs?after=stolen"),
    });
    let err = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect_err("refused");
    assert!(matches!(err, OktaError::ForeignOrigin(_)), "{err:?}");
    // Asking for the foreign URL directly is refused before anything is sent.
    let direct = Url::parse(&format!("{foreign}/api/v1/logs?after=1")).expect("url");
    let err = c.fetch(&direct).await.expect_err("refused");
    assert!(matches!(err, OktaError::ForeignOrigin(_)), "{err:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn oauth_private_key_jwt_rsa_and_ec() {
    for (private, public) in [test_rsa_key_pem(), test_ec_key_pem().expect("ec key")] {
        let f = fake(OktaFakeConfig {
            initial_events: 10,
            oauth: Some(OAuthAppConfig::new(CLIENT_ID, public)),
            ..Default::default()
        })
        .await;
        let c = client(&f.base_url(), oauth(&private));
        assert_eq!(drain(&c).await.len(), 10);
        let s = f.stats();
        assert_eq!(s.tokens_issued, 1, "the token is cached between requests");
        let schemes = &s.auth_schemes_by_path["/api/v1/logs"];
        assert!(
            schemes.get("Bearer").copied().unwrap_or(0) >= 2,
            "{schemes:?}"
        );
    }
}

#[tokio::test]
async fn oauth_with_the_wrong_key_is_unauthorized_with_a_hint() {
    let (_, public) = test_rsa_key_pem();
    let (other_private, _) = test_ec_key_pem().expect("ec key");
    let f = fake(OktaFakeConfig {
        oauth: Some(OAuthAppConfig::new(CLIENT_ID, public)),
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), oauth(&other_private));
    let err = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect_err("refused");
    assert!(err.is_auth(), "{err:?}");
    assert!(matches!(err, OktaError::Unauthorized { .. }), "{err:?}");
    assert!(!err.operator_hint().is_empty());
    assert_eq!(f.stats().logs_requests, 0, "no token, no log request");
}

#[tokio::test]
async fn oauth_missing_scope_is_forbidden() {
    let (private, public) = test_rsa_key_pem();
    let mut app = OAuthAppConfig::new(CLIENT_ID, public);
    app.scopes = vec!["okta.users.read".into()];
    let f = fake(OktaFakeConfig {
        oauth: Some(app),
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), oauth(&private));
    let err = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect_err("refused");
    assert!(matches!(err, OktaError::Forbidden { .. }), "{err:?}");
    assert!(err.operator_hint().contains("okta.logs.read"));
}

#[tokio::test]
async fn dpop_nonce_flow_at_token_endpoint_and_resource() {
    let (private, public) = test_ec_key_pem().expect("ec key");
    let mut app = OAuthAppConfig::new(CLIENT_ID, public);
    app.require_dpop = true;
    let f = fake(OktaFakeConfig {
        initial_events: 1_500,
        oauth: Some(app),
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), oauth(&private));
    assert_eq!(drain(&c).await.len(), 1_500);
    let s = f.stats();
    assert_eq!(s.tokens_issued, 1);
    // One nonce challenge at the token endpoint, one at the resource.
    assert_eq!(s.dpop_nonce_challenges, 2, "{s:?}");
    let schemes = &s.auth_schemes_by_path["/api/v1/logs"];
    assert!(
        schemes.get("DPoP").copied().unwrap_or(0) >= 3,
        "{schemes:?}"
    );
    assert_eq!(schemes.get("Bearer"), None);

    // The resource rotates its nonce mid-session: one challenge, retried transparently.
    f.rotate_dpop_nonce();
    let p = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect("page after rotation");
    assert!(!p.events.is_empty());
    assert_eq!(f.stats().dpop_nonce_challenges, 3);
    assert_eq!(f.stats().tokens_issued, 1);
}

#[tokio::test]
async fn an_expired_token_is_renewed() {
    let (private, public) = test_rsa_key_pem();
    let f = fake(OktaFakeConfig {
        initial_events: 3,
        oauth: Some(OAuthAppConfig::new(CLIENT_ID, public)),
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), oauth(&private));
    let url = first_url(c.origin(), since());
    c.fetch(&url).await.expect("first");
    assert_eq!(f.stats().tokens_issued, 1);
    // Okta expires the token (server side): the 401 makes the client get a new one.
    f.expire_tokens();
    let p = c.fetch(&url).await.expect("after expiry");
    assert_eq!(p.events.len(), 3);
    assert_eq!(f.stats().tokens_issued, 2);
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_before_it_expires() {
    let (private, public) = test_rsa_key_pem();
    let mut app = OAuthAppConfig::new(CLIENT_ID, public);
    app.token_ttl_secs = 2; // renewed after half its life at the latest
    let f = fake(OktaFakeConfig {
        initial_events: 3,
        oauth: Some(app),
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), oauth(&private));
    let url = first_url(c.origin(), since());
    c.fetch(&url).await.expect("first");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    c.fetch(&url).await.expect("second");
    let s = f.stats();
    assert_eq!(s.tokens_issued, 2);
    assert_eq!(
        s.by_status.get(&401),
        None,
        "renewed before Okta refused it: {s:?}"
    );
}

#[tokio::test]
async fn a_401_is_retried_once_after_refreshing_the_credential() {
    let f = fake(OktaFakeConfig {
        initial_events: 4,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let url = first_url(c.origin(), since());
    f.inject(OktaFault::Unauthorized { count: 1 });
    let p = c.fetch(&url).await.expect("retried after refresh");
    assert_eq!(p.events.len(), 4);
    assert_eq!(f.stats().logs_requests, 2);

    // Refused twice: the error goes to the caller (not-ready, slow retries); one retry only.
    f.inject(OktaFault::Unauthorized { count: 2 });
    let err = c.fetch(&url).await.expect_err("still refused");
    assert!(
        matches!(err, OktaError::Unauthorized { .. }) && err.is_auth(),
        "{err:?}"
    );
    assert_eq!(f.stats().logs_requests, 4);
    assert!(err.operator_hint().contains("30 days"));

    f.inject(OktaFault::Forbidden { count: 2 });
    let err = c.fetch(&url).await.expect_err("forbidden");
    assert!(matches!(err, OktaError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn a_wrong_token_never_appears_in_errors() {
    let f = fake(OktaFakeConfig::default()).await;
    let secret = "00WRONG-TOKEN-VALUE-xyz";
    let c = client(&f.base_url(), ssws(secret));
    let err = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect_err("refused");
    assert!(matches!(err, OktaError::Unauthorized { .. }), "{err:?}");
    for text in [format!("{err}"), format!("{err:?}"), format!("{c:?}")] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn malformed_bodies_are_errors_never_empty_pages() {
    let f = fake(OktaFakeConfig {
        initial_events: 50,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let url = first_url(c.origin(), since());
    for fault in [
        OktaFault::TruncatedJson { count: 1 },
        OktaFault::ObjectInsteadOfArray { count: 1 },
        OktaFault::InvalidUtf8 { count: 1 },
    ] {
        f.inject(fault.clone());
        let err = c.fetch(&url).await.expect_err("malformed");
        let OktaError::Malformed(msg) = &err else {
            panic!("{fault:?}: {err:?}");
        };
        assert!(msg.len() < 400, "{fault:?}: short description: {msg}");
        assert!(err.is_transient());
    }
    // A gateway's HTML error page is a server error (retried), with a short excerpt.
    f.inject(OktaFault::HtmlErrorPage { count: 1 });
    let err = c.fetch(&url).await.expect_err("502");
    assert!(
        matches!(err, OktaError::Server { status: 502, .. }),
        "{err:?}"
    );
    // The same page is served fine afterwards: nothing was skipped.
    assert_eq!(c.fetch(&url).await.expect("page").events.len(), 50);
}

#[tokio::test]
async fn rate_limited_and_server_errors() {
    let f = fake(OktaFakeConfig {
        initial_events: 2,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let url = first_url(c.origin(), since());
    f.inject(OktaFault::Status429 { count: 1 });
    let err = c.fetch(&url).await.expect_err("429");
    let OktaError::RateLimited { rate, date } = &err else {
        panic!("{err:?}");
    };
    let rate = rate.expect("rate headers on a 429");
    assert_eq!(rate.remaining, 0);
    assert!(date.is_some());
    assert!(
        Pacer::default()
            .delay_after_429(Some(&rate), *date)
            .as_secs()
            >= 1
    );

    f.inject(OktaFault::Status500 { count: 1 });
    let err = c.fetch(&url).await.expect_err("500");
    assert!(
        matches!(&err, OktaError::Server { status: 500, code: Some(c), .. } if c == "E0000009"),
        "{err:?}"
    );
}

#[tokio::test]
async fn prepared_pages_add_the_domain_and_drop_repeats() {
    let f = fake(OktaFakeConfig {
        initial_events: 20,
        ..Default::default()
    })
    .await;
    let c = client(&f.base_url(), ssws(SSWS));
    let p = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect("page");
    let mut recent = RecentUuids::new(10_000);
    let prepared = prepare_page(p.events.iter(), c.host(), &mut recent).expect("prepared");
    assert_eq!(prepared.count, 20);
    let stored: Vec<serde_json::Value> = serde_json::from_slice(&prepared.json).expect("array");
    assert!(stored.iter().all(|e| e["domain"] == "127.0.0.1"));
    // Bytes are copied: each original event text is a prefix of the stored one.
    let text = String::from_utf8(prepared.json.clone()).expect("utf8");
    let first = p.events.iter().next().expect("an event").text();
    assert!(text.contains(&first[..first.len() - 1]));
    // The same page again: all repeats.
    let again = prepare_page(p.events.iter(), c.host(), &mut recent).expect("prepared");
    assert_eq!((again.count, again.dropped_duplicates), (0, 20));
}

// ---------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server for answers the fake does not give.

#[derive(Clone)]
struct Canned {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Serves the answers `make(base_url)` returns, in order (one per connection;
/// `Connection: close`), and records each request head.
async fn scripted(make: impl FnOnce(&str) -> Vec<Canned>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port());
    let answers = make(&base);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for a in answers {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            log.lock()
                .expect("log")
                .push(String::from_utf8_lossy(&buf).into_owned());
            let mut out = format!("HTTP/1.1 {}\r\n", a.status);
            for (k, v) in &a.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                a.body.len()
            ));
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&a.body);
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
    });
    (base, seen)
}

#[tokio::test]
async fn a_200_html_page_is_malformed() {
    let (base, seen) = scripted(|_| {
        vec![Canned {
            status: "200 OK",
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html><body>Please sign in</body></html>".to_vec(),
        }]
    })
    .await;
    let c = client(&base, ssws("tok-123456"));
    let err = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect_err("html");
    let OktaError::Malformed(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("HTML"), "{msg}");
    assert!(err.is_transient());
    assert_eq!(seen.lock().expect("log").len(), 1);
}

#[tokio::test]
async fn one_comma_joined_link_header_is_followed_verbatim() {
    let (base, seen) = scripted(|base| {
        vec![Canned {
            status: "200 OK",
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "link".into(),
                    format!(
                        "<{base}/api/v1/logs?q=x,y>; rel=\"self\", \
                         <{base}/api/v1/logs?after=a%2Cb&q=x,y>; rel=\"next\""
                    ),
                ),
            ],
            body: br#"[{"uuid":"u1"}]"#.to_vec(),
        }]
    })
    .await;
    let c = client(&base, ssws("tok-123456"));
    let p = c
        .fetch(&first_url(c.origin(), since()))
        .await
        .expect("page");
    assert_eq!(
        p.next.map(|u| u.to_string()),
        Some(format!("{base}/api/v1/logs?after=a%2Cb&q=x,y"))
    );
    assert_eq!(p.events.len(), 1);
    let heads = seen.lock().expect("log").clone();
    assert!(heads[0]
        .to_ascii_lowercase()
        .contains("authorization: ssws tok-123456"));
}
