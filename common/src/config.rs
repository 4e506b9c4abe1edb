//! Configuration helpers shared by both binaries.
//!
//! Every error names the environment variable (the flag's twin) and says what to fix, because
//! the person reading it is an operator looking at a Container App's revision log, not at our
//! source. Values of secret variables never appear in these messages.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

/// A configuration value that cannot be used, with the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if var.is_empty() { String::new() } else { format!("{var}: ") })]
pub struct ConfigError {
    /// The environment variable (or flag) at fault, e.g. `OKTA_DOMAIN`.
    pub var: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    /// An error whose message already names the variable (e.g. from the storage settings).
    pub fn named_in_message(message: impl Into<String>) -> Self {
        Self {
            var: "",
            message: message.into(),
        }
    }

    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// True for hosts that never leave this machine: `localhost`, 127.0.0.0/8 and `::1`.
///
/// Plain `http` is allowed only for these, so the local fakes work while a typo in a
/// production setting cannot send a credential over the network in clear text.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True when the URL's host never leaves this machine (see [`is_loopback_host`]).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The one transport rule for every endpoint (docs/design.md §5): https, or plain http only
/// for a loopback host (the local fakes and Azurite), so a typo in a production setting can
/// never send a credential over the network in clear text. The error is the reason, for the
/// caller to prefix with the setting's name.
pub fn require_https_or_loopback(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_url(url) => Ok(()),
        "http" => Err(format!(
            "must use https unless the host is loopback (got http://{})",
            url.host_str().unwrap_or_default()
        )),
        other => Err(format!("scheme `{other}` is not supported; use https")),
    }
}

/// Parses an origin (`https://host[:port]`), or a bare host name when `bare_host_ok`
/// (`acme.okta.com` → `https://acme.okta.com`). Requires https unless the host is loopback;
/// refuses paths, queries, fragments and credentials.
pub fn parse_origin(
    var: &'static str,
    value: &str,
    bare_host_ok: bool,
) -> Result<Url, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::new(var, "is empty; set it to an https origin"));
    }
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else if bare_host_ok {
        format!("https://{value}")
    } else {
        return Err(ConfigError::new(
            var,
            format!("`{value}` has no scheme; use https://host[:port]"),
        ));
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ConfigError::new(var, format!("`{value}` is not a valid URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(var, format!("`{value}` has no host")));
    }
    require_https_or_loopback(&url).map_err(|reason| ConfigError::new(var, reason))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(var, "must not contain credentials"));
    }
    if (url.path() != "/" && !url.path().is_empty())
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::new(
            var,
            format!("must be an origin only (scheme://host[:port]), without a path or query; got `{value}`"),
        ));
    }
    Ok(url)
}

/// Parses a duration such as `15s`, `5m`, `7d` (humantime syntax).
pub fn parse_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        ConfigError::new(
            var,
            format!("`{value}` is not a duration ({e}); use e.g. 15s, 5m, 1h, 7d"),
        )
    })
}

/// Parses a point in time given either as RFC 3339 or as a duration back from `now`.
pub fn parse_time_or_ago(
    var: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ConfigError> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(v).map_err(|_| {
        ConfigError::new(
            var,
            format!("`{value}` is neither RFC 3339 (2026-01-31T00:00:00Z) nor a duration back (15m, 7d)"),
        )
    })?;
    let d = chrono::Duration::from_std(d)
        .map_err(|_| ConfigError::new(var, format!("`{value}` is too long")))?;
    now.checked_sub_signed(d)
        .ok_or_else(|| ConfigError::new(var, format!("`{value}` is too long")))
}

/// Parses a listen address such as `127.0.0.1:9464`.
pub fn parse_socket_addr(var: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError::new(
            var,
            format!("`{value}` is not an address:port (e.g. 127.0.0.1:9464 or 0.0.0.0:9464)"),
        )
    })
}

/// Parses a fraction in `[0, 1)`.
pub fn parse_fraction(var: &'static str, value: &str) -> Result<f64, ConfigError> {
    let f: f64 = value
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(var, format!("`{value}` is not a number between 0 and 1")))?;
    if !(0.0..1.0).contains(&f) {
        return Err(ConfigError::new(
            var,
            format!("{f} must be at least 0 and below 1"),
        ));
    }
    Ok(f)
}

/// Reads an optional tuning knob from the environment (test-time knobs such as lease duration
/// or stats interval); an unparsable value is an error naming the variable, not a silent default.
pub fn env_duration(var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => parse_duration(var, &v),
        _ => Ok(default),
    }
}

/// Settings every service binary has: Key Vault, managed identity, the health/metrics
/// address and the log format (docs/design.md §3).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Key Vault to read secrets from (rotation needs no restart).
    #[arg(long, env = "KEY_VAULT_URL", global = true)]
    pub key_vault_url: Option<String>,
    /// Client id of the user-assigned managed identity.
    #[arg(long, env = "AZURE_CLIENT_ID", global = true)]
    pub azure_client_id: Option<String>,
    /// `/healthz`, `/readyz`, `/metrics` (default 127.0.0.1:9464 collector, 127.0.0.1:9465 shipper).
    #[arg(long, env = "HTTP_ADDR", global = true)]
    pub http_addr: Option<String>,
    /// `json` or `text` (default: text on a terminal, json otherwise).
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<crate::telemetry::LogFormat>,
}

/// Validated [`ServiceArgs`].
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub key_vault_url: Option<Url>,
    pub azure_client_id: Option<String>,
    pub http_addr: SocketAddr,
}

impl ServiceArgs {
    /// Validates; `default_addr` is the binary's own health port.
    pub fn validate(&self, default_addr: &str) -> Result<ServiceSettings, ConfigError> {
        let key_vault_url = match self
            .key_vault_url
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(v) => Some(parse_origin("KEY_VAULT_URL", v, false)?),
            None => None,
        };
        let addr = self
            .http_addr
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(default_addr);
        Ok(ServiceSettings {
            key_vault_url,
            azure_client_id: self
                .azure_client_id
                .clone()
                .filter(|s| !s.trim().is_empty()),
            http_addr: parse_socket_addr("HTTP_ADDR", addr)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        assert_eq!(
            parse_origin("OKTA_DOMAIN", "acme.okta.com", true).map(|u| u.to_string()),
            Ok("https://acme.okta.com/".to_string())
        );
        assert!(parse_origin("OKTA_DOMAIN", "http://127.0.0.1:8080", true).is_ok());
        assert!(parse_origin("OKTA_DOMAIN", "http://localhost:8080", true).is_ok());
        let e = parse_origin("OKTA_DOMAIN", "http://acme.okta.com", true).unwrap_err();
        assert_eq!(e.var, "OKTA_DOMAIN");
        assert!(
            e.to_string()
                .contains("must use https unless the host is loopback"),
            "{e}"
        );
        assert!(parse_origin("X", "https://a.example/path", true).is_err());
        assert!(parse_origin("X", "https://u:p@a.example", true).is_err());
        assert!(parse_origin("X", "a.example", false).is_err());
        assert!(parse_origin("X", "", true).is_err());
    }

    #[test]
    fn times_and_durations() {
        let now = Utc::now();
        let t = parse_time_or_ago("OKTA_START", "2h", now).unwrap();
        assert_eq!((now - t).num_seconds(), 7200);
        let t = parse_time_or_ago("OKTA_START", "2026-01-02T03:04:05Z", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        let e = parse_time_or_ago("OKTA_START", "yesterday", now).unwrap_err();
        assert_eq!(e.var, "OKTA_START");
        assert!(parse_duration("OKTA_POLL_INTERVAL", "15s").is_ok());
        assert!(parse_duration("OKTA_POLL_INTERVAL", "fifteen").is_err());
        assert!(parse_fraction("OKTA_RATE_LIMIT_RESERVE", "0.3").is_ok());
        assert!(parse_fraction("OKTA_RATE_LIMIT_RESERVE", "1.5").is_err());
        assert!(
            is_loopback_host("127.0.0.2")
                && is_loopback_host("[::1]")
                && !is_loopback_host("10.0.0.1")
        );
    }

    #[test]
    fn https_or_plain_http_for_loopback_only() {
        let ok = |s: &str| require_https_or_loopback(&Url::parse(s).unwrap()).is_ok();
        assert!(ok("https://acme.okta.com"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://127.0.0.2:8080"));
        assert!(ok("http://localhost:1"));
        assert!(ok("http://LOCALHOST:1"));
        assert!(ok("http://[::1]:1"));
        assert!(!ok("http://acme.okta.com"));
        assert!(!ok("http://10.0.0.1"));
        assert!(!ok("http://localhost.evil.example"));
        assert!(!ok("ftp://127.0.0.1"));
    }
}
