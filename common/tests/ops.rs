//! Operational plumbing: backoff and server wait hints, failpoints, shutdown, the health
//! server, metrics and secret hygiene.
//!
//! Process-level behaviour (a failpoint killing the process, signals) is tested in a child:
//! the test re-runs its own test binary (`std::env::current_exe()`) filtered to one
//! `*_child` test, with an environment variable that tells that test to act. Run normally, the
//! `*_child` tests do nothing.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::backoff::{self, Backoff, Jitter, MAX_SERVER_WAIT};
use common::failpoint;
use common::health::{self, Health};
use common::metrics::Metrics;
use common::secrets::{KeyVault, SecretError, SecretSource, SecretString};
use reqwest::header::{HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

// ---------------------------------------------------------------------------------------------
// backoff

#[test]
fn full_jitter_stays_under_the_growing_ceiling_and_varies() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(5);
    let mut b = Backoff::new(base, max);
    for attempt in 0..12u32 {
        let ceiling = (base * 2u32.pow(attempt.min(20))).min(max);
        assert_eq!(b.ceiling(), ceiling, "attempt {attempt}");
        let d = b.next_delay();
        assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
    }
    assert_eq!(b.attempt(), 12);
    // At the cap, 200 samples of uniform(0, 5 s) are not all the same and spread widely.
    let samples: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
    let lo = samples.iter().min().unwrap();
    let hi = samples.iter().max().unwrap();
    assert!(hi > lo, "no jitter: all samples {lo:?}");
    assert!(
        (*hi).checked_sub(*lo).unwrap() > Duration::from_secs(1),
        "too little spread: {lo:?}..{hi:?}"
    );
    assert!(samples.iter().all(|d| *d <= max));
    b.reset();
    assert_eq!(b.attempt(), 0);
    assert!(b.next_delay() <= base);
}

#[test]
fn decorrelated_jitter_stays_between_base_and_max() {
    let base = Duration::from_millis(50);
    let max = Duration::from_secs(2);
    let mut b = Backoff::new(base, max).with_jitter(Jitter::Decorrelated);
    let samples: Vec<Duration> = (0..300).map(|_| b.next_delay()).collect();
    assert!(samples.iter().all(|d| *d >= base && *d <= max));
    assert!(
        samples.iter().any(|d| *d > base * 4),
        "never grew: {samples:?}"
    );
}

#[test]
fn a_server_hint_wins_over_the_exponential() {
    let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
    let d = b.next_delay_with_hint(Some(Duration::from_secs(7)));
    assert!(
        d >= Duration::from_secs(7) && d <= Duration::from_secs(8),
        "{d:?}"
    );
    let d = b.next_delay_with_hint(Some(Duration::from_secs(3600)));
    assert!(d >= MAX_SERVER_WAIT && d <= MAX_SERVER_WAIT + Duration::from_secs(1));
    assert!(b.next_delay_with_hint(None) <= Duration::from_millis(20));
}

#[test]
fn retry_after_seconds_dates_and_milliseconds() {
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let ra = |pairs: &[(&'static str, &str)]| backoff::retry_after(&headers(pairs), now);

    assert_eq!(ra(&[("retry-after", "5")]), Some(Duration::from_secs(5)));
    assert_eq!(ra(&[("retry-after", " 0 ")]), Some(Duration::ZERO));
    assert_eq!(
        ra(&[("retry-after", "Sun, 01 Mar 2026 12:00:42 GMT")]),
        Some(Duration::from_secs(42))
    );
    // A date in the past: retry now, not never.
    assert_eq!(
        ra(&[("retry-after", "Sun, 01 Mar 2026 11:00:00 GMT")]),
        Some(Duration::ZERO)
    );
    // Azure's millisecond variants take precedence over the coarser header.
    assert_eq!(
        ra(&[("retry-after", "10"), ("retry-after-ms", "1500")]),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        ra(&[("x-ms-retry-after-ms", "250")]),
        Some(Duration::from_millis(250))
    );
    // Absurd values are clamped; garbage and negatives are ignored.
    assert_eq!(ra(&[("retry-after", "86400")]), Some(MAX_SERVER_WAIT));
    assert_eq!(
        ra(&[("retry-after", "Tue, 01 Mar 2050 12:00:00 GMT")]),
        Some(MAX_SERVER_WAIT)
    );
    assert_eq!(ra(&[("retry-after", "soon")]), None);
    assert_eq!(ra(&[("retry-after", "-3")]), None);
    assert_eq!(ra(&[]), None);
}

// ---------------------------------------------------------------------------------------------
// child processes (failpoints, signals)

const CHILD_ENV: &str = "OPS_TEST_CHILD";

/// Re-runs this test binary, only `test_name`, with `envs` and `OPS_TEST_CHILD=1`.
fn run_child(test_name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove(failpoint::ENV)
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The child side of the failpoint tests: three hits of `ops.probe`, reported on stderr.
#[test]
fn failpoint_child() {
    if !is_child() {
        return;
    }
    for i in 1..=3 {
        eprintln!("before hit {i}");
        failpoint::hit("ops.probe");
        eprintln!("after hit {i}");
    }
    eprintln!("child finished");
}

#[test]
fn an_armed_failpoint_kills_the_process_on_its_nth_hit() {
    let out = run_child(
        "failpoint_child",
        &[(failpoint::ENV, "other.point,ops.probe@2")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(failpoint::EXIT_CODE),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("failpoint ops.probe fired"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("after hit 1"), "stderr: {stderr}");
    assert!(stderr.contains("before hit 2"), "stderr: {stderr}");
    assert!(
        !stderr.contains("after hit 2"),
        "ran past the point: {stderr}"
    );
}

#[test]
fn an_unarmed_failpoint_is_inert() {
    let out = run_child("failpoint_child", &[(failpoint::ENV, "some.other.point")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("child finished"), "stderr: {stderr}");
    assert!(!stderr.contains("fired"), "stderr: {stderr}");
    // And in this (unarmed) process, hit() is a no-op.
    assert!(!failpoint::armed());
    failpoint::hit("ops.probe");
}

#[test]
fn a_malformed_failpoint_spec_fails_loudly() {
    let out = run_child("failpoint_child", &[(failpoint::ENV, "ops.probe@zero")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(failpoint::BAD_SPEC_EXIT_CODE),
        "stderr: {stderr}"
    );
    assert!(stderr.contains(failpoint::ENV), "stderr: {stderr}");
}

/// The child side of the shutdown test: first SIGTERM cancels the token, the second exits 130.
#[test]
fn shutdown_child() {
    if !is_child() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let token = common::shutdown::install();
        assert!(!token.is_cancelled());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        // Bounded only so a broken handler fails instead of hanging; not a timing assertion.
        tokio::time::timeout(Duration::from_secs(30), token.cancelled())
            .await
            .expect("SIGTERM did not cancel the token");
        eprintln!("token cancelled");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        eprintln!("still alive after the second signal");
    });
}

#[test]
fn first_signal_cancels_second_signal_exits_130() {
    let out = run_child("shutdown_child", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token cancelled"), "stderr: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(common::shutdown::FORCED_EXIT_CODE),
        "stderr: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// health server and metrics

#[tokio::test]
async fn readyz_flips_with_conditions_and_metrics_are_served() {
    common::telemetry::init(Some(common::telemetry::LogFormat::Text), "ops-test");
    common::telemetry::init(None, "ops-test"); // idempotent

    let health = Health::new();
    let metrics = Metrics::new("ops-test");
    let pages = metrics.counter("pages_fetched", "Pages fetched from Okta");
    pages.inc_by(3);
    let cancel = CancellationToken::new();
    let (listener, addr) = health::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_ne!(addr.port(), 0);
    let server = tokio::spawn(health::serve_listener(
        listener,
        health.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |p: &str| format!("http://{addr}{p}");

    let r = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");

    health.set_ready("storage", true, "queue reachable");
    let r = http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    health.set_ready(
        "sink",
        false,
        "Log Analytics answered 403: grant Monitoring Metrics Publisher",
    );
    let r = http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = json_body(r).await;
    assert_eq!(body["ready"], false);
    let failing = body["failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{body}");
    assert_eq!(failing[0]["condition"], "sink");
    assert!(failing[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Monitoring Metrics Publisher"));
    let (ready, reasons) = health.is_ready();
    assert!(!ready);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("sink: "));

    health.set_ready("sink", true, "posting");
    let r = http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(health.is_ready().0);

    let r = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("okta_sentinel_pages_fetched_total"))
        .unwrap_or_else(|| panic!("counter missing:\n{text}"));
    assert!(line.contains("service=\"ops-test\""), "{line}");
    assert!(line.ends_with(" 3"), "{line}");

    // Liveness fails only on a named liveness condition.
    health.set_live("receive_loop", false, "no iteration for 10 minutes");
    let r = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("receive_loop"));

    cancel.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn binding_a_busy_port_names_http_addr() {
    let (_listener, addr) = health::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let err = health::bind(addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP_ADDR") && msg.contains(&addr.to_string()),
        "{msg}"
    );
}

#[test]
fn stats_json_snapshots_every_counter_and_gauge() {
    let m = Metrics::new("shipper");
    let posted = m.counter("rows_posted", "Rows accepted by Log Analytics");
    posted.inc_by(41);
    posted.inc();
    let statuses = m.counter_vec("sink_responses", "Responses by status", "status");
    statuses.inc("200");
    statuses.inc("200");
    statuses.inc("429");
    m.inc_labeled("sink_responses", "status", "429");
    let inflight = m.gauge("pages_in_flight", "Pages being shipped");
    inflight.set(4);
    inflight.dec();
    m.float_gauge("lag_seconds", "Age of the newest shipped event")
        .set(1.5);
    m.histogram(
        "post_seconds",
        "Post latency",
        common::metrics::exponential_buckets(0.01, 2.0, 10),
    )
    .observe(0.2);
    // Registering again returns the same metric.
    m.counter("rows_posted", "again").inc();

    let s = m.stats_json();
    assert_eq!(s["service"], "shipper");
    assert_eq!(s["rows_posted"], 43);
    assert_eq!(s["sink_responses"]["200"], 2);
    assert_eq!(s["sink_responses"]["429"], 2);
    assert_eq!(s["pages_in_flight"], 3);
    assert_eq!(s["lag_seconds"], 1.5);
    assert_eq!(statuses.get("429"), 2);

    let text = m.render_prometheus();
    assert!(
        text.contains("okta_sentinel_sink_responses_total{"),
        "{text}"
    );
    assert!(text.contains("status=\"429\""), "{text}");
    assert!(text.contains("okta_sentinel_post_seconds_bucket"), "{text}");
    assert_eq!(
        text.matches("# TYPE okta_sentinel_rows_posted counter")
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// secrets

const VALUE: &str = "00abcSUPERSECRETtoken";

#[tokio::test]
async fn secret_values_never_show_in_debug_display_or_errors() {
    let s = SecretString::new(VALUE);
    assert!(!format!("{s:?} {s} {:#?}", Some(&s)).contains("SUPERSECRET"));

    let src = SecretSource::from_value("OKTA_API_TOKEN", s.clone());
    assert_eq!(src.describe(), "env OKTA_API_TOKEN");
    assert!(!format!("{src:?}").contains("SUPERSECRET"));
    assert_eq!(src.get().await.unwrap().expose(), VALUE);
    assert_eq!(src.refresh().await.unwrap().expose(), VALUE);
    assert!(!src.can_rotate());

    let empty = SecretSource::from_value("WORKSPACE_KEY", SecretString::new(""));
    let err = empty.get().await.unwrap_err();
    assert!(matches!(err, SecretError::Empty { .. }));
    assert!(err.to_string().contains("WORKSPACE_KEY"));

    for err in [
        SecretError::NotFound {
            name: "okta-x-token".into(),
        },
        SecretError::Forbidden {
            name: "okta-x-token".into(),
        },
        SecretError::Unauthorized,
    ] {
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains("SUPERSECRET"), "{msg}");
    }
    assert!(SecretError::Forbidden { name: "n".into() }
        .to_string()
        .contains("Key Vault Secrets User"));
}

#[tokio::test]
async fn key_vault_configuration_is_checked_up_front() {
    let http = reqwest::Client::new();
    // No IDENTITY_ENDPOINT here: the IMDS flavour is built (no request is made).
    let cred = common::identity::managed_identity(None, http.clone()).unwrap();
    let err = KeyVault::new(
        "http://my-vault.vault.azure.net/",
        cred.clone(),
        http.clone(),
    )
    .unwrap_err();
    assert!(matches!(err, SecretError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("https"), "{err}");
    assert!(matches!(
        KeyVault::new("not a url", cred.clone(), http.clone()),
        Err(SecretError::Config(_))
    ));
    assert!(matches!(
        common::identity::managed_identity(Some(" "), http.clone()),
        Err(common::identity::IdentityError::EmptyClientId)
    ));

    // An invalid secret name is refused before any request is sent.
    let vault = KeyVault::new("https://127.0.0.1:1/", cred, http).unwrap();
    let src = SecretSource::key_vault(vault, "bad_name.with.dots".into());
    assert_eq!(src.describe(), "Key Vault secret bad_name.with.dots");
    assert!(src.can_rotate());
    let err = src.get().await.unwrap_err();
    assert!(matches!(err, SecretError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn the_stats_logger_stops_with_the_token() {
    let m = Metrics::new("ops-test");
    m.counter("ticks", "ticks").inc();
    let cancel = CancellationToken::new();
    let task = common::metrics::spawn_stats_logger(m, Duration::from_secs(3600), cancel.clone());
    assert!(!task.is_finished());
    cancel.cancel();
    // Bounded only so a broken logger fails instead of hanging; not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stats logger ignored cancellation")
        .unwrap();
}

/// The body of `resp` as JSON (what reqwest's `json` feature would do; the workspace does not
/// enable it for one test helper).
async fn json_body<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> T {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
