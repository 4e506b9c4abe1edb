//! Keeps a page's claim alive while it is being shipped: the message stays invisible
//! (Update Message visibility, tracking the new pop receipt) and the page-state lease is
//! renewed. A lost pop receipt does not stop the work — the state lease is what owns it —
//! but a lost lease does: another replica owns the page now, and posting on would duplicate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::storage::{Blobs, Queue};
use tokio_util::sync::CancellationToken;

struct Claim {
    pop_receipt: String,
    lease: Option<(String, String)>,
    /// When the lease was last acquired or renewed (monotonic: a paused process sees the
    /// pause here).
    lease_ok_at: Instant,
}

pub struct Keeper {
    claim: Arc<Mutex<Claim>>,
    /// Cancelled when the state lease was lost: stop posting this page at once.
    pub lost: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    pub fn start(
        queue: Queue,
        blobs: Blobs,
        message_id: String,
        pop_receipt: String,
        visibility: Duration,
        lease: Duration,
    ) -> Keeper {
        let claim = Arc::new(Mutex::new(Claim {
            pop_receipt,
            lease: None,
            lease_ok_at: Instant::now(),
        }));
        let lost = CancellationToken::new();
        let every = (visibility / 3)
            .min(lease / 3)
            .max(Duration::from_millis(500));
        let task = {
            let claim = claim.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut last_lease_ok = Instant::now();
                loop {
                    tokio::time::sleep(every).await;
                    let (pop, held) = {
                        let c = claim.lock().unwrap_or_else(|p| p.into_inner());
                        (c.pop_receipt.clone(), c.lease.clone())
                    };
                    if !pop.is_empty() {
                        match queue.update_visibility(&message_id, &pop, visibility).await {
                            Ok(new_pop) => {
                                claim.lock().unwrap_or_else(|p| p.into_inner()).pop_receipt =
                                    new_pop
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot extend message visibility; the state lease still owns the page");
                                if e.is_pop_receipt_mismatch() || e.is_not_found() {
                                    claim
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .pop_receipt
                                        .clear();
                                }
                            }
                        }
                    }
                    if let Some((name, id)) = held {
                        match blobs.renew_lease(&name, &id).await {
                            Ok(()) => {
                                last_lease_ok = Instant::now();
                                claim.lock().unwrap_or_else(|p| p.into_inner()).lease_ok_at =
                                    last_lease_ok;
                            }
                            Err(e) if e.is_lease_lost() || e.status() == Some(409) => {
                                tracing::warn!(state = %name, error = %e, "page-state lease lost; abandoning the page");
                                lost.cancel();
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot renew the page-state lease; retrying");
                                if last_lease_ok.elapsed() + every + every / 2 >= lease {
                                    lost.cancel();
                                    return;
                                }
                            }
                        }
                    }
                }
            })
        };
        Keeper { claim, lost, task }
    }

    pub fn set_lease(&self, blob: String, lease_id: String) {
        let mut c = self.claim.lock().unwrap_or_else(|p| p.into_inner());
        c.lease = Some((blob, lease_id));
        c.lease_ok_at = Instant::now();
    }

    /// Time since the lease was last known to be held.
    pub fn lease_age(&self) -> Duration {
        self.claim
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lease_ok_at
            .elapsed()
    }

    /// Records a renewal done outside the keeper.
    pub fn lease_renewed(&self) {
        self.claim
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lease_ok_at = Instant::now();
    }

    /// The newest pop receipt (empty when it was lost).
    pub fn pop_receipt(&self) -> String {
        self.claim
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_receipt
            .clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
