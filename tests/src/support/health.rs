//! A service's health server: where it listens, and waiting on `/readyz`.

use std::time::Duration;

use crate::procs::{eventually, Service};

/// The `addr` the service logged for its health endpoints (`HTTP_ADDR=127.0.0.1:0`), waiting
/// up to 90 s; panics when it never appears.
pub async fn health_addr(svc: &Service) -> String {
    health_addr_within(svc, Duration::from_secs(90))
        .await
        .expect("health addr")
}

/// The `addr` the service logged for its health endpoints, waiting up to `timeout`. The JSON
/// log flattens event fields to the top level; a nested `fields.addr` is accepted too, so
/// either log layout works. The error carries the service's log, to see why it never came.
pub async fn health_addr_within(svc: &Service, timeout: Duration) -> anyhow::Result<String> {
    eventually(timeout, "the health address in the log", || async {
        svc.log_text().lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            v.get("addr")
                .or_else(|| v.pointer("/fields/addr"))
                .and_then(|a| a.as_str())
                .map(str::to_string)
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{}: {e}\n{}", svc.name, svc.log_text()))
}

/// GET a path on a service's health server; returns (status, body), or (0, "") when the
/// request fails (the service is not listening yet, or any more).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Waits until `/readyz` answers `status` with a body containing every one of `needles`;
/// returns the body (readiness reasons name what an operator must fix).
pub async fn wait_readyz(
    addr: &str,
    status: u16,
    needles: &[&str],
    timeout: Duration,
) -> anyhow::Result<String> {
    let what = format!("/readyz on {addr} to be {status} naming {needles:?}");
    eventually(timeout, &what, || async {
        let (s, body) = http_get(addr, "/readyz").await;
        (s == status && needles.iter().all(|n| body.contains(n))).then_some(body)
    })
    .await
}

/// Waits until `/readyz` answers 503 with a body containing every needle; returns the body.
pub async fn wait_not_ready(
    addr: &str,
    needles: &[&str],
    timeout: Duration,
) -> anyhow::Result<String> {
    wait_readyz(addr, 503, needles, timeout).await
}

/// Waits until `/readyz` answers 200.
pub async fn wait_ready(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_readyz(addr, 200, &[], timeout).await.map(drop)
}
