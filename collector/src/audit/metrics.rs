//! The audit's metrics: one per figure of the evidence record, plus its own Okta requests
//! (counted apart from the live feed's `okta_requests`).

use common::metrics::{Counter, CounterVec, Gauge, Metrics};

use super::record::AuditRecord;

#[derive(Clone)]
pub struct AuditMetrics {
    pub windows: CounterVec,
    pub okta_events: Counter,
    pub la_events: Counter,
    pub missing: Counter,
    pub repaired: Counter,
    pub in_flight: Counter,
    pub parked: Counter,
    pub duplicated: Counter,
    pub not_in_okta: Counter,
    pub okta_requests: CounterVec,
    pub la_queries: Counter,
    pub failures: Counter,
    pub incomplete_after_repair: Counter,
    /// End of the newest window audited (Unix seconds), and its missing events.
    pub last_window_end: Gauge,
    pub last_missing: Gauge,
    /// 1 while the background audit runs (0: off, or the start-up check failed).
    pub enabled: Gauge,
}

impl AuditMetrics {
    /// Registers (once per registry; a second call returns the same metrics).
    pub fn new(m: &Metrics) -> AuditMetrics {
        AuditMetrics {
            windows: m.counter_vec(
                "audit_windows",
                "Audited windows by result (complete, repaired, incomplete)",
                "result",
            ),
            okta_events: m.counter(
                "audit_okta_events",
                "Events Okta returned for audited windows",
            ),
            la_events: m.counter(
                "audit_la_events",
                "Distinct events Log Analytics holds for audited windows",
            ),
            missing: m.counter(
                "audit_missing_events",
                "Okta events of audited windows not in Log Analytics",
            ),
            repaired: m.counter(
                "audit_repaired_events",
                "Missing events handed off again as repair pages",
            ),
            in_flight: m.counter(
                "audit_in_flight_events",
                "Missing events still in a page waiting to be shipped",
            ),
            parked: m.counter(
                "audit_parked_events",
                "Missing events in a page parked as poison",
            ),
            duplicated: m.counter(
                "audit_duplicated_events",
                "Events Log Analytics holds more than once",
            ),
            not_in_okta: m.counter(
                "audit_not_in_okta_events",
                "Events Log Analytics holds that Okta did not return for the window",
            ),
            okta_requests: m.counter_vec(
                "audit_okta_requests",
                "Okta requests of the audit by HTTP status (0 = no answer)",
                "status",
            ),
            la_queries: m.counter("audit_la_queries", "Logs Query API requests of the audit"),
            failures: m.counter(
                "audit_failures",
                "Audits that stopped with an error (repeated later)",
            ),
            incomplete_after_repair: m.counter(
                "audit_incomplete_after_repair",
                "Windows still missing events after an earlier audit repaired them",
            ),
            last_window_end: m.gauge(
                "audit_last_window_end_timestamp_seconds",
                "End of the window audited last",
            ),
            last_missing: m.gauge(
                "audit_last_missing",
                "Missing events of the window audited last",
            ),
            enabled: m.gauge("audit_enabled", "1 while the background audit runs"),
        }
    }

    pub fn okta_request(&self, status: u16) {
        self.okta_requests.inc(match status {
            200 => "200",
            429 => "429",
            0 => "0",
            _ => "other",
        });
    }

    pub fn record(&self, r: &AuditRecord) {
        let f = &r.figures;
        self.windows.inc(&r.result);
        self.okta_events.inc_by(f.okta_events);
        self.la_events.inc_by(f.la_events);
        self.missing.inc_by(f.missing);
        self.repaired.inc_by(f.repaired);
        self.in_flight.inc_by(f.in_flight);
        self.parked.inc_by(f.parked);
        self.duplicated.inc_by(f.duplicated);
        self.not_in_okta.inc_by(f.not_in_okta);
        if r.incomplete_after_repair {
            self.incomplete_after_repair.inc();
        }
        self.last_window_end.set(r.window.to.timestamp());
        self.last_missing
            .set(i64::try_from(f.missing).unwrap_or(i64::MAX));
    }
}
