//! The audit's settings (`docs/design.md` §3): `AUDIT_ENABLED`, `AUDIT_WINDOW`, `AUDIT_SETTLE`,
//! `AUDIT_MAX_REQUESTS_PER_HOUR`, `LOG_ANALYTICS_WORKSPACE_ID`, and the tuning knobs that keep
//! the test suites short.

use std::time::Duration;

use clap::Args;
use common::config::{self, ConfigError};
use url::Url;

/// The Logs Query API's public-cloud origin and token audience.
/// <https://learn.microsoft.com/rest/api/loganalytics/query/execute>
pub const DEFAULT_QUERY_ENDPOINT: &str = "https://api.loganalytics.io";

/// Flags of the audit, defaulting from the environment.
#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// `auto` (on when LOG_ANALYTICS_WORKSPACE_ID is set and the identity can query it; the
    /// start-up check says which), `true` or `false`.
    #[arg(long, env = "AUDIT_ENABLED", default_value = "auto", global = true)]
    pub audit_enabled: String,
    /// Length of one audited window of `published` time.
    #[arg(long, env = "AUDIT_WINDOW", default_value = "1h", global = true)]
    pub audit_window: String,
    /// A window is audited only when it ends this long before the newest event handed off.
    #[arg(long, env = "AUDIT_SETTLE", default_value = "1h", global = true)]
    pub audit_settle: String,
    /// Okta requests the background audit may make per hour (only ever from spare budget).
    #[arg(
        long,
        env = "AUDIT_MAX_REQUESTS_PER_HOUR",
        default_value = "120",
        global = true
    )]
    pub audit_max_requests_per_hour: String,
    /// The workspace (customer id, a GUID) the Logs Query API reads.
    #[arg(long, env = "LOG_ANALYTICS_WORKSPACE_ID", global = true)]
    pub log_analytics_workspace_id: Option<String>,
}

/// Whether the background audit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enabled {
    /// On when the workspace is set and the start-up query succeeds.
    Auto,
    On,
    Off,
}

/// Validated audit settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: Enabled,
    pub window: Duration,
    pub settle: Duration,
    pub max_requests_per_hour: u32,
    pub workspace_id: Option<String>,
    /// `LOG_ANALYTICS_QUERY_ENDPOINT` (sovereign clouds, tests): origin of the Logs Query API.
    pub query_endpoint: Url,
    /// `LOG_ANALYTICS_QUERY_AUDIENCE`: token audience (default the endpoint's public origin).
    pub query_audience: String,
    /// `AUDIT_TABLE`: the table the shipper writes (default `Okta_CL`; `{LOG_TYPE}_CL` on the
    /// legacy sink).
    pub table: String,
    /// `AUDIT_CONFIRM_DELAY`: how long after the second look at the waiting pages the
    /// workspace is asked again before anything is repaired (ingestion latency: rows accepted
    /// just before the first look may not be queryable yet).
    pub confirm_delay: Duration,
    /// `AUDIT_MAX_ROWS_PER_QUERY`: a window whose answer reaches this many rows is split
    /// (well under the service's 500,000).
    pub max_rows_per_query: usize,
    /// `AUDIT_PAUSE`: wait between two background audits, and before retrying after a failure.
    pub pause: Duration,
}

impl AuditArgs {
    pub fn validate(&self) -> Result<AuditSettings, ConfigError> {
        let enabled = match self.audit_enabled.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Enabled::Auto,
            "true" | "1" | "yes" | "on" => Enabled::On,
            "false" | "0" | "no" | "off" => Enabled::Off,
            other => {
                return Err(ConfigError::new(
                    "AUDIT_ENABLED",
                    format!("`{other}` is not auto, true or false"),
                ))
            }
        };
        let window = config::parse_duration("AUDIT_WINDOW", &self.audit_window)?;
        if window < Duration::from_secs(1) || window > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::new(
                "AUDIT_WINDOW",
                "must be between 1s and 24h",
            ));
        }
        let settle = config::parse_duration("AUDIT_SETTLE", &self.audit_settle)?;
        let max_requests_per_hour = self
            .audit_max_requests_per_hour
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                ConfigError::new(
                    "AUDIT_MAX_REQUESTS_PER_HOUR",
                    format!(
                        "`{}` is not a whole number ≥ 1",
                        self.audit_max_requests_per_hour
                    ),
                )
            })?;
        let workspace_id = match self.log_analytics_workspace_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => Some(
                uuid::Uuid::try_parse(id)
                    .map_err(|_| {
                        ConfigError::new(
                            "LOG_ANALYTICS_WORKSPACE_ID",
                            "must be the workspace's customer id (a GUID, shown as Workspace ID on its Overview page), not its resource id",
                        )
                    })?
                    .to_string(),
            ),
        };
        if enabled == Enabled::On && workspace_id.is_none() {
            return Err(ConfigError::new(
                "LOG_ANALYTICS_WORKSPACE_ID",
                "is not set but AUDIT_ENABLED=true: the audit needs the workspace to query",
            ));
        }
        let endpoint_text = std::env::var("LOG_ANALYTICS_QUERY_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_QUERY_ENDPOINT.to_string());
        let query_endpoint =
            config::parse_origin("LOG_ANALYTICS_QUERY_ENDPOINT", &endpoint_text, false)?;
        let query_audience = std::env::var("LOG_ANALYTICS_QUERY_AUDIENCE")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_QUERY_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let table = std::env::var("AUDIT_TABLE")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "Okta_CL".to_string());
        let ident = table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(ConfigError::new(
                "AUDIT_TABLE",
                format!("`{table}` is not a table name (letters, digits, `_`)"),
            ));
        }
        let max_rows_per_query = match std::env::var("AUDIT_MAX_ROWS_PER_QUERY") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ConfigError::new("AUDIT_MAX_ROWS_PER_QUERY", "must be a whole number ≥ 1")
                })?,
            _ => 100_000,
        };
        Ok(AuditSettings {
            enabled,
            window,
            settle,
            max_requests_per_hour,
            workspace_id,
            query_endpoint,
            query_audience,
            table,
            confirm_delay: config::env_duration("AUDIT_CONFIRM_DELAY", Duration::from_secs(300))?,
            max_rows_per_query,
            pause: config::env_duration("AUDIT_PAUSE", Duration::from_secs(60))?,
        })
    }
}
