//! The circuit breaker for sink-wide failures (DESIGN.md §2 step 5).
//!
//! A 401/403, a missing DCR or stream, a DNS/TLS/connect error, or a storm of 5xx/429 says
//! nothing about the page being shipped: every page would fail the same way. So the breaker
//! opens — the shipper stops receiving, reports not-ready, re-reads its secrets and probes
//! again after a while — and none of it counts toward poison. RBAC can take 30 minutes to
//! propagate after a deployment; without this, a fresh deployment would poison its backlog.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consecutive transient failures (across pages) that count as a storm.
pub const STORM_THRESHOLD: u32 = 12;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Closed,
    /// Open until the instant; then one page probes (half-open).
    Open {
        until: Instant,
        reason: String,
    },
}

#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Mutex<Inner>>,
    open_for: Duration,
}

struct Inner {
    state: State,
    consecutive_transient: u32,
    trips: u64,
}

impl Breaker {
    pub fn new(open_for: Duration) -> Breaker {
        Breaker {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed,
                consecutive_transient: 0,
                trips: 0,
            })),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the breaker (or keeps it open, pushing the probe time out).
    pub fn trip(&self, reason: &str) {
        let mut g = self.lock();
        if matches!(g.state, State::Closed) {
            g.trips += 1;
        }
        g.state = State::Open {
            until: Instant::now() + self.open_for,
            reason: reason.to_string(),
        };
        g.consecutive_transient = 0;
    }

    /// Records an accepted request: closes the breaker.
    pub fn success(&self) {
        let mut g = self.lock();
        g.state = State::Closed;
        g.consecutive_transient = 0;
    }

    /// Records a transient failure; returns true when it completed a storm (breaker tripped).
    pub fn transient(&self, reason: &str) -> bool {
        let storm = {
            let mut g = self.lock();
            g.consecutive_transient += 1;
            g.consecutive_transient >= STORM_THRESHOLD
        };
        if storm {
            self.trip(&format!("storm of transient failures, last: {reason}"));
        }
        storm
    }

    /// How long until receiving may resume: `None` when closed or the probe time has come.
    pub fn wait(&self) -> Option<Duration> {
        match &self.lock().state {
            State::Closed => None,
            State::Open { until, .. } => until.checked_duration_since(Instant::now()),
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.lock().state, State::Closed)
    }

    pub fn reason(&self) -> Option<String> {
        match &self.lock().state {
            State::Closed => None,
            State::Open { reason, .. } => Some(reason.clone()),
        }
    }

    pub fn trips(&self) -> u64 {
        self.lock().trips
    }

    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_trip_and_storm_closes_on_success() {
        let b = Breaker::new(Duration::from_secs(60));
        assert!(!b.is_open());
        b.trip("403");
        assert!(b.is_open() && b.wait().is_some());
        assert_eq!(b.reason().as_deref(), Some("403"));
        b.success();
        assert!(!b.is_open() && b.wait().is_none());
        for i in 0..STORM_THRESHOLD {
            let tripped = b.transient("500");
            assert_eq!(tripped, i + 1 == STORM_THRESHOLD);
        }
        assert!(b.is_open());
        assert_eq!(b.trips(), 2);
    }

    #[test]
    fn probe_time_comes() {
        let b = Breaker::new(Duration::ZERO);
        b.trip("401");
        assert!(b.is_open());
        assert!(
            b.wait().is_none(),
            "with a zero open time the probe may go at once"
        );
    }
}
