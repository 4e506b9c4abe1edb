//! The circuit breaker for sink-wide failures (docs/design.md §2 step 5).
//!
//! A 401/403, a missing DCR or stream, a DNS/TLS/connect error, or a storm of 5xx/429 says
//! nothing about the page being shipped: every page would fail the same way. So the breaker
//! opens — the shipper stops receiving, reports not-ready, re-reads its secrets and probes
//! again after a while — and none of it counts toward poison. RBAC can take 30 minutes to
//! propagate after a deployment; without this, a fresh deployment would poison its backlog.
//!
//! Probing is paced, because a throttled service must not see a burst each time the breaker
//! half-opens: exactly one POST may go out per probe time ([`Breaker::admit`] pushes the
//! next probe time out as it lets one through), any failure while open pushes it out again,
//! and a probe time is never earlier than the service's last `Retry-After` (the Logs Ingestion
//! API answers throttling with 429 and `Retry-After`,
//! <https://learn.microsoft.com/azure/azure-monitor/service-limits#logs-ingestion-api>).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backoff::MAX_SERVER_WAIT;

/// Consecutive transient failures (across pages) that count as a storm.
pub const STORM_THRESHOLD: u32 = 12;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Closed,
    /// Open until the instant; then it is half-open: one POST may probe ([`Breaker::admit`]).
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
    /// Not before this instant, by the service's last `Retry-After` (cleared on success).
    retry_at: Option<Instant>,
}

impl Breaker {
    pub fn new(open_for: Duration) -> Breaker {
        Breaker {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed,
                consecutive_transient: 0,
                trips: 0,
                retry_at: None,
            })),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the breaker, or keeps it open and pushes the next probe out: never earlier than
    /// `open_for` from now, the service's last `Retry-After`, or a probe time already set.
    pub fn trip(&self, reason: &str) {
        let mut g = self.lock();
        Self::trip_locked(&mut g, self.open_for, reason);
    }

    fn trip_locked(g: &mut Inner, open_for: Duration, reason: &str) {
        let now = Instant::now();
        let mut until = now + open_for;
        if let Some(at) = g.retry_at {
            until = until.max(at);
        }
        if let State::Open { until: current, .. } = &g.state {
            until = until.max(*current);
        } else {
            g.trips += 1;
        }
        g.state = State::Open {
            until,
            reason: reason.to_string(),
        };
        g.consecutive_transient = 0;
    }

    /// Records an accepted request: closes the breaker.
    pub fn success(&self) {
        let mut g = self.lock();
        g.state = State::Closed;
        g.consecutive_transient = 0;
        g.retry_at = None;
    }

    /// Records a transient failure with the service's `Retry-After`, if it sent one; returns
    /// true when the breaker tripped: the failure completed a storm, or it came while the
    /// breaker was open (a failed probe, or a request that was under way when it opened),
    /// which pushes the next probe out.
    pub fn transient(&self, reason: &str, retry_after: Option<Duration>) -> bool {
        let mut g = self.lock();
        if let Some(wait) = retry_after {
            let at = Instant::now() + wait.min(MAX_SERVER_WAIT);
            g.retry_at = Some(g.retry_at.map_or(at, |prev| prev.max(at)));
        }
        let open = matches!(g.state, State::Open { .. });
        g.consecutive_transient += 1;
        if open || g.consecutive_transient >= STORM_THRESHOLD {
            let reason = format!("storm of transient failures, last: {reason}");
            Self::trip_locked(&mut g, self.open_for, &reason);
            return true;
        }
        false
    }

    /// Whether a POST may go out now. Closed: yes. Open before its probe time: no. At or
    /// after the probe time (half-open): yes for exactly one caller — the probe — whose
    /// admission pushes the next probe time out by `open_for`, so pages woken from their own
    /// backoff at the same moment do not probe alongside it. The probe's outcome then closes
    /// the breaker or pushes the probe time out further.
    pub fn admit(&self) -> bool {
        let mut g = self.lock();
        let now = Instant::now();
        match &mut g.state {
            State::Closed => true,
            State::Open { until, .. } if *until > now => false,
            State::Open { until, .. } => {
                *until = now + self.open_for;
                true
            }
        }
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
            let tripped = b.transient("500", None);
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
        assert!(b.admit());
    }

    #[test]
    fn half_open_admits_one_probe_and_a_failed_probe_pushes_the_next_out() {
        let b = Breaker::new(Duration::from_secs(60));
        assert!(b.admit(), "closed: every POST goes");
        b.trip("429");
        assert!(!b.admit(), "open: nothing goes before the probe time");
        // Force the probe time to now (as if open_for had elapsed).
        if let State::Open { until, .. } = &mut b.lock().state {
            *until = Instant::now();
        }
        assert!(b.admit(), "half-open: the probe goes");
        assert!(!b.admit(), "a second page may not probe alongside it");
        assert!(b.wait().is_some());
        // The probe fails: one failure is enough to stay open, the next probe is pushed out.
        assert!(b.transient("429", None));
        assert!(b.wait().is_some_and(|w| w > Duration::from_secs(50)));
        assert_eq!(b.trips(), 1, "still the same outage");
        b.success();
        assert!(b.admit());
    }

    #[test]
    fn probes_wait_for_retry_after() {
        let b = Breaker::new(Duration::from_secs(1));
        b.transient("429", Some(Duration::from_secs(120)));
        b.trip("sink down");
        assert!(
            b.wait().is_some_and(|w| w > Duration::from_secs(100)),
            "the probe time honours Retry-After: {:?}",
            b.wait()
        );
        // A success forgets the hint.
        b.success();
        b.trip("again");
        assert!(b.wait().is_some_and(|w| w <= Duration::from_secs(1)));
    }
}
