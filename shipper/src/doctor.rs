//! `shipper doctor`: checks every dependency of the shipper with its real identity and
//! configuration, and says what to fix (see `common::doctor` for the line format).
//!
//! The checks, through the shipper's own clients ([`Clients`], `Storage`, the sink):
//! * identity: a token for storage (managed identity), Key Vault (`KEY_VAULT_URL`) and the
//!   Azure Monitor audience (`AZURE_MONITOR_AUDIENCE`, Logs Ingestion sink);
//! * storage, with only what the shipper's role grants (`common::doctor::storage`): at most one
//!   message is received and put back visible at once (Update Message), and a probe blob under
//!   `doctor/` is written create-only, read, leased and deleted;
//! * Key Vault: the workspace key's secret (legacy sink) exists and is readable;
//! * sink: an empty batch `[]` posted through the sink itself, as Vector's health checks do
//!   for both APIs (github.com/vectordotdev/vector, `src/sinks/azure_logs_ingestion/service.rs`
//!   and `src/sinks/azure_monitor_logs/service.rs`, `healthcheck`): the service validates the
//!   token, the DCR, its role assignment and the stream, and stores nothing. 404 → wrong DCR
//!   id, stream or endpoint, 403 → Monitoring Metrics Publisher missing on the DCR (the 403
//!   body of docs/contracts.md §3.3), 400 → the stream; for the legacy sink, whether the SharedKey
//!   signature is accepted (docs/contracts.md §2.4: 403 `InvalidAuthorization`);
//! * the table's columns against the manifest: skipped, because the shipper has no
//!   workspace-read configuration (no Logs Query access); the line says so.
//!
//! The shipper runs the same checks at start-up ([`spawn_self_check`]) and logs each FAILED
//! line as a warning, so a wrong DCR id shows in its first log lines, before any page arrives.

use common::doctor::storage::{BlobCleanup, Probe, QueueUse};
use common::doctor::{identity, identity_label, vault, Check, Report};
use common::metrics::Metrics;
use common::secrets::{KeyVault, SecretSource};
use common::storage::{Storage, StorageAuth};

use crate::chunk::Chunk;
use crate::config::{ShipperConfig, SinkSettings, WorkspaceKey};
use crate::sinks::{Outcome, Sink, SinkMetrics};
use crate::wiring::Clients;

/// Monitoring Metrics Publisher grants this action, which Logs Ingestion checks on the DCR
/// (docs/contracts.md §3.1, §7.2).
const TELEMETRY_WRITE: &str = "Microsoft.Insights/Telemetry/Write";

/// Statuses the sink may have answered, most telling first.
const STATUSES: [&str; 14] = [
    "400", "401", "403", "404", "405", "408", "413", "429", "500", "502", "503", "504", "200",
    "204",
];

/// `shipper doctor`: prints one line per check; `Err` (exit 1) when any FAILED.
pub async fn command(cfg: &ShipperConfig) -> anyhow::Result<()> {
    let report = check(cfg).await;
    report.print();
    Ok(report.outcome()?)
}

/// Runs the start-up self-check in the background and logs its lines; never fatal.
pub fn spawn_self_check(cfg: ShipperConfig) {
    tokio::spawn(async move {
        check(&cfg).await.log("shipper");
    });
}

/// Every check, in order; a check whose prerequisite failed is left out (its cause is
/// already a FAILED line).
pub async fn check(cfg: &ShipperConfig) -> Report {
    let mut report = Report::new();
    let who = identity_label("shipper", cfg.azure_client_id.as_deref());
    // A registry of its own: the probe's answer is read back from it, and the service's
    // `sink_responses` counts only the pages it posts.
    let metrics = Metrics::new("shipper-doctor");
    let statuses = metrics.counter_vec("sink_responses", "answers to the doctor probe", "status");
    let sink_metrics = SinkMetrics {
        statuses: Some(statuses.clone()),
        wire_bytes: None,
    };
    let w = match Clients::new(cfg, sink_metrics).await {
        Ok(w) => w,
        Err(e) => {
            report.push(Check::failed(
                "clients",
                format!("{e:#}"),
                "correct the setting named above",
            ));
            return report;
        }
    };

    // Identity.
    let managed = matches!(cfg.storage.auth, StorageAuth::ManagedIdentity);
    if !managed {
        report.push(identity::storage_shared_key(&cfg.storage.account));
    }
    let id = cfg.azure_client_id.as_deref();
    let mut monitor_token = true;
    if let Some(cred) = &w.credential {
        if managed {
            report.push(identity::token(cred, "storage", identity::STORAGE_AUDIENCE, id).await);
        }
        if cfg.key_vault_url.is_some() {
            report.push(identity::token(cred, "Key Vault", identity::VAULT_AUDIENCE, id).await);
        }
        if let Some(SinkSettings::LogsIngestion { audience, .. }) = &cfg.sink {
            let c = identity::token(cred, "Azure Monitor", audience, id).await;
            monitor_token = !c.is_failed();
            report.push(c);
        }
    }

    // Storage.
    match Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone()) {
        Ok(storage) => {
            let probe = Probe {
                storage: &storage,
                settings: &cfg.storage,
                service: "shipper",
                identity: who.clone(),
            };
            report.extend(probe.queue(QueueUse::Process).await);
            report.extend(probe.container(BlobCleanup::Delete).await);
        }
        Err(e) => report.push(Check::failed(
            "storage",
            e.to_string(),
            "correct AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_CONNECTION_STRING",
        )),
    }

    // Key Vault: the workspace key of the legacy sink.
    let mut key_readable = true;
    if let Some(SinkSettings::DataCollector {
        key: WorkspaceKey::Vault { secret },
        ..
    }) = &cfg.sink
    {
        let source = match (&cfg.key_vault_url, &w.credential) {
            (Some(url), Some(cred)) => {
                KeyVault::new(url.as_str(), cred.clone(), w.azure_http.clone())
                    .map(|v| SecretSource::key_vault(v, secret.clone()))
                    .map_err(|e| e.to_string())
            }
            _ => Err("KEY_VAULT_URL is not set".to_string()),
        };
        let c = match source {
            Ok(s) => vault::secret(&s, "WORKSPACE_KEY_SECRET", &who).await,
            Err(e) => Check::failed("secret: workspace key", e, "set KEY_VAULT_URL"),
        };
        key_readable = !c.is_failed();
        report.push(c);
    }

    // The sink.
    if let (Some(sink), Some(settings)) = (&w.sink, &cfg.sink) {
        if monitor_token && key_readable {
            report.push(sink_probe(sink.as_ref(), settings, &statuses, &who).await);
        }
        report.push(Check::ok_with(
            "table columns equal the manifest",
            "skipped: no workspace read configured; the shipper's identity has no Logs Query access to the workspace, and infra/ deploys the table from the same manifest",
        ));
    }
    report
}

/// Posts `[]` through the sink and turns the answer into a line.
async fn sink_probe(
    sink: &dyn Sink,
    settings: &SinkSettings,
    statuses: &common::metrics::CounterVec,
    who: &str,
) -> Check {
    let empty = Chunk::new(0, 0, b"");
    let outcome = sink.post(&empty).await;
    let status = STATUSES
        .iter()
        .find(|s| statuses.get(s) > 0)
        .and_then(|s| s.parse::<u16>().ok());
    let reason = match &outcome {
        Outcome::Accepted => None,
        Outcome::Transient { reason, .. }
        | Outcome::SinkWide { reason }
        | Outcome::PageFault { reason } => Some(reason.clone()),
        Outcome::TooLarge => Some("413 for an empty batch".to_string()),
    };
    match settings {
        SinkSettings::LogsIngestion {
            endpoint,
            dcr_immutable_id,
            stream,
            ..
        } => {
            let name = format!(
                "sink: empty batch [] to DCR {dcr_immutable_id} stream {stream} at {endpoint}"
            );
            let Some(reason) = reason else {
                return Check::ok_with(name, "accepted: 204");
            };
            let fix = match status {
                Some(404) if reason.contains("InvalidStream") => format!(
                    "set DCR_STREAM to a stream the DCR declares (the Bicep deploys Custom-Okta_CL); it is now {stream}"
                ),
                Some(404) => format!(
                    "wrong DCR id or endpoint: set DCR_IMMUTABLE_ID to the DCR's immutable id (dcr-…, the deployment's dcrImmutableId output; now {dcr_immutable_id}) and LOGS_INGESTION_ENDPOINT to its logs-ingestion endpoint (now {endpoint}); also check DCR_STREAM ({stream})"
                ),
                Some(403) => format!(
                    "grant {who} the role Monitoring Metrics Publisher (action {TELEMETRY_WRITE}) on the data collection rule {dcr_immutable_id}; a new role assignment can take up to 30 minutes to apply"
                ),
                Some(400) => format!(
                    "the stream refused the request: set DCR_STREAM to the stream the DCR declares for this table (the Bicep deploys Custom-Okta_CL; now {stream}), and check that the DCR's output table exists"
                ),
                Some(401) => "the token was refused: set AZURE_MONITOR_AUDIENCE to the cloud's Azure Monitor audience (https://monitor.azure.com in the public cloud) and check AZURE_CLIENT_ID".to_string(),
                Some(408 | 429 | 500..=599) => "the service is throttling or failing right now: run doctor again later (the shipper retries by itself)".to_string(),
                _ => format!(
                    "check LOGS_INGESTION_ENDPOINT (now {endpoint}): it must be the DCE or the DCR's logs-ingestion endpoint, reachable from the app"
                ),
            };
            Check::failed(name, reason, fix)
        }
        SinkSettings::DataCollector {
            workspace_id,
            key,
            uri,
            ..
        } => {
            let name = format!(
                "sink: Data Collector API SharedKey signature for workspace {workspace_id} at {uri}"
            );
            let Some(reason) = reason else {
                return Check::ok_with(name, "accepted: empty batch [] answered 200");
            };
            let key_at = match key {
                WorkspaceKey::Value(_) => "WORKSPACE_KEY".to_string(),
                WorkspaceKey::Vault { secret } => format!("Key Vault secret {secret}"),
            };
            let fix = match status {
                Some(403) => format!(
                    "the signature was refused: put the workspace's primary or secondary key in {key_at}, and check WORKSPACE_ID ({workspace_id}) is the workspace id (customer id)"
                ),
                Some(404) => format!(
                    "check LOG_ANALYTICS_URI (now {uri}) and WORKSPACE_ID ({workspace_id})"
                ),
                Some(400) => format!(
                    "check WORKSPACE_ID ({workspace_id}) and LOG_TYPE; a closed workspace answers 400 too"
                ),
                Some(408 | 429 | 500..=599) => "the service is throttling or failing right now: run doctor again later".to_string(),
                _ => format!("check LOG_ANALYTICS_URI (now {uri}) and the network path to it"),
            };
            Check::failed(name, reason, fix)
        }
    }
}
