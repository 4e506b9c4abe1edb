//! The Azurite launcher: ports answer, https/oauth mode demands a token, stop leaves nothing;
//! test worlds share one Azurite, and a world that fails keeps its logs.

use std::path::Path;

use world::azurite::{Azurite, AzuriteOptions, Persistence};

fn process_exists(pid: u32) -> bool {
    // A zombie still has a /proc entry; the launcher reaps its child, so any entry that is not
    // a zombie means the process is still alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        else {
            continue;
        };
        // Fields after the command name: state ppid pgrp ...
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
                out.push(pid);
            }
        }
    }
    out
}

#[tokio::test]
async fn in_memory_http_answers_on_both_ports_and_stop_leaves_no_process() {
    let mut az = Azurite::start(AzuriteOptions::default()).await.unwrap();
    assert!(!az.is_https());
    assert!(az.blob_endpoint().starts_with("http://127.0.0.1:"));
    assert!(az.blob_endpoint().ends_with("/devstoreaccount1"));
    let cs = az.connection_string();
    assert!(cs.contains(&format!("BlobEndpoint={};", az.blob_endpoint())));
    assert!(cs.contains(&format!("QueueEndpoint={};", az.queue_endpoint())));
    assert!(cs.contains("AccountName=devstoreaccount1;"));

    let client = reqwest::Client::new();
    for url in [az.blob_endpoint(), az.queue_endpoint()] {
        let resp = client.get(format!("{url}?comp=list")).send().await.unwrap();
        // Azurite answers (unauthenticated request → 403 AuthorizationFailure), and says so
        // in its own error header.
        assert_eq!(resp.status(), 403, "{url}");
        assert!(resp.headers().contains_key("x-ms-error-code"));
    }

    let pid = az.pid().unwrap();
    assert!(process_exists(pid));
    assert!(!group_members(pid).is_empty());
    az.stop();
    assert_eq!(az.pid(), None);
    assert!(!process_exists(pid), "azurite pid {pid} survived stop()");
    assert!(
        group_members(pid).is_empty(),
        "process group {pid} survived"
    );
    let port = az.blob_port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn drop_kills_the_process_group() {
    let az = Azurite::start(AzuriteOptions::default()).await.unwrap();
    let pid = az.pid().unwrap();
    drop(az);
    assert!(!process_exists(pid));
    assert!(group_members(pid).is_empty());
}

#[tokio::test]
async fn https_oauth_mode_requires_a_bearer_token() {
    let az = Azurite::start(AzuriteOptions {
        persistence: Persistence::InMemory,
        https_oauth: true,
        ..AzuriteOptions::default()
    })
    .await
    .unwrap();
    assert!(az.is_https());
    assert!(az.queue_endpoint().starts_with("https://127.0.0.1:"));
    let ca = az.ca_pem().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}?comp=list", az.queue_endpoint()))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status() == 401 || resp.status() == 403,
        "status {}",
        resp.status()
    );

    // A client that does not trust the test CA cannot even connect.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("{}?comp=list", az.queue_endpoint()))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn restart_keeps_ports_and_on_disk_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut az = Azurite::start(AzuriteOptions {
        persistence: Persistence::OnDisk(dir.path().to_path_buf()),
        https_oauth: false,
        ..AzuriteOptions::default()
    })
    .await
    .unwrap();
    let (blob, queue, pid) = (az.blob_endpoint(), az.queue_endpoint(), az.pid().unwrap());
    az.restart().await.unwrap();
    assert_eq!(az.blob_endpoint(), blob);
    assert_eq!(az.queue_endpoint(), queue);
    assert_ne!(az.pid().unwrap(), pid);
    assert!(!process_exists(pid));
    // Azurite keeps its databases in the location, not in the scratch cwd.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_some());
    let sas = account_sas();
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{queue}/persisted-q?{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Azurite writes its database files behind the answer (an autosave timer, and a flush on a
    // graceful stop that a loaded machine was seen to cut short): wait until the location holds
    // the queue, so that what is tested is our restart (same location, same ports), not the
    // timing of Azurite's writer.
    let on_disk = || {
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
            std::fs::read(e.path())
                .map(|b| b.windows(b"persisted-q".len()).any(|w| w == b"persisted-q"))
                .unwrap_or(false)
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !on_disk() {
        assert!(
            std::time::Instant::now() < deadline,
            "Azurite never wrote the created queue to its location"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    az.restart().await.unwrap();
    let props = client
        .get(format!("{queue}/persisted-q?comp=metadata&{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(props.status(), 200, "queue lost across a graceful restart");
    let missing = client
        .get(format!("{queue}/never-created?comp=metadata&{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// An account SAS signed with the well-known key (queue service, all permissions).
fn account_sas() -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now = chrono::Utc::now();
    let (st, se) = (
        fmt(now - chrono::Duration::minutes(5)),
        fmt(now + chrono::Duration::hours(1)),
    );
    let (sv, ss, srt, sp, spr) = ("2021-08-06", "q", "sco", "rwdlacup", "https,http");
    let sts = format!("devstoreaccount1\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{sv}\n\n");
    let key = b64.decode(world::azurite::ACCOUNT_KEY).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(sts.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("sv", sv),
            ("ss", ss),
            ("srt", srt),
            ("sp", sp),
            ("st", &st),
            ("se", &se),
            ("spr", spr),
            ("sig", &sig),
        ])
        .finish()
}

/// Test worlds share the test binary's one Azurite (each start of Node costs ≈ 1.5 CPU-s), and
/// each world has a queue and a container of its own in it: one world's pages are not
/// another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worlds_share_one_azurite_but_not_their_queue_or_container() -> anyhow::Result<()> {
    use world::local::{LocalWorld, WorldOptions};
    let a = LocalWorld::start(WorldOptions::default()).await?;
    let b = LocalWorld::start(WorldOptions::default()).await?;
    assert!(a.azurite.is_shared() && b.azurite.is_shared());
    assert_eq!(a.azurite.queue_endpoint(), b.azurite.queue_endpoint());
    assert_ne!(a.queue_name(), b.queue_name());
    assert_ne!(a.container_name(), b.container_name());
    assert_eq!(
        a.common_env().get("OKTA_QUEUE").map(String::as_str),
        Some(a.queue_name())
    );

    let (sa, sb) = (a.storage()?, b.storage()?);
    sa.ensure_created().await?;
    sb.ensure_created().await?;
    sa.queue.send("only-in-a", None).await?;
    sa.blobs
        .create_only("pages/only-in-a", bytes::Bytes::from_static(b"x"))
        .await?;
    assert_eq!(sa.queue.approximate_count().await?, 1);
    assert_eq!(sb.queue.approximate_count().await?, 0);
    assert!(sb.blobs.list("pages/").await?.is_empty());
    assert_eq!(sa.blobs.list("pages/").await?.len(), 1);

    // A world that needs to stop or restart its storage asks for its own process.
    let own = LocalWorld::start(WorldOptions {
        azurite: AzuriteOptions {
            own_process: true,
            ..AzuriteOptions::default()
        },
        ..WorldOptions::default()
    })
    .await?;
    assert!(!own.azurite.is_shared());
    assert_ne!(own.azurite.queue_endpoint(), a.azurite.queue_endpoint());
    assert_eq!(own.queue_name(), "okta-pages");
    Ok(())
}

/// A world dropped while its test panics keeps its logs (and says where), so a one-off failure
/// can be read; a world that ends well leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_world_keeps_its_logs_and_a_passing_one_does_not() -> anyhow::Result<()> {
    use world::local::{LocalWorld, WorldOptions};
    let passing = LocalWorld::start(WorldOptions::default()).await?;
    let passing_logs = passing.log_dir.clone();
    assert!(passing_logs.exists());
    drop(passing);
    if !world::procs::failure_seen() {
        assert!(!passing_logs.exists(), "{}", passing_logs.display());
    }

    let failing = LocalWorld::start(WorldOptions::default()).await?;
    let failing_logs = failing.log_dir.clone();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _world = failing;
        panic!("a failing test");
    }));
    assert!(panicked.is_err());
    assert!(failing_logs.exists(), "{}", failing_logs.display());
    std::fs::remove_dir_all(failing_logs.parent().unwrap_or(&failing_logs))?;
    Ok(())
}
