//! The fake org's System Log: an append-only sequence of events in ingestion
//! ("persistence") order.
//!
//! Polling queries page through this order (`docs/contracts.md` §1.2), so a cursor is just an
//! index into it and stays valid forever.
//!
//! Speed and memory: benchmarks pull ~100k events through the fake, so events are not kept
//! as JSON each. The generator's output is serialised once into a *template* (with
//! fixed-width placeholders for `uuid` and `published`), and an entry is only a template
//! number, its uuid and its timestamps (~90 bytes). A page is rendered by copying template
//! bytes and overwriting the two placeholders in place. The first [`POOL_SIZE`] events
//! each get their own template, so small tests see fully distinct events; beyond that,
//! templates are reused at random (uuids and timestamps stay unique per event).
//!
//! Realistic disorder is produced here: a *late* event is ingested now but carries a
//! `published` older than events already served, and a *repeat* re-appends an earlier
//! event (same uuid, same bytes) further down the log.

use super::super::okta_events::{okta_timestamp, EventGenerator};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::time::Instant;

/// Number of distinct event bodies generated before templates are reused.
pub const POOL_SIZE: usize = 4096;
const UUID_PLACEHOLDER: &str = "ffffffff-ffff-4fff-bfff-ffffffffffff";
const PUBLISHED_PLACEHOLDER: &str = "1111-11-11T11:11:11.111Z";

/// A serialised event with the byte offsets of its uuid and `published` values.
struct Template {
    bytes: Vec<u8>,
    uuid_at: usize,
    published_at: usize,
}

/// One event in the log.
#[derive(Clone, Copy)]
pub struct Entry {
    template: u32,
    uuid: [u8; 36],
    published: [u8; 24],
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
    templates: Vec<Template>,
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
            templates: Vec::new(),
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

    /// A template index for the next event: a new one while the pool fills, then a reused one.
    fn template(&mut self) -> u32 {
        if self.templates.len() < POOL_SIZE {
            let mut ev = self.gen.event(Utc::now());
            ev["uuid"] = UUID_PLACEHOLDER.into();
            ev["published"] = PUBLISHED_PLACEHOLDER.into();
            let bytes = serde_json::to_vec(&ev).unwrap_or_default();
            let uuid_at = find(&bytes, format!("\"{UUID_PLACEHOLDER}\"").as_bytes());
            let published_at = find(&bytes, format!("\"{PUBLISHED_PLACEHOLDER}\"").as_bytes());
            if let (Some(u), Some(p)) = (uuid_at, published_at) {
                self.templates.push(Template {
                    bytes,
                    uuid_at: u + 1,
                    published_at: p + 1,
                });
                return (self.templates.len() - 1) as u32;
            }
        }
        // Not empty here: the pool is full, or serialisation failed after templates exist.
        self.rng.random_range(0..self.templates.len().max(1)) as u32
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
        let published_at = DateTime::<Utc>::from_timestamp_millis(published_ms).unwrap_or_default();
        let mut published = [b'0'; 24];
        let stamp = okta_timestamp(published_at);
        if stamp.len() == 24 {
            published.copy_from_slice(stamp.as_bytes());
        }
        let template = self.template();
        let uuid_s = self.gen.uuid();
        let mut uuid = [b'0'; 36];
        uuid.copy_from_slice(&uuid_s.as_bytes()[..36]);
        self.entries.push(Entry {
            template,
            uuid,
            published,
            ingested_ms: t,
            published_ms,
        });
        self.uuids.push(uuid_s);
        if self.entries.len() > 1 && self.rng.random_bool(self.repeat_probability) {
            let len = self.entries.len();
            let from = len.saturating_sub(5_000);
            let idx = self.rng.random_range(from..len - 1);
            let mut copy = self.entries[idx];
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

    /// The entries `pos..pos+limit` (clamped) in ingestion order.
    pub fn range(&self, pos: usize, limit: usize) -> std::ops::Range<usize> {
        let start = pos.min(self.entries.len());
        start..start.saturating_add(limit).min(self.entries.len())
    }

    /// Renders the entries at `indices` as a JSON array.
    pub fn render(&self, indices: impl Iterator<Item = usize> + Clone) -> Vec<u8> {
        let size: usize = indices
            .clone()
            .filter_map(|i| self.entries.get(i))
            .map(|e| {
                self.templates
                    .get(e.template as usize)
                    .map_or(0, |t| t.bytes.len())
                    + 1
            })
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        let mut first = true;
        for e in indices.filter_map(|i| self.entries.get(i)) {
            let Some(t) = self.templates.get(e.template as usize) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            let at = out.len();
            out.extend_from_slice(&t.bytes);
            out[at + t.uuid_at..at + t.uuid_at + 36].copy_from_slice(&e.uuid);
            out[at + t.published_at..at + t.published_at + 24].copy_from_slice(&e.published);
        }
        out.push(b']');
        out
    }

    /// Indices of entries with `since <= published < until`, ordered by `published`
    /// (ties by ingestion order), each event once, for bounded queries.
    pub fn bounded(&self, since_ms: i64, until_ms: i64, descending: bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let p = self.entries[i].published_ms;
                p >= since_ms && p < until_ms
            })
            .collect();
        idx.sort_by_key(|&i| (self.entries[i].published_ms, i));
        // A repeat is the same event twice; bounded queries return each event once.
        let mut seen = std::collections::HashSet::new();
        idx.retain(|&i| seen.insert(self.entries[i].uuid));
        if descending {
            idx.reverse();
        }
        idx
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

    fn page(log: &EventLog, pos: usize, limit: usize) -> Vec<serde_json::Value> {
        let body = log.render(log.range(pos, limit));
        serde_json::from_slice::<Vec<serde_json::Value>>(&body).unwrap()
    }

    fn uuid_of(v: &serde_json::Value) -> String {
        v["uuid"].as_str().unwrap().to_string()
    }

    #[test]
    fn history_is_ordered_and_paged() {
        let mut log = EventLog::new(&cfg(0.0, 0.0));
        let end = Utc::now();
        log.seed_history(100, end, chrono::Duration::minutes(30));
        assert_eq!(log.len(), 100);
        let all: Vec<String> = page(&log, 0, 1000).iter().map(uuid_of).collect();
        assert_eq!(all, log.released_uuids());
        assert_eq!(page(&log, 90, 50).len(), 10);
        assert!(page(&log, 100, 50).is_empty());
        assert_eq!(log.render(log.range(100, 50)), b"[]");
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
        // Rendered timestamps match the entries.
        let all = page(&log, 0, 10_000);
        for (v, e) in all.iter().zip(&log.entries) {
            let t = DateTime::parse_from_rfc3339(v["published"].as_str().unwrap()).unwrap();
            assert_eq!(t.timestamp_millis(), e.published_ms);
        }
    }

    #[test]
    fn templates_are_reused_beyond_the_pool_with_unique_uuids() {
        let mut log = EventLog::new(&cfg(0.0, 0.0));
        log.release(POOL_SIZE + 500);
        assert_eq!(log.templates.len(), POOL_SIZE);
        let all = page(&log, 0, usize::MAX);
        let uuids: std::collections::HashSet<String> = all.iter().map(uuid_of).collect();
        assert_eq!(uuids.len(), POOL_SIZE + 500);
        assert_eq!(
            all.iter().map(uuid_of).collect::<Vec<_>>(),
            log.released_uuids()
        );
    }
}
