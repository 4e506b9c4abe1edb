//! Searching a service's JSON log the way an operator (or an alert rule) reads it.

use std::time::Duration;

use crate::procs::{eventually, Service};
use anyhow::Context;

/// The last `n` lines of a log, to show with a failure.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// WARN and ERROR lines of a service's JSON log: what an operator's alert rule would see.
pub fn operator_lines(svc: &Service) -> Vec<String> {
    svc.log_text()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("level").and_then(|x| x.as_str()).map(str::to_string))
                .is_some_and(|lvl| lvl == "WARN" || lvl == "ERROR")
        })
        .map(str::to_string)
        .collect()
}

/// Waits up to `timeout` for a WARN/ERROR line containing every needle; returns it. The
/// error carries the end of the service's log.
pub async fn wait_operator_line(
    svc: &Service,
    needles: &[&str],
    timeout: Duration,
) -> anyhow::Result<String> {
    let what = format!("a WARN/ERROR line of {} naming {needles:?}", svc.name);
    let found = eventually(timeout, &what, || async {
        operator_lines(svc)
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
    })
    .await;
    found.with_context(|| format!("log of {}:\n{}", svc.name, tail(&svc.log_text(), 40)))
}

/// Lines of a service's log containing `needle`.
pub fn count_lines(svc: &Service, needle: &str) -> usize {
    svc.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}
