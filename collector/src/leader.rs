//! Leadership of one org: a lease on `leader/{org}` (its own blob, not the checkpoint).
//!
//! Exactly one collector per org fetches; a second one waits as a ready standby and takes
//! over when the lease lapses (leader killed) or is released (leader stopped). The leader renews
//! well inside the lease and gives up *before* the lease can lapse when it cannot renew, so two
//! collectors never fetch at once. Even so, a deposed leader's late writes are harmless: pages
//! are written create-only under content-addressed names and the checkpoint with If-Match.
//!
//! While leading, the renew task also writes a small heartbeat into the leader blob (under the
//! lease), which `collector status` reads: who leads, since when, the last poll's outcome.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::org::{names, OrgKey};
use common::storage::{Blobs, StorageError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// What the leader publishes about itself in `leader/{org}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Heartbeat {
    pub holder: String,
    pub since: Option<DateTime<Utc>>,
    pub renewed: Option<DateTime<Utc>>,
    pub last_poll: Option<DateTime<Utc>>,
    pub last_poll_result: Option<String>,
    pub rate_limit_remaining: Option<u32>,
    pub rate_limit_limit: Option<u32>,
    /// Whether the last page reached the head of the log (docs/design.md §3 "Caught up means quiet").
    pub caught_up: Option<bool>,
}

/// A held leadership. Dropping it does not release the lease; call [`Leadership::release`].
pub struct Leadership {
    blobs: Blobs,
    name: String,
    lease_id: String,
    /// Cancelled when the lease could not be renewed in time: stop collecting at once.
    pub lost: CancellationToken,
    heartbeat: Arc<Mutex<Heartbeat>>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Who holds (or may hold) the lease, for logs: host name and process id.
pub fn holder_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
    format!("{host}/{}", std::process::id())
}

/// Waits until this process leads `org`, or `cancel` fires (then `Ok(None)`).
///
/// `on_standby` is called once when another collector holds the lease.
pub async fn acquire(
    blobs: &Blobs,
    org: &OrgKey,
    lease: Duration,
    cancel: &CancellationToken,
    mut on_standby: impl FnMut(),
) -> Result<Option<Leadership>, StorageError> {
    let name = names::leader(org);
    match blobs.create_only(&name, Bytes::from_static(b"{}")).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() || e.is_lease_lost() => {}
        Err(e) => return Err(e),
    }
    let mut told = false;
    let retry = (lease / 3).max(Duration::from_secs(1));
    loop {
        match blobs.acquire_lease(&name, lease, None).await {
            Ok(lease_id) => {
                let heartbeat = Arc::new(Mutex::new(Heartbeat {
                    holder: holder_id(),
                    since: Some(Utc::now()),
                    ..Heartbeat::default()
                }));
                // Publish the new leader at once (status), not only at the first renewal.
                let body = serde_json::to_vec(
                    &*heartbeat
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                )
                .unwrap_or_default();
                if let Err(e) = blobs.write(&name, Bytes::from(body), Some(&lease_id)).await {
                    tracing::debug!(error = %e, "first heartbeat write failed");
                }
                let lost = CancellationToken::new();
                let renewer = tokio::spawn(renew_loop(
                    blobs.clone(),
                    name.clone(),
                    lease_id.clone(),
                    lease,
                    lost.clone(),
                    heartbeat.clone(),
                ));
                return Ok(Some(Leadership {
                    blobs: blobs.clone(),
                    name,
                    lease_id,
                    lost,
                    heartbeat,
                    renewer,
                }));
            }
            Err(e) if e.is_lease_already_present() => {
                if !told {
                    on_standby();
                    told = true;
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "could not try the leader lease; retrying");
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// Renews every third of the lease. Gives up — and cancels `lost` — when the last successful
/// renewal is so old that the lease could lapse before the next try.
async fn renew_loop(
    blobs: Blobs,
    name: String,
    lease_id: String,
    lease: Duration,
    lost: CancellationToken,
    heartbeat: Arc<Mutex<Heartbeat>>,
) {
    let every = lease / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let renewed = blobs.renew_lease(&name, &lease_id).await;
        match renewed {
            Ok(()) => {
                last_ok = Instant::now();
                let body = {
                    let mut hb = heartbeat
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    hb.renewed = Some(Utc::now());
                    serde_json::to_vec(&*hb).unwrap_or_default()
                };
                if let Err(e) = blobs.write(&name, Bytes::from(body), Some(&lease_id)).await {
                    tracing::debug!(error = %e, "heartbeat write failed (lease still held)");
                }
            }
            Err(e) if e.is_lease_lost() || e.status() == Some(409) => {
                tracing::error!(error = %e, "leader lease lost: stopping collection");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader lease renewal failed; retrying");
                // Stop before the lease can lapse: the next renewal would come after
                // `last_ok + 2 × every` at the earliest, too close to `last_ok + lease`.
                if last_ok.elapsed() + every + every / 2 >= lease {
                    tracing::error!("cannot renew the leader lease in time: stopping collection");
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

impl Leadership {
    /// Records the outcome of a poll for the heartbeat.
    pub fn note_poll(&self, result: &str, remaining: Option<u32>, limit: Option<u32>) {
        let mut hb = self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hb.last_poll = Some(Utc::now());
        hb.last_poll_result = Some(result.to_string());
        if remaining.is_some() {
            hb.rate_limit_remaining = remaining;
            hb.rate_limit_limit = limit;
        }
    }

    /// Records whether the last page reached the head of the log, for the heartbeat.
    pub fn note_caught_up(&self, caught_up: bool) {
        let mut hb = self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hb.caught_up = Some(caught_up);
    }

    /// Releases the lease so a standby takes over at once.
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.blobs.release_lease(&self.name, &self.lease_id).await {
            tracing::warn!(error = %e, "could not release the leader lease; it lapses by itself");
        }
    }
}

/// Reads the heartbeat of the org's leader, for `collector status`.
pub async fn read_heartbeat(
    blobs: &Blobs,
    org: &OrgKey,
) -> Result<Option<Heartbeat>, StorageError> {
    Ok(blobs
        .read_limited(&names::leader(org), 64 * 1024)
        .await?
        .and_then(|c| serde_json::from_slice(&c.bytes).ok()))
}
