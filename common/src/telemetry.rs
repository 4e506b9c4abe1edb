//! Logging set-up shared by both binaries.
//!
//! Logs go to stderr (stdout stays free for command output such as `collector status` or
//! `shipper poison list`). On a terminal they are human-readable text; anywhere else (a
//! container, a pipe) one JSON object per line, which Container Apps forwards to Log Analytics
//! as-is and which `jq` can filter. The filter follows `RUST_LOG` syntax, default `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output format of the logs (`LOG_FORMAT` / `--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default when stderr is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Text,
}

impl LogFormat {
    /// `text` when stderr is a terminal, `json` otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. Safe to call more than once (tests do): later calls keep the
/// first subscriber and return quietly.
pub fn init(format: Option<LogFormat>, service: &'static str) {
    let format = format.unwrap_or_else(LogFormat::detect);
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => match EnvFilter::try_new(&s) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e.to_string())),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .is_ok(),
    };
    if installed {
        if let Some(e) = bad_filter {
            tracing::warn!(error = %e, "RUST_LOG is invalid; using the default filter `{DEFAULT_FILTER}`");
        }
        tracing::info!(
            service,
            version = env!("CARGO_PKG_VERSION"),
            log_format = ?format,
            "logging started"
        );
    }
}
