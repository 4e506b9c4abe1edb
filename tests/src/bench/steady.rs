//! The steady-state bench (`okta-sentinel-bench --steady RATE`): what a caught-up org costs.
//!
//! The fake org publishes `RATE` events a second, the collector and one shipper run with the
//! production settings (15 s poll interval, 60 s leases, 10 s idle poll, 60 s stats), each
//! talking to Azurite through its own counting proxy. After a warm-up that lets the collector
//! reach the head of the log, everything is counted over a measured span and extrapolated to a
//! day: Okta requests and their share of a 120/min budget, storage requests by kind and by
//! process, Log Analytics requests and uncompressed bytes, CPU seconds of each process.
//! Those per-day figures are the measured half of the cost model in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use world::fakes::log_analytics::LogAnalyticsFakeConfig;
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};
use world::storage_proxy::{CountingProxy, ProxyCounts};

use crate::procstat;

/// Seconds in a day, for the extrapolation.
const DAY: f64 = 86_400.0;

/// What one steady run is asked to do.
pub struct SteadyArgs {
    /// Events the fake org publishes per second.
    pub rate: f64,
    /// The measured span (after the warm-up).
    pub measure: Duration,
    /// The collector's `OKTA_POLL_INTERVAL`.
    pub poll_interval: String,
    pub log_dir: Option<std::path::PathBuf>,
    pub json: Option<std::path::PathBuf>,
}

/// A blob and a queue proxy for one process.
struct ProxyPair {
    blob: CountingProxy,
    queue: CountingProxy,
}

impl ProxyPair {
    async fn start(world: &LocalWorld) -> anyhow::Result<ProxyPair> {
        let blob: SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
        let queue: SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
        Ok(ProxyPair {
            blob: CountingProxy::start(blob, "blob").await?,
            queue: CountingProxy::start(queue, "queue").await?,
        })
    }

    fn connection_string(&self, world: &LocalWorld) -> String {
        world
            .azurite
            .connection_string_via(Some(self.blob.addr()), Some(self.queue.addr()))
    }

    fn counts(&self) -> ProxyCounts {
        let (b, q) = (self.blob.counts(), self.queue.counts());
        let mut requests = b.requests;
        requests.extend(q.requests);
        ProxyCounts {
            requests,
            bytes_up: b.bytes_up + q.bytes_up,
            bytes_down: b.bytes_down + q.bytes_down,
        }
    }
}

/// Counters at one instant.
struct Snapshot {
    at: Instant,
    okta_requests: u64,
    events_served: u64,
    la_requests: u64,
    la_rows: u64,
    la_bytes: u64,
    /// How many arrival lags the sink had recorded.
    lags: usize,
    collector_storage: ProxyCounts,
    shipper_storage: ProxyCounts,
    collector_cpu: f64,
    shipper_cpu: f64,
}

fn by_kind_delta(a: &ProxyCounts, b: &ProxyCounts) -> BTreeMap<String, u64> {
    b.requests
        .iter()
        .map(|(k, v)| (k.clone(), v - a.requests.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub async fn run(args: SteadyArgs) -> anyhow::Result<()> {
    if args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--steady must be a positive rate (events per second)");
    }
    let ticks = procstat::clock_ticks();
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            initial_events: 0,
            live_rate_per_sec: args.rate,
            // An org's 120 requests a minute, as the fake reports it to the token.
            rate_limit_per_window: 120,
            rate_window_secs: 60,
            ..OktaFakeConfig::default()
        },
        la: LogAnalyticsFakeConfig {
            https: true,
            store_rows: false,
            ..LogAnalyticsFakeConfig::default()
        },
        log_dir: args.log_dir.clone(),
        // Its own Azurite process: measured (bench) or shown (local run) apart from the tests'.
        azurite: world::azurite::AzuriteOptions {
            own_process: true,
            ..world::azurite::AzuriteOptions::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    world
        .storage()?
        .ensure_created()
        .await
        .context("creating the queue and container")?;

    // Production settings, not the test suites' short ones.
    let production = [
        ("OKTA_POLL_INTERVAL", args.poll_interval.as_str()),
        ("OKTA_START", "1m"),
        ("STATS_INTERVAL", "60s"),
        ("LEADER_LEASE_DURATION", "60s"),
        ("STATE_LEASE_DURATION", "60s"),
        ("VISIBILITY_TIMEOUT", "120s"),
        ("SHIPPER_IDLE_POLL", "4s"),
        ("HAND_BACK_DELAY", "30s"),
        ("BREAKER_OPEN_TIME", "60s"),
    ];
    let c_proxy = ProxyPair::start(&world).await?;
    let s_proxy = ProxyPair::start(&world).await?;
    let c_conn = c_proxy.connection_string(&world);
    let s_conn = s_proxy.connection_string(&world);
    let mut c_env: Vec<(&str, &str)> = production.to_vec();
    c_env.push(("AZURE_STORAGE_CONNECTION_STRING", c_conn.as_str()));
    let mut s_env: Vec<(&str, &str)> = production.to_vec();
    s_env.push(("AZURE_STORAGE_CONNECTION_STRING", s_conn.as_str()));
    let mut collector = world.start_collector("collector", &c_env)?;
    let mut shipper = world.start_shipper("shipper", &s_env)?;
    let c_pid = collector.pid().context("collector pid")?;
    let s_pid = shipper.pid().context("shipper pid")?;

    let snapshot = || -> anyhow::Result<Snapshot> {
        let okta = world.okta.stats();
        let la = world.la.stats();
        Ok(Snapshot {
            at: Instant::now(),
            okta_requests: okta.logs_requests,
            events_served: okta.events_served,
            la_requests: la.accepted_requests,
            la_rows: la.accepted_rows,
            la_bytes: la.bytes_decompressed,
            lags: world.la.arrival_lags_ms().len(),
            collector_storage: c_proxy.counts(),
            shipper_storage: s_proxy.counts(),
            collector_cpu: procstat::sample(c_pid, ticks)?.cpu_secs,
            shipper_cpu: procstat::sample(s_pid, ticks)?.cpu_secs,
        })
    };

    // Warm-up: the minute of history plus two poll intervals, so the collector is caught up
    // and the shipper has handled its first pages before anything is counted.
    let warm_up = Duration::from_secs(45);
    println!(
        "steady: {} events/s, poll interval {}, warm-up {warm_up:?}, measuring {:?}; logs in {}",
        args.rate,
        args.poll_interval,
        args.measure,
        world.log_dir.display()
    );
    let watch = |collector: &mut world::procs::Service,
                 shipper: &mut world::procs::Service|
     -> anyhow::Result<()> {
        for s in [collector, shipper] {
            if let Some(st) = s.try_exit()? {
                bail!("{} exited ({st}); see {}", s.name, s.log.display());
            }
        }
        Ok(())
    };
    let until = Instant::now() + warm_up;
    while Instant::now() < until {
        watch(&mut collector, &mut shipper)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a = snapshot()?;
    let until = Instant::now() + args.measure;
    while Instant::now() < until {
        watch(&mut collector, &mut shipper)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let b = snapshot()?;
    collector.terminate(Duration::from_secs(20))?;
    shipper.terminate(Duration::from_secs(30))?;

    let secs = (b.at - a.at).as_secs_f64();
    let per_day = |n: f64| n * DAY / secs;
    let okta_per_min = (b.okta_requests - a.okta_requests) as f64 * 60.0 / secs;
    let c_kinds = by_kind_delta(&a.collector_storage, &b.collector_storage);
    let s_kinds = by_kind_delta(&a.shipper_storage, &b.shipper_storage);
    let c_total: u64 = c_kinds.values().sum();
    let s_total: u64 = s_kinds.values().sum();
    let la_requests = (b.la_requests - a.la_requests) as f64;
    let rows = (b.la_rows - a.la_rows) as f64;
    let la_bytes = (b.la_bytes - a.la_bytes) as f64;
    let served = (b.events_served - a.events_served) as f64;
    let mut lags = world
        .la
        .arrival_lags_ms()
        .get(a.lags..b.lags)
        .unwrap_or_default()
        .to_vec();
    lags.sort_unstable();
    let quantile = |q: f64| -> f64 {
        let i = ((lags.len() as f64 - 1.0) * q).round().max(0.0) as usize;
        lags.get(i).map_or(f64::NAN, |ms| *ms as f64 / 1000.0)
    };
    let (p50, p95, max) = (quantile(0.5), quantile(0.95), quantile(1.0));

    println!(
        "\n== steady state at {} events/s over {secs:.0} s",
        args.rate
    );
    println!(
        "Okta: {okta_per_min:.2} requests/min ({:.1} % of 120/min), {:.0} requests/day, {:.0} events served/day",
        okta_per_min / 120.0 * 100.0,
        per_day((b.okta_requests - a.okta_requests) as f64),
        per_day(served)
    );
    println!(
        "Log Analytics: {:.0} requests/day, {:.0} rows/day, {:.3} GB/day uncompressed ({:.0} bytes/row)",
        per_day(la_requests),
        per_day(rows),
        per_day(la_bytes) / 1e9,
        la_bytes / rows.max(1.0)
    );
    println!(
        "Latency (published → accepted by the sink) over {} rows: p50 {p50:.1} s, p95 {p95:.1} s, max {max:.1} s",
        lags.len()
    );
    for (who, total, kinds, cpu) in [
        (
            "collector",
            c_total,
            &c_kinds,
            b.collector_cpu - a.collector_cpu,
        ),
        ("shipper", s_total, &s_kinds, b.shipper_cpu - a.shipper_cpu),
    ] {
        println!(
            "{who}: {:.0} storage requests/day, {:.0} CPU-s/day",
            per_day(total as f64),
            per_day(cpu)
        );
        for (k, v) in kinds.iter() {
            println!("    {k:<28} {:>10.0}/day", per_day(*v as f64));
        }
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "rate_events_per_sec": args.rate,
            "poll_interval": args.poll_interval,
            "measured_secs": secs,
            "okta_requests_per_day": per_day((b.okta_requests - a.okta_requests) as f64),
            "okta_requests_per_min": okta_per_min,
            "events_served_per_day": per_day(served),
            "la_requests_per_day": per_day(la_requests),
            "la_rows_per_day": per_day(rows),
            "la_bytes_uncompressed_per_day": per_day(la_bytes),
            "collector_storage_per_day": c_kinds.iter().map(|(k, v)| (k.clone(), per_day(*v as f64))).collect::<BTreeMap<_, _>>(),
            "shipper_storage_per_day": s_kinds.iter().map(|(k, v)| (k.clone(), per_day(*v as f64))).collect::<BTreeMap<_, _>>(),
            "latency_secs": {"rows": lags.len(), "p50": p50, "p95": p95, "max": max},
            "collector_cpu_secs_per_day": per_day(b.collector_cpu - a.collector_cpu),
            "shipper_cpu_secs_per_day": per_day(b.shipper_cpu - a.shipper_cpu),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
