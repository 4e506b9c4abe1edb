//! The fake org's System Log: an append-only sequence of pre-serialised events in
//! ingestion ("persistence") order.
//!
//! Polling queries page through this order (`contracts.md` §1.2), so a cursor is just an
//! index into it and stays valid forever. Each event is serialised once when it is
//! released; pages are assembled from cheap `Bytes` clones, which keeps the fake fast
//! enough for benchmarks that pull ~100k events through it.
//!
//! Realistic disorder is produced here: a *late* event is ingested now but carries a
//! `published` older than events already served, and a *repeat* re-appends an earlier
//! event (same uuid) further down the log.

use super::super::okta_events::EventGenerator;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// One event in the log.
#[derive(Clone)]
pub struct Entry {
    /// The event's minified JSON.
    pub bytes: Bytes,
    /// When the fake "persisted" it (ms since the epoch); non-decreasing along the log.
    pub ingested_ms: i64,
    /// Its `published` (ms since the epoch).
    pub published_ms: i64,
}

/// Events released over time after start, computed lazily whenever the log is read.
struct LiveSchedule {
    started: Instant,
    start_ms: i64,
    rate_per_sec: f64,
    released: usize,
    cap: Option<usize>,
}

/// Knobs of the log (a subset of `OktaFakeConfig`).
pub struct LogConfig {
    pub seed: u64,
    pub repeat_probability: f64,
    pub late_probability: f64,
    pub live_rate_per_sec: f64,
    pub live_cap: Option<usize>,
}

pub struct EventLog {
    gen: EventGenerator,
    rng: StdRng,
    entries: Vec<Entry>,
    /// Distinct uuids in order of first release: what a collector must deliver.
    uuids: Vec<String>,
    last_ms: i64,
    repeat_probability: f64,
    late_probability: f64,
    live: Option<LiveSchedule>,
}

fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl EventLog {
    pub fn new(cfg: &LogConfig) -> Self {
        let now_ms = to_ms(Utc::now());
        let live = (cfg.live_rate_per_sec > 0.0).then(|| LiveSchedule {
            started: Instant::now(),
            start_ms: now_ms,
            rate_per_sec: cfg.live_rate_per_sec,
            released: 0,
            cap: cfg.live_cap,
        });
        Self {
            gen: EventGenerator::new(cfg.seed),
            // A separate stream for the disorder decisions, so the events themselves are
            // the same whatever the probabilities.
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
            entries: Vec::new(),
            uuids: Vec::new(),
            last_ms: 0,
            repeat_probability: cfg.repeat_probability.clamp(0.0, 1.0),
            late_probability: cfg.late_probability.clamp(0.0, 1.0),
            live,
        }
    }

    /// Publishes `n` events spread evenly over `[end - history, end]`.
    pub fn seed_history(&mut self, n: usize, end: DateTime<Utc>, history: chrono::Duration) {
        let end_ms = to_ms(end);
        let span = history.num_milliseconds().max(0);
        for i in 0..n {
            // i128 keeps `span * i` from overflowing for absurd inputs.
            let offset = (span as i128 * (n - i) as i128 / n.max(1) as i128) as i64;
            self.release_at(end_ms - offset);
        }
    }

    /// Appends one event ingested at `at_ms` (clamped to keep ingestion order monotonic),
    /// maybe late, maybe followed by a repeat of an earlier event.
    fn release_at(&mut self, at_ms: i64) {
        let t = at_ms.max(self.last_ms);
        self.last_ms = t;
        let late = !self.entries.is_empty() && self.rng.random_bool(self.late_probability);
        let published_ms = if late {
            t - self.rng.random_range(1_000..300_000)
        } else {
            t
        };
        let published = DateTime::<Utc>::from_timestamp_millis(published_ms).unwrap_or_default();
        let event = self.gen.event(published);
        let uuid = event["uuid"].as_str().unwrap_or_default().to_string();
        let bytes = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        self.entries.push(Entry {
            bytes,
            ingested_ms: t,
            published_ms,
        });
        self.uuids.push(uuid);
        if self.entries.len() > 1 && self.rng.random_bool(self.repeat_probability) {
            let len = self.entries.len();
            let from = len.saturating_sub(5_000);
            let idx = self.rng.random_range(from..len - 1);
            let mut copy = self.entries[idx].clone();
            copy.ingested_ms = t;
            self.entries.push(copy);
        }
    }

    /// Publishes `n` events now.
    pub fn release(&mut self, n: usize) {
        let now = to_ms(Utc::now());
        for _ in 0..n {
            self.release_at(now);
        }
    }

    /// Releases the live events that are due by now.
    pub fn catch_up(&mut self) {
        let Some(live) = &self.live else { return };
        let elapsed = live.started.elapsed().as_secs_f64();
        let mut due = (elapsed * live.rate_per_sec).floor() as usize;
        if let Some(cap) = live.cap {
            due = due.min(cap);
        }
        let (start_ms, rate, from) = (live.start_ms, live.rate_per_sec, live.released);
        for k in from..due {
            let at = start_ms + ((k + 1) as f64 * 1000.0 / rate) as i64;
            self.release_at(at);
        }
        if let Some(live) = &mut self.live {
            live.released = live.released.max(due);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Index of the first entry ingested at or after `since_ms`.
    pub fn position_for_since(&self, since_ms: i64) -> usize {
        self.entries.partition_point(|e| e.ingested_ms < since_ms)
    }

    /// Up to `limit` entries from `pos` in ingestion order.
    pub fn page(&self, pos: usize, limit: usize) -> Vec<Bytes> {
        let start = pos.min(self.entries.len());
        let end = start.saturating_add(limit).min(self.entries.len());
        self.entries[start..end]
            .iter()
            .map(|e| e.bytes.clone())
            .collect()
    }

    /// Indices of entries with `since <= published < until`, ordered by `published`
    /// (ties by ingestion order), for bounded queries.
    pub fn bounded(&self, since_ms: i64, until_ms: i64, descending: bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let p = self.entries[i].published_ms;
                p >= since_ms && p < until_ms
            })
            .collect();
        idx.sort_by_key(|&i| (self.entries[i].published_ms, i));
        if descending {
            idx.reverse();
        }
        // A repeat carries the same bytes twice; bounded queries return each event once.
        let mut seen = std::collections::HashSet::new();
        idx.retain(|&i| seen.insert(self.entries[i].bytes.as_ptr()));
        idx
    }

    pub fn entry_bytes(&self, i: usize) -> Option<Bytes> {
        self.entries.get(i).map(|e| e.bytes.clone())
    }

    pub fn released_uuids(&self) -> &[String] {
        &self.uuids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(repeat: f64, late: f64) -> LogConfig {
        LogConfig {
            seed: 3,
            repeat_probability: repeat,
            late_probability: late,
            live_rate_per_sec: 0.0,
            live_cap: None,
        }
    }

    fn uuid_of(b: &Bytes) -> String {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v["uuid"].as_str().unwrap().to_string()
    }

    #[test]
    fn history_is_ordered_and_paged() {
        let mut log = EventLog::new(&cfg(0.0, 0.0));
        let end = Utc::now();
        log.seed_history(100, end, chrono::Duration::minutes(30));
        assert_eq!(log.len(), 100);
        let all: Vec<String> = log.page(0, 1000).iter().map(uuid_of).collect();
        assert_eq!(all, log.released_uuids());
        assert_eq!(log.page(90, 50).len(), 10);
        assert!(log.page(100, 50).is_empty());
        let mid = to_ms(end) - 15 * 60 * 1000;
        let p = log.position_for_since(mid);
        assert!((45..=55).contains(&p), "{p}");
    }

    #[test]
    fn repeats_and_late_events_appear() {
        let mut log = EventLog::new(&cfg(0.2, 0.2));
        log.release(500);
        assert!(log.len() > 500, "repeats add entries");
        assert_eq!(log.released_uuids().len(), 500);
        let mut max_pub = i64::MIN;
        let mut late = 0;
        for e in &log.entries {
            if e.published_ms < max_pub {
                late += 1;
            }
            max_pub = max_pub.max(e.published_ms);
        }
        assert!(late > 10, "{late}");
    }
}
