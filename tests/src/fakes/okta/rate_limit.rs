//! Per-token rate limiter of `/api/v1/logs` (`docs/contracts.md` §1.7).
//!
//! Okta's counters are N per window and reset a fixed time after the window opened, not on
//! wall-clock minutes; every response carries `X-Rate-Limit-Limit`, `-Remaining` and
//! `-Reset` (UTC epoch seconds). A window opens with the first request after the previous
//! one expired. Every request counts, including refused ones, as at Okta.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

struct Bucket {
    opened: Instant,
    reset_epoch: i64,
    count: u32,
}

/// The outcome of one request against its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_epoch: i64,
}

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    buckets: HashMap<String, Bucket>,
    /// Largest number of requests seen in one window, per bucket key.
    max_seen: BTreeMap<String, u32>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window: window.max(Duration::from_millis(1)),
            buckets: HashMap::new(),
            max_seen: BTreeMap::new(),
        }
    }

    /// Counts one request of `key` at `now` (`now_epoch_ms` is the same instant in UTC).
    pub fn hit(&mut self, key: &str, now: Instant, now_epoch_ms: i64) -> RateDecision {
        let window = self.window;
        let bucket = self
            .buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket {
                opened: now,
                reset_epoch: 0,
                count: 0,
            });
        if bucket.count == 0 || now.duration_since(bucket.opened) >= window {
            bucket.opened = now;
            bucket.count = 0;
            let reset_ms = now_epoch_ms + window.as_millis() as i64;
            // Round up: a client sleeping until Reset must not arrive before the window ends.
            bucket.reset_epoch = (reset_ms + 999).div_euclid(1000);
        }
        bucket.count = bucket.count.saturating_add(1);
        let seen = self.max_seen.entry(key.to_string()).or_insert(0);
        *seen = (*seen).max(bucket.count);
        RateDecision {
            allowed: bucket.count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(bucket.count),
            reset_epoch: bucket.reset_epoch,
        }
    }

    pub fn max_seen(&self) -> BTreeMap<String, u32> {
        self.max_seen.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_resets() {
        let mut rl = RateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let e0 = 1_700_000_000_000;
        let d: Vec<_> = (0..4).map(|_| rl.hit("a", t0, e0)).collect();
        assert_eq!(
            d.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            vec![2, 1, 0, 0]
        );
        assert!(d[2].allowed && !d[3].allowed);
        assert_eq!(d[3].reset_epoch, 1_700_000_010);
        // Other keys have their own bucket.
        assert!(rl.hit("b", t0, e0).allowed);
        let later = rl.hit("a", t0 + Duration::from_secs(10), e0 + 10_000);
        assert!(later.allowed);
        assert_eq!(later.remaining, 2);
        assert_eq!(rl.max_seen()["a"], 4);
    }
}
