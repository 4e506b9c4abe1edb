//! How long to wait before the next Okta request (docs/design.md §3 "Pacing").
//!
//! The org's `/api/v1/logs` bucket is shared with every other integration (SIEMs, scripts,
//! Okta Workflows). The collector never lets `X-Rate-Limit-Remaining` fall below
//! `reserve × X-Rate-Limit-Limit` within a window: with `R` requests left above the reserve
//! and the reset `T` seconds away it spaces requests `T / R` apart, and once nothing is left
//! above the reserve it waits for the reset. `T` is measured against the response's `Date`
//! header, not the local clock: the reset is an epoch second on Okta's clock, and a skewed
//! local clock would otherwise make the collector either burst or stall.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngExt;

use crate::okta::rate_limit::RateLimit;

/// Default share of the limit left to other integrations (`OKTA_RATE_LIMIT_RESERVE`).
pub const DEFAULT_RESERVE: f64 = 0.3;

/// Added after a reset: the reset is an epoch *second* and `Date` is second-resolution too, so
/// arriving right on the reset could still land in the old window.
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// Upper bound of the random extra wait after a reset, so that several collectors (or a
/// collector and other integrations) do not all hit the new window at the same instant.
const MAX_JITTER_MS: u64 = 1_000;

/// A 429 without usable rate-limit headers (concurrency limits report `0/0/estimate`, proxies
/// none at all): Okta's windows are 60 s long, so one window is always enough.
const FALLBACK_429_WAIT: Duration = Duration::from_secs(60);

/// Never wait longer than this for one reset. Okta's windows are 60 s; a reset far in the
/// future means a broken header, and the collector must not stall for hours because of it.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Computes delays from Okta's `X-Rate-Limit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    reserve: f64,
}

impl Pacer {
    /// `reserve` is the fraction of the limit never used (0.0–1.0; out-of-range values are
    /// clamped, a non-number falls back to [`DEFAULT_RESERVE`]).
    pub fn new(reserve: f64) -> Self {
        let reserve = if reserve.is_nan() {
            DEFAULT_RESERVE
        } else {
            reserve.clamp(0.0, 1.0)
        };
        Self { reserve }
    }

    pub fn reserve(&self) -> f64 {
        self.reserve
    }

    /// Requests of the window that must stay unused: `ceil(reserve × limit)`.
    pub fn reserved(&self, limit: u32) -> u32 {
        // The product is in 0..=limit (reserve is clamped to 0..=1), so the cast is lossless.
        // The epsilon keeps float noise (0.3 × 120 = 36.000…01) from reserving one more.
        (self.reserve * f64::from(limit) - 1e-9).ceil().max(0.0) as u32
    }

    /// Wait before the next request, after a successful response with `rate` headers and
    /// `date` (the response's `Date`; the caller passes the local clock only when the header
    /// is missing).
    pub fn delay_after(&self, rate: &RateLimit, date: DateTime<Utc>) -> Duration {
        let until_reset = until(rate.reset, date);
        let spare = i64::from(rate.remaining) - i64::from(self.reserved(rate.limit));
        if spare <= 0 {
            return (until_reset + RESET_MARGIN + jitter()).min(MAX_WAIT);
        }
        // `spare` ≥ 1 here and at most u32::MAX, so the conversion is exact.
        (until_reset / spare as u32).min(MAX_WAIT)
    }

    /// Wait after a 429: until the reset plus jitter, or [`FALLBACK_429_WAIT`] when the
    /// headers are missing or say nothing useful (a reset already past by Okta's clock).
    pub fn delay_after_429(
        &self,
        rate: Option<&RateLimit>,
        date: Option<DateTime<Utc>>,
    ) -> Duration {
        let date = date.unwrap_or_else(Utc::now);
        match rate {
            Some(r) if r.reset > date => {
                (until(r.reset, date) + RESET_MARGIN + jitter()).min(MAX_WAIT)
            }
            _ => FALLBACK_429_WAIT + jitter(),
        }
    }
}

/// The wait after a page that reached the head of the log — an empty page or one with fewer
/// events than the request's `limit` (docs/design.md §3 "Caught up means quiet"): the poll interval
/// plus up to a tenth of it at random, so that many collectors started together (a fleet of
/// orgs, a redeployment) do not poll in step; never less than `paced`, the pacer's delay.
pub fn caught_up_wait(poll_interval: Duration, paced: Duration) -> Duration {
    let spread = u64::try_from(poll_interval.as_millis() / 10).unwrap_or(u64::MAX);
    let jitter = Duration::from_millis(rand::rng().random_range(0..=spread));
    (poll_interval + jitter).max(paced)
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(DEFAULT_RESERVE)
    }
}

/// Time from `now` to `reset`, zero when the reset has passed.
fn until(reset: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (reset - now).to_std().unwrap_or(Duration::ZERO)
}

fn jitter() -> Duration {
    Duration::from_millis(rand::rng().random_range(0..=MAX_JITTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn rate(limit: u32, remaining: u32, reset_in: i64) -> RateLimit {
        RateLimit {
            limit,
            remaining,
            reset: at(reset_in),
        }
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn spreads_the_spare_requests_over_the_window() {
        let p = Pacer::new(0.3);
        // 20 left, 6 reserved → 14 spare over 60 s.
        let d = p.delay_after(&rate(20, 20, 60), at(0));
        assert!((secs(d) - 60.0 / 14.0).abs() < 0.01, "{d:?}");
        // Fewer left → longer spacing.
        let d2 = p.delay_after(&rate(20, 8, 60), at(0));
        assert!((secs(d2) - 30.0).abs() < 0.01, "{d2:?}");
    }

    #[test]
    fn waits_for_the_reset_when_only_the_reserve_is_left() {
        let p = Pacer::new(0.3);
        for remaining in [0, 1, 5, 6] {
            let d = p.delay_after(&rate(20, remaining, 42), at(0));
            assert!(
                secs(d) >= 43.0 && secs(d) <= 44.001,
                "remaining {remaining}: {d:?}"
            );
        }
        // One above the reserve: spaced, not blocked.
        let d = p.delay_after(&rate(20, 7, 42), at(0));
        assert!((secs(d) - 42.0).abs() < 0.01, "{d:?}");
    }

    #[test]
    fn measures_against_the_date_header_not_the_local_clock() {
        let p = Pacer::new(0.3);
        // Reset 30 s after the response's Date, whatever the local time is (the `at` base is
        // years in the past).
        let d = p.delay_after(&rate(120, 120, 30), at(0));
        let spare = 120 - 36;
        assert!((secs(d) - 30.0 / f64::from(spare)).abs() < 0.001, "{d:?}");
        // A reset already past by Okta's clock: no wait.
        assert_eq!(p.delay_after(&rate(120, 100, 10), at(20)), Duration::ZERO);
    }

    #[test]
    fn after_429_waits_until_reset_or_falls_back() {
        let p = Pacer::default();
        let d = p.delay_after_429(Some(&rate(20, 0, 25)), Some(at(0)));
        assert!(secs(d) >= 26.0 && secs(d) <= 27.001, "{d:?}");
        let d = p.delay_after_429(None, Some(at(0)));
        assert!(secs(d) >= 60.0 && secs(d) <= 61.001, "{d:?}");
        // Concurrency 429s carry an estimated reset; a past one means "don't know".
        let d = p.delay_after_429(Some(&rate(0, 0, -5)), Some(at(0)));
        assert!(secs(d) >= 60.0, "{d:?}");
    }

    #[test]
    fn broken_headers_cannot_stall_the_collector() {
        let p = Pacer::default();
        let d = p.delay_after(&rate(20, 0, 86_400), at(0));
        assert_eq!(d, MAX_WAIT);
    }

    #[test]
    fn caught_up_waits_the_poll_interval_plus_jitter_never_less_than_the_pacer() {
        let poll = Duration::from_secs(15);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = caught_up_wait(poll, Duration::from_millis(700));
            assert!(d >= poll && d <= poll + poll / 10, "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 1, "no jitter");
        // The pacer asks for longer (only the reserve left): its delay wins.
        let d = caught_up_wait(poll, Duration::from_secs(40));
        assert_eq!(d, Duration::from_secs(40));
        assert_eq!(
            caught_up_wait(Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn reserve_is_clamped() {
        assert_eq!(Pacer::new(-1.0).reserve(), 0.0);
        assert_eq!(Pacer::new(7.0).reserve(), 1.0);
        assert_eq!(Pacer::new(f64::NAN).reserve(), DEFAULT_RESERVE);
        assert_eq!(Pacer::new(0.3).reserved(20), 6);
        assert_eq!(Pacer::new(0.3).reserved(120), 36);
        // Reserve 1.0: never spend anything, always wait for the reset.
        let d = Pacer::new(1.0).delay_after(&rate(20, 20, 10), at(0));
        assert!(secs(d) >= 11.0, "{d:?}");
    }
}
