//! Samples read from a service's `/metrics` (Prometheus text exposition).
//!
//! A sample is matched by its exact exposed name (counters carry the `_total` suffix), so
//! `okta_sentinel_pages_total` never also counts `okta_sentinel_pages_total_bytes`.

use super::health::http_get;

/// The sample lines of `/metrics` (comments dropped); `None` when it does not answer 200.
async fn samples(addr: &str) -> Option<Vec<String>> {
    let (status, body) = http_get(addr, "/metrics").await;
    (status == 200).then(|| {
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    })
}

/// The metric name of a sample line: what stands before its labels or value.
fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

/// The value of a sample line: its last field.
fn sample_value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

/// Value of the first sample named `name` (a gauge, or a metric with one series); `None`
/// when there is none or `/metrics` does not answer.
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    samples(addr)
        .await?
        .iter()
        .filter(|l| sample_name(l) == name)
        .find_map(|l| sample_value(l))
}

/// Sum of the samples named `name` whose line contains every one of `labels` (e.g.
/// `status="429"`; none for all series); `None` when `/metrics` does not answer.
pub async fn metric_sum(addr: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let lines = samples(addr).await?;
    Some(
        lines
            .iter()
            .filter(|l| sample_name(l) == name && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| sample_value(l))
            .sum(),
    )
}
