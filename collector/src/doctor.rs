//! `collector doctor`: checks every dependency of the collector with its real identity and
//! configuration, and says what to fix (see `common::doctor` for the line format).
//!
//! The checks, through the collector's own clients ([`crate::wiring::Wiring`], `Storage`,
//! [`OktaClient`]):
//! * identity: a token for storage (managed identity) and for Key Vault (`KEY_VAULT_URL`);
//! * storage, with only what the collector's role grants (`common::doctor::storage`): the queue
//!   accepts a Put Message, the container takes a create-only write, a read and a lease of a
//!   probe blob under `doctor/`, left for the lifecycle rule (the role cannot delete blobs);
//! * Key Vault: the Okta credential's secret exists and is readable (never printed);
//! * Okta: one `GET /api/v1/logs?limit=1` with the credential (it counts against the org's
//!   rate-limit budget, and the line says so), whether the service app requires DPoP, and the
//!   rate-limit headers with this token's share.
//!
//! The collector runs the same checks at start-up ([`spawn_self_check`]) and logs each FAILED
//! line as a warning, with two exceptions that would disturb a live deployment: no Okta request
//! (a standby collector must not spend the org's budget, and the leader's first poll makes the
//! same request within seconds) and no queue probe (the collector's role cannot delete it).

use std::sync::Arc;

use common::doctor::storage::{BlobCleanup, Probe, QueueUse};
use common::doctor::{identity, identity_label, vault, Check, Report};
use common::storage::{Storage, StorageAuth};
use url::Url;

use crate::config::{CollectorConfig, CredentialSpec};
use crate::okta::{Credential, OktaClient, OktaError};
use crate::wiring::Wiring;

/// Where the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `collector doctor`: every check.
    Command,
    /// The start-up self-check: no Okta request, no queue probe (see the module docs).
    StartUp,
}

/// `collector doctor`: prints one line per check; `Err` (exit 1) when any FAILED.
pub async fn command(cfg: &CollectorConfig) -> anyhow::Result<()> {
    let report = check(cfg, Mode::Command, None).await;
    report.print();
    Ok(report.outcome()?)
}

/// Runs the start-up self-check in the background and logs its lines; never fatal.
/// `credential` is the running collector's own (clones share its secret cache), so the
/// self-check's Key Vault read is the one the first poll uses, not a second one.
pub fn spawn_self_check(cfg: CollectorConfig, credential: Credential) {
    tokio::spawn(async move {
        check(&cfg, Mode::StartUp, Some(credential))
            .await
            .log("collector");
    });
}

/// Every check, in order; a check whose prerequisite failed is left out (its cause is
/// already a FAILED line). `credential`: the service's own, or `None` to build it from `cfg`.
pub async fn check(cfg: &CollectorConfig, mode: Mode, credential: Option<Credential>) -> Report {
    let mut report = Report::new();
    let who = identity_label("collector", cfg.azure_client_id.as_deref());
    let w = match Wiring::new(cfg).await {
        Ok(w) => w,
        Err(e) => {
            report.push(Check::failed(
                "clients",
                format!("{e:#}"),
                "correct the setting named above (AZURE_CLIENT_ID, KEY_VAULT_URL, OKTA_SENTINEL_EXTRA_CA)",
            ));
            return report;
        }
    };

    // Identity.
    let managed = matches!(cfg.storage.auth, StorageAuth::ManagedIdentity);
    if !managed {
        report.push(identity::storage_shared_key(&cfg.storage.account));
    }
    if let Some(cred) = &w.credential {
        let id = cfg.azure_client_id.as_deref();
        if managed {
            report.push(identity::token(cred, "storage", identity::STORAGE_AUDIENCE, id).await);
        }
        if cfg.key_vault_url.is_some() {
            report.push(identity::token(cred, "Key Vault", identity::VAULT_AUDIENCE, id).await);
        }
    }

    // Storage.
    match Storage::connect(&cfg.storage, w.azure_http.clone(), w.credential.clone()) {
        Ok(storage) => {
            let probe = Probe {
                storage: &storage,
                settings: &cfg.storage,
                service: "collector",
                identity: who.clone(),
            };
            if mode == Mode::Command {
                report.extend(probe.queue(QueueUse::Send).await);
            }
            report.extend(probe.container(BlobCleanup::Lifecycle).await);
        }
        Err(e) => report.push(Check::failed(
            "storage",
            e.to_string(),
            "correct AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_CONNECTION_STRING",
        )),
    }

    // Key Vault (or the environment) for the Okta credential.
    let credential = match credential.map_or_else(|| w.okta_credential(cfg), Ok) {
        Ok(c) => c,
        Err(e) => {
            report.push(Check::failed(
                "Okta credential",
                format!("{e:#}"),
                "set KEY_VAULT_URL, or OKTA_API_TOKEN / OKTA_PRIVATE_KEY",
            ));
            return report;
        }
    };
    let secret = match &credential {
        Credential::Ssws(s) => s,
        Credential::PrivateKeyJwt { key, .. } => key,
    };
    let secret_check = vault::secret(secret, secret_setting(&cfg.credential), &who).await;
    let readable = !secret_check.is_failed();
    report.push(secret_check);

    // Okta.
    if mode == Mode::StartUp {
        report.push(Check::ok_with(
            "Okta",
            "not probed at start-up: a standby collector must not spend the org's rate limit; run `collector doctor` to check the credential",
        ));
    } else if readable {
        report.extend(okta(cfg, credential, w.okta_http.clone()).await);
    }
    report
}

/// The variable that names (or holds) the Okta credential.
fn secret_setting(spec: &CredentialSpec) -> &'static str {
    match spec {
        CredentialSpec::SswsValue(_) => "OKTA_API_TOKEN",
        CredentialSpec::SswsVault { .. } => "OKTA_API_TOKEN_SECRET",
        CredentialSpec::JwtValue { .. } => "OKTA_PRIVATE_KEY",
        CredentialSpec::JwtVault { .. } => "OKTA_PRIVATE_KEY_SECRET",
    }
}

/// Where a new credential goes: the Key Vault secret, or the variable.
fn store_it(cfg: &CollectorConfig) -> String {
    match &cfg.credential {
        CredentialSpec::SswsVault { secret } | CredentialSpec::JwtVault { secret, .. } => {
            format!("rotate the Key Vault secret {secret} (the collector re-reads it without a restart)")
        }
        CredentialSpec::SswsValue(_) => "set OKTA_API_TOKEN to it".into(),
        CredentialSpec::JwtValue { .. } => "set OKTA_PRIVATE_KEY to it".into(),
    }
}

/// One `GET /api/v1/logs?limit=1`, then the DPoP and rate-limit lines from its answer.
async fn okta(cfg: &CollectorConfig, credential: Credential, http: reqwest::Client) -> Vec<Check> {
    let described = credential.describe();
    let oauth_app = match &credential {
        Credential::PrivateKeyJwt { client_id, .. } => Some(client_id.clone()),
        Credential::Ssws(_) => None,
    };
    let name = format!(
        "Okta: GET {}api/v1/logs?limit=1 with the {described}",
        cfg.origin
    );
    let client = match OktaClient::new(cfg.origin.clone(), credential, http) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            return vec![Check::failed(name, e.to_string(), e.operator_hint())];
        }
    };
    let mut url: Url = cfg.origin.clone();
    url.set_path("/api/v1/logs");
    url.set_query(Some("limit=1"));
    let budget = "this request counts against the org's /api/v1/logs rate limit";
    let page = match client.fetch(&url).await {
        Ok(p) => p,
        Err(e) => {
            let fix = match (&e, &oauth_app) {
                (OktaError::Unauthorized { .. }, None) => format!(
                    "the API token is expired or revoked (an SSWS token expires after 30 days unused, or when the admin who created it is deactivated or loses the role): create a new token in Okta (Security → API → Tokens) and {}",
                    store_it(cfg)
                ),
                (OktaError::Unauthorized { .. }, Some(app)) => format!(
                    "Okta refused the service app {app}: check OKTA_CLIENT_ID, that the public key registered on the app matches the private key ({}), and OKTA_KEY_ID; for a new key {}",
                    secret_setting(&cfg.credential),
                    store_it(cfg)
                ),
                (OktaError::Forbidden { .. }, Some(app)) => format!(
                    "grant the okta.logs.read scope to the service app {app} (Okta Admin → Applications → the app → Okta API Scopes) and assign it an admin role that can read the System Log (e.g. Read-only Administrator)"
                ),
                (OktaError::Forbidden { .. }, None) => "give the admin who created the API token a role that can read the System Log (e.g. Read-only Administrator), or use an OAuth service app granted the okta.logs.read scope (OKTA_CLIENT_ID)".to_string(),
                (other, _) => other.operator_hint().to_string(),
            };
            return vec![Check::failed(name, format!("{e} ({budget})"), fix)];
        }
    };
    let mut out = vec![Check::ok_with(name, format!("accepted; {budget}"))];
    out.push(match &oauth_app {
        None => Check::ok_with("Okta DPoP", "not applicable: SSWS API token"),
        Some(app) if client.uses_dpop().await => Check::ok_with(
            "Okta DPoP",
            format!("service app {app} requires DPoP: the collector sends DPoP proofs"),
        ),
        Some(app) => Check::ok_with(
            "Okta DPoP",
            format!("service app {app} does not require DPoP"),
        ),
    });
    out.push(match page.rate {
        Some(rate) => {
            let kept = (f64::from(rate.limit) * cfg.reserve).ceil() as u64;
            Check::ok_with(
                "Okta rate limit",
                format!(
                    "X-Rate-Limit-Limit {} for this token, which Okta lets use at most 50 % of the org's bucket by default; {} left until {}; the collector leaves {kept} per window to the org's other integrations, OKTA_RATE_LIMIT_RESERVE {}",
                    rate.limit,
                    rate.remaining,
                    rate.reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    cfg.reserve
                ),
            )
        }
        None => Check::failed(
            "Okta rate limit",
            "the answer carried no X-Rate-Limit-* headers, so the collector cannot pace itself",
            "check that OKTA_DOMAIN is the org's Okta domain and that no proxy strips the headers",
        ),
    });
    out
}
