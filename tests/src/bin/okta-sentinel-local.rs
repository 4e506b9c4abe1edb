//! `okta-sentinel-local`: the whole pipeline on this machine (the README's *run* command).
//!
//! Starts Azurite, a simulated Okta org that keeps publishing events, the local Log Analytics,
//! managed-identity and Key Vault endpoints, then the real `collector` and `shipper` binaries,
//! and shows a live progress line. Ctrl-C stops everything (SIGTERM to the services, then the
//! fakes and Azurite) and prints a summary with the answers to the Okta connector's two sample
//! queries over the rows that landed. With `OKTA_DOMAIN` and a credential in the environment,
//! the collector pulls that real org instead of the simulated one.
//!
//! The collector's background completeness audit runs too, on short windows, against the local
//! Log Analytics' query endpoint; the progress line counts audited windows and the summary
//! shows the last result as `collector status` reports it (from the evidence records).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use world::fakes::log_analytics::LogAnalyticsFakeConfig;
use world::fakes::okta::OktaFakeConfig;
use world::local::{scrape_metric_sum, LocalWorld, PerMinute, SinkKind, WorldOptions};

/// The collector's health and metrics address in the local run.
const COLLECTOR_ADDR: &str = "127.0.0.1:9464";
/// Its Okta requests (every status) and handed-off pages.
const REQUESTS: &str = "okta_sentinel_okta_requests_total";
const PAGES: &str = "okta_sentinel_pages_collected_total";
/// Windows the audit finished (any result), its own Okta requests (not in [`REQUESTS`]), and
/// the events it found missing.
const AUDITED: &str = "okta_sentinel_audit_windows_total";
const AUDIT_REQUESTS: &str = "okta_sentinel_audit_okta_requests_total";
const AUDIT_MISSING: &str = "okta_sentinel_audit_missing_events_total";
/// The simulated org publishes events up to this late (`published` older than events already
/// served): a window is audited only once no late event can still land in it.
const SIMULATED_LATENESS: &str = "5m";

#[derive(Parser, Debug)]
#[command(
    name = "okta-sentinel-local",
    about = "Runs the whole okta-sentinel pipeline locally"
)]
struct Args {
    /// Events already in the simulated org's log at start.
    #[arg(long, default_value_t = 5000)]
    initial_events: usize,
    /// Events the simulated org publishes per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Use the legacy Data Collector API instead of the Logs Ingestion API.
    #[arg(long)]
    data_collector: bool,
    /// The collector's OKTA_POLL_INTERVAL: the production default, so the progress line shows
    /// the steady state a deployment would have (about 60 / interval requests a minute once
    /// caught up).
    #[arg(long, default_value = "15s")]
    poll_interval: humantime::Duration,
    /// Stop by itself after this long (e.g. 60s); default: until Ctrl-C.
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Keep service logs here (default: a temporary directory, removed at exit).
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
    /// The collector's background completeness audit (its AUDIT_ENABLED: true, false or auto).
    #[arg(long, env = "AUDIT_ENABLED", default_value = "true")]
    audit_enabled: String,
    /// Length of one audited window (AUDIT_WINDOW): short, so a run of a few minutes audits
    /// many windows.
    #[arg(long, env = "AUDIT_WINDOW", default_value = "1m")]
    audit_window: humantime::Duration,
    /// A window is audited once it ends this long before the newest event handed off
    /// (AUDIT_SETTLE); default: how late the simulated org publishes events.
    #[arg(long, env = "AUDIT_SETTLE", default_value = SIMULATED_LATENESS)]
    audit_settle: humantime::Duration,
    /// Wait between two background audits (AUDIT_PAUSE).
    #[arg(long, env = "AUDIT_PAUSE", default_value = "5s")]
    audit_pause: humantime::Duration,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("okta-sentinel-local: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // First thing: a Ctrl-C during start-up is then taken up by the loop below (everything is
    // stopped in order) instead of killing the runner and orphaning Azurite.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let real_org = std::env::var("OKTA_DOMAIN").ok().filter(|d| !d.is_empty());
    if let Some(domain) = &real_org {
        let has_credential = ["OKTA_API_TOKEN", "OKTA_CLIENT_ID"]
            .iter()
            .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()));
        if !has_credential {
            anyhow::bail!(
                "OKTA_DOMAIN={domain} is set without a credential: set OKTA_API_TOKEN, or \
                 OKTA_CLIENT_ID and OKTA_PRIVATE_KEY (or unset OKTA_DOMAIN for the simulated org)"
            );
        }
    }
    let sink = if args.data_collector {
        SinkKind::DataCollector
    } else {
        SinkKind::LogsIngestion
    };
    println!("starting Azurite and the local endpoints…");
    let okta = OktaFakeConfig {
        initial_events: args.initial_events,
        live_rate_per_sec: args.rate,
        repeat_probability: 0.002,
        late_probability: 0.01,
        ..OktaFakeConfig::default()
    };
    // Start a little before the simulated history (the world starts within a minute or two),
    // so that few audited windows are empty.
    let simulated_start = okta.history + chrono::Duration::minutes(2);
    let world = LocalWorld::start(WorldOptions {
        okta,
        la: LogAnalyticsFakeConfig::default(),
        sink,
        log_dir: args.log_dir.clone(),
        // Its own Azurite process: measured (bench) or shown (local run) apart from the tests'.
        azurite: world::azurite::AzuriteOptions {
            own_process: true,
            ..world::azurite::AzuriteOptions::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    let mut collector_extra: Vec<(String, String)> = vec![
        ("HTTP_ADDR".into(), COLLECTOR_ADDR.into()),
        ("OKTA_POLL_INTERVAL".into(), args.poll_interval.to_string()),
        ("AUDIT_ENABLED".into(), args.audit_enabled.clone()),
        ("AUDIT_WINDOW".into(), args.audit_window.to_string()),
        ("AUDIT_SETTLE".into(), args.audit_settle.to_string()),
        ("AUDIT_PAUSE".into(), args.audit_pause.to_string()),
        // Rows that look missing are asked for again after two polls (and at least 30 s):
        // by then a late event the collector had not polled yet has landed.
        (
            "AUDIT_CONFIRM_DELAY".into(),
            humantime::format_duration(
                (Duration::from(args.poll_interval) * 2).max(Duration::from_secs(30)),
            )
            .to_string(),
        ),
    ];
    collector_extra.extend(world.audit_env());
    if let Some(domain) = &real_org {
        println!("pulling the real org {domain} (credential from the environment)");
        // A real org's rate budget is shared with its other integrations: the production
        // start, not the test world's (the environment may still set OKTA_START or
        // OKTA_POLL_INTERVAL).
        collector_extra.push(("OKTA_START".into(), "1h".into()));
        for key in [
            "OKTA_DOMAIN",
            "OKTA_API_TOKEN",
            "OKTA_CLIENT_ID",
            "OKTA_PRIVATE_KEY",
            "OKTA_KEY_ID",
            "OKTA_START",
            "OKTA_POLL_INTERVAL",
        ] {
            if let Ok(v) = std::env::var(key) {
                collector_extra.push((key.into(), v));
            }
        }
    } else {
        collector_extra.push((
            "OKTA_START".into(),
            format!("{}m", simulated_start.num_minutes()),
        ));
        println!(
            "simulated Okta org at {} ({} events, then {}/s)",
            world.okta.base_url(),
            args.initial_events,
            args.rate
        );
    }
    let extra: Vec<(&str, &str)> = collector_extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut collector = world.start_collector("collector", &extra)?;
    let mut shipper = world.start_shipper("shipper", &[("HTTP_ADDR", "127.0.0.1:9465")])?;
    println!("collector: http://127.0.0.1:9464/metrics   shipper: http://127.0.0.1:9465/metrics   logs: {}", world.log_dir.display());
    println!(
        "processes: azurite {} collector {} shipper {}",
        world.azurite.pid().unwrap_or(0),
        collector.pid().unwrap_or(0),
        shipper.pid().unwrap_or(0)
    );
    println!("press Ctrl-C to stop\n");

    let storage = world.storage()?;
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from(d));
    let mut exited = None;
    // Requests and pages per minute over the last minute: the steady state (caught up, about
    // 60 / OKTA_POLL_INTERVAL requests a minute) shows once the backlog leaves the window.
    let mut requests_rate = PerMinute::new(Duration::from_secs(60));
    let mut pages_rate = PerMinute::new(Duration::from_secs(60));
    let mut totals = (0.0, 0.0);
    let mut audited = (0.0, 0.0, 0.0);
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        if let Some(st) = collector.try_exit()? {
            exited = Some(format!(
                "collector exited ({st}); see {}",
                collector.log.display()
            ));
            break;
        }
        if let Some(st) = shipper.try_exit()? {
            exited = Some(format!(
                "shipper exited ({st}); see {}",
                shipper.log.display()
            ));
            break;
        }
        let depth = storage.queue.approximate_count().await.ok();
        let rows = world.landed_rows();
        let newest = rows
            .iter()
            .filter_map(|r| r.get("TimeGenerated").and_then(|v| v.as_str()))
            .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .max();
        let lag =
            newest.map(|n| (chrono::Utc::now() - n.with_timezone(&chrono::Utc)).num_seconds());
        let released = if real_org.is_some() {
            "-".to_string()
        } else {
            world.okta.released_count().to_string()
        };
        let now = Instant::now();
        if let (Some(r), Some(p)) = (
            scrape_metric_sum(COLLECTOR_ADDR, REQUESTS).await,
            scrape_metric_sum(COLLECTOR_ADDR, PAGES).await,
        ) {
            requests_rate.record(now, r);
            pages_rate.record(now, p);
            totals = (r, p);
        }
        if let (Some(w), Some(r), Some(m)) = (
            scrape_metric_sum(COLLECTOR_ADDR, AUDITED).await,
            scrape_metric_sum(COLLECTOR_ADDR, AUDIT_REQUESTS).await,
            scrape_metric_sum(COLLECTOR_ADDR, AUDIT_MISSING).await,
        ) {
            audited = (w, r, m);
        }
        let per_min = |r: Option<f64>| r.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
        print!(
            "\r[{:>5}s] okta released {:>7} | okta requests {:>5} ({:>5}/min) | pages {:>5}/min | queued {:>4} | shipped {:>7} rows | lag {:>4} | audited {:>3} windows ({} requests), {} missing   ",
            started.elapsed().as_secs(),
            released,
            totals.0,
            per_min(requests_rate.rate()),
            per_min(pages_rate.rate()),
            depth.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
            rows.len(),
            lag.map(|l| format!("{l}s")).unwrap_or_else(|| "-".into()),
            audited.0,
            audited.1,
            audited.2,
        );
        let _ = std::io::stdout().flush();
    }
    println!("\nstopping…");
    let c = collector.terminate(Duration::from_secs(20));
    let s = shipper.terminate(Duration::from_secs(40));
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "\ncollector: {} Okta requests and {} pages in {:.1} min — {:.1} requests/min and {:.1} pages/min overall; last minute: {} requests/min, {} pages/min; the audit's own Okta requests: {}",
        totals.0,
        totals.1,
        minutes,
        totals.0 / minutes.max(f64::EPSILON),
        totals.1 / minutes.max(f64::EPSILON),
        requests_rate.rate().map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        pages_rate.rate().map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        audited.1,
    );
    summary(&world, real_org.is_none());
    let mut status_env = world.collector_env();
    status_env.extend(collector_extra);
    println!("\n{}", audit_summary(status_env, &args.audit_enabled).await);
    drop(world);
    if let Some(why) = exited {
        anyhow::bail!(why);
    }
    for (what, stopped) in [("collector", c), ("shipper", s)] {
        match stopped.with_context(|| format!("stopping the {what}"))? {
            Some(st) if !st.success() => anyhow::bail!("the {what} did not stop cleanly ({st})"),
            _ => {}
        }
    }
    Ok(())
}

/// Prints what landed and the connector's two sample queries.
fn summary(world: &LocalWorld, simulated: bool) {
    let rows = world.landed_rows();
    println!("\n=== summary ===");
    if simulated {
        let d = world.delivery();
        println!(
            "released by the org: {}   landed (distinct): {}   not yet landed: {}   duplicates: {}",
            d.released,
            d.landed_distinct,
            d.missing.len(),
            d.duplicates
        );
    }
    println!("rows in Okta_CL: {}", rows.len());
    let mut ips: HashMap<String, usize> = HashMap::new();
    let mut apps: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        if let Some(ip) = r.get("client_ipAddress_s").and_then(|v| v.as_str()) {
            *ips.entry(ip.to_string()).or_default() += 1;
        }
        // mv-expand todynamic(target_s) | where target_s.type == "AppInstance"
        let targets = r
            .get("target_s")
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        if let Some(serde_json::Value::Array(ts)) = targets {
            for t in ts {
                if t.get("type").and_then(|v| v.as_str()) == Some("AppInstance") {
                    let name = t
                        .get("displayName")
                        .and_then(|v| v.as_str())
                        .unwrap_or("(no name)");
                    *apps.entry(name.to_string()).or_default() += 1;
                }
            }
        }
    }
    print_top(
        "Okta_CL | summarize count() by client_ipAddress_s | top 10 by count_",
        &ips,
    );
    print_top(
        "Okta_CL | mv-expand todynamic(target_s) | where target_s.type == \"AppInstance\" | summarize count() by tostring(target_s.displayName) | top 10 by count_",
        &apps,
    );
}

fn print_top(query: &str, counts: &HashMap<String, usize>) {
    println!("\n{query}");
    let mut v: Vec<(&String, &usize)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        println!("  (no rows)");
    }
    for (k, n) in v.into_iter().take(10) {
        println!("  {n:>7}  {k}");
    }
}

/// The audit's line of the summary: the last audited window and what its evidence record says,
/// as `collector status --json` reads it from storage (nothing here is computed by the runner).
async fn audit_summary(env: std::collections::BTreeMap<String, String>, enabled: &str) -> String {
    let asked = tokio::task::spawn_blocking(move || {
        world::procs::run_command("collector", &["status", "--json"], &env)
    })
    .await;
    let (status, out, err) = match asked {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return format!("audit: `collector status` could not run: {e:#}"),
        Err(e) => return format!("audit: `collector status` could not run: {e}"),
    };
    if !status.success() {
        return format!(
            "audit: `collector status` failed ({status}): {}",
            err.trim()
        );
    }
    let doc: serde_json::Value = match serde_json::from_str(&out) {
        Ok(d) => d,
        Err(_) => return format!("audit: `collector status` said: {}", out.trim()),
    };
    let audit = &doc["audit"];
    if audit.is_null() {
        // The collector decides what the setting means; this only repeats it.
        return format!(
            "audit: no window audited (--audit-enabled {enabled}; when on, the collector audits \
             a window once it is caught up and the window ended AUDIT_SETTLE before the newest \
             event: run longer)"
        );
    }
    let last = &audit["last"];
    let n = |k: &str| last[k].as_u64().unwrap_or(0);
    format!(
        "audit: last window {}: {} in Okta, {} in Log Analytics, {} missing, {} repaired, {} in flight, {} parked, {} duplicated, {} not in Okta — {} ({} audit{} of it, {})\n       {} windows audited between {} and {} (evidence: audit/{}/windows/)",
        span(&last["window"]["from"], &last["window"]["to"]),
        n("okta_events"),
        n("la_events"),
        n("missing"),
        n("repaired"),
        n("in_flight"),
        n("parked"),
        n("duplicated"),
        n("not_in_okta"),
        last["result"].as_str().unwrap_or("?"),
        n("audits"),
        if n("audits") == 1 { "" } else { "s" },
        last["trigger"].as_str().unwrap_or("?"),
        audit["windows"],
        clock(&audit["audited_from"]),
        clock(&audit["audited_to"]),
        doc["org"].as_str().unwrap_or("?"),
    )
}

/// `HH:MM–HH:MM` (UTC; seconds shown when a bound is not on a minute).
fn span(from: &serde_json::Value, to: &serde_json::Value) -> String {
    format!("{}–{} UTC", clock(from), clock(to))
}

fn clock(t: &serde_json::Value) -> String {
    let Some(t) = t
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return "?".into();
    };
    let t = t.with_timezone(&chrono::Utc);
    if chrono::Timelike::second(&t) == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}
