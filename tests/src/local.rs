//! [`LocalWorld`]: Azurite, the fake Okta org, the fake Log Analytics, the managed-identity
//! and Key Vault fakes, wired together, with helpers to run the real binaries against them.
//!
//! The end-to-end, crash and fault suites and the `okta-sentinel-local` run command all use
//! it, so "what the suite tests" and "what a newcomer runs" are the same world.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::azurite::{Azurite, AzuriteOptions};
use crate::fakes::identity::{IdentityFake, IdentityFakeConfig};
use crate::fakes::key_vault::{KeyVaultFake, KeyVaultFakeConfig};
use crate::fakes::log_analytics::{LogAnalyticsFake, LogAnalyticsFakeConfig, Row};
use crate::fakes::okta::{OktaFake, OktaFakeConfig};
use crate::procs::Service;

/// Which sink the shipper uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    LogsIngestion,
    DataCollector,
}

/// How to build the world.
pub struct WorldOptions {
    pub okta: OktaFakeConfig,
    pub la: LogAnalyticsFakeConfig,
    pub azurite: AzuriteOptions,
    pub sink: SinkKind,
    /// Put the Okta token and the workspace key in the Key Vault fake (read through managed
    /// identity), instead of passing them as environment variables.
    pub secrets_in_vault: bool,
    /// Extra environment for both binaries (test-time knobs).
    pub env: BTreeMap<String, String>,
    /// Where service logs go; a temp dir when `None`.
    pub log_dir: Option<PathBuf>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            okta: OktaFakeConfig::default(),
            la: LogAnalyticsFakeConfig::default(),
            azurite: AzuriteOptions::default(),
            sink: SinkKind::LogsIngestion,
            secrets_in_vault: false,
            env: BTreeMap::new(),
            log_dir: None,
        }
    }
}

/// The running world. Dropping it stops every fake and Azurite.
pub struct LocalWorld {
    pub azurite: Azurite,
    pub okta: OktaFake,
    pub la: LogAnalyticsFake,
    pub identity: IdentityFake,
    pub vault: Option<KeyVaultFake>,
    pub sink: SinkKind,
    pub log_dir: PathBuf,
    /// The world's queue and container (`OKTA_QUEUE`, `OKTA_CONTAINER`): the defaults in an
    /// Azurite of its own, names of its own in the process-wide one.
    queue: String,
    container: String,
    ca_file: PathBuf,
    extra_env: BTreeMap<String, String>,
    /// Scratch directory (logs, CA file): deleted with the world, kept after a failure.
    tmp: Option<tempfile::TempDir>,
}

impl Drop for LocalWorld {
    /// A world dropped while its test panics, or after any wait of this binary timed out
    /// ([`crate::procs::failure_seen`]: a test returning that error drops its world before the
    /// error is reported), keeps its logs and says where: a one-off failure can be read.
    fn drop(&mut self) {
        if std::thread::panicking() || crate::procs::failure_seen() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("world logs kept in {}", tmp.keep().display());
            }
        }
    }
}

/// The SSWS token the fake org accepts by default.
pub const TEST_SSWS_TOKEN: &str = "test-ssws-token";

impl LocalWorld {
    pub async fn start(opts: WorldOptions) -> anyhow::Result<LocalWorld> {
        let tmp = tempfile::Builder::new()
            .prefix("okta-sentinel-world")
            .tempdir()?;
        let log_dir = opts
            .log_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("logs"));
        std::fs::create_dir_all(&log_dir)?;
        let ca_file = crate::tls::shared_ca().write_ca_file(tmp.path())?;
        let azurite = Azurite::for_world(opts.azurite.clone())
            .await
            .context("starting Azurite")?;
        let (queue, container) = if azurite.is_shared() {
            static WORLDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = WORLDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (format!("okta-pages-w{n}"), format!("okta-sentinel-w{n}"))
        } else {
            ("okta-pages".to_string(), "okta-sentinel".to_string())
        };
        let okta = OktaFake::start(opts.okta.clone())
            .await
            .context("starting the Okta fake")?;
        let la = LogAnalyticsFake::start(opts.la.clone())
            .await
            .context("starting the Log Analytics fake")?;
        let identity = IdentityFake::start(IdentityFakeConfig::default())
            .await
            .context("starting the identity fake")?;
        let vault = if opts.secrets_in_vault {
            let v = KeyVaultFake::start(KeyVaultFakeConfig::default()).await?;
            let token = opts.okta.ssws_tokens.first().cloned().unwrap_or_default();
            v.set_secret(&okta_secret_name(&okta.domain()), &token);
            v.set_secret("workspace-key", &opts.la.workspace_key_b64);
            Some(v)
        } else {
            None
        };
        Ok(LocalWorld {
            azurite,
            okta,
            la,
            identity,
            vault,
            sink: opts.sink,
            log_dir,
            queue,
            container,
            ca_file,
            extra_env: opts.env,
            tmp: Some(tmp),
        })
    }

    /// Environment shared by both binaries.
    pub fn common_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "AZURE_STORAGE_CONNECTION_STRING".into(),
            self.azurite.connection_string(),
        );
        env.insert("OKTA_QUEUE".into(), self.queue.clone());
        env.insert("OKTA_CONTAINER".into(), self.container.clone());
        env.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
        env.insert("IDENTITY_ENDPOINT".into(), self.identity.endpoint());
        env.insert("IDENTITY_HEADER".into(), self.identity.header_secret());
        env.insert(
            "OKTA_SENTINEL_EXTRA_CA".into(),
            self.ca_file.display().to_string(),
        );
        env.insert("STATS_INTERVAL".into(), "5s".into());
        env.insert("LEADER_LEASE_DURATION".into(), "15s".into());
        env.insert("STATE_LEASE_DURATION".into(), "15s".into());
        env.insert("VISIBILITY_TIMEOUT".into(), "15s".into());
        env.insert("BREAKER_OPEN_TIME".into(), "2s".into());
        env.insert("SHIPPER_IDLE_POLL".into(), "500ms".into());
        env.insert("HAND_BACK_DELAY".into(), "1s".into());
        env.insert("SHUTDOWN_GRACE".into(), "10s".into());
        if let Some(v) = &self.vault {
            env.insert("KEY_VAULT_URL".into(), v.url());
        }
        env
    }

    /// Environment of a collector for the fake org.
    pub fn collector_env(&self) -> BTreeMap<String, String> {
        let mut env = self.common_env();
        env.insert("OKTA_DOMAIN".into(), self.okta.base_url());
        if self.vault.is_none() {
            env.insert("OKTA_API_TOKEN".into(), TEST_SSWS_TOKEN.into());
        }
        env.insert("OKTA_POLL_INTERVAL".into(), "500ms".into());
        env.insert("OKTA_REFUSED_RETRY".into(), "2s".into());
        env.insert("OKTA_START".into(), "2h".into());
        env.extend(self.extra_env.clone());
        env
    }

    /// Environment that points a collector's completeness audit at the fake Log Analytics'
    /// Logs Query endpoint (tokens for its audience come from the identity fake), reading the
    /// table the world's sink writes. The background audit's own knobs (`AUDIT_ENABLED`,
    /// `AUDIT_WINDOW`, …) are the caller's.
    pub fn audit_env(&self) -> BTreeMap<String, String> {
        let cfg = self.la.config();
        let mut env = BTreeMap::new();
        env.insert(
            "LOG_ANALYTICS_WORKSPACE_ID".into(),
            cfg.workspace_id.clone(),
        );
        env.insert(
            "LOG_ANALYTICS_QUERY_ENDPOINT".into(),
            self.la.query_endpoint(),
        );
        if self.sink == SinkKind::DataCollector {
            env.insert("AUDIT_TABLE".into(), format!("{}_CL", cfg.log_type));
        }
        env
    }

    /// Environment of a shipper for the fake Log Analytics.
    pub fn shipper_env(&self) -> BTreeMap<String, String> {
        let mut env = self.common_env();
        let cfg = self.la.config();
        match self.sink {
            SinkKind::LogsIngestion => {
                env.insert("SINK".into(), "logs-ingestion".into());
                env.insert("LOGS_INGESTION_ENDPOINT".into(), self.la.endpoint());
                env.insert("DCR_IMMUTABLE_ID".into(), cfg.dcr_immutable_id.clone());
                env.insert("DCR_STREAM".into(), cfg.stream.clone());
            }
            SinkKind::DataCollector => {
                env.insert("SINK".into(), "data-collector".into());
                env.insert("WORKSPACE_ID".into(), cfg.workspace_id.clone());
                env.insert("LOG_ANALYTICS_URI".into(), self.la.data_collector_uri());
                env.insert("LOG_TYPE".into(), cfg.log_type.clone());
                if self.vault.is_none() {
                    env.insert("WORKSPACE_KEY".into(), cfg.workspace_key_b64.clone());
                }
            }
        }
        env.extend(self.extra_env.clone());
        env
    }

    pub fn start_collector(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Service> {
        let mut env = self.collector_env();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Service::start("collector", name, &[], &env, &self.log_dir)
    }

    pub fn start_shipper(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Service> {
        let mut env = self.shipper_env();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Service::start("shipper", name, &[], &env, &self.log_dir)
    }

    /// A storage client straight to this world's Azurite (the binaries' queue and container).
    pub fn storage(&self) -> anyhow::Result<common::storage::Storage> {
        let args = common::storage::StorageArgs {
            connection_string: Some(common::secrets::SecretString::new(
                self.azurite.connection_string(),
            )),
            queue: self.queue.clone(),
            container: self.container.clone(),
            ..Default::default()
        };
        let settings = args.validate()?;
        let http = common::http::azure_client().map_err(anyhow::Error::msg)?;
        Ok(common::storage::Storage::connect(&settings, http, None)?)
    }

    /// The world's queue (`OKTA_QUEUE`).
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The world's blob container (`OKTA_CONTAINER`).
    pub fn container_name(&self) -> &str {
        &self.container
    }

    /// Rows that landed through the configured sink.
    pub fn landed_rows(&self) -> Vec<Row> {
        match self.sink {
            SinkKind::LogsIngestion => self.la.rows(),
            SinkKind::DataCollector => self.la.dc_rows(),
        }
    }

    /// How many times each uuid landed.
    pub fn landed_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for row in self.landed_rows() {
            if let Some(u) = row.get("uuid_g").and_then(|v| v.as_str()) {
                *counts.entry(u.to_ascii_lowercase()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Compares what the org released with what landed.
    pub fn delivery(&self) -> Delivery {
        let counts = self.landed_counts();
        let released = self.okta.released_uuids();
        let mut missing = Vec::new();
        let mut duplicated = 0;
        for u in &released {
            match counts.get(&u.to_ascii_lowercase()) {
                None => missing.push(u.clone()),
                Some(n) if *n > 1 => duplicated += n - 1,
                _ => {}
            }
        }
        Delivery {
            released: released.len(),
            landed_distinct: counts.len(),
            missing,
            duplicates: duplicated,
        }
    }

    /// Waits until every released event landed (or `timeout`).
    pub async fn wait_all_landed(&self, timeout: Duration) -> anyhow::Result<Delivery> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let d = self.delivery();
            if d.missing.is_empty() && d.released > 0 {
                return Ok(d);
            }
            if std::time::Instant::now() > deadline {
                crate::procs::note_failure();
                anyhow::bail!(
                    "not every event landed within {timeout:?}: {} released, {} missing (first: {:?}); logs in {}",
                    d.released,
                    d.missing.len(),
                    d.missing.first(),
                    self.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// What landed compared with what was released.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub released: usize,
    pub landed_distinct: usize,
    pub missing: Vec<String>,
    /// Extra copies beyond the first.
    pub duplicates: usize,
}

/// The collector's default Key Vault secret name for an org whose domain is `host:port`.
pub fn okta_secret_name(domain: &str) -> String {
    let key = domain.to_ascii_lowercase().replace(':', "-");
    format!("okta-{}-token", key.replace('.', "-"))
}

/// The per-minute rate of a growing counter over a sliding window (the last minute, or since
/// the first sample while the run is younger), so the local run's progress line shows the
/// steady state — a caught-up collector's requests and pages per minute — not an average
/// dominated by the initial backlog.
#[derive(Debug, Clone)]
pub struct PerMinute {
    window: Duration,
    samples: VecDeque<(Instant, f64)>,
}

impl PerMinute {
    pub fn new(window: Duration) -> Self {
        PerMinute {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the counter's `total` at `at` (samples in time order).
    pub fn record(&mut self, at: Instant, total: f64) {
        self.samples.push_back((at, total));
        // Keep one sample at or beyond the window's start, so the rate spans the full window.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Increase per minute between the oldest and the newest sample kept; `None` before two
    /// samples.
    pub fn rate(&self) -> Option<f64> {
        let (t0, v0) = self.samples.front()?;
        let (t1, v1) = self.samples.back()?;
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs > 0.0).then(|| (v1 - v0).max(0.0) * 60.0 / secs)
    }
}

/// The sum of every sample of metric `name` on a service's `/metrics` at `addr` (e.g. the
/// collector's `okta_sentinel_okta_requests_total` over all statuses); `None` when it does
/// not answer.
pub async fn scrape_metric_sum(addr: &str, name: &str) -> Option<f64> {
    let body = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut sum = 0.0;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        if metric == name {
            sum += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_minute_spans_the_last_window_only() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = PerMinute::new(Duration::from_secs(60));
        assert_eq!(r.rate(), None);
        r.record(at(0), 0.0);
        assert_eq!(r.rate(), None);
        // A backlog: 100 in the first 10 s.
        r.record(at(10), 100.0);
        assert_eq!(r.rate(), Some(600.0));
        // Then 4 a minute for two minutes: the backlog leaves the window.
        for s in (20..=130).step_by(15) {
            r.record(at(s), 100.0 + (s - 10) as f64 * 4.0 / 60.0);
        }
        let rate = r.rate().unwrap_or_default();
        assert!((rate - 4.0).abs() < 0.01, "{rate}");
    }
}
