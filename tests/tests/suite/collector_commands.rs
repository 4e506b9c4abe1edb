//! The collector's operator commands against a real run: `collector status` (text and
//! JSON), `collector reset` (epoch bump, refused while a collector leads, refused without
//! `--yes` when stdin is not a terminal, refused for a foreign `--next-url`, replacing an
//! unreadable checkpoint), and the refusal to start when the checkpoint is lost next to the
//! org's pages, page states, done markers or poison records (docs/design.md §2, §3).

use world::support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::storage::Storage;
use support::procs::terminate_cleanly;
use support::worlds::{checkpoint, checkpoint_name, okta, org_key, start_with_storage};
use world::local::{LocalWorld, WorldOptions};
use world::procs::{eventually, run_command};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until the checkpoint records `pages` pages (the last one's envelope may still be
/// recorded as pending: it stays until the next checkpoint write or a clean stop).
async fn wait_pages(world: &LocalWorld, storage: &Storage, pages: u64) -> serde_json::Value {
    eventually(WAIT, &format!("{pages} pages recorded"), || async {
        checkpoint(world, storage)
            .await
            .filter(|cp| cp["seq"].as_u64() == Some(pages))
    })
    .await
    .expect("checkpoint")
}

fn collector(
    world: &LocalWorld,
    args: &[&str],
) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    let env: BTreeMap<String, String> = world.collector_env();
    run_command("collector", args, &env)
}

async fn world_with(initial: usize, seed: u64) -> anyhow::Result<(LocalWorld, Storage)> {
    // Reads below may run before the collector created the container.
    start_with_storage(WorldOptions {
        okta: okta(seed, initial),
        ..WorldOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_checkpoint_and_reset_bumps_the_epoch() -> anyhow::Result<()> {
    let (world, storage) = world_with(2_500, 101).await?;
    let mut c = world.start_collector("collector", &[])?;
    let cp = wait_pages(&world, &storage, 3).await;
    let next_url = cp["next_url"].as_str().unwrap_or_default().to_string();

    // status --json while the collector leads. The leader publishes its heartbeat when it
    // first renews the lease (a third of LEADER_LEASE_DURATION after taking it).
    let doc = eventually(WAIT, "status naming the leader", || async {
        let (st, out, err) = collector(&world, &["status", "--json"]).ok()?;
        assert!(st.success(), "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).ok()?;
        doc["leader"]["holder"].is_string().then_some(doc)
    })
    .await?;
    assert_eq!(doc["org"], org_key(&world), "{doc}");
    assert_eq!(doc["checkpoint"]["epoch"], 1, "{doc}");
    assert_eq!(doc["checkpoint"]["seq"], 3, "{doc}");
    let shown = doc["checkpoint"]["next_url"].as_str().unwrap_or_default();
    assert!(shown.contains("/api/v1/logs"), "{doc}");
    assert!(
        !doc["leader"]["holder"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{doc}"
    );
    assert!(doc["checkpoint"]["newest_published"].is_string(), "{doc}");
    // The text form.
    let (st, out, err) = collector(&world, &["status"])?;
    assert!(st.success(), "{err}");
    assert!(out.contains(&org_key(&world)), "{out}");
    assert!(out.contains("epoch / seq:    1 / 3"), "{out}");
    assert!(out.contains("next URL:"), "{out}");
    assert!(out.contains("/api/v1/logs"), "{out}");
    assert!(
        !out.contains(world::local::TEST_SSWS_TOKEN)
            && !err.contains(world::local::TEST_SSWS_TOKEN)
    );

    // reset is refused while a collector leads; nothing changes.
    let (st, out, err) = collector(&world, &["reset", "--start", "10m", "--yes"])?;
    assert_eq!(st.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("leading"), "{err}");
    let cp = checkpoint(&world, &storage).await.expect("checkpoint");
    assert_eq!(cp["epoch"], 1);
    assert_eq!(cp["next_url"], next_url.as_str());

    terminate_cleanly(&mut c, "the collector")?;

    // Without --yes and without a terminal to ask on: refused, nothing changes.
    let (st, out, err) = collector(&world, &["reset", "--start", "10m"])?;
    assert_eq!(st.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(checkpoint(&world, &storage).await.expect("cp")["epoch"], 1);

    // A next link on another origin is refused, nothing changes.
    let (st, out, err) = collector(
        &world,
        &[
            "reset",
            "--next-url",
            "https://evil.example/api/v1/logs?after=x",
            "--yes",
        ],
    )?;
    assert_eq!(st.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("--next-url"), "{err}");
    assert_eq!(checkpoint(&world, &storage).await.expect("cp")["epoch"], 1);

    // --start with --yes: new epoch, seq 0, a fresh `since` URL, nothing pending.
    let (st, out, err) = collector(&world, &["reset", "--start", "10m", "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    let cp = checkpoint(&world, &storage).await.expect("cp");
    assert_eq!(cp["epoch"], 2, "{cp}");
    assert_eq!(cp["seq"], 0, "{cp}");
    assert!(cp.get("pending").is_none(), "{cp}");
    // The previous run's uuid window must not survive a reset: collecting again from an
    // earlier point would drop every event it remembers as a "repeat", and those events
    // would never be stored.
    assert!(
        cp.get("recent").is_none_or(|r| r.is_null()),
        "reset kept the previous run's uuid window: {cp}"
    );
    let url = cp["next_url"].as_str().unwrap_or_default();
    assert!(url.contains("since=") && url != next_url, "{cp}");

    // --next-url on the org itself (a link kept by Microsoft's Function connector).
    let imported = format!(
        "{}/api/v1/logs?limit=1000&after=1700000000000_1",
        world.okta.base_url()
    );
    let (st, out, err) = collector(&world, &["reset", "--next-url", &imported, "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    let cp = checkpoint(&world, &storage).await.expect("cp");
    assert_eq!(cp["epoch"], 3, "{cp}");
    assert_eq!(cp["next_url"], imported.as_str(), "{cp}");

    // Back to a time, and collect: the new pages live under the new epoch.
    let (st, out, err) = collector(&world, &["reset", "--start", "1h", "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    let epoch = checkpoint(&world, &storage).await.expect("cp")["epoch"].as_u64();
    assert_eq!(epoch, Some(4));
    let c2 = world.start_collector("collector-2", &[])?;
    let prefix = format!("pages/{}/4/", org_key(&world));
    let found = eventually(WAIT, "pages of epoch 4", || async {
        (!support::blob_names(&storage, &prefix).await.is_empty()).then_some(())
    })
    .await;
    assert!(found.is_ok(), "{found:?}\n{}", c2.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_before_any_run() -> anyhow::Result<()> {
    let (world, _storage) = world_with(0, 102).await?;
    let (st, out, err) = collector(&world, &["status", "--json"])?;
    assert!(st.success(), "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out)?;
    assert!(doc["checkpoint"].is_null(), "{doc}");
    let (st, out, err) = collector(&world, &["status"])?;
    assert!(st.success(), "{err}");
    assert!(out.contains("checkpoint:     none"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_checkpoint_next_to_pages_is_refused_until_reset() -> anyhow::Result<()> {
    let (world, storage) = world_with(1_500, 103).await?;
    let mut c = world.start_collector("collector-1", &[])?;
    wait_pages(&world, &storage, 2).await;
    terminate_cleanly(&mut c, "the collector")?;
    // No shipper ran: the pages are still there. Lose the checkpoint.
    assert!(!support::blob_names(&storage, "pages/").await.is_empty());
    assert!(storage.blobs.delete(&checkpoint_name(&world), None).await?);

    let mut again = world.start_collector("collector-2", &[])?;
    let status = again.wait_exit(WAIT).await?;
    assert_eq!(status.code(), Some(1), "{}", again.log_text());
    assert!(
        again.log_text().contains("collector reset"),
        "{}",
        again.log_text()
    );
    // It refused before fetching anything: no checkpoint was created.
    assert!(checkpoint(&world, &storage).await.is_none());

    // An explicit reset makes it start again, under a new epoch.
    let (st, out, err) = collector(&world, &["reset", "--start", "1h", "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    let cp = checkpoint(&world, &storage).await.expect("cp");
    assert_eq!(
        cp["epoch"], 2,
        "the epoch must not reuse the pages' epoch 1: {cp}"
    );
    let mut third = world.start_collector("collector-3", &[])?;
    let prefix = format!("pages/{}/2/", org_key(&world));
    eventually(WAIT, "pages of epoch 2", || async {
        (!support::blob_names(&storage, &prefix).await.is_empty()).then_some(())
    })
    .await?;
    assert!(third.is_running());
    Ok(())
}

/// After everything was shipped only `done/` markers are left. A checkpoint lost then must still
/// be refused: starting over at epoch 1 would make the shipper take every new page for a twin of
/// a shipped one (`done/{org}/1/{seq}` exists) and drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_checkpoint_after_everything_shipped_is_refused_and_reset_skips_used_epochs(
) -> anyhow::Result<()> {
    let (world, storage) = world_with(1_500, 104).await?;
    let mut c = world.start_collector("collector-1", &[])?;
    let _s = world.start_shipper("shipper", &[])?;
    let first = world.wait_all_landed(WAIT).await?;
    let org = org_key(&world);
    eventually(WAIT, "only done markers left", || async {
        let pages = support::blob_names(&storage, &format!("pages/{org}/")).await;
        let states = support::blob_names(&storage, &format!("state/{org}/")).await;
        let done = support::blob_names(&storage, &format!("done/{org}/1/")).await;
        (pages.is_empty() && states.is_empty() && !done.is_empty()).then_some(())
    })
    .await?;
    terminate_cleanly(&mut c, "the collector")?;
    assert!(storage.blobs.delete(&checkpoint_name(&world), None).await?);

    let mut again = world.start_collector("collector-2", &[])?;
    let status = again.wait_exit(WAIT).await?;
    let log = again.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("done/") && log.contains("collector reset"),
        "{log}"
    );
    assert!(checkpoint(&world, &storage).await.is_none());

    let (st, out, err) = collector(&world, &["reset", "--start", "2h", "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    let cp = checkpoint(&world, &storage).await.expect("cp");
    assert_eq!(cp["epoch"], 2, "epoch 1 has done markers: {cp}");

    // The re-collected pages are shipped, not dropped as twins of epoch 1's.
    let _c3 = world.start_collector("collector-3", &[])?;
    eventually(
        Duration::from_secs(60),
        "every event shipped again",
        || async {
            let counts = world.landed_counts();
            (counts.len() >= first.released && counts.values().all(|n| *n >= 2)).then_some(())
        },
    )
    .await?;
    Ok(())
}

/// An unreadable checkpoint stops the collector with advice to reset, and the reset replaces it
/// (it used to fail on the same unreadable blob).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_replaces_an_unreadable_checkpoint() -> anyhow::Result<()> {
    let (world, storage) = world_with(1_500, 105).await?;
    let mut c = world.start_collector("collector-1", &[])?;
    wait_pages(&world, &storage, 2).await;
    terminate_cleanly(&mut c, "the collector")?;
    storage
        .blobs
        .write(
            &checkpoint_name(&world),
            bytes::Bytes::from_static(b"{\"v\": 1, \"org"),
            None,
        )
        .await?;

    let mut again = world.start_collector("collector-2", &[])?;
    let status = again.wait_exit(WAIT).await?;
    let log = again.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("unreadable") && log.contains("collector reset"),
        "{log}"
    );

    let (st, out, err) = collector(&world, &["reset", "--start", "1h", "--yes"])?;
    assert!(st.success(), "{out}\n{err}");
    assert!(out.contains("unreadable"), "{out}");
    let cp = checkpoint(&world, &storage)
        .await
        .expect("a readable checkpoint");
    assert_eq!(cp["epoch"], 2, "the pages of epoch 1 are still there: {cp}");

    let _c3 = world.start_collector("collector-3", &[])?;
    let prefix = format!("pages/{}/2/", org_key(&world));
    eventually(WAIT, "pages of epoch 2", || async {
        (!support::blob_names(&storage, &prefix).await.is_empty()).then_some(())
    })
    .await?;
    Ok(())
}

/// An operator runs `collector reset` and takes a while to answer its question; meanwhile a
/// collector starts on the org, creates epoch 1 and records pages, and stops. Confirmed, the
/// reset must choose its epoch from what is there *then*, under the leader lease: epoch 2.
/// (It used to compute the epoch before the question — 1, from the empty org — and write
/// epoch 1 again, so the new run's pages would share names with the first run's and the
/// shipper would take them for twins of shipped pages and drop them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_chooses_its_epoch_under_the_lease_after_the_question() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let (world, storage) = world_with(2_500, 106).await?;
    // The question is only asked on a terminal: stdin is a pseudo-terminal the test types into.
    let pty = nix::pty::openpty(None, None)?;
    let mut cmd = Command::new(world::procs::binary("collector")?);
    cmd.args(["reset", "--start", "1h"])
        .env_clear()
        .envs(world.collector_env())
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut reset = cmd.spawn()?;
    let stdout = reset.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        // The prompt ends without a newline: read byte-wise chunks up to ':'.
        let mut r = BufReader::new(stdout);
        let mut chunk = Vec::new();
        while r.read_until(b':', &mut chunk).unwrap_or(0) > 0 {
            let _ = tx.send(String::from_utf8_lossy(&chunk).into_owned());
            chunk.clear();
        }
    });
    let mut shown = String::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !shown.contains("Type yes to continue:") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(part) => shown.push_str(&part),
            Err(e) => {
                let _ = reset.kill();
                panic!("no question from reset ({e}): {shown}");
            }
        }
    }

    // While the question waits: a collector creates epoch 1, records pages, stops.
    let mut c = world.start_collector("collector", &[])?;
    let cp = wait_pages(&world, &storage, 2).await;
    assert_eq!(cp["epoch"], 1, "{cp}");
    terminate_cleanly(&mut c, "the collector")?;

    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"yes\n")?;
    let status = tokio::task::spawn_blocking(move || reset.wait_with_output()).await??;
    while let Ok(part) = rx.try_recv() {
        shown.push_str(&part);
    }
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{shown}\n{err}");
    let cp = checkpoint(&world, &storage).await.expect("cp");
    assert_eq!(cp["epoch"], 2, "reset reused an epoch in use: {cp}");
    assert_eq!(cp["seq"], 0, "{cp}");
    Ok(())
}
