//! `collector audit --from T --to T [--json]`: audits a span of the configured org now and
//! prints the result of each window (at most `AUDIT_WINDOW` long each).
//!
//! It runs beside a live collector without disturbing it: its Okta requests keep the pacer's
//! reserve and leave room for the live feed, and the audit lock makes it wait while the
//! collector's background audit runs. Exit code 0 when every window is complete or repaired,
//! 3 when one is incomplete (events parked as poison, or still missing after a repair).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use common::config;
use common::storage::Storage;

use super::budget::Budget;
use super::check::Auditor;
use super::lock;
use super::logs_query::LogsQuery;
use super::metrics::AuditMetrics;
use super::record::AuditRecord;
use super::window::{Window, AUDITABLE_AGE};
use crate::config::CollectorConfig;
use crate::okta::OktaClient;
use crate::wiring::Wiring;

/// Exit code when a window stays incomplete.
pub const INCOMPLETE_EXIT: u8 = 3;

/// The command's outcome when a window stays incomplete (exit code [`INCOMPLETE_EXIT`]).
#[derive(Debug, thiserror::Error)]
#[error("a window is incomplete: see the FAILED lines above")]
pub struct Incomplete;

/// Runs the command; fails with [`Incomplete`] when a window stays incomplete.
pub async fn run(cfg: &CollectorConfig, from: &str, to: &str, json: bool) -> anyhow::Result<()> {
    let now = Utc::now();
    let from = config::parse_time_or_ago("--from", from, now)?;
    let to = config::parse_time_or_ago("--to", to, now)?;
    let whole = Window::new(from, to).map_err(anyhow::Error::msg)?;
    if to > now {
        bail!("--to is in the future; an audit reads only the past");
    }
    if from < now - AUDITABLE_AGE {
        bail!("--from is more than 89 days back; Okta keeps the System Log for 90 days");
    }
    let settings = &cfg.audit;
    if settings.workspace_id.is_none() {
        bail!("LOG_ANALYTICS_WORKSPACE_ID is not set: the audit needs the workspace (customer id) to query");
    }
    let w = Wiring::new(cfg).await?;
    let storage = Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone())
        .context("connecting to Azure Storage")?;
    let credential = match &w.credential {
        Some(c) => c.clone(),
        None => {
            common::identity::managed_identity(cfg.azure_client_id.as_deref(), w.azure_http.clone())
                .context("AZURE_CLIENT_ID: cannot build the managed identity credential")?
        }
    };
    let la = LogsQuery::new(settings, w.azure_http.clone(), credential)
        .context("LOG_ANALYTICS_WORKSPACE_ID")?;
    let okta = OktaClient::new(
        cfg.origin.clone(),
        w.okta_credential(cfg)?,
        w.okta_http.clone(),
    )
    .context("building the Okta client")?;
    let budget = Arc::new(Budget::command(cfg.reserve));
    let metrics_registry = common::metrics::Metrics::new("collector");
    let metrics = AuditMetrics::new(&metrics_registry);
    let cancel = common::shutdown::install();

    // One audit at a time per org: wait out another holder (a killed audit's lease expires).
    let deadline = std::time::Instant::now() + cfg.lease * 3;
    let held = loop {
        match lock::try_acquire(&storage.blobs, &cfg.org, cfg.lease, &cancel).await? {
            Some(l) => break l,
            None if std::time::Instant::now() < deadline => {
                tokio::select! {
                    () = cancel.cancelled() => bail!("interrupted"),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            None => bail!("another audit of org {} is running (the collector's background audit?); try again later", cfg.org),
        }
    };
    let auditor = Auditor {
        org: &cfg.org,
        domain: &cfg.domain,
        blobs: &storage.blobs,
        queue: &storage.queue,
        okta: &okta,
        la: &la,
        budget: &budget,
        metrics: &metrics,
        confirm_delay: settings.confirm_delay,
        max_rows_per_query: settings.max_rows_per_query,
        trigger: "command",
    };
    let step = chrono::Duration::from_std(settings.window).unwrap_or(chrono::Duration::hours(1));
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut start = whole.from;
    let mut outcome = Ok(());
    while start < whole.to {
        let end = (start + step).min(whole.to);
        let part = Window {
            from: start,
            to: end,
        };
        match auditor.audit(&part, &held.lost).await {
            Ok(r) => records.push(r),
            Err(e) => {
                metrics.failures.inc();
                outcome = Err(anyhow::anyhow!("auditing {}: {e}", part.describe()));
                break;
            }
        }
        start = end;
    }
    held.release().await;
    tracing::info!(target: "stats", stats = %metrics_registry.stats_json(), "stats");
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        for r in &records {
            print_text(r);
        }
    }
    outcome?;
    if records.iter().any(|r| r.result == "incomplete") {
        return Err(Incomplete.into());
    }
    Ok(())
}

fn print_text(r: &AuditRecord) {
    let f = &r.figures;
    println!("window:        {}", r.window.describe());
    println!("result:        {}", r.result);
    println!(
        "okta events:   {}   in Log Analytics: {}   missing: {}",
        f.okta_events, f.la_events, f.missing
    );
    println!(
        "repaired:      {}   in flight: {}   parked: {}   duplicated: {}   not in Okta: {}",
        f.repaired, f.in_flight, f.parked, f.duplicated, f.not_in_okta
    );
    if f.parked > 0 {
        println!(
            "FAILED: {} missing events are in pages parked as poison: fix the cause (`shipper poison list`, `show`), then `shipper poison requeue`",
            f.parked
        );
    }
    if r.incomplete_after_repair {
        println!("FAILED: events are still missing after an earlier audit repaired this window: check the shipper's errors and the DCR (DCRLogErrors), then audit again");
    }
    println!();
}
