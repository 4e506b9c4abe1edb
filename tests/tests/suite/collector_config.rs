//! Bad configuration stops the real binaries at once: exit code 2 and a message that names
//! the variable to fix (docs/design.md §3), before anything touches the network. The secret
//! values themselves never appear in the message.
//!
//! Most cases need no world: validation happens before the first connection. The one case
//! that must get *past* validation (`OKTA_START` older than 48 h with the restamp flag) runs
//! `collector status` against a real Azurite so the command can finish.

use world::support;

use std::collections::BTreeMap;
use std::process::ExitStatus;

use world::local::{LocalWorld, WorldOptions};
use world::procs::run_command;

/// A recognisable secret: it must never show up in any output.
const SECRET: &str = "ssws-SECRET-0123456789-do-not-print";

/// A collector environment that passes validation (storage is never reached by these tests).
fn collector_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "AZURE_STORAGE_CONNECTION_STRING".into(),
        "UseDevelopmentStorage=true".into(),
    );
    env.insert("OKTA_DOMAIN".into(), "acme.okta.com".into());
    env.insert("OKTA_API_TOKEN".into(), SECRET.into());
    env.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
    env
}

fn with(
    mut env: BTreeMap<String, String>,
    set: &[(&str, &str)],
    unset: &[&str],
) -> BTreeMap<String, String> {
    for k in unset {
        env.remove(*k);
    }
    for (k, v) in set {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// Runs `binary` (no subcommand: `run`) and asserts a configuration error naming `var`.
fn assert_config_error(binary: &str, env: &BTreeMap<String, String>, var: &str) -> String {
    let (status, stdout, stderr) = run_command(binary, &[], env).expect("run the binary");
    assert_eq!(
        status.code(),
        Some(2),
        "{binary} should refuse the configuration (exit 2) naming {var}; got {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(var),
        "{binary}'s error should name {var}:\n{stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "{binary} printed the secret:\n{stderr}"
    );
    stderr
}

fn code(status: &ExitStatus) -> Option<i32> {
    status.code()
}

#[test]
fn missing_okta_domain() {
    let env = with(collector_env(), &[], &["OKTA_DOMAIN"]);
    assert_config_error("collector", &env, "OKTA_DOMAIN");
}

#[test]
fn plain_http_on_a_non_loopback_host() {
    let env = with(
        collector_env(),
        &[("OKTA_DOMAIN", "http://acme.okta.com")],
        &[],
    );
    let err = assert_config_error("collector", &env, "OKTA_DOMAIN");
    assert!(
        err.contains("must use https unless the host is loopback"),
        "{err}"
    );
}

#[test]
fn bad_poll_interval() {
    let env = with(collector_env(), &[("OKTA_POLL_INTERVAL", "soon")], &[]);
    assert_config_error("collector", &env, "OKTA_POLL_INTERVAL");
}

#[test]
fn start_beyond_okta_retention() {
    // Refused even with the restamp flag: Okta keeps 90 days.
    let env = with(
        collector_env(),
        &[("OKTA_START", "91d"), ("OKTA_ALLOW_RESTAMP", "true")],
        &[],
    );
    let err = assert_config_error("collector", &env, "OKTA_START");
    assert!(err.contains("90 days"), "{err}");
}

#[test]
fn start_older_than_48h_needs_the_restamp_flag() {
    let env = with(collector_env(), &[("OKTA_START", "3d")], &[]);
    let err = assert_config_error("collector", &env, "OKTA_START");
    assert!(err.contains("--allow-restamp"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_older_than_48h_is_accepted_with_the_restamp_flag() -> anyhow::Result<()> {
    let world = LocalWorld::start(WorldOptions::default()).await?;
    // `status` reads the container; in production the Bicep creates it, here we do.
    support::storage(&world).ensure_created().await?;
    let base = world.collector_env();
    // The flag as an environment variable and as a command-line flag: both get past
    // validation, and `status` then runs to completion against Azurite.
    let env = with(
        base.clone(),
        &[("OKTA_START", "3d"), ("OKTA_ALLOW_RESTAMP", "true")],
        &[],
    );
    let (status, stdout, stderr) = run_command("collector", &["status"], &env)?;
    assert_eq!(code(&status), Some(0), "{stdout}\n{stderr}");
    let env = with(base.clone(), &[("OKTA_START", "3d")], &[]);
    let (status, stdout, stderr) = run_command("collector", &["--allow-restamp", "status"], &env)?;
    assert_eq!(code(&status), Some(0), "{stdout}\n{stderr}");
    // The same command without the flag is refused, so the flag is what made the difference.
    let (status, _, stderr) = run_command("collector", &["status"], &env)?;
    assert_eq!(code(&status), Some(2), "{stderr}");
    assert!(stderr.contains("OKTA_START"), "{stderr}");
    Ok(())
}

#[test]
fn no_credential() {
    let env = with(collector_env(), &[], &["OKTA_API_TOKEN"]);
    assert_config_error("collector", &env, "OKTA_API_TOKEN");
}

#[test]
fn oauth_client_without_a_private_key() {
    let env = with(
        collector_env(),
        &[("OKTA_CLIENT_ID", "0oa1234567890abcdef")],
        &["OKTA_API_TOKEN"],
    );
    assert_config_error("collector", &env, "OKTA_PRIVATE_KEY");
}

#[test]
fn no_storage_settings() {
    let env = with(collector_env(), &[], &["AZURE_STORAGE_CONNECTION_STRING"]);
    let err = assert_config_error("collector", &env, "AZURE_STORAGE_CONNECTION_STRING");
    assert!(err.contains("AZURE_STORAGE_ACCOUNT"), "{err}");
}

#[test]
fn leader_lease_outside_blob_lease_limits() {
    let env = with(collector_env(), &[("LEADER_LEASE_DURATION", "5s")], &[]);
    assert_config_error("collector", &env, "LEADER_LEASE_DURATION");
}

#[test]
fn the_secret_never_appears_in_any_refusal() {
    // Every failing configuration above carries the token; check a few more that echo
    // values back (`…` is not a duration / not an origin) on both streams.
    for (k, v) in [
        ("OKTA_RATE_LIMIT_RESERVE", "lots"),
        ("OKTA_DOMAIN", "ftp://acme.okta.com"),
        ("OKTA_START", "yesterday-ish"),
        ("HTTP_ADDR", "not-an-address"),
    ] {
        let env = with(collector_env(), &[(k, v)], &[]);
        assert_config_error("collector", &env, k);
    }
    // The secret passed as a flag instead of the environment.
    let env = with(
        collector_env(),
        &[("OKTA_POLL_INTERVAL", "x")],
        &["OKTA_API_TOKEN"],
    );
    let (status, stdout, stderr) =
        run_command("collector", &["--okta-api-token", SECRET], &env).expect("run");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "{stderr}"
    );
}

// ---- shipper ----

/// A shipper environment that passes validation (logs-ingestion sink).
fn shipper_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "AZURE_STORAGE_CONNECTION_STRING".into(),
        "UseDevelopmentStorage=true".into(),
    );
    env.insert(
        "LOGS_INGESTION_ENDPOINT".into(),
        "https://dce-1.westeurope-1.ingest.monitor.azure.com".into(),
    );
    env.insert(
        "DCR_IMMUTABLE_ID".into(),
        "dcr-0123456789abcdef0123456789abcdef".into(),
    );
    env.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
    env
}

#[test]
fn shipper_missing_logs_ingestion_endpoint() {
    let env = with(shipper_env(), &[], &["LOGS_INGESTION_ENDPOINT"]);
    assert_config_error("shipper", &env, "LOGS_INGESTION_ENDPOINT");
}

#[test]
fn shipper_plain_http_endpoint_on_a_non_loopback_host() {
    let env = with(
        shipper_env(),
        &[(
            "LOGS_INGESTION_ENDPOINT",
            "http://dce-1.westeurope-1.ingest.monitor.azure.com",
        )],
        &[],
    );
    let err = assert_config_error("shipper", &env, "LOGS_INGESTION_ENDPOINT");
    assert!(err.contains("https"), "{err}");
}

#[test]
fn shipper_bad_dcr_immutable_id() {
    let env = with(shipper_env(), &[("DCR_IMMUTABLE_ID", "my-dcr")], &[]);
    assert_config_error("shipper", &env, "DCR_IMMUTABLE_ID");
}

#[test]
fn shipper_data_collector_needs_workspace_id_and_key() {
    let base = with(
        shipper_env(),
        &[("SINK", "data-collector")],
        &["LOGS_INGESTION_ENDPOINT", "DCR_IMMUTABLE_ID"],
    );
    assert_config_error("shipper", &base, "WORKSPACE_ID");
    let with_id = with(
        base,
        &[("WORKSPACE_ID", "0b6a1d2e-3f4a-4b5c-8d9e-0f1a2b3c4d5e")],
        &[],
    );
    assert_config_error("shipper", &with_id, "WORKSPACE_KEY");
}

#[test]
fn shipper_zero_concurrency() {
    let env = with(shipper_env(), &[("SHIPPER_CONCURRENCY", "0")], &[]);
    assert_config_error("shipper", &env, "SHIPPER_CONCURRENCY");
}
