//! The storage layer against a real Azurite: queue semantics, conditional blob writes, leases,
//! and both auth modes (account SAS over http; managed identity over https with `--oauth basic`).
//!
//! Each test starts its own in-memory Azurite on ephemeral ports, so tests run in parallel and
//! never share state.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::http::{build_client, HttpOptions};
use common::secrets::SecretString;
use common::storage::{Storage, StorageArgs, StorageError};
use world::azurite::{Azurite, AzuriteOptions, Persistence};

async fn azurite(https_oauth: bool) -> Azurite {
    Azurite::start(AzuriteOptions {
        persistence: Persistence::InMemory,
        https_oauth,
        ..AzuriteOptions::default()
    })
    .await
    .expect("Azurite starts")
}

fn http_client(ca_pem: Option<String>) -> reqwest::Client {
    build_client(&HttpOptions {
        extra_roots_pem: ca_pem.into_iter().map(String::into_bytes).collect(),
        timeout: Some(Duration::from_secs(30)),
        ..HttpOptions::default()
    })
    .expect("http client")
}

/// Account-key storage on the given Azurite (SAS signed in process, http).
async fn sas_storage(az: &Azurite, queue: &str, container: &str) -> Storage {
    let args = StorageArgs {
        connection_string: Some(SecretString::new(az.connection_string())),
        queue: queue.into(),
        container: container.into(),
        ..StorageArgs::default()
    };
    let settings = args.validate().expect("valid settings");
    let storage = Storage::connect(&settings, http_client(None), None).expect("connect");
    storage
        .ensure_created()
        .await
        .expect("create queue and container");
    // Idempotent: a second call finds both and succeeds.
    storage.ensure_created().await.expect("create again");
    storage
}

fn assert_no_secret(e: &StorageError) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains("Eby8vdM02x"), "account key leaked: {text}");
    // A SAS signature value would follow `sig=`; only the redaction marker may.
    for (i, _) in text.match_indices("sig=") {
        assert!(
            text[i + 4..].starts_with("REDACTED"),
            "SAS signature leaked: {text}"
        );
    }
}

#[tokio::test]
async fn queue_round_trip_pop_receipts_and_dequeue_counts() {
    let az = azurite(false).await;
    let s = sas_storage(&az, "pages-q1", "cont-q1").await;
    let q = &s.queue;

    // JSON with XML-special characters survives as is (the SDK escapes inside <MessageText>).
    let text = r#"{"v":1,"blob":"pages/a/1/2-ab.json.gz","note":"a<b && c>d ]]> 'q' \"dq\" é ✓"}"#;
    let sent = q.send(text, None).await.expect("send");
    assert!(!sent.id.is_empty() && !sent.pop_receipt.is_empty());
    assert_eq!(q.approximate_count().await.expect("count"), 1);

    let got = q
        .receive(32, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.id, sent.id);
    assert_eq!(m.text, text);
    assert_eq!(m.dequeue_count, 1);
    assert!(m.inserted_at.is_some());
    // messagettl=-1: the service reports an expiry at the end of time (year 9999), not in 7 days.
    let expires = m.expires_at.expect("expiration time");
    assert!(
        expires > chrono::Utc::now() + chrono::Duration::days(365 * 100),
        "message expires at {expires}: TTL -1 was not applied"
    );
    // Invisible now: nothing more to receive.
    assert!(q
        .receive(32, Duration::from_secs(30))
        .await
        .expect("receive")
        .is_empty());

    // Update visibility: a new pop receipt; the old one stops working.
    let new_pop = q
        .update_visibility(&m.id, &m.pop_receipt, Duration::from_secs(60))
        .await
        .expect("update");
    assert_ne!(new_pop, m.pop_receipt);
    let e = q
        .delete(&m.id, &m.pop_receipt)
        .await
        .expect_err("old receipt must fail");
    assert!(e.is_pop_receipt_mismatch(), "{e:?}");
    assert!(!e.is_transient());
    let e = q
        .update_visibility(&m.id, &m.pop_receipt, Duration::from_secs(60))
        .await
        .expect_err("old receipt must fail");
    assert!(e.is_pop_receipt_mismatch(), "{e:?}");

    // Hand it back at once (visibility 0): the next receive sees it again, counted twice.
    let pop = q
        .update_visibility(&m.id, &new_pop, Duration::ZERO)
        .await
        .expect("hand back");
    let again = q.receive(1, Duration::from_secs(1)).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, m.id);
    assert_eq!(again[0].dequeue_count, 2);
    assert_ne!(again[0].pop_receipt, pop);

    // Let the 1 s visibility timeout lapse: delivered a third time, count 3.
    let third = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = q
            .receive(1, Duration::from_secs(30))
            .await
            .expect("receive");
        if let Some(m) = got.into_iter().next() {
            break m;
        }
    };
    assert_eq!(third.id, m.id);
    assert_eq!(third.dequeue_count, 3);
    assert_eq!(third.text, text);

    q.delete(&third.id, &third.pop_receipt)
        .await
        .expect("delete");
    assert_eq!(q.approximate_count().await.expect("count"), 0);
    let e = q
        .delete(&third.id, &third.pop_receipt)
        .await
        .expect_err("already deleted");
    assert!(e.is_not_found(), "{e:?}");

    // A delayed message is not visible yet, but counted.
    q.send("later", Some(Duration::from_secs(300)))
        .await
        .expect("send delayed");
    assert!(q
        .receive(32, Duration::from_secs(30))
        .await
        .expect("receive")
        .is_empty());
    assert_eq!(q.approximate_count().await.expect("count"), 1);

    // Several at once, up to the requested maximum.
    for i in 0..5 {
        q.send(&format!("m{i}"), None).await.expect("send");
    }
    let batch = q
        .receive(3, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(batch.len(), 3);
    assert!(q
        .receive(0, Duration::from_secs(30))
        .await
        .expect("receive 0")
        .is_empty());

    // Ids that are not the service's own are refused before any request.
    let e = q.delete("../x", "p").await.expect_err("bad id");
    assert!(matches!(e, StorageError::Config(_)), "{e:?}");
}

#[tokio::test]
async fn conditional_writes_reads_and_listing() {
    let az = azurite(false).await;
    let s = sas_storage(&az, "pages-b1", "cont-b1").await;
    let b = &s.blobs;
    let name = "checkpoints/acme.okta.com.json";

    assert!(b.read(name).await.expect("read missing").is_none());
    assert!(!b.exists(name).await.expect("exists"));
    assert!(!b.delete(name, None).await.expect("delete missing"));

    let etag1 = b
        .create_only(name, Bytes::from_static(b"{\"seq\":1}"))
        .await
        .expect("create");
    let e = b
        .create_only(name, Bytes::from_static(b"{\"seq\":99}"))
        .await
        .expect_err("second create must fail");
    assert!(e.is_already_exists(), "{e:?}");
    assert!(!e.is_transient());

    let c = b.read(name).await.expect("read").expect("exists");
    assert_eq!(&c.bytes[..], b"{\"seq\":1}");
    assert_eq!(c.etag, etag1);
    assert!(b.exists(name).await.expect("exists"));

    let etag2 = b
        .write_if_match(name, Bytes::from_static(b"{\"seq\":2}"), &etag1, None)
        .await
        .expect("write with current etag");
    assert_ne!(etag2, etag1);
    let e = b
        .write_if_match(name, Bytes::from_static(b"{\"seq\":3}"), &etag1, None)
        .await
        .expect_err("stale etag must fail");
    assert!(e.is_condition_not_met(), "{e:?}");
    assert!(!e.is_lease_lost(), "{e:?}");
    assert_eq!(e.status(), Some(412));
    assert_eq!(e.code(), Some("ConditionNotMet"));
    assert_eq!(
        &b.read(name).await.unwrap().unwrap().bytes[..],
        b"{\"seq\":2}"
    );

    // Unconditional write.
    let etag3 = b
        .write(name, Bytes::from_static(b"{\"seq\":4}"), None)
        .await
        .expect("write");
    assert_ne!(etag3, etag2);

    // Size-limited reads (hostile input).
    let nine = Bytes::from_static(b"123456789");
    b.write("pages/a/1/1-x.json.gz", nine.clone(), None)
        .await
        .unwrap();
    let ok = b
        .read_limited("pages/a/1/1-x.json.gz", 9)
        .await
        .expect("at the limit")
        .expect("exists");
    assert_eq!(ok.bytes, nine);
    let e = b
        .read_limited("pages/a/1/1-x.json.gz", 8)
        .await
        .expect_err("over the limit");
    assert!(matches!(e, StorageError::Decode(_)), "{e:?}");
    b.write("done/a/1/1", Bytes::new(), None).await.unwrap();
    let empty = b
        .read_limited("done/a/1/1", 4)
        .await
        .unwrap()
        .expect("exists");
    assert!(empty.bytes.is_empty());
    assert!(b.read_limited("nope", 4).await.unwrap().is_none());

    // Listing by prefix, names with `/` kept as they are.
    b.write("pages/a/1/2-y.json.gz", Bytes::from_static(b"12"), None)
        .await
        .unwrap();
    b.write("pages/b/1/1-z.json.gz", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let listed = b.list("pages/a/").await.expect("list");
    let names: Vec<_> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["pages/a/1/1-x.json.gz", "pages/a/1/2-y.json.gz"]);
    assert_eq!(listed[0].size, 9);
    assert_eq!(listed[1].size, 2);
    assert!(listed[0].last_modified.is_some());
    assert_eq!(b.list("").await.expect("list all").len(), 5);
    assert!(b.list("poison/").await.expect("list none").is_empty());

    assert!(b
        .delete("pages/b/1/1-z.json.gz", None)
        .await
        .expect("delete"));
    assert!(!b.exists("pages/b/1/1-z.json.gz").await.unwrap());

    // Defence in depth on names.
    for bad in ["/abs", "pages/../leader/x", ""] {
        let e = b.read(bad).await.expect_err("bad name");
        assert!(matches!(e, StorageError::Config(_)), "{bad}: {e:?}");
    }
}

#[tokio::test]
async fn leases_are_exclusive_and_their_412_differs_from_a_stale_etag() {
    let az = azurite(false).await;
    let s = sas_storage(&az, "pages-l1", "cont-l1").await;
    let b = &s.blobs;
    let name = "state/acme/1/7.json";

    let e = b
        .acquire_lease("leader/missing", Duration::from_secs(15), None)
        .await
        .expect_err("no blob, no lease");
    assert!(e.is_not_found(), "{e:?}");

    let etag = b
        .create_only(name, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let lease = b
        .acquire_lease(name, Duration::from_secs(15), None)
        .await
        .expect("acquire");
    let e = b
        .acquire_lease(name, Duration::from_secs(15), None)
        .await
        .expect_err("second acquire");
    assert!(e.is_lease_already_present(), "{e:?}");
    assert!(!e.is_lease_lost());

    // A write without the lease: 412 LeaseIdMissing — lease lost, not a stale ETag.
    let e = b
        .write(name, Bytes::from_static(b"{\"x\":1}"), None)
        .await
        .expect_err("write without lease");
    assert!(e.is_lease_lost(), "{e:?}");
    assert!(!e.is_condition_not_met(), "{e:?}");
    assert_eq!(e.status(), Some(412));
    let e = b
        .write_if_match(name, Bytes::from_static(b"{\"x\":1}"), &etag, None)
        .await
        .expect_err("current etag but no lease");
    assert!(e.is_lease_lost() && !e.is_condition_not_met(), "{e:?}");
    let e = b
        .write(
            name,
            Bytes::from_static(b"{}"),
            Some("00000000-0000-0000-0000-000000000001"),
        )
        .await
        .expect_err("wrong lease id");
    assert!(e.is_lease_lost(), "{e:?}");

    // With the lease: current ETag works, a stale one is ConditionNotMet.
    let etag2 = b
        .write_if_match(name, Bytes::from_static(b"{\"x\":2}"), &etag, Some(&lease))
        .await
        .expect("write with lease");
    let e = b
        .write_if_match(name, Bytes::from_static(b"{\"x\":3}"), &etag, Some(&lease))
        .await
        .expect_err("stale etag with lease");
    assert!(e.is_condition_not_met() && !e.is_lease_lost(), "{e:?}");
    b.write(name, Bytes::from_static(b"{\"x\":4}"), Some(&lease))
        .await
        .expect("unconditional write with lease");
    assert_ne!(etag2, etag);

    b.renew_lease(name, &lease).await.expect("renew");
    let e = b
        .renew_lease(name, "00000000-0000-0000-0000-000000000002")
        .await
        .expect_err("renew someone else's lease");
    assert!(e.is_lease_lost(), "{e:?}");

    let e = b
        .delete(name, None)
        .await
        .expect_err("delete without lease");
    assert!(e.is_lease_lost(), "{e:?}");

    b.release_lease(name, &lease).await.expect("release");
    let proposed = "11111111-2222-3333-4444-555555555555";
    let lease2 = b
        .acquire_lease(name, Duration::from_secs(60), Some(proposed))
        .await
        .expect("acquire after release");
    assert_eq!(lease2, proposed);
    let e = b
        .renew_lease(name, &lease)
        .await
        .expect_err("old lease is gone");
    assert!(e.is_lease_lost(), "{e:?}");

    // Operator tooling: break, then anyone can take it.
    b.break_lease(name).await.expect("break");
    let lease3 = b
        .acquire_lease(name, Duration::from_secs(15), None)
        .await
        .expect("acquire after break");
    assert!(b
        .delete(name, Some(&lease3))
        .await
        .expect("delete with lease"));
}

#[tokio::test]
async fn failures_are_classified_and_never_show_the_sas() {
    let az = azurite(false).await;
    let s = sas_storage(&az, "pages-f1", "cont-f1").await;

    // A container that does not exist is a configuration problem, not "blob missing".
    let args = StorageArgs {
        connection_string: Some(SecretString::new(az.connection_string())),
        container: "no-such-container".into(),
        queue: "no-such-queue".into(),
        ..StorageArgs::default()
    };
    let missing = Storage::connect(&args.validate().unwrap(), http_client(None), None).unwrap();
    let e = missing.blobs.read("x").await.expect_err("no container");
    assert_eq!(e.code(), Some("ContainerNotFound"), "{e:?}");
    assert_no_secret(&e);
    let e = missing.queue.send("x", None).await.expect_err("no queue");
    assert!(e.is_not_found(), "{e:?}");
    assert_no_secret(&e);

    // Nothing listening: a transport error, transient, without the SAS in its text.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let args = StorageArgs {
        connection_string: Some(SecretString::new(az.connection_string())),
        queue_endpoint: Some(format!("http://127.0.0.1:{dead}/devstoreaccount1")),
        blob_endpoint: Some(format!("http://127.0.0.1:{dead}/devstoreaccount1")),
        ..StorageArgs::default()
    };
    let down = Storage::connect(&args.validate().unwrap(), http_client(None), None).unwrap();
    let e = down
        .blobs
        .create_only("a", Bytes::new())
        .await
        .expect_err("down");
    assert!(
        matches!(e, StorageError::Transport(_)) && e.is_transient(),
        "{e:?}"
    );
    assert_no_secret(&e);
    let e = down
        .queue
        .receive(1, Duration::from_secs(5))
        .await
        .expect_err("down");
    assert!(e.is_transient(), "{e:?}");
    assert_no_secret(&e);

    // A wrong key: the service refuses the signature (403), not transient.
    let args = StorageArgs {
        connection_string: Some(SecretString::new(format!(
            "AccountName=devstoreaccount1;AccountKey=d3Jvbmcta2V5LXdyb25nLWtleQ==;BlobEndpoint={};QueueEndpoint={}",
            az.blob_endpoint(),
            az.queue_endpoint()
        ))),
        queue: "pages-f1".into(),
        container: "cont-f1".into(),
        ..StorageArgs::default()
    };
    let wrong = Storage::connect(&args.validate().unwrap(), http_client(None), None).unwrap();
    let e = wrong.blobs.exists("x").await.expect_err("bad signature");
    assert_eq!(e.status(), Some(403), "{e:?}");
    assert!(!e.is_transient());
    assert_no_secret(&e);

    // The healthy one still works (clients are independent).
    assert!(!s.blobs.exists("x").await.unwrap());
}

/// A storage endpoint that answers every request with 503 ServerBusy and counts them.
async fn always_busy() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("x-ms-error-code", "ServerBusy")],
                "",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/devstoreaccount1"), hits)
}

#[tokio::test]
async fn conditional_writes_are_sent_once_and_reads_are_retried_a_little() {
    use std::sync::atomic::Ordering;
    let (endpoint, hits) = always_busy().await;
    let args = StorageArgs {
        connection_string: Some(SecretString::new("UseDevelopmentStorage=true")),
        queue_endpoint: Some(endpoint.clone()),
        blob_endpoint: Some(endpoint),
        ..StorageArgs::default()
    };
    let s = Storage::connect(&args.validate().unwrap(), http_client(None), None).unwrap();
    let expect_attempts = |what: &str, e: StorageError, attempts: usize| {
        assert_eq!(e.status(), Some(503), "{what}: {e:?}");
        assert_eq!(e.code(), Some("ServerBusy"), "{what}: {e:?}");
        assert!(e.is_transient(), "{what}");
        assert_eq!(hits.swap(0, Ordering::SeqCst), attempts, "{what}");
    };
    let body = || Bytes::from_static(b"x");
    // Conditional writes, lease operations, message updates and deletes: exactly one attempt.
    expect_attempts(
        "create_only",
        s.blobs.create_only("a", body()).await.unwrap_err(),
        1,
    );
    expect_attempts(
        "write_if_match",
        s.blobs
            .write_if_match("a", body(), "\"0x1\"", None)
            .await
            .unwrap_err(),
        1,
    );
    expect_attempts(
        "acquire_lease",
        s.blobs
            .acquire_lease("a", Duration::from_secs(15), None)
            .await
            .unwrap_err(),
        1,
    );
    expect_attempts(
        "renew_lease",
        s.blobs.renew_lease("a", "l").await.unwrap_err(),
        1,
    );
    expect_attempts("delete", s.blobs.delete("a", None).await.unwrap_err(), 1);
    expect_attempts(
        "update_visibility",
        s.queue
            .update_visibility("m-1", "p", Duration::ZERO)
            .await
            .unwrap_err(),
        1,
    );
    expect_attempts(
        "queue delete",
        s.queue.delete("m-1", "p").await.unwrap_err(),
        1,
    );
    // Idempotent calls: a small explicit budget (1 + 3 retries), never the SDK's default 1 + 8.
    expect_attempts("exists", s.blobs.exists("a").await.unwrap_err(), 4);
    expect_attempts("send", s.queue.send("x", None).await.unwrap_err(), 4);
}

#[tokio::test]
async fn managed_identity_over_https_with_the_production_credential() {
    use world::fakes::identity::{IdentityFake, IdentityFakeConfig};

    let az = azurite(true).await;
    let idp = IdentityFake::start(IdentityFakeConfig::default())
        .await
        .expect("identity fake");
    // The production credential reads these when it is built (App Service / Container Apps
    // flavour). No other test in this binary reads them.
    std::env::set_var("IDENTITY_ENDPOINT", idp.endpoint());
    std::env::set_var("IDENTITY_HEADER", idp.header_secret());
    let http = http_client(az.ca_pem());
    let credential = common::identity::managed_identity(None, http.clone()).expect("credential");

    let args = StorageArgs {
        account: Some(az.account().into()),
        queue_endpoint: Some(az.queue_endpoint()),
        blob_endpoint: Some(az.blob_endpoint()),
        queue: "pages-mi".into(),
        container: "cont-mi".into(),
        ..StorageArgs::default()
    };
    let settings = args.validate().expect("https endpoints are fine");
    let e = Storage::connect(&settings, http.clone(), None).expect_err("credential required");
    assert!(matches!(e, StorageError::Config(_)), "{e:?}");
    let s = Storage::connect(&settings, http, Some(Arc::clone(&credential))).expect("connect");
    s.ensure_created()
        .await
        .expect("create over https with a bearer token");

    let sent = s
        .queue
        .send("{\"v\":1,\"x\":\"<&>\"}", None)
        .await
        .expect("send");
    let got = s
        .queue
        .receive(32, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, sent.id);
    assert_eq!(got[0].text, "{\"v\":1,\"x\":\"<&>\"}");
    let pop = s
        .queue
        .update_visibility(&got[0].id, &got[0].pop_receipt, Duration::from_secs(30))
        .await
        .expect("update");
    s.queue.delete(&got[0].id, &pop).await.expect("delete");
    assert_eq!(s.queue.approximate_count().await.unwrap(), 0);

    let etag = s
        .blobs
        .create_only("leader/acme", Bytes::from_static(b"x"))
        .await
        .expect("create blob");
    let lease = s
        .blobs
        .acquire_lease("leader/acme", Duration::from_secs(15), None)
        .await
        .expect("lease");
    let e = s
        .blobs
        .write_if_match("leader/acme", Bytes::from_static(b"y"), &etag, None)
        .await
        .expect_err("no lease id");
    assert!(e.is_lease_lost(), "{e:?}");
    s.blobs
        .write_if_match("leader/acme", Bytes::from_static(b"y"), &etag, Some(&lease))
        .await
        .expect("write with lease");
    s.blobs
        .release_lease("leader/acme", &lease)
        .await
        .expect("release");
    assert_eq!(s.blobs.list("leader/").await.unwrap().len(), 1);

    // Every request was authorised with a token from the managed-identity endpoint, fetched
    // once and cached by the shared credential.
    assert!(idp.tokens_issued_for("https://storage.azure.com") >= 1);
    assert!(idp.tokens_issued_for("https://storage.azure.com") <= 2);
}
