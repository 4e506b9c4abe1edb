//! The real `collector` binary against the fake Okta org and Azurite: leadership and
//! takeover, pacing on Okta's rate limits, disorder and repeats, refused foreign links,
//! malformed responses, refused credentials, and OAuth with DPoP (issue #3, docs/design.md §2–§3).
//!
//! These suites need only the collector: what it handed off is read back from the queue
//! (each envelope once, twins folded) and from the page blobs the envelopes name. Every
//! assertion is about counts and states, never about durations; timeouts only bound waits.

use world::support;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::envelope::Envelope;
use common::storage::Storage;
use sha2::{Digest, Sha256};
use support::metric_sum;
use support::procs::terminate_cleanly;
use support::trap::Trap;
use support::worlds::{okta, org_key};
use world::fakes::okta::{EmptyPageMode, OAuthAppConfig, OktaFakeConfig, OktaFault};
use world::local::{LocalWorld, WorldOptions};
use world::procs::{eventually, Service};
use world::storage_proxy::{CountingProxy, FaultMode, FaultRule};

const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What the collector put on the queue, read back message by message. Messages are kept
/// invisible (long visibility timeout) so each is seen once; a second envelope for the same
/// page (a twin after a crash) must be identical to the first and is folded.
#[derive(Default)]
struct Enqueued {
    pages: BTreeMap<String, Envelope>,
    /// uuid → number of distinct enqueued pages holding it.
    uuids: HashMap<String, usize>,
    /// uuid → org key of the envelope that carried it.
    org_of: HashMap<String, String>,
    twins: usize,
}

impl Enqueued {
    /// Receives every visible message and loads the pages they name.
    async fn drain(&mut self, storage: &Storage) -> anyhow::Result<()> {
        loop {
            let msgs = storage.queue.receive(32, Duration::from_secs(3600)).await?;
            if msgs.is_empty() {
                return Ok(());
            }
            for m in msgs {
                let env = Envelope::decode(&m.text)
                    .map_err(|e| anyhow::anyhow!("undecodable envelope {:?}: {e}", m.text))?;
                if let Some(first) = self.pages.get(&env.page_id()) {
                    assert_eq!(first, &env, "two different envelopes for one page");
                    self.twins += 1;
                    continue;
                }
                let uuids = read_page(storage, &env).await?;
                assert_eq!(uuids.len() as u64, env.events, "{}", env.page_id());
                for u in uuids {
                    self.org_of.insert(u.clone(), env.org.to_string());
                    *self.uuids.entry(u).or_insert(0) += 1;
                }
                self.pages.insert(env.page_id(), env);
            }
        }
    }

    /// Released uuids not (yet) enqueued.
    fn missing(&self, released: &[String]) -> Vec<String> {
        released
            .iter()
            .filter(|u| !self.uuids.contains_key(*u))
            .cloned()
            .collect()
    }

    /// Uuids enqueued in more than one page.
    fn duplicated(&self) -> Vec<(String, usize)> {
        self.uuids
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(u, n)| (u.clone(), *n))
            .collect()
    }

    /// Drains until every uuid the org released is enqueued (or `timeout`).
    async fn wait_all(
        &mut self,
        world: &LocalWorld,
        storage: &Storage,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain(storage).await?;
            let released = world.okta.released_uuids();
            let missing = self.missing(&released);
            if missing.is_empty() && !released.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} released events not enqueued within {timeout:?} (first {:?}); logs in {}",
                    missing.len(),
                    released.len(),
                    missing.first(),
                    world.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every released uuid enqueued exactly once, and nothing else.
    fn assert_exactly_once(&self, world: &LocalWorld) {
        let released = world.okta.released_uuids();
        assert!(self.missing(&released).is_empty());
        let dup = self.duplicated();
        assert!(dup.is_empty(), "enqueued more than once: {dup:?}");
        assert_eq!(
            self.uuids.len(),
            released.len(),
            "enqueued uuids the org never released"
        );
    }
}

/// The uuids of the page an envelope names, after checking its sha256.
async fn read_page(storage: &Storage, env: &Envelope) -> anyhow::Result<Vec<String>> {
    let name = env.page_blob();
    let blob = storage
        .blobs
        .read(&name)
        .await?
        .with_context(|| format!("enqueued page {name} does not exist"))?;
    assert_eq!(
        hex::encode(Sha256::digest(&blob.bytes)),
        env.sha256,
        "{name}"
    );
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&blob.bytes[..]).read_to_end(&mut json)?;
    let events: Vec<serde_json::Value> = serde_json::from_slice(&json)?;
    events
        .iter()
        .map(|e| {
            e["uuid"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("event without uuid in {name}"))
        })
        .collect()
}

const LEADER: &str = "okta_sentinel_leader";
const REQUESTS: &str = "okta_sentinel_okta_requests_total";
const MALFORMED: &str = "okta_sentinel_malformed_pages_total";
const PAGES: &str = "okta_sentinel_pages_collected_total";
const DUPLICATES: &str = "okta_sentinel_duplicates_dropped_total";

/// Value of a gauge (summed over its series); -1 when `/metrics` does not answer.
async fn gauge(addr: &str, name: &str) -> f64 {
    metric_sum(addr, name, &[]).await.unwrap_or(-1.0)
}

/// Waits until the samples of `name` whose line contains `filter` add up to `at_least`.
async fn wait_metric_at_least(addr: &str, name: &str, filter: &str, at_least: f64) -> f64 {
    eventually(
        WAIT,
        &format!("{name}{{{filter}}} >= {at_least}"),
        || async {
            metric_sum(addr, name, &[filter])
                .await
                .filter(|v| *v >= at_least)
        },
    )
    .await
    .expect("metric")
}

/// `/readyz` until it answers `status` with a body containing every one of `words`.
async fn wait_ready(addr: &str, status: u16, words: &[&str]) -> String {
    support::wait_readyz(addr, status, words, WAIT)
        .await
        .expect("readyz")
}

/// The fake org's checkpoint, which the test expects to exist.
async fn checkpoint(world: &LocalWorld, storage: &Storage) -> serde_json::Value {
    support::worlds::checkpoint(world, storage)
        .await
        .expect("checkpoint exists")
}

async fn world_with(okta: OktaFakeConfig) -> anyhow::Result<(LocalWorld, Storage)> {
    let world = LocalWorld::start(WorldOptions {
        okta,
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    Ok((world, storage))
}

// ---------------------------------------------------------------------------------------
// Leadership
// ---------------------------------------------------------------------------------------

/// Starts two collectors; returns (leader, standby) with their health addresses, after the
/// Requests the fake org counted in its busiest rate-limit window.
fn busiest_window(s: &world::fakes::okta::OktaStats) -> u32 {
    s.max_requests_per_window
        .values()
        .copied()
        .max()
        .unwrap_or(0)
}

/// standby has seen the lease held.
async fn leader_and_standby(
    world: &LocalWorld,
) -> anyhow::Result<((Service, String), (Service, String))> {
    let a = world.start_collector("collector-a", &[])?;
    let a_addr = support::health_addr(&a).await;
    eventually(WAIT, "collector-a leads", || async {
        (gauge(&a_addr, LEADER).await == 1.0).then_some(())
    })
    .await?;
    let b = world.start_collector("collector-b", &[])?;
    let b_addr = support::health_addr(&b).await;
    eventually(WAIT, "collector-b stands by", || async {
        b.log_text().contains("standing by").then_some(())
    })
    .await?;
    Ok(((a, a_addr), (b, b_addr)))
}

/// While one collector leads, the other collects nothing and is ready.
/// `earlier` is what the org counted before these two collectors started.
async fn assert_standby_idle(world: &LocalWorld, a_addr: &str, b_addr: &str, earlier: u64) {
    assert_eq!(
        gauge(b_addr, LEADER).await,
        0.0,
        "the standby claims to lead"
    );
    let (s, body) = support::http_get(b_addr, "/readyz").await;
    assert_eq!(s, 200, "a standby is ready: {body}");
    let b_requests = metric_sum(b_addr, REQUESTS, &[]).await.unwrap_or(-1.0);
    assert_eq!(b_requests, 0.0, "the standby sent requests to Okta");
    // Every request the org saw came from the leader. The fake counts a request before the
    // leader counts its answer (at most one in flight), so reading the leader before and
    // after the fake brackets it: before ≤ fake ≤ after + 1.
    let before = metric_sum(a_addr, REQUESTS, &[]).await.unwrap_or(-1.0);
    let fake = (world.okta.stats().logs_requests - earlier) as f64;
    let after = metric_sum(a_addr, REQUESTS, &[]).await.unwrap_or(-1.0);
    assert!(
        before >= 1.0 && fake >= before && fake <= after + 1.0,
        "org saw {fake} requests, the leader made {before}..{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_after_the_leader_is_killed() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(31, 2_500)).await?;
    let mut enq = Enqueued::default();
    let ((mut a, a_addr), (_b, b_addr)) = leader_and_standby(&world).await?;
    enq.wait_all(&world, &storage, WAIT).await?;
    // Live events while both run: still only the leader fetches.
    world.okta.release(700);
    enq.wait_all(&world, &storage, WAIT).await?;
    assert_standby_idle(&world, &a_addr, &b_addr, 0).await;

    // kill -9: the lease is not released and lapses (LEADER_LEASE_DURATION = 15 s).
    a.kill9()?;
    world.okta.release(1_300);
    eventually(WAIT, "collector-b leads", || async {
        (gauge(&b_addr, LEADER).await == 1.0).then_some(())
    })
    .await?;
    enq.wait_all(&world, &storage, WAIT).await?;
    assert!(metric_sum(&b_addr, PAGES, &[]).await.unwrap_or(0.0) >= 1.0);
    enq.assert_exactly_once(&world);
    assert_eq!(world.okta.released_count(), 4_500);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_the_standby_takes_over() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(32, 1_500)).await?;
    let mut enq = Enqueued::default();

    // Alone: after SIGTERM the lease is free at once (not left to lapse), exit code 0.
    let mut solo = world.start_collector("collector-solo", &[])?;
    let solo_addr = support::health_addr(&solo).await;
    enq.wait_all(&world, &storage, WAIT).await?;
    assert_eq!(gauge(&solo_addr, LEADER).await, 1.0);
    terminate_cleanly(&mut solo, "the solo leader")?;
    let leader_blob = format!("leader/{}", org_key(&world));
    let lease = storage
        .blobs
        .acquire_lease(&leader_blob, Duration::from_secs(15), None)
        .await
        .context("the stopped collector left its lease held")?;
    storage.blobs.release_lease(&leader_blob, &lease).await?;
    let earlier = world.okta.stats().logs_requests;

    // Leader and standby: SIGTERM the leader, the standby leads and collects the rest.
    let ((mut a, a_addr), (_b, b_addr)) = leader_and_standby(&world).await?;
    world.okta.release(500);
    enq.wait_all(&world, &storage, WAIT).await?;
    assert_standby_idle(&world, &a_addr, &b_addr, earlier).await;
    terminate_cleanly(&mut a, "the leader")?;
    assert!(
        !a.log_text().contains("could not release the leader lease"),
        "{}",
        a.log_text()
    );
    eventually(WAIT, "collector-b leads", || async {
        (gauge(&b_addr, LEADER).await == 1.0).then_some(())
    })
    .await?;
    world.okta.release(800);
    enq.wait_all(&world, &storage, WAIT).await?;
    assert!(metric_sum(&b_addr, PAGES, &[]).await.unwrap_or(0.0) >= 1.0);
    enq.assert_exactly_once(&world);
    assert_eq!(enq.twins, 0, "a clean stop re-sent a page");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_late_writes_change_nothing() -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let (world, storage) = world_with(okta(34, 1_500)).await?;
    let mut enq = Enqueued::default();
    let ((a, a_addr), (_b, b_addr)) = leader_and_standby(&world).await?;
    enq.wait_all(&world, &storage, WAIT).await?;

    // Freeze the leader past its lease (a long GC pause, a frozen VM): the standby takes over
    // and collects what comes meanwhile.
    let pid = Pid::from_raw(a.pid().context("pid")? as i32);
    kill(pid, Signal::SIGSTOP)?;
    world.okta.release(2_500);
    let took_over = eventually(WAIT, "collector-b leads", || async {
        (gauge(&b_addr, LEADER).await == 1.0).then_some(())
    })
    .await;
    let collected = match took_over {
        Ok(()) => enq.wait_all(&world, &storage, WAIT).await,
        Err(e) => Err(e),
    };
    // Wake the deposed leader. Its in-memory checkpoint is stale: it fetches from its old
    // next link (pages the new leader already recorded) and tries to store and record them.
    kill(pid, Signal::SIGCONT)?;
    collected?;
    eventually(WAIT, "collector-a notices it lost the lead", || async {
        (gauge(&a_addr, LEADER).await == 0.0).then_some(())
    })
    .await?;
    assert!(a.log_text().contains("leadership lost"), "{}", a.log_text());
    world.okta.release(600);
    enq.wait_all(&world, &storage, WAIT).await?;
    assert_eq!(
        gauge(&b_addr, LEADER).await,
        1.0,
        "the new leader was disturbed"
    );

    // Nothing changed: every event enqueued once (twins of one page are folded), and the
    // checkpoint counts exactly the pages that were enqueued.
    enq.assert_exactly_once(&world);
    // The checkpoint's last envelope stays recorded after it was sent; once it is on the
    // queue, the checkpoint counts exactly the enqueued pages.
    let deadline = Instant::now() + WAIT;
    let cp = loop {
        let cp = checkpoint(&world, &storage).await;
        enq.drain(&storage).await?;
        let sent = match cp.get("pending") {
            None => true,
            Some(p) => {
                let env: Envelope = serde_json::from_value(p.clone())?;
                enq.pages.contains_key(&env.page_id())
            }
        };
        if sent {
            break cp;
        }
        assert!(
            Instant::now() < deadline,
            "the pending page never arrived: {cp}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(cp["seq"].as_u64(), Some(enq.pages.len() as u64), "{cp}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orgs_share_the_queue_without_interfering() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(35, 1_800)).await?;
    let other = world::fakes::okta::OktaFake::start(okta(36, 1_300)).await?;
    let a = world.start_collector("org-a", &[])?;
    let b = world.start_collector("org-b", &[("OKTA_DOMAIN", other.base_url().as_str())])?;
    let (a_addr, b_addr) = (
        support::health_addr(&a).await,
        support::health_addr(&b).await,
    );
    let mut enq = Enqueued::default();
    let deadline = Instant::now() + WAIT;
    loop {
        enq.drain(&storage).await?;
        let mut released = world.okta.released_uuids();
        released.extend(other.released_uuids());
        if enq.missing(&released).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every event of both orgs was enqueued"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Each org has its own leader and its own state; every event travels under its own org.
    assert_eq!(gauge(&a_addr, LEADER).await, 1.0);
    assert_eq!(gauge(&b_addr, LEADER).await, 1.0);
    let (key_a, key_b) = (org_key(&world), other.domain().replace(':', "-"));
    for (uuids, key) in [
        (world.okta.released_uuids(), &key_a),
        (other.released_uuids(), &key_b),
    ] {
        for u in uuids {
            assert_eq!(enq.org_of.get(&u), Some(key), "{u}");
        }
    }
    assert!(enq.duplicated().is_empty());
    assert_eq!(enq.uuids.len(), 1_800 + 1_300);
    for key in [&key_a, &key_b] {
        let names = support::blob_names(&storage, &format!("checkpoints/{key}.json")).await;
        assert_eq!(names.len(), 1, "{key}");
        assert!(!support::blob_names(&storage, &format!("pages/{key}/"))
            .await
            .is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_in_key_vault_is_picked_up_without_a_restart() -> anyhow::Result<()> {
    const NEW_TOKEN: &str = "rotated-ssws-token";
    let world = LocalWorld::start(WorldOptions {
        okta: OktaFakeConfig {
            ssws_tokens: vec![NEW_TOKEN.into()],
            ..okta(37, 1_200)
        },
        secrets_in_vault: true,
        ..WorldOptions::default()
    })
    .await?;
    let storage = support::storage(&world);
    let vault = world.vault.as_ref().context("vault")?;
    let secret = world::local::okta_secret_name(&world.okta.domain());
    // The vault still holds the old (expired) token.
    vault.set_secret(&secret, "expired-ssws-token");
    let mut c = world.start_collector("collector", &[])?;
    let addr = support::health_addr(&c).await;
    let body = wait_ready(&addr, 503, &["credential"]).await;
    assert!(
        body.contains("30 days"),
        "the hint should name the usual causes: {body}"
    );
    // Refused, re-read once, refused again: then slow retries, no exit.
    assert!(
        vault.reads(&secret) >= 2,
        "{} vault reads",
        vault.reads(&secret)
    );
    assert!(c.is_running());

    // The operator rotates the secret; the collector picks it up on its next attempt.
    vault.set_secret(&secret, NEW_TOKEN);
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    wait_ready(&addr, 200, &[]).await;
    enq.assert_exactly_once(&world);
    assert!(c.is_running());
    let log = c.log_text();
    assert!(!log.contains(NEW_TOKEN) && !log.contains("expired-ssws-token"));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Pacing
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_the_reserve_and_waits_for_the_reset_after_a_429() -> anyhow::Result<()> {
    let (world, storage) = world_with(OktaFakeConfig {
        seed: 41,
        initial_events: 30_000,
        rate_limit_per_window: 20,
        rate_window_secs: 10,
        ..OktaFakeConfig::default()
    })
    .await?;
    let c = world.start_collector("collector", &[("OKTA_RATE_LIMIT_RESERVE", "0.3")])?;
    let addr = support::health_addr(&c).await;
    // Budget per window: 20 − ceil(0.3 × 20) = 14. The fake's window opens with the first
    // request after the previous one expired and every response reports that window's own
    // remaining count, so the collector tracks exactly the fake's bucket; it sleeps until the
    // reported reset (+1 s margin, measured from `Date`, which truncates to the second and so
    // only lengthens the wait). No tolerance is needed.
    const BUDGET: u32 = 14;
    // More requests than one window allows: at least one window boundary was crossed.
    eventually(WAIT, "more than two windows' worth of requests", || async {
        (world.okta.stats().logs_requests > u64::from(2 * BUDGET)).then_some(())
    })
    .await?;
    let s = world.okta.stats();
    assert_eq!(s.rate_limited, 0, "{s:?}");
    let max = busiest_window(&s);
    assert!(max <= BUDGET, "{max} requests in one window: {s:?}");
    // Backlogged, it spends the budget instead of trickling (the last spare request is
    // spaced up to the reset, so it may land in the next window: not asserted as = 14).
    assert!(
        max >= BUDGET / 2,
        "only {max} requests in the busiest window: {s:?}"
    );

    // One 429 (e.g. another integration drained the bucket): wait for the reset, no more 429s.
    world.okta.inject(OktaFault::Status429 { count: 1 });
    eventually(WAIT, "the injected 429 was served", || async {
        (world.okta.stats().rate_limited == 1).then_some(())
    })
    .await?;
    let pages_at_429 = metric_sum(&addr, PAGES, &[]).await.unwrap_or(0.0);
    let requests_at_429 = world.okta.stats().logs_requests;
    // The initial backlog may be drained by now: more events, so pages keep coming.
    world.okta.release(4_000);
    wait_metric_at_least(&addr, REQUESTS, "status=\"429\"", 1.0).await;
    eventually(WAIT, "pages after the 429", || async {
        let p = metric_sum(&addr, PAGES, &[]).await.unwrap_or(0.0);
        (p >= pages_at_429 + 3.0).then_some(())
    })
    .await?;
    let s = world.okta.stats();
    assert!(s.logs_requests > requests_at_429);
    assert_eq!(
        s.rate_limited, 1,
        "the collector hit the limit again after a 429: {s:?}"
    );
    let max = busiest_window(&s);
    assert!(max <= BUDGET, "{max} requests in one window: {s:?}");

    eprintln!("pacing: {s:?}");
    let mut enq = Enqueued::default();
    enq.drain(&storage).await?;
    assert!(enq.duplicated().is_empty());
    assert_eq!(
        enq.pages.len() as f64,
        metric_sum(&addr, PAGES, &[]).await.unwrap_or(-1.0)
    );
    // Nothing lost to the 429: every released event ends up enqueued, once.
    enq.wait_all(&world, &storage, WAIT).await?;
    enq.assert_exactly_once(&world);
    // What an operator sees.
    support::logs::wait_operator_line(&c, &["Okta answered 429"], Duration::from_secs(10)).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Caught up means quiet (docs/design.md §3)
// ---------------------------------------------------------------------------------------

const CAUGHT_UP: &str = "okta_sentinel_caught_up";

/// A live org releasing a few events per poll interval (the 5 events/s at a 15 s
/// interval, scaled down to 10 events/s at 2 s): once at the head of the log the collector
/// polls once per `OKTA_POLL_INTERVAL` — never twice within one, though every page is
/// non-empty — and every event is handed off once. Before the fix, a short page was followed
/// at the pacer's spacing (a fraction of a second at this budget): many requests per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_collector_polls_once_per_poll_interval_and_loses_nothing() -> anyhow::Result<()>
{
    const POLL: Duration = Duration::from_secs(2);
    const EVENTS: usize = 200;
    let (world, storage) = world_with(OktaFakeConfig {
        seed: 42,
        live_rate_per_sec: 10.0,
        live_cap: Some(EVENTS),
        ..OktaFakeConfig::default()
    })
    .await?;
    let c = world.start_collector("collector", &[("OKTA_POLL_INTERVAL", "2s")])?;
    let addr = support::health_addr(&c).await;
    eventually(WAIT, "the org released every live event", || async {
        (world.okta.released_count() == EVENTS).then_some(())
    })
    .await?;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    enq.assert_exactly_once(&world);

    let requests = world.okta.logs_requests_since(None);
    let pages = enq.pages.len();
    // Not vacuous: the events came in several polls, each with a short, non-empty page.
    assert!(pages >= 4, "{pages} pages for {requests} requests");
    let most = world.okta.most_logs_requests_within(POLL, None);
    assert_eq!(
        most, 1,
        "{most} requests within one poll interval ({requests} requests, {pages} pages)"
    );
    eprintln!("caught up: {requests} requests, {pages} pages for {EVENTS} events");

    // The state is visible: the gauge, and `collector status` (text and JSON) once the leader
    // published its heartbeat.
    assert_eq!(gauge(&addr, CAUGHT_UP).await, 1.0);
    let env = world.collector_env();
    eventually(WAIT, "status --json says caught up", || async {
        let (st, out, _) =
            world::procs::run_command("collector", &["status", "--json"], &env).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&out).ok()?;
        (st.success() && doc["caught_up"] == serde_json::Value::Bool(true)).then_some(())
    })
    .await?;
    let (st, out, err) = world::procs::run_command("collector", &["status"], &env)?;
    assert!(st.success(), "{err}");
    assert!(out.contains("caught up:      yes"), "{out}");
    Ok(())
}

/// A 20,000-event backlog with a poll interval of an hour: the twenty full pages are fetched
/// back to back at the pacer's spacing — any wait of a poll interval between them would stop
/// the drain for an hour — within the rate-limit budget, and then the collector is caught up.
/// Twenty full pages and one empty one: 21 requests in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_drained_in_full_pages_back_to_back_within_the_budget() -> anyhow::Result<()> {
    const BACKLOG: usize = 20_000;
    let (world, storage) = world_with(OktaFakeConfig {
        seed: 43,
        initial_events: BACKLOG,
        rate_limit_per_window: 20,
        rate_window_secs: 10,
        ..OktaFakeConfig::default()
    })
    .await?;
    let c = world.start_collector(
        "collector",
        &[
            ("OKTA_POLL_INTERVAL", "1h"),
            ("OKTA_RATE_LIMIT_RESERVE", "0.3"),
        ],
    )?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    enq.assert_exactly_once(&world);
    assert_eq!(enq.pages.len(), BACKLOG / 1000);
    eventually(WAIT, "caught up after the backlog", || async {
        (gauge(&addr, CAUGHT_UP).await == 1.0).then_some(())
    })
    .await?;
    let s = world.okta.stats();
    assert_eq!(s.logs_requests, 21, "{s:?}");
    assert_eq!(s.rate_limited, 0, "{s:?}");
    // Budget per window: 20 − ceil(0.3 × 20) = 14 (see the pacing test).
    let max = busiest_window(&s);
    assert!(max <= 14, "{max} requests in one window: {s:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Disorder, repeats, cursor modes
// ---------------------------------------------------------------------------------------

async fn disorder(seed: u64, mode: EmptyPageMode) -> anyhow::Result<()> {
    let (world, storage) = world_with(OktaFakeConfig {
        seed,
        initial_events: 2_200,
        repeat_probability: 0.05,
        late_probability: 0.05,
        empty_page_mode: mode,
        ..OktaFakeConfig::default()
    })
    .await?;
    let c = world.start_collector("collector", &[])?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    // Live batches, some smaller than a page, with empty polls between them.
    for n in [300, 1, 1_200, 57] {
        world.okta.release(n);
        enq.wait_all(&world, &storage, WAIT).await?;
    }
    enq.assert_exactly_once(&world);
    // The org did serve repeats, and the collector dropped them (not the shipper).
    let served = world.okta.stats().events_served;
    let released = world.okta.released_count() as u64;
    assert!(
        served > released,
        "{mode:?}: the fake served no repeat ({served} served)"
    );
    let dropped = metric_sum(&addr, DUPLICATES, &[]).await.unwrap_or(0.0);
    assert!(dropped >= 1.0, "{mode:?}: no duplicate dropped");
    assert_eq!(metric_sum(&addr, MALFORMED, &[]).await, Some(0.0));
    Ok(())
}

/// Migration from another collector (Microsoft's Function keeps its next link): a fresh
/// deployment with `OKTA_START` set to that link resumes exactly there — nothing the old
/// collector fetched is fetched again, nothing after it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_next_link_as_okta_start_resumes_exactly_there() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(73, 2_500)).await?;
    let mut old = world.start_collector("old-collector", &[])?;
    support::health_addr(&old).await; // the queue exists once it serves
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    terminate_cleanly(&mut old, "the old collector")?;
    // A clean stop leaves nothing pending (the last envelope was sent, and is cleared).
    let cp = checkpoint(&world, &storage).await;
    assert!(cp.get("pending").is_none(), "{cp}");
    let saved = cp["next_url"].as_str().unwrap_or_default().to_string();
    // A brand-new deployment: none of the old collector's storage.
    for name in support::blob_names(&storage, "").await {
        storage.blobs.delete(&name, None).await?;
    }
    world.okta.release(1_200);

    let new = world.start_collector("new-collector", &[("OKTA_START", saved.as_str())])?;
    // The new deployment numbers its pages from epoch 1 again: read its queue on its own.
    let mut fresh = Enqueued::default();
    let released = world.okta.released_uuids();
    let deadline = Instant::now() + WAIT;
    loop {
        fresh.drain(&storage).await?;
        let missing = released
            .iter()
            .filter(|u| !enq.uuids.contains_key(*u) && !fresh.uuids.contains_key(*u))
            .count();
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} events never enqueued");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let refetched: Vec<_> = fresh
        .uuids
        .keys()
        .filter(|u| enq.uuids.contains_key(*u))
        .collect();
    assert!(
        refetched.is_empty(),
        "fetched again: {} events",
        refetched.len()
    );
    assert!(fresh.duplicated().is_empty());
    assert_eq!(fresh.uuids.len(), 1_200);
    assert!(new.log_text().contains("resuming at the saved next link"));

    // A link of another org is refused at start-up, naming the variable.
    let mut foreign = world.start_collector(
        "foreign",
        &[("OKTA_START", "https://other.okta.com/api/v1/logs?after=1_1")],
    )?;
    let status = foreign.wait_exit(WAIT).await?;
    assert_eq!(status.code(), Some(2), "{}", foreign.log_text());
    assert!(foreign.log_text().contains("OKTA_START"));
    Ok(())
}

/// The enqueue fails with an unknown outcome, once before the queue saw the message and once
/// after it was stored but its answer lost. The page is recorded as pending, so only the
/// enqueue is retried: the page is not fetched again (no false "duplicates"), the checkpoint is
/// not written from a stale copy (no spurious loss of leadership), and the message lands at
/// most twice, identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_enqueue_is_retried_without_fetching_the_page_again() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(71, 3_000)).await?;
    let post = |nth, mode| FaultRule::new("POST", "/messages", None, nth, mode);
    let queue: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
    let proxy = CountingProxy::with_faults(
        queue,
        "queue",
        vec![
            // Four in a row: the SDK's own retries (3) cannot hide it.
            post(2, FaultMode::DropRequest).times(4),
            post(7, FaultMode::LoseAnswer),
        ],
    )
    .await?;
    let conn = world
        .azurite
        .connection_string_via(None, Some(proxy.addr()));
    let c = world.start_collector(
        "collector",
        &[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
    )?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    assert_eq!(proxy.faults_fired(), 2, "{:?}", proxy.counts());
    enq.assert_exactly_once(&world);
    assert!(enq.twins <= 1, "{} twin envelopes", enq.twins);
    assert_eq!(metric_sum(&addr, DUPLICATES, &[]).await, Some(0.0));
    let log = c.log_text();
    assert!(!log.contains("leadership lost"), "{log}");
    Ok(())
}

/// Storage requests per handed-off page (issue 12: at most three — the page blob, the
/// checkpoint, the message). Measured between two caught-up moments through counting proxies
/// on both storage endpoints, so start-up costs are left out; lease renewals and the heartbeat
/// write that follows each one are leadership's cost, not the pages', and are subtracted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_off_page_costs_three_storage_requests() -> anyhow::Result<()> {
    const PAGES: u64 = 5;
    let (world, storage) = world_with(okta(74, 1_000)).await?;
    let blob: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
    let queue: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
    let blob_proxy = CountingProxy::start(blob, "blob").await?;
    let queue_proxy = CountingProxy::start(queue, "queue").await?;
    let conn = world
        .azurite
        .connection_string_via(Some(blob_proxy.addr()), Some(queue_proxy.addr()));
    let c = world.start_collector(
        "collector",
        &[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
    )?;
    let addr = support::health_addr(&c).await;
    let sent = || {
        queue_proxy
            .counts()
            .requests
            .get("queue POST messages")
            .copied()
            .unwrap_or(0)
    };
    let caught_up_after = |pages: u64| {
        let addr = addr.clone();
        async move {
            eventually(WAIT, &format!("caught up after {pages} pages"), || async {
                (sent() == pages && gauge(&addr, CAUGHT_UP).await == 1.0).then_some(())
            })
            .await
        }
    };
    // Totals without lease operations, and renewals (each followed by a heartbeat write).
    let measure = || {
        let (b, q) = (blob_proxy.counts(), queue_proxy.counts());
        let renewals = b.requests.get("blob lease:renew").copied().unwrap_or(0);
        let leases: u64 = b
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with("blob lease:"))
            .map(|(_, n)| n)
            .sum();
        (b.total_requests() - leases + q.total_requests(), renewals)
    };
    caught_up_after(1).await?;
    let (before, renewed_before) = measure();
    let kinds_before = (blob_proxy.counts(), queue_proxy.counts());
    world.okta.release(PAGES as usize * 1_000);
    caught_up_after(1 + PAGES).await?;
    let (after, renewed_after) = measure();
    let heartbeats = renewed_after - renewed_before;
    let per_page = (after - before - heartbeats) as f64 / PAGES as f64;
    let kinds_after = (blob_proxy.counts(), queue_proxy.counts());
    eprintln!(
        "storage requests per page: {per_page:.2} (blob {:?} -> {:?}; queue {:?} -> {:?}; {heartbeats} heartbeats)",
        kinds_before.0.requests, kinds_after.0.requests, kinds_before.1.requests, kinds_after.1.requests
    );
    assert!(per_page <= 3.0, "{per_page} storage requests per page");
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    enq.assert_exactly_once(&world);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_out_of_order_and_repeated_events_with_the_repeating_cursor() -> anyhow::Result<()> {
    disorder(51, EmptyPageMode::RepeatUrl).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_out_of_order_and_repeated_events_with_the_advancing_cursor() -> anyhow::Result<()> {
    disorder(52, EmptyPageMode::Advance).await
}

// ---------------------------------------------------------------------------------------
// Refusals and malformed answers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_next_link_is_refused_and_the_credential_never_goes_there() -> anyhow::Result<()>
{
    let (world, storage) = world_with(okta(61, 1_500)).await?;
    let trap = Trap::start().await?;
    let foreign = format!("http://127.0.0.1:{}/api/v1/logs?after=x", trap.port);
    // The very first page carries the foreign link.
    world.okta.inject(OktaFault::ForeignNextLink {
        count: 1,
        url: foreign.clone(),
    });
    let c = world.start_collector("collector", &[])?;
    let addr = support::health_addr(&c).await;
    let origin = format!("127.0.0.1:{}", trap.port);
    let body = wait_ready(&addr, 503, &[&origin]).await;
    assert!(body.contains("another origin"), "{body}");

    // Nothing reached the trap: no connection, not one byte (so no credential either).
    assert_eq!(trap.connections(), 0);
    assert_eq!(trap.received().len(), 0);
    // The checkpoint did not move past the refused page, and the page was not stored.
    let cp = checkpoint(&world, &storage).await;
    let next = cp["next_url"].as_str().unwrap_or_default();
    assert!(!next.contains(&trap.port.to_string()), "{cp}");
    assert!(
        next.contains("since="),
        "the first URL should still be the next one: {cp}"
    );
    assert_eq!(cp["seq"], 0, "{cp}");
    assert!(support::blob_names(&storage, "pages/").await.is_empty());
    assert!(storage
        .queue
        .receive(32, Duration::from_secs(1))
        .await?
        .is_empty());
    // The refusal is logged, the credential is not.
    let log = c.log_text();
    assert!(log.contains(&origin), "{log}");
    assert!(!log.contains(world::local::TEST_SSWS_TOKEN));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_are_retried_reported_and_never_skipped() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(71, 1_200)).await?;
    let c = world.start_collector("collector", &[])?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    let faults = [
        OktaFault::TruncatedJson { count: 2 },
        OktaFault::ObjectInsteadOfArray { count: 2 },
        OktaFault::InvalidUtf8 { count: 2 },
        OktaFault::HtmlErrorPage { count: 2 },
    ];
    for fault in faults {
        let malformed_before = metric_sum(&addr, MALFORMED, &[]).await.unwrap_or(0.0);
        let server_before = metric_sum(&addr, REQUESTS, &["status=\"5xx\""])
            .await
            .unwrap_or(0.0);
        // Events first, so the faulty answers stand for a non-empty page (for the truncated
        // page, the `next` link still advances: following it would skip events).
        world.okta.release(700);
        world.okta.inject(fault.clone());
        // Both faulty answers consumed (a poll in flight at the release may have taken the
        // events already, so "all enqueued" alone does not mean the faults were seen).
        let (metric, filter, before) = match fault {
            OktaFault::HtmlErrorPage { .. } => (REQUESTS, "status=\"5xx\"", server_before),
            _ => (MALFORMED, "", malformed_before),
        };
        wait_metric_at_least(&addr, metric, filter, before + 2.0).await;
        enq.wait_all(&world, &storage, WAIT).await?;
        let malformed = metric_sum(&addr, MALFORMED, &[]).await.unwrap_or(0.0) - malformed_before;
        let server = metric_sum(&addr, REQUESTS, &["status=\"5xx\""])
            .await
            .unwrap_or(0.0)
            - server_before;
        match fault {
            // A gateway's HTML error page comes with a 502: reported as a server error.
            OktaFault::HtmlErrorPage { .. } => assert!(
                server >= 2.0 || malformed >= 2.0,
                "{fault:?}: {server} 5xx, {malformed} malformed"
            ),
            _ => assert!(
                malformed >= 2.0,
                "{fault:?}: {malformed} malformed reported"
            ),
        }
    }
    enq.assert_exactly_once(&world);
    let log = c.log_text();
    assert!(log.contains("malformed page"), "no alarm in the log");
    assert!(log.contains("502"), "the 502 is not logged");
    // Recovered: ready again.
    wait_ready(&addr, 200, &[]).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_reports_not_ready_then_recovers() -> anyhow::Result<()> {
    let (world, storage) = world_with(okta(81, 1_000)).await?;
    let mut c = world.start_collector("collector", &[])?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;
    world.okta.inject(OktaFault::Unauthorized { count: 3 });
    world.okta.release(600);
    let body = wait_ready(&addr, 503, &["credential"]).await;
    assert!(body.contains("401"), "{body}");
    assert!(c.is_running(), "the collector exited on a 401");
    enq.wait_all(&world, &storage, WAIT).await?;
    wait_ready(&addr, 200, &[]).await;
    assert!(c.is_running());
    enq.assert_exactly_once(&world);
    let refused = metric_sum(&addr, REQUESTS, &["status=\"401\""])
        .await
        .unwrap_or(0.0);
    assert!(refused >= 1.0);
    // Three refusals, each answered: the collector retried slowly, it did not spin.
    assert_eq!(world.okta.stats().by_status.get(&401).copied(), Some(3));
    let log = c.log_text();
    assert!(log.contains("30 days"), "the operator hint is not logged");
    assert!(!log.contains(world::local::TEST_SSWS_TOKEN));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OAuth 2.0 with DPoP
// ---------------------------------------------------------------------------------------

async fn oauth_end_to_end(private_pem: String, public_pem: String) -> anyhow::Result<()> {
    const CLIENT_ID: &str = "0oa-test-collector";
    let (world, storage) = world_with(OktaFakeConfig {
        seed: 91,
        initial_events: 1_500,
        ssws_tokens: vec![],
        oauth: Some(OAuthAppConfig {
            require_dpop: true,
            ..OAuthAppConfig::new(CLIENT_ID, public_pem)
        }),
        ..OktaFakeConfig::default()
    })
    .await?;
    let mut env = world.collector_env();
    env.remove("OKTA_API_TOKEN");
    env.insert("OKTA_CLIENT_ID".into(), CLIENT_ID.into());
    env.insert("OKTA_PRIVATE_KEY".into(), private_pem.clone());
    let c = Service::start("collector", "collector", &[], &env, &world.log_dir)?;
    let addr = support::health_addr(&c).await;
    let mut enq = Enqueued::default();
    enq.wait_all(&world, &storage, WAIT).await?;

    let s = world.okta.stats();
    let logs = s
        .auth_schemes_by_path
        .get("/api/v1/logs")
        .cloned()
        .unwrap_or_default();
    assert!(logs.get("DPoP").copied().unwrap_or(0) >= 2, "{s:?}");
    for scheme in ["SSWS", "Bearer", "none", "other"] {
        assert_eq!(logs.get(scheme), None, "{scheme} at /api/v1/logs: {s:?}");
    }
    // The nonce dance at the token endpoint and at the resource.
    assert!(s.dpop_nonce_challenges >= 2, "{s:?}");
    assert!(s.tokens_issued >= 1, "{s:?}");
    let issued = s.tokens_issued;

    // Expired tokens: the next use is refused, the collector gets a new token and goes on.
    world.okta.expire_tokens();
    world.okta.release(900);
    enq.wait_all(&world, &storage, WAIT).await?;
    let s = world.okta.stats();
    assert!(s.tokens_issued > issued, "no new token after expiry: {s:?}");
    enq.assert_exactly_once(&world);
    let (status, _) = support::http_get(&addr, "/readyz").await;
    assert_eq!(status, 200);
    let log = c.log_text();
    assert!(
        !log.contains(private_pem.lines().nth(1).unwrap_or("-----")),
        "key material in the log"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_private_key_jwt_rs256_with_dpop() -> anyhow::Result<()> {
    let (private, public) = world::fakes::okta::test_rsa_key_pem();
    oauth_end_to_end(private, public).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_private_key_jwt_es256_with_dpop() -> anyhow::Result<()> {
    let (private, public) = world::fakes::okta::test_ec_key_pem()?;
    oauth_end_to_end(private, public).await
}
