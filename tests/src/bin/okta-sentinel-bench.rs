//! `okta-sentinel-bench`: the end-to-end benchmark (docs/design.md §6). Not a test: it prints figures,
//! it asserts nothing about time.
//!
//! 1. **Collector**: a fake org holding `--events` events, no effective rate limit, Azurite;
//!    only the collector runs, until the queue holds every page. Events/s, CPU seconds per
//!    100k events, peak RSS.
//! 2. **Shipper**: with those pages queued, the shipper (concurrency 4) against the counting
//!    Log Analytics fake (https, rows counted, not kept), until every row is accepted and the
//!    queue is empty. Same figures, plus bytes on the wire vs decompressed.
//! 3. **Storage transactions**: each binary talks to Azurite through its own counting proxy
//!    ([`proxy`]), so requests per 1,000 events are reported per process and per kind.
//! 4. **Python client** (with `--python`): the official `azure-monitor-ingestion` uploads the
//!    same number of events to the same fake sink (`scripts/bench_python_ingestion.py`),
//!    measured the same way, and the CPU ratio to the shipper is printed.
//!
//! Run from `target/release` (or set `OKTA_SENTINEL_BIN_DIR`) so the release binaries are the
//! ones measured: `scripts/bench.sh` does all of it.

#[path = "../bench/procstat.rs"]
mod procstat;
#[path = "../bench/steady.rs"]
mod steady;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use world::fakes::log_analytics::{LaStats, LogAnalyticsFakeConfig};
use world::fakes::okta::OktaFakeConfig;
use world::local::{LocalWorld, WorldOptions};

use procstat::{ProcSample, RssSampler};
use world::storage_proxy::{CountingProxy, ProxyCounts};

/// Okta's page size (`limit=1000`), which the collector always asks for.
const PAGE_EVENTS: usize = 1000;

#[derive(Parser, Debug)]
#[command(
    name = "okta-sentinel-bench",
    about = "End-to-end benchmark of the collector and the shipper"
)]
struct Args {
    /// Events in the simulated org (and uploaded by the Python client).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// SHIPPER_CONCURRENCY of the measured shipper.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Python interpreter of a venv with `azure-monitor-ingestion` (enables phase 4).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The Python side of phase 4.
    #[arg(long, default_value = "scripts/bench_python_ingestion.py")]
    python_script: PathBuf,
    /// Talk to Azurite directly (no request counting; measures the proxy's influence).
    #[arg(long)]
    no_proxy: bool,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// Keep service logs here (default: a temporary directory).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Extra environment of the collector, `KEY=VALUE` (repeatable; experiments such as
    /// `MALLOC_ARENA_MAX=2`).
    #[arg(long = "collector-env", value_parser = key_value)]
    collector_env: Vec<(String, String)>,
    /// Extra environment of the shipper, `KEY=VALUE` (repeatable).
    #[arg(long = "shipper-env", value_parser = key_value)]
    shipper_env: Vec<(String, String)>,
    /// Instead of the throughput phases: a caught-up org publishing this many events a second,
    /// measured with production settings and extrapolated to a day (see `bench/steady.rs`).
    #[arg(long)]
    steady: Option<f64>,
    /// Measured span of `--steady` (after its warm-up).
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    measure: Duration,
    /// `OKTA_POLL_INTERVAL` of `--steady`.
    #[arg(long, default_value = "15s")]
    poll_interval: String,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// `(KEY, VALUE)` pairs as the borrowed form `start_collector`/`start_shipper` take.
fn env_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Figures of one measured process.
#[derive(Debug, Clone, Default)]
struct Measured {
    events: usize,
    wall_secs: f64,
    cpu_secs: f64,
    /// Of `cpu_secs`, the kernel's share (system time).
    sys_secs: f64,
    hwm_kib: u64,
    sampled_max_rss_kib: u64,
    storage: Option<ProxyCounts>,
    /// CPU the other parties used meanwhile (they share the machine's cores).
    neighbours: NeighbourCpu,
}

/// CPU seconds used by Azurite and by this bench process (the fakes and proxies) in a phase.
#[derive(Debug, Clone, Copy, Default)]
struct NeighbourCpu {
    azurite: f64,
    bench: f64,
}

impl NeighbourCpu {
    /// Cumulative CPU of Azurite's process group and of this process, now.
    fn now(world: &LocalWorld, ticks: f64) -> NeighbourCpu {
        NeighbourCpu {
            azurite: world
                .azurite
                .pid()
                .map(|p| procstat::group_cpu_secs(p, ticks))
                .unwrap_or(0.0),
            bench: procstat::sample(std::process::id(), ticks)
                .map(|s| s.cpu_secs)
                .unwrap_or(0.0),
        }
    }

    fn since(self, start: NeighbourCpu) -> NeighbourCpu {
        NeighbourCpu {
            azurite: self.azurite - start.azurite,
            bench: self.bench - start.bench,
        }
    }
}

impl Measured {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall_secs.max(1e-9)
    }

    fn cpu_per_100k(&self) -> f64 {
        self.cpu_secs * 100_000.0 / (self.events.max(1) as f64)
    }

    fn per_1000_events(&self, n: u64) -> f64 {
        n as f64 * 1000.0 / (self.events.max(1) as f64)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "events": self.events,
            "wall_secs": self.wall_secs,
            "events_per_sec": self.events_per_sec(),
            "cpu_secs": self.cpu_secs,
            "cpu_secs_per_100k_events": self.cpu_per_100k(),
            "sys_cpu_secs": self.sys_secs,
            "peak_rss_mib": self.hwm_kib as f64 / 1024.0,
            "sampled_max_rss_mib": self.sampled_max_rss_kib as f64 / 1024.0,
            "azurite_cpu_secs": self.neighbours.azurite,
            "bench_process_cpu_secs": self.neighbours.bench,
            "storage_requests": self.storage.as_ref().map(|s| json!({
                "total": s.total_requests(),
                "per_1000_events": self.per_1000_events(s.total_requests()),
                "by_kind": s.requests,
                "bytes_up": s.bytes_up,
                "bytes_down": s.bytes_down,
            })),
        })
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("okta-sentinel-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(rate) = args.steady {
        return steady::run(steady::SteadyArgs {
            rate,
            measure: args.measure,
            poll_interval: args.poll_interval.clone(),
            log_dir: args.log_dir.clone(),
            json: args.json.clone(),
        })
        .await;
    }
    let n = args.events;
    if n == 0 {
        bail!("--events must be positive");
    }
    let bins = world::procs::bin_dir()?;
    println!("binaries: {}", bins.display());
    if !bins.ends_with("release") {
        println!("WARNING: not measuring release binaries (run from target/release or set OKTA_SENTINEL_BIN_DIR)");
    }
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        // The harness passes it on to the binaries, and then every error value the Azure SDK
        // builds internally (e.g. for an absent optional header) captures a backtrace.
        println!("WARNING: RUST_BACKTRACE is set and is passed to the binaries; production does not set it (scripts/bench.sh unsets it)");
    }
    let ticks = procstat::clock_ticks();

    let seeding = Instant::now();
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            initial_events: n,
            // No effective rate limit: the collector's own speed is measured, not Okta's.
            rate_limit_per_window: 1_000_000,
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
    println!(
        "world up in {:.1}s (Azurite, fake org with {n} events, https Log Analytics fake); logs in {}",
        seeding.elapsed().as_secs_f64(),
        world.log_dir.display()
    );
    let storage = world.storage()?;
    storage
        .ensure_created()
        .await
        .context("creating the queue and container")?;
    let timeout = Duration::from_secs(args.phase_timeout);

    // Phase 1: the collector alone.
    let c_proxies = Proxies::start(&world, args.no_proxy).await?;
    let pages = n.div_ceil(PAGE_EVENTS) as u64;
    let conn = c_proxies.connection_string(&world);
    let n0 = NeighbourCpu::now(&world, ticks);
    let started = Instant::now();
    let mut env = vec![
        ("OKTA_POLL_INTERVAL", "200ms"),
        ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
    ];
    env.extend(env_refs(&args.collector_env));
    let mut collector = world.start_collector("collector", &env)?;
    let pid = collector.pid().context("collector pid")?;
    let sampler = RssSampler::start(pid, Duration::from_millis(100));
    loop {
        let queued = storage.queue.approximate_count().await.unwrap_or(0);
        if queued >= pages {
            break;
        }
        if let Some(st) = collector.try_exit()? {
            bail!("collector exited ({st}); see {}", collector.log.display());
        }
        if started.elapsed() > timeout {
            bail!(
                "collector queued {queued} of {pages} pages within {timeout:?}; see {}",
                collector.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let end = procstat::sample(pid, ticks)?;
    let neighbours = NeighbourCpu::now(&world, ticks).since(n0);
    let c = Measured {
        events: n,
        wall_secs: wall,
        cpu_secs: end.cpu_secs,
        sys_secs: end.sys_secs,
        hwm_kib: end.hwm_kib,
        sampled_max_rss_kib: sampler.max_kib(),
        storage: c_proxies.counts(),
        neighbours,
    };
    drop(sampler);
    collector
        .terminate(Duration::from_secs(20))
        .context("stopping the collector")?;
    let served = world.okta.stats().events_served;
    println!(
        "phase 1 (collector): {pages} pages queued in {wall:.2}s (Okta served {served} events, {} requests)",
        world.okta.stats().logs_requests
    );

    // Phase 2: the shipper drains the queue into the counting sink.
    let s_proxies = Proxies::start(&world, args.no_proxy).await?;
    let conn = s_proxies.connection_string(&world);
    let concurrency = args.concurrency.to_string();
    let before = world.la.stats();
    let n0 = NeighbourCpu::now(&world, ticks);
    let started = Instant::now();
    let mut env = vec![
        ("SHIPPER_CONCURRENCY", concurrency.as_str()),
        ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
    ];
    env.extend(env_refs(&args.shipper_env));
    let mut shipper = world.start_shipper("shipper", &env)?;
    let pid = shipper.pid().context("shipper pid")?;
    let sampler = RssSampler::start(pid, Duration::from_millis(100));
    let landed_at = loop {
        let st = world.la.stats();
        if st.accepted_rows.saturating_sub(before.accepted_rows) >= n as u64 {
            break started.elapsed().as_secs_f64();
        }
        if let Some(st) = shipper.try_exit()? {
            bail!("shipper exited ({st}); see {}", shipper.log.display());
        }
        if started.elapsed() > timeout {
            bail!(
                "shipper landed {} of {n} rows within {timeout:?}; see {}",
                st.accepted_rows - before.accepted_rows,
                shipper.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The last pages are finished (state, done marker, message delete) after their rows land.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while storage.queue.approximate_count().await.unwrap_or(1) > 0
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_at = started.elapsed().as_secs_f64();
    let end = procstat::sample(pid, ticks)?;
    let neighbours = NeighbourCpu::now(&world, ticks).since(n0);
    let s = Measured {
        events: n,
        wall_secs: landed_at,
        cpu_secs: end.cpu_secs,
        sys_secs: end.sys_secs,
        hwm_kib: end.hwm_kib,
        sampled_max_rss_kib: sampler.max_kib(),
        storage: s_proxies.counts(),
        neighbours,
    };
    drop(sampler);
    shipper
        .terminate(Duration::from_secs(30))
        .context("stopping the shipper")?;
    let after = world.la.stats();
    let sink = SinkDelta::between(&before, &after);
    println!(
        "phase 2 (shipper): {} rows landed in {landed_at:.2}s, queue empty at {drained_at:.2}s, {} duplicates",
        sink.rows, sink.duplicates
    );

    // Phase 4: the official Python client against the same sink.
    let py = match &args.python {
        Some(python) => {
            Some(python_phase(&world, python, &args.python_script, n, ticks, timeout).await?)
        }
        None => None,
    };

    report(&args, &c, &s, &sink, py.as_ref());
    if let Some(path) = &args.json {
        let doc = json!({
            "events": n,
            "concurrency": args.concurrency,
            "proxy": !args.no_proxy,
            "collector_env": args.collector_env,
            "shipper_env": args.shipper_env,
            "collector": c.to_json(),
            "shipper": s.to_json(),
            "sink": sink.to_json(),
            "python": py.as_ref().map(|p| p.to_json()),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// One process's blob and queue proxies (absent with `--no-proxy`).
struct Proxies {
    pair: Option<(CountingProxy, CountingProxy)>,
}

impl Proxies {
    async fn start(world: &LocalWorld, disabled: bool) -> anyhow::Result<Proxies> {
        if disabled {
            return Ok(Proxies { pair: None });
        }
        let blob: SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
        let queue: SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
        Ok(Proxies {
            pair: Some((
                CountingProxy::start(blob, "blob").await?,
                CountingProxy::start(queue, "queue").await?,
            )),
        })
    }

    /// The connection string a measured process gets: Azurite's, or one through the proxies.
    fn connection_string(&self, world: &LocalWorld) -> String {
        match &self.pair {
            None => world.azurite.connection_string(),
            Some((blob, queue)) => world
                .azurite
                .connection_string_via(Some(blob.addr()), Some(queue.addr())),
        }
    }

    fn counts(&self) -> Option<ProxyCounts> {
        self.pair.as_ref().map(|(blob, queue)| {
            let (b, q) = (blob.counts(), queue.counts());
            let mut requests = b.requests;
            requests.extend(q.requests);
            ProxyCounts {
                requests,
                bytes_up: b.bytes_up + q.bytes_up,
                bytes_down: b.bytes_down + q.bytes_down,
            }
        })
    }
}

/// What the sink accepted during one phase.
#[derive(Debug, Clone, Default)]
struct SinkDelta {
    rows: u64,
    requests: u64,
    bytes_on_wire: u64,
    bytes_decompressed: u64,
    duplicates: u64,
}

impl SinkDelta {
    fn between(a: &LaStats, b: &LaStats) -> SinkDelta {
        SinkDelta {
            rows: b.accepted_rows - a.accepted_rows,
            requests: b.accepted_requests - a.accepted_requests,
            bytes_on_wire: b.bytes_on_wire - a.bytes_on_wire,
            bytes_decompressed: b.bytes_decompressed - a.bytes_decompressed,
            duplicates: b.duplicate_rows - a.duplicate_rows,
        }
    }

    fn ratio(&self) -> f64 {
        self.bytes_decompressed as f64 / self.bytes_on_wire.max(1) as f64
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "rows": self.rows,
            "requests": self.requests,
            "bytes_on_wire": self.bytes_on_wire,
            "bytes_decompressed": self.bytes_decompressed,
            "compression_ratio": self.ratio(),
            "decompressed_bytes_per_row": self.bytes_decompressed as f64 / self.rows.max(1) as f64,
            "duplicates": self.duplicates,
        })
    }
}

/// Figures of the Python client run.
struct PythonRun {
    measured: Measured,
    sink: SinkDelta,
    /// What the script reported about itself (upload-only CPU, its own rusage).
    reported: serde_json::Value,
}

impl PythonRun {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "process": self.measured.to_json(),
            "sink": self.sink.to_json(),
            "reported": self.reported,
        })
    }

    fn upload_cpu_secs(&self) -> Option<f64> {
        self.reported
            .get("upload_cpu_secs")
            .and_then(|v| v.as_f64())
    }
}

/// Runs the Python client against the https fake with a token from the fake identity issuer.
async fn python_phase(
    world: &LocalWorld,
    python: &std::path::Path,
    script: &std::path::Path,
    n: usize,
    ticks: f64,
    timeout: Duration,
) -> anyhow::Result<PythonRun> {
    let tmp = tempfile::Builder::new()
        .prefix("okta-sentinel-bench")
        .tempdir()?;
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, world.la.ca_pem().context("the sink is not https")?)?;
    // The same generator as the fake org, with the `domain` the collector adds.
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(30);
    let mut events =
        world::fakes::okta_events::generate(1, PAGE_EVENTS, t0, chrono::Duration::milliseconds(60));
    for e in &mut events {
        e["domain"] = serde_json::Value::String(world.okta.domain());
    }
    let events_file = tmp.path().join("events.json");
    std::fs::write(&events_file, serde_json::to_vec(&events)?)?;
    let cfg = world.la.config();
    let token = world::fakes::token::issue(&cfg.audience, "bench", 3600);

    let before = world.la.stats();
    let n0 = NeighbourCpu::now(world, ticks);
    let started = Instant::now();
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .env("BENCH_ENDPOINT", world.la.endpoint())
        .env("BENCH_DCR", &cfg.dcr_immutable_id)
        .env("BENCH_STREAM", &cfg.stream)
        .env("BENCH_TOKEN", token)
        .env("BENCH_CA", &ca)
        .env("BENCH_EVENTS_FILE", &events_file)
        .env("BENCH_EVENTS", n.to_string())
        .env("BENCH_PAGE", PAGE_EVENTS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    let pid = child.id().context("python pid")?;
    let sampler = RssSampler::start(pid, Duration::from_millis(100));
    let stdout = child.stdout.take().context("python stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let reported = tokio::time::timeout(timeout, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(doc) = line.strip_prefix("RESULT ") {
                return Ok::<_, anyhow::Error>(serde_json::from_str::<serde_json::Value>(doc)?);
            }
            println!("python: {line}");
        }
        bail!("the Python client ended without a result (see its output above)")
    })
    .await
    .context("the Python client did not finish in time")??;
    let wall = started.elapsed().as_secs_f64();
    // The script waits for its stdin to close, so it can still be read from /proc here.
    let end: ProcSample = procstat::sample(pid, ticks)?;
    let neighbours = NeighbourCpu::now(world, ticks).since(n0);
    let max_rss = sampler.max_kib();
    drop(sampler);
    // Closing stdin lets the script exit.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.shutdown().await;
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("the Python client exited with {status}");
    }
    let after = world.la.stats();
    let wall = reported
        .get("upload_wall_secs")
        .and_then(|v| v.as_f64())
        .unwrap_or(wall);
    Ok(PythonRun {
        measured: Measured {
            events: n,
            wall_secs: wall,
            cpu_secs: end.cpu_secs,
            sys_secs: end.sys_secs,
            hwm_kib: end.hwm_kib,
            sampled_max_rss_kib: max_rss,
            storage: None,
            neighbours,
        },
        sink: SinkDelta::between(&before, &after),
        reported,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(args: &Args, c: &Measured, s: &Measured, sink: &SinkDelta, py: Option<&PythonRun>) {
    println!(
        "\n=== okta-sentinel end-to-end bench: {} events, shipper concurrency {} ===",
        args.events, args.concurrency
    );
    println!(
        "{:<28} {:>12} {:>16} {:>14} {:>14}",
        "process", "events/s", "CPU s/100k ev", "peak RSS MiB", "wall s"
    );
    for (name, m) in [
        ("collector (Okta → storage)", c),
        ("shipper (storage → sink)", s),
    ] {
        println!(
            "{:<28} {:>12.0} {:>16.3} {:>14.1} {:>14.2}",
            name,
            m.events_per_sec(),
            m.cpu_per_100k(),
            mib(m.hwm_kib),
            m.wall_secs
        );
    }
    if let Some(p) = py {
        let m = &p.measured;
        println!(
            "{:<28} {:>12.0} {:>16.3} {:>14.1} {:>14.2}",
            "python azure-monitor-ingestion",
            m.events_per_sec(),
            m.cpu_per_100k(),
            mib(m.hwm_kib),
            m.wall_secs
        );
    }
    println!("\nCPU seconds of the other parties during each phase (they share the same cores):");
    let mut phases = vec![("collector", c), ("shipper", s)];
    if let Some(p) = py {
        phases.push(("python", &p.measured));
    }
    for (name, m) in phases {
        println!(
            "  {name:<10} measured {:>6.2} (system {:>5.2})  Azurite {:>6.2}  bench process (fakes, proxies) {:>6.2}  over {:>6.2}s wall",
            m.cpu_secs, m.sys_secs, m.neighbours.azurite, m.neighbours.bench, m.wall_secs
        );
    }
    println!(
        "\nsink (shipper): {} rows in {} requests, {:.0} rows/request, {} bytes on the wire, {} decompressed ({:.0} B/row), compression {:.2}x",
        sink.rows,
        sink.requests,
        sink.rows as f64 / sink.requests.max(1) as f64,
        sink.bytes_on_wire,
        sink.bytes_decompressed,
        sink.bytes_decompressed as f64 / sink.rows.max(1) as f64,
        sink.ratio()
    );
    for (name, m) in [("collector", c), ("shipper", s)] {
        if let Some(st) = &m.storage {
            println!(
                "\nstorage requests, {name}: {} total = {:.2} per 1,000 events ({:.1} MB up, {:.1} MB down)",
                st.total_requests(),
                m.per_1000_events(st.total_requests()),
                st.bytes_up as f64 / 1e6,
                st.bytes_down as f64 / 1e6
            );
            for (kind, count) in &st.requests {
                println!(
                    "  {kind:<32} {count:>8} {:>10.2} /1k ev",
                    m.per_1000_events(*count)
                );
            }
        }
    }
    if let Some(p) = py {
        let m = &p.measured;
        println!(
            "\nsink (python): {} rows in {} requests, {} bytes on the wire, {} decompressed ({:.0} B/row), compression {:.2}x",
            p.sink.rows,
            p.sink.requests,
            p.sink.bytes_on_wire,
            p.sink.bytes_decompressed,
            p.sink.bytes_decompressed as f64 / p.sink.rows.max(1) as f64,
            p.sink.ratio()
        );
        println!(
            "python CPU / shipper CPU: {:.1}x (whole process, {:.3} vs {:.3} CPU s per 100k events)",
            m.cpu_secs / s.cpu_secs.max(1e-9),
            m.cpu_per_100k(),
            s.cpu_per_100k()
        );
        if let Some(up) = p.upload_cpu_secs() {
            println!(
                "python upload() calls only: {:.3} CPU s per 100k events = {:.1}x the shipper",
                up * 100_000.0 / m.events.max(1) as f64,
                up / s.cpu_secs.max(1e-9)
            );
        }
    }
    println!("\nOkta budget (pages/min = limit × 50 % token share × (1 − 0.3 reserve); 1,000 events/page):");
    println!(
        "{:>12} {:>10} {:>14} {:>10}",
        "limit/min", "pages/min", "events/min", "events/s"
    );
    let budget: BTreeMap<u32, f64> = [20u32, 60, 120, 600, 1200]
        .into_iter()
        .map(|l| (l, l as f64 * 0.5 * 0.7))
        .collect();
    for (limit, pages) in budget {
        println!(
            "{limit:>12} {pages:>10.1} {:>14.0} {:>10.0}",
            pages * 1000.0,
            pages * 1000.0 / 60.0
        );
    }
}
