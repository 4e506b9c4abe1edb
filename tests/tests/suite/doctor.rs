//! `collector doctor` and `shipper doctor` against the local world (issue 13 §2): each fault
//! injected one at a time, and the FAILED line must name the right fix — the role and its
//! scope, the secret, the setting. The all-good world gives exit 0 with only OK lines, and a
//! shipper started with a wrong DCR id says so in its first log lines, before any page.
//!
//! Storage is the real Azurite; a 403 `AuthorizationPermissionMismatch` comes from the storage
//! proxy refusing one operation kind, as storage refuses a role without the data action.

use world::support;

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::Duration;

use support::logs::wait_operator_line;
use support::worlds::{okta, start_with_storage};
use world::fakes::log_analytics::LogAnalyticsFakeConfig;
use world::fakes::okta::{test_rsa_key_pem, OAuthAppConfig, OktaFakeConfig, OktaFault};
use world::local::{okta_secret_name, LocalWorld, SinkKind, WorldOptions};
use world::procs::run_command;
use world::storage_proxy::{CountingProxy, FaultRule};

/// Bound of the wait for the start-up self-check's line.
const SIGNAL: Duration = Duration::from_secs(60);

/// What one `doctor` run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The FAILED line whose check name contains `check`; fails the test with the output.
    fn failed(&self, check: &str) -> String {
        self.lines()
            .into_iter()
            .find(|l| l.starts_with("FAILED ") && l.contains(check))
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!(
                    "no FAILED line for {check:?}:\n{}\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "doctor exit\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    fn assert_all_ok(&self) {
        self.assert_exit(0);
        assert!(!self.lines().is_empty(), "no lines: {}", self.stderr);
        for l in self.lines() {
            assert!(l.starts_with("OK  "), "not OK: {l}\n{}", self.stdout);
        }
    }
}

/// Runs `{binary} doctor` with the world's environment for that binary plus `extra`.
async fn doctor(world: &LocalWorld, binary: &str, extra: &[(&str, &str)]) -> Run {
    let mut env: BTreeMap<String, String> = match binary {
        "collector" => world.collector_env(),
        _ => world.shipper_env(),
    };
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let name = binary.to_string();
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_command(&name, &["doctor"], &env))
            .await
            .expect("join")
            .expect("run doctor");
    // Shown with `--nocapture`: what an operator would read.
    let keys: Vec<&str> = extra.iter().map(|(k, _)| *k).collect();
    println!("$ {binary} doctor (with {keys:?} changed)\n{stdout}");
    Run {
        status,
        stdout,
        stderr,
    }
}

async fn world(options: WorldOptions) -> LocalWorld {
    start_with_storage(options).await.expect("world").0
}

fn assert_names(line: &str, needles: &[&str]) {
    for n in needles {
        assert!(line.contains(n), "{n:?} missing from: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// All good
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_good_world_gives_exit_0_with_only_ok_lines() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1301, 5),
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await;
    let c = doctor(&world, "collector", &[]).await;
    c.assert_all_ok();
    let out = &c.stdout;
    for expected in [
        "identity: token for Key Vault",
        &format!("storage queue {}: add message", world.queue_name()),
        &format!("storage container {}: lease", world.container_name()),
        &format!(
            "storage container {}: probe blob left",
            world.container_name()
        ),
        &format!(
            "secret: Key Vault secret {}",
            okta_secret_name(&world.okta.domain())
        ),
        "Okta: GET",
        "counts against the org's /api/v1/logs rate limit",
        "Okta DPoP",
        "Okta rate limit",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    let s = doctor(&world, "shipper", &[]).await;
    s.assert_all_ok();
    for expected in [
        "identity: token for Azure Monitor (https://monitor.azure.com)",
        &format!("storage queue {}: receive message", world.queue_name()),
        &format!("storage queue {}: update message", world.queue_name()),
        "update not checked: queue empty",
        &format!("storage queue {}: delete message", world.queue_name()),
        &format!("storage container {}: delete", world.container_name()),
        "sink: empty batch [] to DCR",
        "accepted: 204",
        "table columns equal the manifest (skipped: no workspace read configured",
    ] {
        assert!(
            s.stdout.contains(expected),
            "{expected:?} missing:\n{}",
            s.stdout
        );
    }
    // The probes posted no data and left only the collector's probe blob (its role cannot
    // delete blobs: the lifecycle rule on doctor/ removes it); the shipper deleted its own.
    let storage = world.storage()?;
    let left = support::blob_names(&storage, "doctor/").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("doctor/collector-"), "{left:?}");
    let la = world.la.stats();
    assert_eq!(
        la.probe_requests_by_status.get(&204).copied(),
        Some(1),
        "{la:?}"
    );
    assert!(la.requests_by_status.is_empty(), "{la:?}");
    assert!(world.la.rows().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sink_signature_accepted_then_refused_names_the_key_secret() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1302, 0),
        sink: SinkKind::DataCollector,
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await;
    let ok = doctor(&world, "shipper", &[]).await;
    ok.assert_all_ok();
    assert!(ok.stdout.contains("SharedKey signature"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("secret: Key Vault secret workspace-key"),
        "{}",
        ok.stdout
    );

    // A key that is not the workspace's: the signature is refused.
    let vault = world.vault.as_ref().expect("vault");
    vault.set_secret("workspace-key", "bm90IHRoZSB3b3Jrc3BhY2Uga2V5");
    let bad = doctor(&world, "shipper", &[]).await;
    bad.assert_exit(1);
    assert_names(
        &bad.failed("SharedKey signature"),
        &["403", "Key Vault secret workspace-key", "WORKSPACE_ID"],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_queue_update_names_the_data_action_and_the_role() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1303, 0),
        ..WorldOptions::default()
    })
    .await;
    let queue: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
    let proxy = CountingProxy::with_faults(
        queue,
        "queue",
        vec![FaultRule::refuse_kind("queue PUT message")],
    )
    .await?;
    let conn = world
        .azurite
        .connection_string_via(None, Some(proxy.addr()));
    // A message to receive: the shipper's role has no Put Message, so the probe works on what
    // the queue holds.
    let storage = world.storage()?;
    storage
        .queue
        .send("a message the probe must not lose", None)
        .await?;
    let run = doctor(
        &world,
        "shipper",
        &[("AZURE_STORAGE_CONNECTION_STRING", &conn)],
    )
    .await;
    run.assert_exit(1);
    assert_eq!(proxy.faults_fired(), 1);
    let line = run.failed(&format!(
        "storage queue {}: update message",
        world.queue_name()
    ));
    assert_names(
        &line,
        &[
            "403",
            "AuthorizationPermissionMismatch",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
            "custom role \"okta-sentinel shipper storage",
            "infra/modules/roles.bicep",
            &format!(
                "queue {} of storage account devstoreaccount1",
                world.queue_name()
            ),
            "visible again by itself",
        ],
    );
    // Only that check failed, and the received message is still in the queue.
    assert_eq!(storage.queue.approximate_count().await?, 1);
    assert_eq!(
        run.lines()
            .iter()
            .filter(|l| l.starts_with("FAILED"))
            .count(),
        1,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "OK  storage queue {}: delete message",
            world.queue_name()
        )),
        "{}",
        run.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_blob_lease_names_the_data_action_and_the_role() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1304, 0),
        ..WorldOptions::default()
    })
    .await;
    let blob: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
    let proxy = CountingProxy::with_faults(
        blob,
        "blob",
        vec![FaultRule::refuse_kind("blob lease:acquire")],
    )
    .await?;
    let conn = world
        .azurite
        .connection_string_via(Some(proxy.addr()), None);
    let run = doctor(
        &world,
        "collector",
        &[("AZURE_STORAGE_CONNECTION_STRING", &conn)],
    )
    .await;
    run.assert_exit(1);
    let line = run.failed(&format!(
        "storage container {}: lease",
        world.container_name()
    ));
    assert_names(
        &line,
        &[
            "AuthorizationPermissionMismatch",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "custom role \"okta-sentinel collector storage",
            "infra/modules/roles.bicep",
            &format!(
                "container {} of storage account devstoreaccount1",
                world.container_name()
            ),
        ],
    );
    // The probe blob is left under doctor/ only, for the lifecycle rule.
    let left = support::blob_names(&world.storage()?, "").await;
    assert!(
        left.iter()
            .filter(|b| b.starts_with("doctor/"))
            .all(|b| b.starts_with("doctor/collector-")),
        "{left:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_says_create_it_or_correct_okta_queue() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1305, 0),
        ..WorldOptions::default()
    })
    .await;
    for binary in ["collector", "shipper"] {
        let run = doctor(&world, binary, &[("OKTA_QUEUE", "no-such-queue")]).await;
        run.assert_exit(1);
        assert_names(
            &run.failed("storage queue no-such-queue: exists"),
            &[
                "404",
                "QueueNotFound",
                "create queue no-such-queue",
                "OKTA_QUEUE",
            ],
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Key Vault and Okta
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_vault_secret_names_the_secret_and_the_setting() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1306, 0),
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await;
    let run = doctor(
        &world,
        "collector",
        &[("OKTA_API_TOKEN_SECRET", "okta-missing-token")],
    )
    .await;
    run.assert_exit(1);
    assert_names(
        &run.failed("secret: Key Vault secret okta-missing-token"),
        &[
            "does not exist (404)",
            "create the secret",
            "OKTA_API_TOKEN_SECRET",
        ],
    );
    // Without the credential Okta is not asked.
    assert_eq!(world.okta.stats().logs_requests, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_okta_401_says_rotate_the_named_secret() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1307, 0),
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await;
    let secret = okta_secret_name(&world.okta.domain());
    world
        .vault
        .as_ref()
        .expect("vault")
        .set_secret(&secret, "revoked-token");
    let run = doctor(&world, "collector", &[]).await;
    run.assert_exit(1);
    assert_names(
        &run.failed("Okta: GET"),
        &[
            "401",
            "E0000011",
            "expired or revoked",
            &format!("rotate the Key Vault secret {secret}"),
            "counts against the org's /api/v1/logs rate limit",
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_okta_403_says_grant_the_logs_read_scope() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1308, 0),
        ..WorldOptions::default()
    })
    .await;
    // Both the request and its retry after re-reading the credential.
    world.okta.inject(OktaFault::Forbidden { count: 2 });
    let run = doctor(&world, "collector", &[]).await;
    run.assert_exit(1);
    assert_names(
        &run.failed("Okta: GET"),
        &[
            "403",
            "E0000006",
            "okta.logs.read",
            "Read-only Administrator",
        ],
    );
    Ok(())
}

/// An OAuth service app that requires DPoP: detected and reported; the same app without the
/// `okta.logs.read` scope (Okta's token endpoint answers `invalid_scope`) gets the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_app_requiring_dpop_is_detected_and_a_missing_scope_named() -> anyhow::Result<()> {
    const CLIENT_ID: &str = "0oa-doctor-test";
    let (private, public) = test_rsa_key_pem();
    let app = |scopes: Vec<String>| OktaFakeConfig {
        seed: 1313,
        ssws_tokens: vec![],
        oauth: Some(OAuthAppConfig {
            require_dpop: true,
            scopes,
            ..OAuthAppConfig::new(CLIENT_ID, public.clone())
        }),
        ..OktaFakeConfig::default()
    };
    let oauth_env = [
        ("OKTA_CLIENT_ID", CLIENT_ID),
        ("OKTA_PRIVATE_KEY", private.as_str()),
    ];
    let without_token = |world: &LocalWorld| {
        let mut env = world.collector_env();
        env.remove("OKTA_API_TOKEN");
        for (k, v) in oauth_env {
            env.insert(k.into(), v.into());
        }
        env
    };

    let good = world(WorldOptions {
        okta: app(vec!["okta.logs.read".into()]),
        ..WorldOptions::default()
    })
    .await;
    let env = without_token(&good);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_command("collector", &["doctor"], &env)).await??;
    println!("$ collector doctor (OAuth app, DPoP required)\n{out}");
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "OK  Okta DPoP (service app {CLIENT_ID} requires DPoP"
        )),
        "{out}"
    );

    let no_scope = world(WorldOptions {
        okta: app(vec!["okta.users.read".into()]),
        ..WorldOptions::default()
    })
    .await;
    let env = without_token(&no_scope);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_command("collector", &["doctor"], &env)).await??;
    println!("$ collector doctor (OAuth app without okta.logs.read)\n{out}");
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("FAILED Okta: GET"))
        .unwrap_or_else(|| panic!("no FAILED Okta line:\n{out}"));
    assert_names(
        line,
        &["invalid_scope", "grant the okta.logs.read scope", CLIENT_ID],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------------------

const WRONG_DCR: &str = "dcr-ffffffffffffffffffffffffffffffff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcr_404_says_wrong_dcr_id_or_endpoint() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1309, 0),
        ..WorldOptions::default()
    })
    .await;
    let run = doctor(&world, "shipper", &[("DCR_IMMUTABLE_ID", WRONG_DCR)]).await;
    run.assert_exit(1);
    assert_names(
        &run.failed("sink: empty batch"),
        &[
            "404",
            "wrong DCR id or endpoint",
            "DCR_IMMUTABLE_ID",
            "LOGS_INGESTION_ENDPOINT",
        ],
    );
    // A stream the DCR does not declare (404 per docs/contracts.md §3.3): the fix is the stream.
    let run = doctor(&world, "shipper", &[("DCR_STREAM", "Custom-Wrong_CL")]).await;
    run.assert_exit(1);
    assert_names(
        &run.failed("sink: empty batch"),
        &["404", "InvalidStream", "set DCR_STREAM"],
    );
    assert!(world.la.stats().requests_by_status.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcr_403_says_grant_monitoring_metrics_publisher_on_the_dcr() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1310, 0),
        ..WorldOptions::default()
    })
    .await;
    world.la.set_publisher_denied(true);
    let run = doctor(&world, "shipper", &[]).await;
    run.assert_exit(1);
    let dcr = world.la.config().dcr_immutable_id.clone();
    assert_names(
        &run.failed("sink: empty batch"),
        &[
            "403",
            "OperationFailed",
            "Monitoring Metrics Publisher",
            "Microsoft.Insights/Telemetry/Write",
            &format!("on the data collection rule {dcr}"),
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcr_400_says_correct_the_stream_name() -> anyhow::Result<()> {
    // The other plausible answer to an undeclared stream (docs/contracts.md §3.3 marks 404 [M]).
    let world = world(WorldOptions {
        okta: okta(1311, 0),
        la: LogAnalyticsFakeConfig {
            unknown_stream_status: 400,
            ..LogAnalyticsFakeConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;
    let run = doctor(&world, "shipper", &[("DCR_STREAM", "Custom-Wrong_CL")]).await;
    run.assert_exit(1);
    assert_names(
        &run.failed("sink: empty batch"),
        &["400", "set DCR_STREAM", "Custom-Okta_CL"],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Start-up self-check
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipper_with_a_wrong_dcr_id_says_so_before_any_page() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1312, 0),
        ..WorldOptions::default()
    })
    .await;
    // No collector runs: no page can arrive, so only the self-check can produce the line.
    let shipper = world.start_shipper("shipper", &[("DCR_IMMUTABLE_ID", WRONG_DCR)])?;
    let line = wait_operator_line(
        &shipper,
        &["FAILED sink: empty batch", "DCR_IMMUTABLE_ID"],
        SIGNAL,
    )
    .await?;
    assert_names(&line, &["404", "wrong DCR id or endpoint", "self-check"]);
    assert!(
        world.la.stats().requests_by_status.is_empty(),
        "a page was posted"
    );
    assert!(world.la.rows().is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------------------

/// A configuration that cannot work stays exit 2 (as for every command), decided before any
/// check runs: doctor's 1 means "a dependency is wrong", not "the settings do not parse".
#[test]
fn bad_configuration_stays_exit_2() {
    let env: BTreeMap<String, String> = [(
        "AZURE_STORAGE_CONNECTION_STRING".to_string(),
        "UseDevelopmentStorage=true".to_string(),
    )]
    .into();
    let (status, stdout, stderr) = run_command("collector", &["doctor"], &env).expect("run");
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("OKTA_DOMAIN"), "{stderr}");
    let (status, stdout, stderr) = run_command("shipper", &["doctor"], &env).expect("run");
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("LOGS_INGESTION_ENDPOINT"), "{stderr}");
}

/// The collector's start-up self-check reads the credential through the collector's own
/// secret source: a secret that is not in the vault is named in its first warning lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_with_a_missing_secret_says_so_at_start_up() -> anyhow::Result<()> {
    let world = world(WorldOptions {
        okta: okta(1314, 0),
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await;
    let collector = world.start_collector(
        "collector",
        &[("OKTA_API_TOKEN_SECRET", "okta-missing-token")],
    )?;
    let line = wait_operator_line(
        &collector,
        &["self-check: FAILED secret: Key Vault secret okta-missing-token"],
        SIGNAL,
    )
    .await?;
    assert_names(&line, &["create the secret", "OKTA_API_TOKEN_SECRET"]);
    assert_eq!(world.okta.stats().logs_requests, 0);
    Ok(())
}
