//! The collector's metrics (on `/metrics` and in the one-line JSON `stats` log record).

use common::metrics::{Counter, CounterVec, Gauge, Metrics};

/// Handles to every collector metric, registered once.
#[derive(Clone)]
pub struct CollectorMetrics {
    pub registry: Metrics,
    pub requests: CounterVec,
    pub rate_limit_remaining: Gauge,
    pub events: Counter,
    pub pages: Counter,
    pub bytes: Counter,
    pub duplicates: Counter,
    pub malformed: Counter,
    pub storage_errors: Counter,
    /// Seconds between now and the newest `published` handed off.
    pub lag_seconds: Gauge,
    /// Unix time of the last successful poll.
    pub last_success: Gauge,
    /// 1 while this process leads its org.
    pub leader: Gauge,
    /// 1 while the leader is at the head of the log (its last page was short or empty), so it
    /// polls every `OKTA_POLL_INTERVAL`; 0 while it drains a backlog, or does not lead.
    pub caught_up: Gauge,
    /// 1 while Okta refuses the credential (alerted on from the stats line).
    pub okta_auth_failing: Gauge,
    /// 1 while the Okta credential cannot be read from Key Vault (Okta is not asked).
    pub credential_unreadable: Gauge,
}

impl CollectorMetrics {
    pub fn new() -> Self {
        let m = Metrics::new("collector");
        CollectorMetrics {
            requests: m.counter_vec(
                "okta_requests",
                "Okta System Log requests by HTTP status (0 = no answer)",
                "status",
            ),
            rate_limit_remaining: m.gauge(
                "okta_rate_limit_remaining",
                "X-Rate-Limit-Remaining of the last Okta response",
            ),
            events: m.counter(
                "events_collected",
                "Events stored and handed to the shippers",
            ),
            pages: m.counter(
                "pages_collected",
                "Non-empty pages stored and handed to the shippers",
            ),
            bytes: m.counter(
                "bytes_collected",
                "Uncompressed JSON bytes of the stored pages",
            ),
            duplicates: m.counter(
                "duplicates_dropped",
                "Events dropped because their uuid was seen recently",
            ),
            malformed: m.counter(
                "malformed_pages",
                "Malformed Okta responses (retried, never skipped)",
            ),
            storage_errors: m.counter("storage_errors", "Failed storage operations (retried)"),
            lag_seconds: m.gauge(
                "lag_seconds",
                "Now minus the newest published time handed off",
            ),
            last_success: m.gauge(
                "last_success_timestamp_seconds",
                "Unix time of the last successful poll",
            ),
            leader: m.gauge("leader", "1 while this process leads its org"),
            caught_up: m.gauge(
                "caught_up",
                "1 while the leader is at the head of the log and polls every OKTA_POLL_INTERVAL",
            ),
            okta_auth_failing: m.gauge("okta_auth_failing", "1 while Okta refuses the credential"),
            credential_unreadable: m.gauge(
                "okta_credential_unreadable",
                "1 while the Okta credential cannot be read from Key Vault",
            ),
            registry: m,
        }
    }

    pub fn request(&self, status: u16) {
        self.requests.inc(status_label(status));
    }
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        0 => "0",
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        429 => "429",
        500..=599 => "5xx",
        _ => "other",
    }
}
