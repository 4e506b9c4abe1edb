//! Security (issue #6 item 5, docs/design.md §5), against the real binaries:
//!
//! - **No secret anywhere.** A pipeline runs with recognisable secrets — an SSWS token and a
//!   Data Collector workspace key — coming (a) from the environment and (b) from the Key Vault
//!   fake through managed identity, and is pushed through its error paths: Okta answers 401
//!   (the credential is re-read), Okta hands out a `next` link to another origin, the sink
//!   answers 403 (breaker, secrets re-read), and a page blob is missing (poison record). Then
//!   everything the run produced is scanned: every line of both services' logs (stats lines
//!   included), every `/metrics`, `/readyz` and `/healthz` answer seen while the run went on,
//!   every blob in the container (checkpoint, leader heartbeat, pages — decompressed too —,
//!   page states, done markers, the poison record) and the queue messages. No secret may
//!   appear, raw, base64-encoded (any alignment, both alphabets), url-encoded or hex, nor its
//!   random part alone (a truncated leak), nor the identity header, nor a bearer JWT, nor an
//!   unredacted SAS signature.
//! - **The credential never leaves for another origin**: the foreign `next` link points at a
//!   listener of this test, which must receive nothing at all.
//! - **https is required** for every non-loopback endpoint: exit code 2 naming the variable.

use world::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use common::envelope::Envelope;
use common::org::OrgKey;
use sha2::{Digest, Sha256};
use support::procs::terminate_cleanly;
use support::secret_scan::{
    base64_forms, read_logs, scan, snapshot_storage, url_encoded, Artifact, Needle,
};
use support::trap::Trap;
use world::fakes::log_analytics::{LaFault, LogAnalyticsFakeConfig};
use world::fakes::okta::{OktaFakeConfig, OktaFault};
use world::local::{LocalWorld, SinkKind, WorldOptions};
use world::procs::eventually;

/// The secrets of one run; each carries a random part so no fixture can match by chance.
struct Secrets {
    ssws: String,
    ssws_nonce: String,
    workspace_key_bytes: Vec<u8>,
    workspace_key_b64: String,
    workspace_nonce: String,
}

impl Secrets {
    fn new() -> Secrets {
        let ssws_nonce = uuid::Uuid::new_v4().simple().to_string();
        let workspace_nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut key = format!("sekret-workspace-key-{workspace_nonce}-").into_bytes();
        key.resize(64, b'k');
        Secrets {
            ssws: format!("sekret-ssws-{ssws_nonce}"),
            ssws_nonce,
            workspace_key_b64: base64::engine::general_purpose::STANDARD.encode(&key),
            workspace_key_bytes: key,
            workspace_nonce,
        }
    }
}

fn needles(secrets: &Secrets, identity_header: &str) -> Vec<Needle> {
    let mut n = Vec::new();
    let mut add = |label: &str, value: String| {
        if !n.iter().any(|x: &Needle| x.value == value) {
            n.push(Needle {
                label: label.to_string(),
                value,
            });
        }
    };
    // The SSWS token.
    add("ssws token", secrets.ssws.clone());
    add("ssws token (url-encoded)", url_encoded(&secrets.ssws));
    add("ssws token (random part)", secrets.ssws_nonce.clone());
    for f in base64_forms(secrets.ssws.as_bytes()) {
        add("ssws token (base64)", f);
    }
    // The workspace key: its Base64 text as configured, and the key bytes it stands for.
    add("workspace key", secrets.workspace_key_b64.clone());
    add(
        "workspace key (url-encoded)",
        url_encoded(&secrets.workspace_key_b64),
    );
    add(
        "workspace key (no padding)",
        secrets.workspace_key_b64.trim_end_matches('=').to_string(),
    );
    for f in base64_forms(secrets.workspace_key_b64.as_bytes()) {
        add("workspace key (base64 of the Base64)", f);
    }
    add(
        "workspace key bytes",
        String::from_utf8_lossy(&secrets.workspace_key_bytes).into_owned(),
    );
    add(
        "workspace key bytes (hex)",
        hex::encode(&secrets.workspace_key_bytes),
    );
    add(
        "workspace key (random part)",
        secrets.workspace_nonce.clone(),
    );
    for f in base64_forms(&secrets.workspace_key_bytes) {
        add("workspace key bytes (base64, any alignment)", f);
    }
    // The managed-identity header (a secret of the hosting platform).
    add("identity header", identity_header.to_string());
    for f in base64_forms(identity_header.as_bytes()) {
        add("identity header (base64)", f);
    }
    n
}

/// Polls `/metrics`, `/readyz` and `/healthz` of a service every second while the run goes
/// on, keeping every distinct answer (readiness reasons carry error texts).
fn poll_health(
    name: String,
    addr: String,
    seen: Arc<Mutex<BTreeSet<(String, String)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for path in ["/metrics", "/readyz", "/healthz"] {
                let (status, body) = support::http_get(&addr, path).await;
                if status != 0 {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((format!("{name} {path}"), body));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Bound of the wait for a service's health address in its log.
const ADDR: Duration = Duration::from_secs(60);

async fn scenario(from_vault: bool) -> anyhow::Result<()> {
    let mode = if from_vault {
        "key vault"
    } else {
        "environment"
    };
    let secrets = Secrets::new();
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            seed: 61,
            initial_events: 1_500,
            ssws_tokens: vec![secrets.ssws.clone()],
            ..OktaFakeConfig::default()
        },
        la: LogAnalyticsFakeConfig {
            workspace_key_b64: secrets.workspace_key_b64.clone(),
            ..LogAnalyticsFakeConfig::default()
        },
        sink: SinkKind::DataCollector,
        secrets_in_vault: from_vault,
        ..WorldOptions::default()
    })
    .await?;
    let logs = world.log_dir.display().to_string();
    let storage = support::storage(&world);
    storage.ensure_created().await?;

    // Error paths: 401s (the credential is re-read), a next link to another origin, 403s from
    // the sink, and an envelope whose page blob does not exist (poison after 2 failures).
    let trap = Trap::start().await?;
    world.okta.inject(OktaFault::Unauthorized { count: 3 });
    world.okta.inject(OktaFault::ForeignNextLink {
        count: 1,
        url: format!(
            "http://127.0.0.1:{}/api/v1/logs?after=stolen&limit=1000",
            trap.port
        ),
    });
    world.la.inject(LaFault::Status {
        status: 403,
        count: 3,
        retry_after_secs: None,
    });
    let org = OrgKey::from_origin(&url::Url::parse(&world.okta.base_url())?)?;
    let missing = Envelope {
        v: 1,
        org,
        epoch: 1,
        seq: 1_000_000,
        sha256: hex::encode(Sha256::digest(b"a page that was never stored")),
        events: 10,
        bytes: 100,
        newest_published: None,
        created: Utc::now(),
    };
    storage.queue.send(&missing.encode(), None).await?;

    let env_token = [("OKTA_API_TOKEN", secrets.ssws.as_str())];
    let collector_extra: &[(&str, &str)] = if from_vault { &[] } else { &env_token };
    let mut collector = world.start_collector("collector", collector_extra)?;
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let c_addr = support::health_addr_within(&collector, ADDR).await?;
    let c_poll = poll_health("collector".into(), c_addr, seen.clone());

    // The collector refuses the foreign link, then stores pages; nothing is shipped yet, so
    // the pages and their envelopes can be read.
    eventually(
        Duration::from_secs(150),
        "the collector to refuse the foreign next link",
        || async {
            collector
                .log_text()
                .contains("another origin")
                .then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{mode}: {e}\n{}", collector.log_text()))?;
    eventually(
        Duration::from_secs(90),
        "pages to be stored and enqueued",
        || async {
            let n = storage.queue.approximate_count().await.ok()?;
            (n >= 2).then_some(())
        },
    )
    .await?;
    let mut artifacts = Vec::new();
    let early = snapshot_storage(&storage, "early", &mut artifacts).await?;
    assert!(
        early.iter().any(|n| n.starts_with("pages/")),
        "{mode}: no page stored yet: {early:?}"
    );

    let mut shipper = world.start_shipper("shipper", &[("SHIPPER_MAX_DEQUEUE", "2")])?;
    let s_addr = support::health_addr_within(&shipper, ADDR).await?;
    let s_poll = poll_health("shipper".into(), s_addr.clone(), seen.clone());
    world
        .wait_all_landed(Duration::from_secs(150))
        .await
        .map_err(|e| anyhow::anyhow!("{mode}: {e}"))?;
    eventually(
        Duration::from_secs(90),
        "the poison record of the missing page",
        || async {
            let p = support::blob_names(&storage, "poison/").await;
            (!p.is_empty()).then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{mode}: {e}\n{}", shipper.log_text()))?;
    // Let a stats line or two be written after the error paths.
    tokio::time::sleep(Duration::from_secs(6)).await;
    c_poll.abort();
    s_poll.abort();

    // The error paths really ran.
    let okta = world.okta.stats();
    assert!(
        okta.by_status.get(&401).copied().unwrap_or(0) >= 3,
        "{mode}: {okta:?}"
    );
    // The token was really in use (a scan of a run without it would prove nothing).
    let ssws_used = okta
        .auth_schemes_by_path
        .get("/api/v1/logs")
        .and_then(|m| m.get("SSWS"))
        .copied()
        .unwrap_or(0);
    assert!(ssws_used > 3, "{mode}: {okta:?}");
    let la = world.la.stats();
    assert_eq!(
        la.requests_by_status.get(&403).copied(),
        Some(3),
        "{mode}: {la:?}"
    );
    if let Some(v) = &world.vault {
        let name = world::local::okta_secret_name(&world.okta.domain());
        assert!(
            v.reads(&name) >= 2,
            "{mode}: the 401 did not re-read the Okta token"
        );
        assert!(v.reads("workspace-key") >= 1);
    }
    // The credential never went to the other origin: not a single connection.
    let sent = trap.received();
    assert_eq!(
        trap.connections(),
        0,
        "{mode}: the collector connected to the foreign origin and sent {} bytes (token inside: {})",
        sent.len(),
        String::from_utf8_lossy(&sent).contains(&secrets.ssws)
    );

    terminate_cleanly(&mut collector, mode)?;
    terminate_cleanly(&mut shipper, mode)?;

    let late = snapshot_storage(&storage, "final", &mut artifacts).await?;
    for prefix in ["checkpoints/", "leader/", "done/", "poison/", "state/"] {
        assert!(
            late.iter().any(|n| n.starts_with(prefix))
                || early.iter().any(|n| n.starts_with(prefix)),
            "{mode}: nothing under {prefix} was scanned: {late:?}"
        );
    }
    let log_lines = read_logs(&world.log_dir, &mut artifacts)?;
    let stats_lines = artifacts
        .iter()
        .filter(|a| a.source.starts_with("log "))
        .map(|a| a.text.lines().filter(|l| l.contains("stats")).count())
        .sum::<usize>();
    let health: Vec<(String, String)> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    assert!(
        health.iter().any(|(s, _)| s == "collector /metrics"),
        "{mode}: no collector metrics"
    );
    assert!(
        health.iter().any(|(s, _)| s == "shipper /metrics"),
        "{mode}: no shipper metrics"
    );
    for (source, body) in health.iter() {
        artifacts.push(Artifact {
            source: source.clone(),
            text: body.clone(),
        });
    }
    // The secrets really were in use: a scan that finds nothing because nothing was
    // configured would prove nothing.
    let identity_header = world.identity.header_secret();
    let needles = needles(&secrets, &identity_header);
    let findings = scan(&artifacts, &needles);
    println!(
        "{mode}: scanned {} artifacts ({} log lines, {stats_lines} stats lines, {} health answers, {} + {} blobs) for {} secret forms: {} findings",
        artifacts.len(),
        log_lines,
        health.len(),
        early.len(),
        late.len(),
        needles.len(),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "{mode}: secrets leaked (logs in {logs}):\n{}",
        findings.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_from_the_environment_appears_anywhere() -> anyhow::Result<()> {
    scenario(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_from_key_vault_appears_anywhere() -> anyhow::Result<()> {
    scenario(true).await
}

/// The scanner itself finds each form of a secret (so a clean scan means something).
#[test]
fn the_scanner_finds_every_form_of_a_secret() {
    let s = Secrets::new();
    let n = needles(&s, "fake-identity-header-0123456789abcdef");
    let b64 = base64::engine::general_purpose::STANDARD;
    let planted = [
        format!("Authorization: SSWS {}", s.ssws),
        format!("x={}", b64.encode(format!("ab{}cd", s.ssws))),
        format!("x={}", b64.encode(format!("a{}", s.ssws))),
        format!("a truncated token …{}", &s.ssws[4..]),
        format!("key={}", url_encoded(&s.workspace_key_b64)),
        format!("key={}", s.workspace_key_b64),
        format!("raw={}", String::from_utf8_lossy(&s.workspace_key_bytes)),
        format!("hex={}", hex::encode(&s.workspace_key_bytes)),
        "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwczovL21vbml0b3IifQ.sig"
            .to_string(),
        "GET http://127.0.0.1:1/q?sv=2021&sig=abcDEF123%2B456%3D&se=1".to_string(),
    ];
    for p in &planted {
        let found = scan(
            &[Artifact {
                source: "planted".into(),
                text: p.clone(),
            }],
            &n,
        );
        assert!(
            !found.is_empty(),
            "not found: {}",
            p.replace(&s.ssws, "<ssws>")
        );
        assert!(found
            .iter()
            .all(|f| !f.contains(&s.ssws) && !f.contains(&s.workspace_key_b64)));
    }
    let clean = "sig=REDACTED&se=1 eyJ.eyJ sekret-ssws- workspace";
    assert!(scan(
        &[Artifact {
            source: "clean".into(),
            text: clean.into()
        }],
        &n
    )
    .is_empty());
}

/// Plain http for a non-loopback endpoint stops the binary at once (exit 2) naming the
/// variable, without printing the secrets it was given.
#[test]
fn http_is_refused_for_non_loopback_endpoints() {
    let secret = "sekret-ssws-config-0123456789";
    let key =
        base64::engine::general_purpose::STANDARD.encode(b"sekret-workspace-key-config-0123456789");
    let base = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "AZURE_STORAGE_CONNECTION_STRING".into(),
            "UseDevelopmentStorage=true".into(),
        );
        env.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
        for (k, v) in pairs {
            env.insert(k.to_string(), v.to_string());
        }
        env
    };
    let collector = |extra: &[(&str, &str)]| {
        let mut e = base(&[("OKTA_DOMAIN", "acme.okta.com"), ("OKTA_API_TOKEN", secret)]);
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    };
    let li = |extra: &[(&str, &str)]| {
        let mut e = base(&[
            ("SINK", "logs-ingestion"),
            (
                "LOGS_INGESTION_ENDPOINT",
                "https://dce-1.westeurope-1.ingest.monitor.azure.com",
            ),
            ("DCR_IMMUTABLE_ID", "dcr-00000000000000000000000000000000"),
        ]);
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    };
    let dc = |extra: &[(&str, &str)]| {
        let mut e = base(&[
            ("SINK", "data-collector"),
            ("WORKSPACE_ID", "00000000-0000-0000-0000-0000000000aa"),
            ("WORKSPACE_KEY", key.as_str()),
        ]);
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e
    };
    let cases: Vec<(&str, &str, BTreeMap<String, String>)> = vec![
        (
            "collector",
            "OKTA_DOMAIN",
            collector(&[("OKTA_DOMAIN", "http://acme.okta.com")]),
        ),
        (
            "collector",
            "KEY_VAULT_URL",
            collector(&[("KEY_VAULT_URL", "http://my-vault.vault.azure.net/")]),
        ),
        (
            "shipper",
            "LOGS_INGESTION_ENDPOINT",
            li(&[(
                "LOGS_INGESTION_ENDPOINT",
                "http://dce-1.westeurope-1.ingest.monitor.azure.com",
            )]),
        ),
        (
            "shipper",
            "KEY_VAULT_URL",
            li(&[("KEY_VAULT_URL", "http://my-vault.vault.azure.net/")]),
        ),
        (
            "shipper",
            "LOG_ANALYTICS_URI",
            dc(&[(
                "LOG_ANALYTICS_URI",
                "http://00000000-0000-0000-0000-0000000000aa.ods.opinsights.azure.com",
            )]),
        ),
    ];
    let mut failures = Vec::new();
    for (bin, var, env) in cases {
        let (status, stdout, stderr) = run_bounded(bin, &env);
        let out = format!("{stdout}{stderr}");
        if status != Some(2) || !stderr.contains(var) {
            failures.push(format!(
                "{bin} with http {var}: exit {status:?}, stderr: {stderr}"
            ));
        }
        if out.contains(secret) || out.contains(&key) {
            failures.push(format!("{bin} with http {var}: a secret is in the output"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `binary` with exactly `env`; a binary that accepted the configuration would go on to
/// run (and wait for storage forever), so it is killed after a while and reported as such:
/// `None` exit code.
fn run_bounded(binary: &str, env: &BTreeMap<String, String>) -> (Option<i32>, String, String) {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(world::procs::binary(binary).expect("binary built"));
    cmd.env_clear()
        .envs(env)
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        match child.try_wait().expect("wait") {
            Some(st) => break st.code(),
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (code, out, err)
}
