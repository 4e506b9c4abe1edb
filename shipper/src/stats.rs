//! The shipper's metrics (on `/metrics` and in the one-line JSON `stats` log record).

use chrono::{DateTime, Utc};
use common::metrics::{exponential_buckets, Counter, CounterVec, Gauge, Histogram, Metrics};

#[derive(Clone)]
pub struct ShipperMetrics {
    pub registry: Metrics,
    /// Pages by outcome (shipped, twin, handed_back, failed, poisoned, sink_down).
    pub pages: CounterVec,
    /// Sink requests by outcome.
    pub requests: CounterVec,
    /// Sink answers by HTTP status (`transport` when none came).
    pub responses: CounterVec,
    pub rows: Counter,
    pub bytes_uncompressed: Counter,
    /// Bytes of accepted requests as sent (gzip for the Logs Ingestion API).
    pub bytes_on_wire: Counter,
    pub retries: Counter,
    pub poisoned: Counter,
    pub truncations: Counter,
    /// Fields kept in additionalFields_s because no declared column holds them.
    pub unmapped_fields: Counter,
    pub storage_errors: Counter,
    /// 1 while the breaker is open.
    pub breaker_open: Gauge,
    pub in_flight: Gauge,
    pub queue_depth: Gauge,
    /// Poison records in storage now (pages and undecodable messages), whoever wrote them:
    /// what waits for an operator. Zero again once they are requeued or purged.
    pub poison_waiting: Gauge,
    /// End-to-end latency: now − published of the newest event of each shipped page.
    pub latency: Histogram,
}

impl ShipperMetrics {
    pub fn new() -> Self {
        let m = Metrics::new("shipper");
        ShipperMetrics {
            pages: m.counter_vec("pages", "Pages (messages) by outcome", "outcome"),
            requests: m.counter_vec(
                "sink_requests",
                "Requests to Log Analytics by outcome",
                "outcome",
            ),
            responses: m.counter_vec(
                "sink_responses",
                "Answers of Log Analytics by HTTP status (transport: none came)",
                "status",
            ),
            rows: m.counter("rows_shipped", "Rows accepted by Log Analytics"),
            bytes_uncompressed: m.counter(
                "bytes_shipped",
                "Uncompressed bytes of accepted request bodies",
            ),
            bytes_on_wire: m.counter(
                "bytes_on_wire",
                "Bytes of accepted request bodies as sent (after gzip)",
            ),
            retries: m.counter("retries", "Requests retried after a transient failure"),
            poisoned: m.counter("poison_records", "Poison records written"),
            truncations: m.counter(
                "truncations",
                "Values truncated to fit Log Analytics limits",
            ),
            unmapped_fields: m.counter(
                "unmapped_fields",
                "Event fields kept in additionalFields_s because no declared column holds them",
            ),
            storage_errors: m.counter("storage_errors", "Failed storage operations (retried)"),
            breaker_open: m.gauge("breaker_open", "1 while the sink breaker is open"),
            in_flight: m.gauge("pages_in_flight", "Pages being shipped now"),
            queue_depth: m.gauge("queue_depth", "Approximate number of messages in the queue"),
            poison_waiting: m.gauge(
                "poison_waiting",
                "Poison records in storage waiting for an operator (requeue or purge)",
            ),
            latency: m.histogram(
                "end_to_end_latency_seconds",
                "Now minus published of the newest event of each shipped page",
                exponential_buckets(1.0, 2.0, 16),
            ),
            registry: m,
        }
    }

    pub fn observe_latency(&self, published: DateTime<Utc>) {
        let secs = (Utc::now() - published).num_milliseconds().max(0) as f64 / 1000.0;
        self.latency.observe(secs);
    }
}

impl Default for ShipperMetrics {
    fn default() -> Self {
        Self::new()
    }
}
