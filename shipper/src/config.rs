//! The shipper's settings: flags that default from the environment (docs/design.md §3) and their
//! validation. Errors name the variable and what to fix.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use common::config::{self, ConfigError, ServiceArgs};
use common::secrets::SecretString;
use common::storage::{StorageArgs, StorageSettings};
use url::Url;

#[derive(Parser, Debug)]
#[command(
    name = "shipper",
    version,
    about = "Ships Okta System Log pages from the queue to Log Analytics, exactly once per page"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: ShipperArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Ship (the default).
    Run,
    /// Check every dependency with the shipper's identity and configuration; one OK or
    /// FAILED line (with the fix) per check; exit 0 when all are OK, 1 otherwise.
    Doctor,
    /// Inspect, requeue or purge poison records.
    Poison {
        #[command(subcommand)]
        action: PoisonAction,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum PoisonAction {
    /// List poison records.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one record (`{org}/{epoch}/{seq}` or `_undecodable/{message id}`).
    Show { id: String },
    /// Put pages back on the queue; progress is kept and the failure count reset.
    Requeue {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete poison records (and their page blobs and states).
    Purge {
        /// Only records older than this (e.g. 7d).
        #[arg(long)]
        older_than: Option<String>,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Logs Ingestion API (DCR), managed identity.
    LogsIngestion,
    /// Legacy HTTP Data Collector API, SharedKey (best effort, for classic tables).
    DataCollector,
}

#[derive(Args, Debug, Clone)]
pub struct ShipperArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[arg(
        long,
        env = "SINK",
        value_enum,
        default_value = "logs-ingestion",
        global = true
    )]
    pub sink: SinkKind,
    /// DCE or DCR ingestion endpoint (https).
    #[arg(long, env = "LOGS_INGESTION_ENDPOINT", global = true)]
    pub logs_ingestion_endpoint: Option<String>,
    #[arg(long, env = "DCR_IMMUTABLE_ID", global = true)]
    pub dcr_immutable_id: Option<String>,
    #[arg(
        long,
        env = "DCR_STREAM",
        default_value = "Custom-Okta_CL",
        global = true
    )]
    pub dcr_stream: String,
    #[arg(
        long,
        env = "AZURE_MONITOR_AUDIENCE",
        default_value = "https://monitor.azure.com",
        global = true
    )]
    pub azure_monitor_audience: String,
    #[arg(long, env = "WORKSPACE_ID", global = true)]
    pub workspace_id: Option<String>,
    #[arg(long, env = "WORKSPACE_KEY", hide_env_values = true, global = true)]
    pub workspace_key: Option<String>,
    #[arg(
        long,
        env = "WORKSPACE_KEY_SECRET",
        default_value = "workspace-key",
        global = true
    )]
    pub workspace_key_secret: String,
    #[arg(long, env = "LOG_TYPE", default_value = "Okta", global = true)]
    pub log_type: String,
    /// Origin of the Data Collector API; default https://{WORKSPACE_ID}.ods.opinsights.azure.com.
    #[arg(long, env = "LOG_ANALYTICS_URI", global = true)]
    pub log_analytics_uri: Option<String>,
    #[arg(long, env = "SHIPPER_CONCURRENCY", default_value_t = 4, global = true)]
    pub concurrency: usize,
    #[arg(long, env = "SHIPPER_MAX_DEQUEUE", default_value_t = 5, global = true)]
    pub max_dequeue: u32,
    /// The table was deployed without the columns whose names exceed 45 characters (Bicep
    /// `omitOverlongColumns=true`): their values go to additionalFields_s instead.
    #[arg(
        long,
        env = "OMIT_OVERLONG_COLUMNS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub omit_overlong_columns: bool,
    #[command(flatten)]
    pub tuning: TuningArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Tuning knobs: the defaults suit production; tests shorten them to keep failure suites
/// within minutes (docs/design.md §6). Listed by `--help`, hidden from `-h`. Durations are
/// `humantime` (`500ms`, `15s`, `2m`, `7d`).
#[derive(Args, Debug, Clone)]
pub struct TuningArgs {
    /// Visibility timeout of a received message, renewed while its page is worked on (5s–7d).
    #[arg(long, env = "VISIBILITY_TIMEOUT", default_value = "120s", value_parser = duration, hide_short_help = true, global = true)]
    pub visibility_timeout: Duration,
    /// Lease on a page state, renewed while the page is worked on (15s–60s, the blob lease
    /// limits). A replica that dies holds its pages this long.
    #[arg(long, env = "STATE_LEASE_DURATION", default_value = "60s", value_parser = duration, hide_short_help = true, global = true)]
    pub state_lease_duration: Duration,
    /// How long the breaker stays open before one page probes the sink again.
    #[arg(long, env = "BREAKER_OPEN_TIME", default_value = "60s", value_parser = duration, hide_short_help = true, global = true)]
    pub breaker_open_time: Duration,
    /// Longest wait between two receives on an empty queue (each receive is a billed
    /// storage transaction; half of it is added to the delivery latency on average).
    #[arg(long, env = "SHIPPER_IDLE_POLL", default_value = "4s", value_parser = duration, hide_short_help = true, global = true)]
    pub idle_poll: Duration,
    /// Delay before a handed-back message (lease held elsewhere, newer envelope) is seen
    /// again; a page-caused failure waits this times its failure count.
    #[arg(long, env = "HAND_BACK_DELAY", default_value = "30s", value_parser = duration, hide_short_help = true, global = true)]
    pub hand_back_delay: Duration,
    /// Interval of the one-line `stats` log record and of the poison-record count.
    #[arg(long, env = "STATS_INTERVAL", default_value = "60s", value_parser = duration, hide_short_help = true, global = true)]
    pub stats_interval: Duration,
    /// Time to finish in-flight pages after SIGTERM; then requests to the sink are cut and
    /// the rest gets at most 10 s more. Leave at least 15 s to the platform's termination
    /// grace period (the Bicep sets it 15 s shorter).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = duration, hide_short_help = true, global = true)]
    pub shutdown_grace: Duration,
    /// Transient failures of one chunk, while the sink accepts other chunks, after which the
    /// page counts as at fault (it ends in poison if that persists) (2–1000).
    #[arg(long, env = "CHUNK_MAX_TRANSIENT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=1000), hide_short_help = true, global = true)]
    pub chunk_max_transient: u32,
    /// gzip level of Logs Ingestion request bodies: 1 (the fastest, default) or 3 (igzip's
    /// levels: a better ratio for more CPU); 0 sends bodies uncompressed (no
    /// `Content-Encoding`): less shipper CPU for several times the bytes on the wire (rows
    /// are billed by their uncompressed size either way; BENCHMARKS.md).
    #[arg(long, env = "SINK_GZIP_LEVEL", default_value_t = 1, value_parser = gzip_level, hide_short_help = true, global = true)]
    pub sink_gzip_level: u32,
}

/// A `humantime` duration (`500ms`, `15s`, `7d`).
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 500ms, 15s, 5m, 7d"))
}

/// Where the shipper posts.
#[derive(Debug, Clone)]
pub enum SinkSettings {
    LogsIngestion {
        endpoint: Url,
        dcr_immutable_id: String,
        stream: String,
        audience: String,
    },
    DataCollector {
        workspace_id: String,
        key: WorkspaceKey,
        log_type: String,
        uri: Url,
    },
}

#[derive(Debug, Clone)]
pub enum WorkspaceKey {
    Value(SecretString),
    Vault { secret: String },
}

/// The tuning knobs, validated (see [`TuningArgs`] for each one's meaning and default).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `VISIBILITY_TIMEOUT`: of a received message, renewed while its page is worked on.
    pub visibility: Duration,
    /// `STATE_LEASE_DURATION`: lease on a page state (15–60 s).
    pub state_lease: Duration,
    /// `BREAKER_OPEN_TIME`: how long the breaker stays open before one page probes again.
    pub breaker_open: Duration,
    /// `SHIPPER_IDLE_POLL`: longest wait between two receives on an empty queue.
    pub idle_poll: Duration,
    /// `HAND_BACK_DELAY`: before a handed-back message is seen again.
    pub hand_back: Duration,
    /// `STATS_INTERVAL`: of the `stats` log record and the poison-record count.
    pub stats_interval: Duration,
    /// `SHUTDOWN_GRACE`: to finish in-flight pages after SIGTERM.
    pub grace: Duration,
    /// `CHUNK_MAX_TRANSIENT`: transient failures of one chunk, while the sink accepts
    /// others, after which the page counts as at fault.
    pub chunk_max_transient: u32,
    /// `SINK_GZIP_LEVEL`: compression of Logs Ingestion bodies, `None` for none (0).
    pub gzip: Option<common::gzip::Level>,
    /// Which manifest columns the table declares (`OMIT_OVERLONG_COLUMNS`).
    pub columns: crate::rows::TableColumns,
}

/// The validated configuration of every shipper command.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Queue and container, and how to authenticate to them.
    pub storage: StorageSettings,
    /// `None` for the poison commands, which never post.
    pub sink: Option<SinkSettings>,
    /// `SHIPPER_CONCURRENCY`: pages in flight in this replica.
    pub concurrency: usize,
    /// `SHIPPER_MAX_DEQUEUE`: page-caused failures before a page is parked as poison.
    pub max_dequeue: u32,
    /// `KEY_VAULT_URL`, when secrets come from a vault.
    pub key_vault_url: Option<Url>,
    /// `AZURE_CLIENT_ID`: the user-assigned managed identity, when not the system one.
    pub azure_client_id: Option<String>,
    /// `HTTP_ADDR`: `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: SocketAddr,
    /// The tuning knobs.
    pub tuning: Tuning,
}

impl ShipperArgs {
    /// Validates what every command needs (storage) plus, for `run`, the sink.
    pub fn validate(&self, with_sink: bool) -> Result<ShipperConfig, ConfigError> {
        let storage = self
            .storage
            .validate()
            .map_err(|e| ConfigError::named_in_message(e.to_string()))?;
        let service = self.service.validate("127.0.0.1:9465")?;
        let key_vault_url = service.key_vault_url.clone();
        let sink = if with_sink {
            Some(self.sink_settings(key_vault_url.is_some())?)
        } else {
            None
        };
        if !(1..=64).contains(&self.concurrency) {
            return Err(ConfigError::new(
                "SHIPPER_CONCURRENCY",
                "must be between 1 and 64",
            ));
        }
        if !(1..=100).contains(&self.max_dequeue) {
            return Err(ConfigError::new(
                "SHIPPER_MAX_DEQUEUE",
                "must be between 1 and 100",
            ));
        }
        let t = &self.tuning;
        let state_lease = t.state_lease_duration;
        if !(15..=60).contains(&state_lease.as_secs()) || state_lease.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "STATE_LEASE_DURATION",
                "must be whole seconds between 15s and 60s (blob lease limits)",
            ));
        }
        let visibility = t.visibility_timeout;
        if visibility < Duration::from_secs(5) || visibility > Duration::from_secs(7 * 24 * 3600) {
            return Err(ConfigError::new(
                "VISIBILITY_TIMEOUT",
                "must be between 5s and 7d",
            ));
        }
        Ok(ShipperConfig {
            storage,
            sink,
            concurrency: self.concurrency,
            max_dequeue: self.max_dequeue,
            key_vault_url,
            azure_client_id: service.azure_client_id,
            http_addr: service.http_addr,
            tuning: Tuning {
                visibility,
                state_lease,
                breaker_open: t.breaker_open_time,
                idle_poll: t.idle_poll,
                hand_back: t.hand_back_delay,
                stats_interval: t.stats_interval,
                grace: t.shutdown_grace,
                chunk_max_transient: t.chunk_max_transient,
                gzip: common::gzip::Level::from_number(t.sink_gzip_level),
                columns: if self.omit_overlong_columns {
                    crate::rows::TableColumns::WithoutOverlong
                } else {
                    crate::rows::TableColumns::All
                },
            },
        })
    }

    fn sink_settings(&self, vault: bool) -> Result<SinkSettings, ConfigError> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        match self.sink {
            SinkKind::LogsIngestion => {
                let endpoint = set(&self.logs_ingestion_endpoint).ok_or_else(|| {
                    ConfigError::new("LOGS_INGESTION_ENDPOINT", "is not set; use the DCE or DCR ingestion endpoint (https://…ingest.monitor.azure.com), an output of the Bicep deployment")
                })?;
                let endpoint = config::parse_origin("LOGS_INGESTION_ENDPOINT", &endpoint, false)?;
                let dcr = set(&self.dcr_immutable_id).ok_or_else(|| {
                    ConfigError::new("DCR_IMMUTABLE_ID", "is not set; use the DCR's immutable id (dcr-…), an output of the Bicep deployment")
                })?;
                if !dcr.starts_with("dcr-") || !dcr[4..].bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(ConfigError::new(
                        "DCR_IMMUTABLE_ID",
                        format!("`{dcr}` is not an immutable id (dcr- followed by 32 hex digits)"),
                    ));
                }
                if !self.dcr_stream.starts_with("Custom-") {
                    return Err(ConfigError::new(
                        "DCR_STREAM",
                        "a custom stream name starts with Custom-",
                    ));
                }
                let audience = config::parse_origin(
                    "AZURE_MONITOR_AUDIENCE",
                    &self.azure_monitor_audience,
                    false,
                )?;
                Ok(SinkSettings::LogsIngestion {
                    endpoint,
                    dcr_immutable_id: dcr,
                    stream: self.dcr_stream.clone(),
                    audience: audience.as_str().trim_end_matches('/').to_string(),
                })
            }
            SinkKind::DataCollector => {
                let workspace_id = set(&self.workspace_id).ok_or_else(|| {
                    ConfigError::new(
                        "WORKSPACE_ID",
                        "is not set; the legacy sink needs the workspace id (a GUID)",
                    )
                })?;
                if !is_guid(&workspace_id) {
                    return Err(ConfigError::new(
                        "WORKSPACE_ID",
                        "must be the workspace id, a GUID",
                    ));
                }
                let key = match set(&self.workspace_key) {
                    Some(k) => WorkspaceKey::Value(SecretString::new(k)),
                    None if vault => WorkspaceKey::Vault {
                        secret: self.workspace_key_secret.clone(),
                    },
                    None => {
                        return Err(ConfigError::new(
                            "WORKSPACE_KEY",
                            "is not set; set KEY_VAULT_URL (with WORKSPACE_KEY_SECRET) or WORKSPACE_KEY",
                        ))
                    }
                };
                let uri = match set(&self.log_analytics_uri) {
                    Some(u) => config::parse_origin("LOG_ANALYTICS_URI", &u, false)?,
                    None => config::parse_origin(
                        "LOG_ANALYTICS_URI",
                        &format!("https://{workspace_id}.ods.opinsights.azure.com"),
                        false,
                    )?,
                };
                if self.log_type.is_empty()
                    || self.log_type.len() > 100
                    || !self
                        .log_type
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(ConfigError::new(
                        "LOG_TYPE",
                        "letters, digits and underscores only, at most 100",
                    ));
                }
                Ok(SinkSettings::DataCollector {
                    workspace_id,
                    key,
                    log_type: self.log_type.clone(),
                    uri,
                })
            }
        }
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `SINK_GZIP_LEVEL`: 0 (uncompressed) or one of the levels [`common::gzip::Level`] knows.
fn gzip_level(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&n| n == 0 || common::gzip::Level::from_number(n).is_some())
        .ok_or_else(|| "expected 0 (uncompressed), 1 (fastest) or 3 (smaller)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn sink_gzip_level_is_zero_one_or_three_and_defaults_to_one() {
        let level = |args: &[&str]| {
            Cli::try_parse_from([&["shipper"], args].concat())
                .map(|c| c.args.tuning.sink_gzip_level)
        };
        assert_eq!(level(&[]).unwrap(), 1);
        assert_eq!(level(&["--sink-gzip-level", "0"]).unwrap(), 0);
        assert_eq!(level(&["--sink-gzip-level", "3"]).unwrap(), 3);
        for refused in ["2", "6", "9", "10", "fast"] {
            assert!(level(&["--sink-gzip-level", refused]).is_err(), "{refused}");
        }
    }
}
