//! When the audit may send its next Okta request: only from budget the live feed leaves unused.
//!
//! Okta's `/api/v1/logs` bucket is shared by the live feed, the audit and the org's other
//! integrations. The audit sees the same `X-Rate-Limit-*` headers as the live feed (both its
//! own responses and the live feed's, passed in by the run loop), and sends a request only when
//!
//! * the collector is caught up (its last polling page was not full) — never while behind;
//! * after it, the bucket still holds the pacer's reserve (`OKTA_RATE_LIMIT_RESERVE`) plus what
//!   the live feed needs until the reset (one poll per `OKTA_POLL_INTERVAL`, and one more);
//! * it is spaced like the pacer spaces the live feed (the time to the reset divided by what
//!   is left to spend), and at most `AUDIT_MAX_REQUESTS_PER_HOUR` were sent in the last hour.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::okta::client::RateLimit;
use crate::pacing::Pacer;

/// Longest single wait, so a cancelled audit or a changed state is noticed.
const MAX_STEP: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Seen {
    rate: RateLimit,
    /// Okta's clock when the headers were sent, and our instant when they arrived.
    date: DateTime<Utc>,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    seen: Option<Seen>,
    caught_up: bool,
    sent: VecDeque<Instant>,
    last_sent: Option<Instant>,
    /// A 429 was seen: nothing before this instant.
    blocked_until: Option<Instant>,
}

/// The shared gate; one per org and process.
#[derive(Debug)]
pub struct Budget {
    pacer: Pacer,
    /// Background audits: the live feed's poll interval and the hourly cap. `None`: an
    /// on-demand audit (an operator asked; still never over the reserve).
    background: Option<(Duration, u32)>,
    state: Mutex<State>,
    changed: Notify,
}

impl Budget {
    pub fn background(reserve: f64, poll_interval: Duration, per_hour: u32) -> Budget {
        Budget {
            pacer: Pacer::new(reserve),
            background: Some((poll_interval.max(Duration::from_millis(100)), per_hour)),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    pub fn command(reserve: f64) -> Budget {
        Budget {
            pacer: Pacer::new(reserve),
            background: None,
            state: Mutex::new(State {
                caught_up: true,
                ..State::default()
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Headers of any `/api/v1/logs` response of this token (live or audit).
    pub fn observe(&self, rate: Option<&RateLimit>, date: Option<DateTime<Utc>>) {
        if let Some(r) = rate {
            self.state().seen = Some(Seen {
                rate: *r,
                date: date.unwrap_or_else(Utc::now),
                at: Instant::now(),
            });
            self.changed.notify_waiters();
        }
    }

    /// A live polling page: full means behind, anything less means caught up.
    pub fn observe_live_page(&self, events: usize, limit: usize) {
        self.state().caught_up = events < limit.max(1);
        self.changed.notify_waiters();
    }

    /// A 429 (live or audit): nothing until the pacer's wait is over.
    pub fn observe_429(&self, rate: Option<&RateLimit>, date: Option<DateTime<Utc>>) {
        let wait = self.pacer.delay_after_429(rate, date);
        self.state().blocked_until = Some(Instant::now() + wait);
        self.changed.notify_waiters();
    }

    pub fn caught_up(&self) -> bool {
        self.state().caught_up
    }

    /// Waits until the collector is caught up; `false` when cancelled.
    pub async fn wait_caught_up(&self, cancel: &CancellationToken) -> bool {
        loop {
            let notified = self.changed.notified();
            if self.caught_up() {
                return true;
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = notified => {}
                () = tokio::time::sleep(MAX_STEP) => {}
            }
        }
    }

    /// What is left to wait before the next audit request, or zero to send it now (and then
    /// it is counted as sent).
    fn try_take(&self) -> Duration {
        let now = Instant::now();
        let mut s = self.state();
        if !s.caught_up {
            return MAX_STEP;
        }
        if let Some(b) = s.blocked_until {
            if b > now {
                return b - now;
            }
        }
        if let Some((_, per_hour)) = self.background {
            let hour = Duration::from_secs(3600);
            while s
                .sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= hour)
            {
                s.sent.pop_front();
            }
            if s.sent.len() >= per_hour as usize {
                let oldest = s.sent.front().copied().unwrap_or(now);
                return (oldest + hour)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(10));
            }
        }
        if let Some(seen) = &s.seen {
            // Okta's clock now, from its Date header plus the time since it arrived.
            let okta_now = seen.date
                + chrono::Duration::from_std(now.duration_since(seen.at)).unwrap_or_default();
            let to_reset = (seen.rate.reset - okta_now)
                .to_std()
                .unwrap_or(Duration::ZERO);
            // After the reset the count is unknown until the next response: one request
            // then, and the headers of its answer decide the rest.
            let reset_passed = to_reset.is_zero() && s.last_sent.is_some_and(|l| l > seen.at);
            if !to_reset.is_zero() || reset_passed {
                let live_need = match self.background {
                    Some((poll, _)) => {
                        (to_reset.as_secs_f64() / poll.as_secs_f64()).ceil() as i64 + 1
                    }
                    None => 1,
                };
                let spare = i64::from(seen.rate.remaining)
                    - i64::from(self.pacer.reserved(seen.rate.limit))
                    - live_need;
                if spare < 1 || reset_passed {
                    return (to_reset + Duration::from_secs(1))
                        .clamp(Duration::from_millis(200), MAX_STEP);
                }
                let gap = to_reset / (spare as u32).max(1);
                if let Some(last) = s.last_sent {
                    let ready = last + gap;
                    if ready > now {
                        return ready - now;
                    }
                }
            }
        }
        s.sent.push_back(now);
        s.last_sent = Some(now);
        Duration::ZERO
    }

    /// Waits until one audit request may be sent; `false` when cancelled first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let notified = self.changed.notified();
            let wait = self.try_take();
            if wait.is_zero() {
                return true;
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = notified => {}
                () = tokio::time::sleep(wait.min(MAX_STEP)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(limit: u32, remaining: u32, reset_in: i64) -> RateLimit {
        RateLimit {
            limit,
            remaining,
            reset: Utc::now() + chrono::Duration::seconds(reset_in),
        }
    }

    #[test]
    fn never_while_behind_and_never_into_the_reserve() {
        let b = Budget::background(0.3, Duration::from_secs(15), 100);
        b.observe(Some(&rate(60, 50, 60)), Some(Utc::now()));
        b.observe_live_page(1000, 1000);
        assert!(!b.try_take().is_zero(), "behind");
        b.observe_live_page(3, 1000);
        assert!(b.try_take().is_zero(), "caught up with spare budget");
        // 18 reserved + 5 for the live feed: 23 or fewer left means no audit request.
        let fresh = Budget::background(0.3, Duration::from_secs(15), 100);
        fresh.observe_live_page(3, 1000);
        fresh.observe(Some(&rate(60, 23, 60)), Some(Utc::now()));
        assert!(!fresh.try_take().is_zero(), "into the reserve");
        fresh.observe(Some(&rate(60, 30, 60)), Some(Utc::now()));
        assert!(fresh.try_take().is_zero(), "spare budget");
    }

    #[test]
    fn hourly_cap() {
        let b = Budget::background(0.0, Duration::from_secs(15), 2);
        b.observe_live_page(0, 1000);
        assert!(b.try_take().is_zero());
        assert!(b.try_take().is_zero());
        assert!(!b.try_take().is_zero());
    }
}
