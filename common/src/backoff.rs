//! Retry delays: jittered exponential backoff and the server's own wait hints.
//!
//! Every retry loop in the project (Okta pacing, storage conditional writes, Log Analytics
//! posts, Key Vault re-reads) uses [`Backoff`] so that many replicas retrying the same failure
//! spread out instead of hammering the service in lock-step (the "thundering herd").
//!
//! When the server says how long to wait, that word wins: [`retry_after`] reads `Retry-After`
//! (seconds or HTTP-date) and the Azure millisecond variants, measured against the response's
//! own `Date` where the caller has it (a container's clock can be off by minutes), and clamped
//! to [`MAX_SERVER_WAIT`] so one absurd header cannot park a service for hours. Okta's
//! `X-Rate-Limit-Reset` is read by the collector's pacer (`collector/src/pacing.rs`).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rand::RngExt;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The longest wait a server hint can impose. Okta's windows are one minute and Azure's
/// `Retry-After` values are seconds to a few minutes; anything longer is treated as a bug on
/// the other side, not as an instruction to sleep for hours.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(600);

/// How the randomness is applied to the exponential delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// `uniform(0, min(max, base × factor^attempt))` — AWS's "full jitter": the best spread,
    /// so the best choice when many replicas retry the same shared failure.
    Full,
    /// `min(max, uniform(base, previous × 3))` — "decorrelated jitter": grows like the
    /// exponential but never collapses to (near) zero, so a lone client still backs off.
    Decorrelated,
    /// No randomness (tests, or a single well-known caller).
    None,
}

/// Exponential backoff with jitter. Not thread-safe by design: one per retry loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    factor: f64,
    attempt: u32,
    jitter: Jitter,
    /// Last delay returned (decorrelated jitter grows from it).
    prev: Duration,
}

impl Backoff {
    /// `base` is the first (ceiling of the) delay, `max` the largest delay ever returned.
    /// Factor 2 and full jitter by default.
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            max: max.max(base),
            factor: 2.0,
            attempt: 0,
            jitter: Jitter::Full,
            prev: base,
        }
    }

    /// Growth factor per attempt (values below 1 are taken as 1).
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        self
    }

    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Number of delays handed out since the last [`reset`](Self::reset).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// The un-jittered ceiling for the current attempt: `min(max, base × factor^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let exp = self.factor.powi(self.attempt.min(64) as i32);
        let secs = self.base.as_secs_f64() * exp;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay before the next retry; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let mut rng = rand::rng();
        let delay = match self.jitter {
            Jitter::None => self.ceiling(),
            Jitter::Full => {
                let ceiling = self.ceiling().as_secs_f64();
                Duration::from_secs_f64(rng.random_range(0.0..=ceiling))
            }
            Jitter::Decorrelated => {
                let lo = self.base.as_secs_f64();
                let hi = (self.prev.as_secs_f64() * 3.0)
                    .min(self.max.as_secs_f64())
                    .max(lo);
                Duration::from_secs_f64(rng.random_range(lo..=hi))
            }
        };
        let delay = delay.min(self.max);
        self.prev = delay.max(self.base);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The delay before the next retry when the server may have said how long to wait:
    /// the hint plus up to 10 % (at most 1 s) of jitter so replicas told the same instant do
    /// not return together; without a hint, [`next_delay`](Self::next_delay). The attempt
    /// counter advances either way.
    pub fn next_delay_with_hint(&mut self, hint: Option<Duration>) -> Duration {
        match hint {
            Some(h) => {
                self.attempt = self.attempt.saturating_add(1);
                let spread = (h.as_secs_f64() * 0.1).min(1.0);
                let extra = if spread > 0.0 {
                    rand::rng().random_range(0.0..=spread)
                } else {
                    0.0
                };
                h.min(MAX_SERVER_WAIT) + Duration::from_secs_f64(extra)
            }
            None => self.next_delay(),
        }
    }

    /// Back to the first attempt, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.prev = self.base;
    }
}

/// How long the server asks us to wait, from (in this order) `retry-after-ms`,
/// `x-ms-retry-after-ms` (milliseconds, Azure) or `Retry-After` (delta-seconds or an
/// HTTP-date, RFC 9110 §10.2.3). An HTTP-date is measured against `now`; pass the response's
/// `Date` when you have it, so a skewed local clock does not matter.
/// A date in the past gives zero. The result is clamped to [`MAX_SERVER_WAIT`]; unparsable
/// values give `None`.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(parse_non_negative) {
            return Some(clamp(Duration::from_secs_f64(ms / 1000.0)));
        }
    }
    let value = header_str(headers, RETRY_AFTER.as_str())?;
    if let Some(secs) = parse_non_negative(value) {
        return Some(clamp(Duration::from_secs_f64(secs)));
    }
    let at = parse_http_date(value)?;
    Some(until(at, now))
}

/// Parses an HTTP-date: the IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and, as RFC 9110
/// requires of recipients, the obsolete RFC 850 and asctime forms.
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(dt) = DateTime::parse_from_rfc2822(value) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, format) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    None
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// A non-negative finite number (Retry-After is an integer by the RFC; servers send decimals).
fn parse_non_negative(value: &str) -> Option<f64> {
    let v: f64 = value.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    clamp((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn clamp(d: Duration) -> Duration {
    d.min(MAX_SERVER_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
            .with_jitter(Jitter::None);
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(d[0], Duration::from_millis(100));
        assert_eq!(d[1], Duration::from_millis(200));
        assert_eq!(d[3], Duration::from_millis(800));
        assert_eq!(d[4], Duration::from_secs(1));
        assert_eq!(d[5], Duration::from_secs(1));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn http_date_forms() {
        let want = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).single();
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
