//! The collector's settings: flags that default from the environment (docs/design.md §3), and
//! their validation into a [`CollectorConfig`].
//!
//! Validation happens before anything touches the network, and every error names the
//! variable and what to do, so a bad deployment fails at once with a message that can be
//! acted on, instead of a collector that starts and then silently collects nothing.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use common::config::{self, ConfigError, ServiceArgs};
use common::org::OrgKey;
use common::secrets::SecretString;
use common::storage::{StorageArgs, StorageSettings};
use url::Url;

/// Okta keeps the System Log for 90 days.
pub const MAX_START_AGE: chrono::Duration = chrono::Duration::days(90);
/// Azure restamps `TimeGenerated` older than 2 days; scheduled rules would fire on old events.
pub const RESTAMP_AGE: chrono::Duration = chrono::Duration::hours(48);

#[derive(Parser, Debug)]
#[command(
    name = "collector",
    version,
    about = "Pulls an Okta org's System Log and hands each page to the shippers through Azure Storage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: CollectorArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Collect (the default).
    Run,
    /// Show the org's leader, checkpoint, lag and queue depth.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every dependency with the collector's identity and configuration; one OK or
    /// FAILED line (with the fix) per check; exit 0 when all are OK, 1 otherwise.
    Doctor,
    /// Audit a past span now: compare Okta with Log Analytics, repair what is missing, print
    /// the result per window (exit 3 when a window stays incomplete).
    Audit {
        /// Start: RFC 3339 time or a duration back (`3h`).
        #[arg(long)]
        from: String,
        /// End (exclusive): RFC 3339 time or a duration back (`1h`).
        #[arg(long)]
        to: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start collecting from another point: bumps the epoch, keeps nothing pending.
    Reset {
        /// RFC 3339 time or a duration back (`15m`, `7d`).
        #[arg(
            long,
            conflicts_with = "next_url",
            required_unless_present = "next_url"
        )]
        start: Option<String>,
        /// The exact next link saved by Microsoft's Function connector (its `OKTA` table),
        /// so a migration neither re-fetches nor skips.
        #[arg(long)]
        next_url: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    /// `acme.okta.com` or an origin URL; plain http only for loopback hosts.
    #[arg(long, env = "OKTA_DOMAIN", global = true)]
    pub okta_domain: Option<String>,
    /// SSWS API token (prefer Key Vault: KEY_VAULT_URL + OKTA_API_TOKEN_SECRET).
    #[arg(long, env = "OKTA_API_TOKEN", hide_env_values = true, global = true)]
    pub okta_api_token: Option<String>,
    /// Key Vault secret holding the SSWS token; default `okta-{org key with dashes}-token`.
    #[arg(long, env = "OKTA_API_TOKEN_SECRET", global = true)]
    pub okta_api_token_secret: Option<String>,
    /// OAuth 2.0 service app client id (private_key_jwt, scope okta.logs.read).
    #[arg(long, env = "OKTA_CLIENT_ID", global = true)]
    pub okta_client_id: Option<String>,
    /// The service app's private key, PEM or JWK (prefer Key Vault).
    #[arg(long, env = "OKTA_PRIVATE_KEY", hide_env_values = true, global = true)]
    pub okta_private_key: Option<String>,
    /// Key Vault secret holding the private key; default `okta-{org key with dashes}-private-key`.
    #[arg(long, env = "OKTA_PRIVATE_KEY_SECRET", global = true)]
    pub okta_private_key_secret: Option<String>,
    /// `kid` of the service app's key.
    #[arg(long, env = "OKTA_KEY_ID", global = true)]
    pub okta_key_id: Option<String>,
    /// Where a new checkpoint starts: RFC 3339, a duration back, or a saved next link of this
    /// org (`https://…/api/v1/logs?after=…`, e.g. the one Microsoft's Function connector kept).
    #[arg(long, env = "OKTA_START", default_value = "1h", global = true)]
    pub okta_start: String,
    /// Allow a start older than 48 h (Azure restamps TimeGenerated older than 2 days).
    #[arg(long, env = "OKTA_ALLOW_RESTAMP", global = true)]
    pub allow_restamp: bool,
    /// Wait after an empty page.
    #[arg(long, env = "OKTA_POLL_INTERVAL", default_value = "15s", global = true)]
    pub okta_poll_interval: String,
    /// Fraction of X-Rate-Limit-Limit never used, left to the org's other integrations.
    #[arg(
        long,
        env = "OKTA_RATE_LIMIT_RESERVE",
        default_value = "0.3",
        global = true
    )]
    pub okta_rate_limit_reserve: String,
    /// Leader lease on `leader/{org}` (15s–60s, the blob lease limits): how long a killed
    /// leader blocks a standby. Tuning and tests.
    #[arg(
        long,
        env = "LEADER_LEASE_DURATION",
        default_value = "60s",
        hide_short_help = true,
        help_heading = "Tuning knobs",
        global = true
    )]
    pub leader_lease_duration: String,
    /// Whole-request timeout towards Okta (above Okta's own 30 s query timeout).
    #[arg(
        long,
        env = "OKTA_REQUEST_TIMEOUT",
        default_value = "45s",
        hide_short_help = true,
        help_heading = "Tuning knobs",
        global = true
    )]
    pub okta_request_timeout: String,
    /// Least wait after Okta refuses the credential (401/403), and twice it after a next link
    /// to another origin: neither heals in seconds, and each try spends the org's rate limit.
    #[arg(
        long,
        env = "OKTA_REFUSED_RETRY",
        default_value = "30s",
        hide_short_help = true,
        help_heading = "Tuning knobs",
        global = true
    )]
    pub okta_refused_retry: String,
    /// Not ready when the leader's last successful poll is older than this.
    #[arg(
        long,
        env = "READY_STALE_AFTER",
        default_value = "5m",
        hide_short_help = true,
        help_heading = "Tuning knobs",
        global = true
    )]
    pub ready_stale_after: String,
    /// Interval of the one-line JSON `stats` log record.
    #[arg(
        long,
        env = "STATS_INTERVAL",
        default_value = "60s",
        hide_short_help = true,
        help_heading = "Tuning knobs",
        global = true
    )]
    pub stats_interval: String,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub audit: crate::audit::settings::AuditArgs,
}

/// A tuning knob's duration (humantime: `15s`, `5m`); an empty value (a deployment that sets
/// the variable to nothing) means the default, as before these were flags.
fn knob(var: &'static str, value: &str, default: Duration) -> Result<Duration, ConfigError> {
    if value.trim().is_empty() {
        return Ok(default);
    }
    config::parse_duration(var, value)
}

/// Where the Okta credential comes from.
#[derive(Debug, Clone)]
pub enum CredentialSpec {
    SswsValue(SecretString),
    SswsVault {
        secret: String,
    },
    JwtValue {
        client_id: String,
        key: SecretString,
        key_id: Option<String>,
    },
    JwtVault {
        client_id: String,
        secret: String,
        key_id: Option<String>,
    },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub storage: StorageSettings,
    pub origin: Url,
    pub org: OrgKey,
    /// The value of each event's added `domain` field: the Okta host.
    pub domain: String,
    pub credential: CredentialSpec,
    pub start: DateTime<Utc>,
    /// `OKTA_START` as a saved next link: a new checkpoint resumes exactly there.
    pub start_url: Option<Url>,
    /// `OKTA_START` as given, and whether it was an absolute time.
    pub start_value: String,
    pub start_is_absolute: bool,
    pub allow_restamp: bool,
    pub poll_interval: Duration,
    pub reserve: f64,
    pub key_vault_url: Option<Url>,
    pub azure_client_id: Option<String>,
    pub http_addr: SocketAddr,
    /// Tuning knobs (flags with env defaults, listed under "Tuning knobs" in `--help`): leader
    /// lease, stats interval, readiness window.
    pub lease: Duration,
    pub stats_interval: Duration,
    pub stale_after: Duration,
    /// Whole-request timeout towards Okta (above Okta's own 30 s query timeout).
    pub request_timeout: Duration,
    /// Least wait after a refused credential; twice it after a foreign next link.
    pub refused_retry: Duration,
    /// The completeness audit (`AUDIT_*`).
    pub audit: crate::audit::settings::AuditSettings,
}

impl CollectorArgs {
    /// Validates everything; `now` anchors relative start times.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<CollectorConfig, ConfigError> {
        let storage = self
            .storage
            .validate()
            .map_err(|e| ConfigError::named_in_message(e.to_string()))?;
        let domain = self
            .okta_domain
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "OKTA_DOMAIN",
                    "is not set; set it to your org, e.g. acme.okta.com",
                )
            })?;
        let origin = config::parse_origin("OKTA_DOMAIN", domain, true)?;
        let org = OrgKey::from_origin(&origin)
            .map_err(|e| ConfigError::new("OKTA_DOMAIN", e.to_string()))?;
        let host = origin.host_str().unwrap_or_default().to_string();
        // A relative start (`1h`) is checked now. An absolute one is checked only when a first
        // checkpoint is created from it: a fixed date in a deployment must not stop the
        // collector from restarting two days later.
        let start_url = if self.okta_start.trim().starts_with("https://")
            || self.okta_start.trim().starts_with("http://")
        {
            Some(
                parse_next_link(&origin, &self.okta_start)
                    .map_err(|e| ConfigError::new("OKTA_START", e))?,
            )
        } else {
            None
        };
        let start_is_absolute = DateTime::parse_from_rfc3339(self.okta_start.trim()).is_ok();
        let start = if start_url.is_some() {
            now
        } else if start_is_absolute {
            config::parse_time_or_ago("OKTA_START", &self.okta_start, now)?
        } else {
            validate_start(&self.okta_start, now, self.allow_restamp)?
        };
        let poll_interval = config::parse_duration("OKTA_POLL_INTERVAL", &self.okta_poll_interval)?;
        let reserve =
            config::parse_fraction("OKTA_RATE_LIMIT_RESERVE", &self.okta_rate_limit_reserve)?;
        let service = self.service.validate("127.0.0.1:9464")?;
        let key_vault_url = service.key_vault_url.clone();
        let credential = self.credential(&org, key_vault_url.is_some())?;
        let lease = knob(
            "LEADER_LEASE_DURATION",
            &self.leader_lease_duration,
            Duration::from_secs(60),
        )?;
        if !(15..=60).contains(&lease.as_secs()) {
            return Err(ConfigError::new(
                "LEADER_LEASE_DURATION",
                "must be between 15s and 60s (blob lease limits)",
            ));
        }
        Ok(CollectorConfig {
            storage,
            origin,
            org,
            domain: host,
            credential,
            start,
            start_url,
            start_value: self.okta_start.clone(),
            start_is_absolute,
            allow_restamp: self.allow_restamp,
            poll_interval,
            reserve,
            key_vault_url,
            azure_client_id: service.azure_client_id,
            http_addr: service.http_addr,
            lease,
            stats_interval: knob(
                "STATS_INTERVAL",
                &self.stats_interval,
                Duration::from_secs(60),
            )?,
            stale_after: knob(
                "READY_STALE_AFTER",
                &self.ready_stale_after,
                Duration::from_secs(300),
            )?,
            request_timeout: knob(
                "OKTA_REQUEST_TIMEOUT",
                &self.okta_request_timeout,
                Duration::from_secs(45),
            )?,
            refused_retry: knob(
                "OKTA_REFUSED_RETRY",
                &self.okta_refused_retry,
                Duration::from_secs(30),
            )?,
            audit: self.audit.validate()?,
        })
    }

    fn credential(&self, org: &OrgKey, vault: bool) -> Result<CredentialSpec, ConfigError> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        if let Some(client_id) = set(&self.okta_client_id) {
            let key_id = set(&self.okta_key_id);
            if let Some(key) = set(&self.okta_private_key) {
                return Ok(CredentialSpec::JwtValue {
                    client_id,
                    key: SecretString::new(key),
                    key_id,
                });
            }
            if vault {
                let secret = set(&self.okta_private_key_secret)
                    .unwrap_or_else(|| format!("okta-{}-private-key", org.dashed()));
                return Ok(CredentialSpec::JwtVault {
                    client_id,
                    secret,
                    key_id,
                });
            }
            return Err(ConfigError::new(
                "OKTA_PRIVATE_KEY",
                "OKTA_CLIENT_ID is set but there is no private key: set OKTA_PRIVATE_KEY, or KEY_VAULT_URL (and OKTA_PRIVATE_KEY_SECRET)",
            ));
        }
        if let Some(token) = set(&self.okta_api_token) {
            return Ok(CredentialSpec::SswsValue(SecretString::new(token)));
        }
        if vault {
            let secret = set(&self.okta_api_token_secret)
                .unwrap_or_else(|| format!("okta-{}-token", org.dashed()));
            return Ok(CredentialSpec::SswsVault { secret });
        }
        Err(ConfigError::new(
            "OKTA_API_TOKEN",
            "no Okta credential: set KEY_VAULT_URL (the token is read from the vault), OKTA_API_TOKEN, or OKTA_CLIENT_ID with OKTA_PRIVATE_KEY",
        ))
    }
}

/// A next link of the org's System Log, as saved by another collector: same origin as
/// `OKTA_DOMAIN` (the credential goes only there) and the `/api/v1/logs` path.
pub fn parse_next_link(origin: &Url, value: &str) -> Result<Url, String> {
    let u = Url::parse(value.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if u.origin() != origin.origin() {
        return Err(format!(
            "points at {}, not at OKTA_DOMAIN ({})",
            u.origin().ascii_serialization(),
            origin.origin().ascii_serialization()
        ));
    }
    if u.path() != "/api/v1/logs" {
        return Err(format!(
            "must be a /api/v1/logs link, got path {}",
            u.path()
        ));
    }
    Ok(u)
}

/// Checks `OKTA_START`: at most 90 days back, and more than 48 h only with `--allow-restamp`.
pub fn validate_start(
    value: &str,
    now: DateTime<Utc>,
    allow_restamp: bool,
) -> Result<DateTime<Utc>, ConfigError> {
    let start = config::parse_time_or_ago("OKTA_START", value, now)?;
    let age = now - start;
    if age > MAX_START_AGE {
        return Err(ConfigError::new(
            "OKTA_START",
            format!("`{value}` is more than 90 days back; Okta keeps the System Log for 90 days"),
        ));
    }
    if age > RESTAMP_AGE && !allow_restamp {
        return Err(ConfigError::new(
            "OKTA_START",
            format!(
                "`{value}` is more than 48 h back: Azure restamps TimeGenerated older than 2 days and scheduled rules would fire on old events; pass --allow-restamp (OKTA_ALLOW_RESTAMP=true) if you mean it"
            ),
        ));
    }
    if start > now + chrono::Duration::minutes(5) {
        return Err(ConfigError::new(
            "OKTA_START",
            format!("`{value}` is in the future"),
        ));
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_knobs_are_flags_listed_in_the_long_help_only() {
        use clap::CommandFactory;
        let long = Cli::command().render_long_help().to_string();
        let short = Cli::command().render_help().to_string();
        for var in [
            "LEADER_LEASE_DURATION",
            "OKTA_REQUEST_TIMEOUT",
            "READY_STALE_AFTER",
            "STATS_INTERVAL",
        ] {
            assert!(long.contains(var), "{var} missing from --help");
            assert!(!short.contains(var), "{var} in -h");
        }
        let cli = Cli::try_parse_from([
            "collector",
            "--okta-domain",
            "acme.okta.com",
            "--okta-api-token",
            "t",
            "--leader-lease-duration",
            "20s",
            "--ready-stale-after",
            "2m",
            "--stats-interval",
            "",
            "--connection-string",
            "UseDevelopmentStorage=true",
        ]);
        let cfg = cli.map(|c| c.args.validate(Utc::now()));
        let cfg = match cfg {
            Ok(Ok(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(cfg.lease, Duration::from_secs(20));
        assert_eq!(cfg.stale_after, Duration::from_secs(120));
        assert_eq!(cfg.stats_interval, Duration::from_secs(60));
        assert_eq!(cfg.request_timeout, Duration::from_secs(45));
        assert_eq!(cfg.refused_retry, Duration::from_secs(30));
    }

    #[test]
    fn start_limits() {
        let now = Utc::now();
        assert!(validate_start("1h", now, false).is_ok());
        assert_eq!(
            validate_start("3d", now, false).unwrap_err().var,
            "OKTA_START"
        );
        assert!(validate_start("3d", now, true).is_ok());
        assert!(validate_start("91d", now, true).is_err());
        assert!(validate_start("soon", now, true).is_err());
    }
}
