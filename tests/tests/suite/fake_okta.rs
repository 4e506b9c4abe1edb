//! Behaviour of the fake Okta org against `docs/contracts.md` §1: polling semantics,
//! cursors, rate limits, errors, OAuth `private_key_jwt` and DPoP.

use jsonwebtoken::Algorithm;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use world::fakes::okta::{
    client_assertion, dpop_proof, test_ec_key_pem, test_rsa_key_pem, EmptyPageMode, OAuthAppConfig,
    OktaFake, OktaFakeConfig, OktaFault,
};

const SSWS: &str = "SSWS test-ssws-token";

fn since_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `(rel, url)` of every link, whether sent as separate headers or comma-joined.
fn links(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in h.get_all("link") {
        for part in v.to_str().unwrap().split(", <") {
            let part = part.trim_start_matches('<');
            let (url, rest) = part.split_once('>').unwrap();
            let rel = rest.split("rel=\"").nth(1).unwrap().trim_end_matches('"');
            out.push((rel.to_string(), url.to_string()));
        }
    }
    out
}

fn link(h: &HeaderMap, rel: &str) -> Option<String> {
    links(h).into_iter().find(|(r, _)| r == rel).map(|(_, u)| u)
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn uuids(&self) -> Vec<String> {
        self.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect()
    }
    fn next(&self) -> String {
        link(&self.headers, "next").expect("next link")
    }
    fn error_code(&self) -> String {
        self.json()["errorCode"].as_str().unwrap().to_string()
    }
}

async fn get(c: &Client, url: &str, auth: Option<&str>) -> Got {
    let mut rb = c.get(url).header("accept", "application/json");
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let r = rb.send().await.unwrap();
    Got {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn first_url(fake: &OktaFake, since: &str, limit: usize) -> String {
    format!(
        "{}/api/v1/logs?since={}&limit={limit}",
        fake.base_url(),
        urlencode(since)
    )
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows `next` links from `url` until an empty page; returns all uuids and the last
/// (empty) response.
async fn drain(c: &Client, mut url: String) -> (Vec<String>, Got) {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let g = get(c, &url, Some(SSWS)).await;
        assert_eq!(
            g.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&g.body)
        );
        let u = g.uuids();
        if u.is_empty() {
            return (all, g);
        }
        all.extend(u);
        url = g.next();
    }
    panic!("never caught up");
}

#[tokio::test]
async fn polling_repeat_url_mode_always_has_next() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 250,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let first = first_url(&fake, &since_ago(60), 100);
    let (uuids, empty) = drain(&c, first.clone()).await;
    assert_eq!(uuids, fake.released_uuids());
    assert_eq!(uuids.len(), 250);

    // Caught up: `[]`, and next == self (the URL just requested).
    assert_eq!(empty.body, b"[]");
    let self_url = link(&empty.headers, "self").unwrap();
    assert_eq!(empty.next(), self_url);
    let again = get(&c, &empty.next(), Some(SSWS)).await;
    assert_eq!(again.body, b"[]");
    assert_eq!(again.next(), self_url);

    // Next links are absolute, echo since/limit, and carry an `after`.
    let first_page = get(&c, &first, Some(SSWS)).await;
    let next = first_page.next();
    assert!(next.starts_with(&format!("{}/api/v1/logs?", fake.base_url())));
    let q: Vec<(String, String)> = url::Url::parse(&next)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["since", "limit", "after"]);

    // New events show up behind the same link.
    fake.release(7);
    let fresh = get(&c, &self_url, Some(SSWS)).await;
    assert_eq!(fresh.uuids(), fake.released_uuids()[250..].to_vec());
    assert_ne!(fresh.next(), self_url);

    // Required headers on every response, and both link header shapes were used.
    for g in [&empty, &again, &fresh] {
        assert!(g.headers.contains_key("date"));
        for h in [
            "x-rate-limit-limit",
            "x-rate-limit-remaining",
            "x-rate-limit-reset",
        ] {
            assert!(g.headers.contains_key(h), "{h}");
        }
    }
    let shapes: HashSet<usize> = [&empty, &again, &fresh]
        .iter()
        .map(|g| g.headers.get_all("link").iter().count())
        .collect();
    assert_eq!(shapes, HashSet::from([1, 2]));
}

#[tokio::test]
async fn polling_advance_mode_mints_a_new_cursor_on_empty_pages() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 30,
        empty_page_mode: EmptyPageMode::Advance,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let (uuids, empty) = drain(&c, first_url(&fake, &since_ago(60), 20)).await;
    assert_eq!(uuids.len(), 30);
    let self_url = link(&empty.headers, "self").unwrap();
    let next = empty.next();
    assert_ne!(next, self_url);
    let again = get(&c, &next, Some(SSWS)).await;
    assert_eq!(again.body, b"[]");
    assert_ne!(again.next(), next);
    fake.release(3);
    let fresh = get(&c, &again.next(), Some(SSWS)).await;
    assert_eq!(fresh.uuids(), fake.released_uuids()[30..].to_vec());
}

#[tokio::test]
async fn paging_delivers_every_released_uuid_in_order_with_repeats_and_late_events() {
    let fake = OktaFake::start(OktaFakeConfig {
        seed: 11,
        initial_events: 1500,
        repeat_probability: 0.05,
        late_probability: 0.05,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let (mut seen, last) = drain(&c, first_url(&fake, &since_ago(60), 1000)).await;
    fake.release(700);
    let (more, _) = drain(&c, last.next()).await;
    seen.extend(more);

    let mut firsts = Vec::new();
    let mut set = HashSet::new();
    for u in &seen {
        if set.insert(u.clone()) {
            firsts.push(u.clone());
        }
    }
    assert!(seen.len() > firsts.len(), "repeats were served");
    assert_eq!(firsts, fake.released_uuids());
    assert_eq!(fake.released_count(), 2200);
    assert_eq!(fake.stats().events_served as usize, seen.len());
}

#[tokio::test]
async fn late_events_are_out_of_published_order() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 400,
        late_probability: 0.1,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let g = get(&c, &first_url(&fake, &since_ago(60), 1000), Some(SSWS)).await;
    let published: Vec<String> = g
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["published"].as_str().unwrap().to_string())
        .collect();
    let inversions = published.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(inversions > 0);
}

#[tokio::test]
async fn live_events_are_released_over_time() {
    let fake = OktaFake::start(OktaFakeConfig {
        live_rate_per_sec: 2000.0,
        live_cap: Some(40),
        ..Default::default()
    })
    .await
    .unwrap();
    for _ in 0..200 {
        if fake.released_count() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.released_count(), 40);
    let (uuids, _) = drain(&Client::new(), first_url(&fake, &since_ago(5), 15)).await;
    assert_eq!(uuids, fake.released_uuids());
}

#[tokio::test]
async fn exceeding_the_rate_limit_gets_429() {
    let fake = OktaFake::start(OktaFakeConfig {
        rate_limit_per_window: 3,
        rate_window_secs: 60,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let url = first_url(&fake, &since_ago(5), 10);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let g = get(&c, &url, Some(SSWS)).await;
        assert_eq!(g.status, StatusCode::OK);
        remaining.push(
            g.headers["x-rate-limit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let g = get(&c, &url, Some(SSWS)).await;
    assert_eq!(g.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(g.error_code(), "E0000047");
    assert_eq!(g.json()["errorLink"], "E0000047");
    assert_eq!(g.headers["x-rate-limit-limit"], "3");
    assert_eq!(g.headers["x-rate-limit-remaining"], "0");
    let reset: i64 = g.headers["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > chrono::Utc::now().timestamp());
    let s = fake.stats();
    assert_eq!(s.rate_limited, 1);
    assert_eq!(s.max_requests_per_window["ssws#0"], 4);
    assert_eq!(s.by_status[&429], 1);
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let fake = OktaFake::start(OktaFakeConfig::default()).await.unwrap();
    let c = Client::new();
    let url = first_url(&fake, &since_ago(5), 10);
    for auth in [
        None,
        Some("SSWS wrong-token"),
        Some("Bearer not-issued"),
        Some("Basic dGVzdDp0ZXN0"),
    ] {
        let g = get(&c, &url, auth).await;
        assert_eq!(g.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let j = g.json();
        assert_eq!(j["errorCode"], "E0000011");
        assert_eq!(j["errorSummary"], "Invalid token provided");
        assert!(j["errorId"].is_string() && j["errorCauses"].is_array());
        assert!(g.headers.contains_key("x-rate-limit-reset"));
    }
    let s = fake.stats();
    let schemes = &s.auth_schemes_by_path["/api/v1/logs"];
    assert_eq!(schemes["none"], 1);
    assert_eq!(schemes["SSWS"], 1);
    assert_eq!(schemes["other"], 1);
    assert_eq!(s.by_status[&401], 4);
}

#[tokio::test]
async fn crafted_cursors_get_400() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let g = get(&c, &first_url(&fake, &since_ago(60), 5), Some(SSWS)).await;
    let next = g.next();
    let after = url::Url::parse(&next)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "after")
        .unwrap()
        .1
        .to_string();
    let base = format!("{}/api/v1/logs", fake.base_url());

    // The fake's own link, verbatim, and `after` alone are fine.
    assert_eq!(get(&c, &next, Some(SSWS)).await.status, StatusCode::OK);
    let alone = get(
        &c,
        &format!("{base}?limit=5&after={}", urlencode(&after)),
        Some(SSWS),
    )
    .await;
    assert_eq!(alone.status, StatusCode::OK);
    assert_eq!(alone.uuids(), fake.released_uuids()[5..10].to_vec());

    // A client-crafted since+after pair, and made-up cursors, are refused.
    for url in [
        format!(
            "{base}?since={}&after={}",
            urlencode(&since_ago(30)),
            urlencode(&after)
        ),
        format!("{base}?after=1627500044869_1"),
        format!("{base}?after={}", urlencode(&after.replacen('5', "6", 1))),
    ] {
        let g = get(&c, &url, Some(SSWS)).await;
        assert_eq!(g.status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(g.error_code(), "E0000001");
    }
}

#[tokio::test]
async fn query_validation() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 30,
        history: chrono::Duration::minutes(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let base = format!("{}/api/v1/logs", fake.base_url());
    let old = (chrono::Utc::now() - chrono::Duration::days(200)).to_rfc3339();
    for (q, code) in [
        ("limit=1001".to_string(), "E0000001"),
        ("limit=abc".to_string(), "E0000001"),
        ("since=yesterday".to_string(), "E0000001"),
        (format!("since={}", urlencode(&old)), "E0000053"),
        ("filter=eventType+eq+%22x%22".to_string(), "E0000031"),
    ] {
        let g = get(&c, &format!("{base}?{q}"), Some(SSWS)).await;
        assert_eq!(g.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(g.error_code(), code, "{q}");
    }
    // Bounded queries are finite: the last page has no next link.
    let mut url = format!(
        "{base}?since={}&until={}&limit=12",
        urlencode(&since_ago(120)),
        urlencode(&since_ago(-1))
    );
    let mut n = 0;
    loop {
        let g = get(&c, &url, Some(SSWS)).await;
        assert_eq!(g.status, StatusCode::OK);
        n += g.uuids().len();
        match link(&g.headers, "next") {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(n, 30);
    let nf = get(&c, &format!("{}/api/v1/users", fake.base_url()), Some(SSWS)).await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn injected_faults() {
    let fake = OktaFake::start(OktaFakeConfig {
        initial_events: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let url = first_url(&fake, &since_ago(60), 5);
    fake.inject(OktaFault::Status500 { count: 2 });
    fake.inject(OktaFault::Forbidden { count: 1 });
    fake.inject(OktaFault::Unauthorized { count: 1 });
    fake.inject(OktaFault::Status429 { count: 1 });
    fake.inject(OktaFault::HtmlErrorPage { count: 1 });
    fake.inject(OktaFault::TruncatedJson { count: 1 });
    fake.inject(OktaFault::ObjectInsteadOfArray { count: 1 });
    fake.inject(OktaFault::InvalidUtf8 { count: 1 });
    fake.inject(OktaFault::ForeignNextLink {
        count: 1,
        url: "http://127.0.0.2:9/api/v1/logs?after=x".into(),
    });
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(get(&c, &url, Some(SSWS)).await);
    }
    assert_eq!(got[0].status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(got[1].error_code(), "E0000009");
    assert_eq!(got[2].error_code(), "E0000006");
    assert_eq!(got[3].error_code(), "E0000011");
    assert_eq!(got[4].error_code(), "E0000047");
    assert_eq!(got[4].headers["x-rate-limit-remaining"], "0");
    assert_eq!(got[5].status, StatusCode::BAD_GATEWAY);
    assert!(got[5].headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(got[6].status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&got[6].body).is_err());
    assert!(got[7].json().is_object());
    assert!(std::str::from_utf8(&got[8].body).is_err());
    assert_eq!(got[9].next(), "http://127.0.0.2:9/api/v1/logs?after=x");
    // The queue is empty again.
    let ok = get(&c, &url, Some(SSWS)).await;
    assert_eq!(ok.uuids().len(), 5);

    // A delay makes a client with a short timeout give up.
    fake.inject(OktaFault::Delay {
        count: 1,
        delay: Duration::from_secs(5),
    });
    let quick = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = quick
        .get(&url)
        .header("authorization", SSWS)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn token_request(
    c: &Client,
    fake: &OktaFake,
    assertion: &str,
    scope: &str,
    dpop: Option<&str>,
) -> Got {
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("scope", scope),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ]);
    let mut rb = c
        .post(fake.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(p) = dpop {
        rb = rb.header("dpop", p);
    }
    let r = rb.send().await.unwrap();
    Got {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn oauth_client_credentials_with_rsa_assertion() {
    let (private, public) = test_rsa_key_pem();
    let mut app = OAuthAppConfig::new("0oaFakeClient", public);
    app.scopes = vec!["okta.logs.read".into(), "okta.users.read".into()];
    let fake = OktaFake::start(OktaFakeConfig {
        oauth: Some(app),
        initial_events: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let rs = Algorithm::RS256;

    // Wrong audience, wrong issuer, expired: refused.
    for a in [
        client_assertion(
            &private,
            rs,
            "0oaFakeClient",
            "https://other/oauth2/v1/token",
            300,
        ),
        client_assertion(&private, rs, "0oaOther", &fake.token_url(), 300),
        client_assertion(&private, rs, "0oaFakeClient", &fake.token_url(), -300),
        client_assertion(&private, rs, "0oaFakeClient", &fake.token_url(), 7200),
    ] {
        let g = token_request(&c, &fake, &a.unwrap(), "okta.logs.read", None).await;
        assert_eq!(g.status, StatusCode::UNAUTHORIZED);
        assert_eq!(g.json()["error"], "invalid_client");
    }
    // Not granted scope.
    let a = client_assertion(&private, rs, "0oaFakeClient", &fake.token_url(), 300).unwrap();
    let g = token_request(&c, &fake, &a, "okta.apps.manage", None).await;
    assert_eq!(g.json()["error"], "invalid_scope");

    // A good assertion, then its replay.
    let g = token_request(&c, &fake, &a, "okta.logs.read", None).await;
    assert_eq!(g.status, StatusCode::OK);
    let j = g.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 3600);
    let token = j["access_token"].as_str().unwrap().to_string();
    let replay = token_request(&c, &fake, &a, "okta.logs.read", None).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);

    let url = first_url(&fake, &since_ago(60), 10);
    let ok = get(&c, &url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.uuids().len(), 5);

    // A token without okta.logs.read: 403.
    let a = client_assertion(&private, rs, "0oaFakeClient", &fake.token_url(), 300).unwrap();
    let g = token_request(&c, &fake, &a, "okta.users.read", None).await;
    let users_token = g.json()["access_token"].as_str().unwrap().to_string();
    let g = get(&c, &url, Some(&format!("Bearer {users_token}"))).await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    assert_eq!(g.error_code(), "E0000006");

    // Expired tokens: 401.
    fake.expire_tokens();
    let g = get(&c, &url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    let s = fake.stats();
    assert_eq!(s.tokens_issued, 2);
    // The expired token's request counted as anonymous.
    assert_eq!(s.max_requests_per_window["oauth:0oaFakeClient"], 2);
}

#[tokio::test]
async fn dpop_nonce_flow() {
    let (app_private, app_public) = test_ec_key_pem().unwrap();
    let (dpop_private, _) = test_ec_key_pem().unwrap();
    let mut app = OAuthAppConfig::new("0oaDpopClient", app_public);
    app.require_dpop = true;
    let fake = OktaFake::start(OktaFakeConfig {
        oauth: Some(app),
        initial_events: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new();
    let es = Algorithm::ES256;
    let assertion =
        || client_assertion(&app_private, es, "0oaDpopClient", &fake.token_url(), 300).unwrap();
    let token_proof = |nonce: Option<&str>| {
        dpop_proof(&dpop_private, es, "POST", &fake.token_url(), nonce, None).unwrap()
    };

    // No DPoP header at all.
    let g = token_request(&c, &fake, &assertion(), "okta.logs.read", None).await;
    assert_eq!(g.json()["error"], "invalid_dpop_proof");
    // A proof without nonce: challenge.
    let a = assertion();
    let g = token_request(&c, &fake, &a, "okta.logs.read", Some(&token_proof(None))).await;
    assert_eq!(g.status, StatusCode::BAD_REQUEST);
    assert_eq!(g.json()["error"], "use_dpop_nonce");
    let nonce = g.headers["dpop-nonce"].to_str().unwrap().to_string();
    // Retry (same assertion) with the nonce.
    let g = token_request(
        &c,
        &fake,
        &a,
        "okta.logs.read",
        Some(&token_proof(Some(&nonce))),
    )
    .await;
    assert_eq!(
        g.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&g.body)
    );
    assert_eq!(g.json()["token_type"], "DPoP");
    let token = g.json()["access_token"].as_str().unwrap().to_string();

    let url = first_url(&fake, &since_ago(60), 10);
    let logs_htu = fake.logs_url();
    let call = |htu: String, nonce: Option<String>, key: String| {
        let c = c.clone();
        let url = url.clone();
        let token = token.clone();
        async move {
            let proof = dpop_proof(&key, es, "GET", &htu, nonce.as_deref(), Some(&token)).unwrap();
            let r = c
                .get(&url)
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof)
                .send()
                .await
                .unwrap();
            Got {
                status: r.status(),
                headers: r.headers().clone(),
                body: r.bytes().await.unwrap().to_vec(),
            }
        }
    };

    // As a plain bearer token it is refused.
    let g = get(&c, &url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    // First resource call: nonce challenge.
    let g = call(logs_htu.clone(), None, dpop_private.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    let www = g.headers["www-authenticate"].to_str().unwrap();
    assert!(www.starts_with("DPoP ") && www.contains("error=\"use_dpop_nonce\""));
    let rnonce = g.headers["dpop-nonce"].to_str().unwrap().to_string();
    // With the nonce: 200.
    let g = call(logs_htu.clone(), Some(rnonce.clone()), dpop_private.clone()).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.uuids().len(), 3);
    // htu with the query string, or a proof by another key: refused.
    let g = call(url.clone(), Some(rnonce.clone()), dpop_private.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert!(g.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_dpop_proof"));
    let (other_key, _) = test_ec_key_pem().unwrap();
    let g = call(logs_htu.clone(), Some(rnonce.clone()), other_key).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    // After rotation the old nonce is challenged again.
    fake.rotate_dpop_nonce();
    let g = call(logs_htu.clone(), Some(rnonce.clone()), dpop_private.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    let new_nonce = g.headers["dpop-nonce"].to_str().unwrap().to_string();
    assert_ne!(new_nonce, rnonce);
    let g = call(logs_htu.clone(), Some(new_nonce), dpop_private.clone()).await;
    assert_eq!(g.status, StatusCode::OK);
    let s = fake.stats();
    assert_eq!(s.dpop_nonce_challenges, 3);
    assert_eq!(s.auth_schemes_by_path["/api/v1/logs"]["DPoP"], 6);
    assert_eq!(s.token_requests, 3);
}

#[test]
fn config_debug_hides_tokens() {
    let cfg = OktaFakeConfig {
        ssws_tokens: vec!["s3cr3t-token".into()],
        oauth: Some(OAuthAppConfig::new("0oaX", test_rsa_key_pem().1)),
        ..Default::default()
    };
    let d = format!("{cfg:?}");
    assert!(
        !d.contains("s3cr3t-token") && !d.contains("PUBLIC KEY"),
        "{d}"
    );
    assert!(d.contains("0oaX"));
}
