//! A small metrics registry: Prometheus exposition for scrapers, a JSON snapshot for logs.
//!
//! Two audiences read the same numbers. A Prometheus scraper (or Container Apps' managed
//! Prometheus) reads `/metrics` ([`Metrics::render_prometheus`]); an operator who only has the
//! container logs reads the one-line `stats` record that [`spawn_stats_logger`] writes every
//! `STATS_INTERVAL` ([`Metrics::stats_json`]).
//!
//! Metrics are created once at start-up and then updated through cheap handles: a
//! [`Counter`], [`Gauge`] or [`Histogram`] clone is an `Arc` around atomics, so the hot path
//! is one atomic add with no lock and no allocation. A labelled counter ([`CounterVec`]) costs
//! one read-lock and a map lookup per update; take a plain [`Counter`] with
//! [`CounterVec::with`] when the label is fixed for a loop.
//!
//! Names are given without the prefix: `counter("pages_fetched", …)` is exposed as
//! `okta_sentinel_pages_fetched_total` (OpenMetrics adds `_total` to counters) with a
//! `service` label, and appears as `"pages_fetched"` in the stats JSON. Never put a secret or
//! an unbounded value (an event id, a URL) into a label.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets};

/// Prefix of every exposed metric name.
pub const PREFIX: &str = "okta_sentinel";

/// A monotonically increasing count.
pub type Counter = prometheus_client::metrics::counter::Counter<u64>;
/// A value that goes up and down (queue depth, pages in flight, 0/1 states).
pub type Gauge = prometheus_client::metrics::gauge::Gauge<i64>;
/// A fractional gauge (lag in seconds, a rate).
pub type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;
/// A distribution (request latency, page size).
pub type Histogram = prometheus_client::metrics::histogram::Histogram;

type LabelSet = [(&'static str, String); 1];

/// Metrics that share a name and differ by one label (`status`, `org`, `reason`): the
/// [`CounterVec`] and [`GaugeVec`] below.
#[derive(Clone)]
pub struct Labelled<M> {
    family: Family<LabelSet, M>,
    label: &'static str,
    handles: Arc<RwLock<BTreeMap<String, M>>>,
}

/// Counters that share a name and differ by one label.
pub type CounterVec = Labelled<Counter>;
/// Gauges that share a name and differ by one label (for example per org).
pub type GaugeVec = Labelled<Gauge>;

/// What the stats JSON shows of one labelled metric.
pub trait LabelledValue: Clone + Default {
    /// The current value.
    fn value(&self) -> Value;
}

impl LabelledValue for Counter {
    fn value(&self) -> Value {
        Value::from(self.get())
    }
}

impl LabelledValue for Gauge {
    fn value(&self) -> Value {
        Value::from(self.get())
    }
}

impl<M: LabelledValue> Labelled<M> {
    fn new(label: &'static str) -> Self {
        Self {
            family: Family::default(),
            label,
            handles: Arc::default(),
        }
    }

    /// The metric for one label value (created on first use).
    pub fn with(&self, value: &str) -> M {
        if let Some(m) = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(value)
        {
            return m.clone();
        }
        let mut map = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(value.to_string())
            .or_insert_with(|| {
                self.family
                    .get_or_create_owned(&[(self.label, value.to_string())])
            })
            .clone()
    }

    fn snapshot(&self) -> Value {
        let map = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        Value::Object(map.iter().map(|(k, m)| (k.clone(), m.value())).collect())
    }
}

impl Labelled<Counter> {
    pub fn inc(&self, value: &str) {
        self.with(value).inc();
    }

    pub fn inc_by(&self, value: &str, n: u64) {
        self.with(value).inc_by(n);
    }

    /// Current value for one label value (0 when never incremented).
    pub fn get(&self, value: &str) -> u64 {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(value)
            .map_or(0, Counter::get)
    }
}

impl Labelled<Gauge> {
    pub fn set(&self, value: &str, v: i64) {
        self.with(value).set(v);
    }
}

#[derive(Clone)]
enum Entry {
    Counter(Counter),
    CounterVec(CounterVec),
    Gauge(Gauge),
    GaugeVec(GaugeVec),
    FloatGauge(FloatGauge),
    Histogram(Histogram),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Counter(_) => "counter",
            Entry::CounterVec(_) => "labelled counter",
            Entry::Gauge(_) => "gauge",
            Entry::GaugeVec(_) => "labelled gauge",
            Entry::FloatGauge(_) => "float gauge",
            Entry::Histogram(_) => "histogram",
        }
    }
}

struct Inner {
    service: String,
    registry: Registry,
    entries: BTreeMap<String, Entry>,
}

/// The registry of one service. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("service", &self.lock().service)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose metrics carry the label `service="{service}"`.
    pub fn new(service: &str) -> Metrics {
        let registry = Registry::with_prefix_and_labels(
            PREFIX,
            [("service".into(), service.to_string().into())].into_iter(),
        );
        Metrics {
            inner: Arc::new(Mutex::new(Inner {
                service: service.to_string(),
                registry,
                entries: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Registration and rendering never leave the registry half-updated, so a poisoned lock
        // (a panic elsewhere while holding it) still guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `name` once; a second call with the same name and kind returns the existing
    /// metric. A second call with another kind is a programming error: it is logged and the
    /// caller gets a detached metric, so the service keeps running.
    fn get_or_register(&self, name: &str, help: &str, make: impl FnOnce() -> Entry) -> Entry {
        let mut inner = self.lock();
        let fresh = make();
        if let Some(existing) = inner.entries.get(name) {
            if existing.kind() == fresh.kind() {
                return existing.clone();
            }
            tracing::error!(
                metric = name,
                existing = existing.kind(),
                requested = fresh.kind(),
                "metric registered twice with different kinds; the second one is not exported"
            );
            return fresh;
        }
        match &fresh {
            Entry::Counter(m) => inner.registry.register(name, help, m.clone()),
            Entry::CounterVec(m) => inner.registry.register(name, help, m.family.clone()),
            Entry::Gauge(m) => inner.registry.register(name, help, m.clone()),
            Entry::GaugeVec(m) => inner.registry.register(name, help, m.family.clone()),
            Entry::FloatGauge(m) => inner.registry.register(name, help, m.clone()),
            Entry::Histogram(m) => inner.registry.register(name, help, m.clone()),
        }
        inner.entries.insert(name.to_string(), fresh.clone());
        fresh
    }

    pub fn counter(&self, name: &str, help: &str) -> Counter {
        match self.get_or_register(name, help, || Entry::Counter(Counter::default())) {
            Entry::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// Counters distinguished by the label `label_name`.
    pub fn counter_vec(&self, name: &str, help: &str, label_name: &'static str) -> CounterVec {
        match self.get_or_register(name, help, || {
            Entry::CounterVec(CounterVec::new(label_name))
        }) {
            Entry::CounterVec(c) => c,
            _ => CounterVec::new(label_name),
        }
    }

    /// Increments the labelled counter `name{label=value}`, registering it on first use (with
    /// `name` as its help text). Convenient for rare events; hot paths keep a [`CounterVec`].
    pub fn inc_labeled(&self, name: &str, label: &'static str, value: &str) {
        self.counter_vec(name, name, label).inc(value);
    }

    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        match self.get_or_register(name, help, || Entry::Gauge(Gauge::default())) {
            Entry::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// Gauges distinguished by the label `label_name`.
    pub fn gauge_vec(&self, name: &str, help: &str, label_name: &'static str) -> GaugeVec {
        match self.get_or_register(name, help, || Entry::GaugeVec(GaugeVec::new(label_name))) {
            Entry::GaugeVec(g) => g,
            _ => GaugeVec::new(label_name),
        }
    }

    pub fn float_gauge(&self, name: &str, help: &str) -> FloatGauge {
        match self.get_or_register(name, help, || Entry::FloatGauge(FloatGauge::default())) {
            Entry::FloatGauge(g) => g,
            _ => FloatGauge::default(),
        }
    }

    /// A histogram with the given upper bucket bounds (see [`exponential_buckets`]). Calling it
    /// again with the same name returns the first histogram (its buckets win).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: impl IntoIterator<Item = f64>,
    ) -> Histogram {
        let buckets: Vec<f64> = buckets.into_iter().collect();
        match self.get_or_register(name, help, || {
            Entry::Histogram(Histogram::new(buckets.iter().copied()))
        }) {
            Entry::Histogram(h) => h,
            _ => Histogram::new(buckets),
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`); serve it with
    /// [`OPENMETRICS_CONTENT_TYPE`].
    pub fn render_prometheus(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(4096);
        if let Err(e) = encode(&mut out, &inner.registry) {
            // Writing into a String cannot fail; keep the service up regardless.
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// A flat snapshot for the `stats` log line: `{"service": …, "name": value, …}`.
    /// Labelled metrics are nested objects (`"posts": {"200": 12, "429": 1}`); histograms are
    /// left out (they are on `/metrics`).
    pub fn stats_json(&self) -> Value {
        let inner = self.lock();
        let mut out = Map::new();
        out.insert("service".into(), Value::from(inner.service.clone()));
        for (name, entry) in &inner.entries {
            let v = match entry {
                Entry::Counter(c) => Value::from(c.get()),
                Entry::CounterVec(c) => c.snapshot(),
                Entry::Gauge(g) => Value::from(g.get()),
                Entry::GaugeVec(g) => g.snapshot(),
                Entry::FloatGauge(g) => float(g.get()),
                // prometheus-client exposes no count/sum outside its test feature; latency
                // distributions belong on /metrics anyway.
                Entry::Histogram(_) => continue,
            };
            out.insert(name.clone(), v);
        }
        Value::Object(out)
    }
}

/// JSON has no NaN/inf; those become `null`.
fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Content type of [`Metrics::render_prometheus`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Logs `stats` (target `stats`) every `interval`, and once more when `cancel` fires so the
/// last numbers before a shutdown are not lost.
pub fn spawn_stats_logger(
    metrics: Metrics,
    interval: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let interval = interval.max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    log_stats(&metrics);
                    return;
                }
                _ = ticker.tick() => log_stats(&metrics),
            }
        }
    })
}

fn log_stats(metrics: &Metrics) {
    let json = metrics.stats_json();
    tracing::info!(target: "stats", stats = %json, "stats");
}
