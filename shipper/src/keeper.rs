//! Keeps a page's claim alive while it is being shipped: the message stays invisible
//! (Update Message visibility, tracking the new pop receipt) and the page-state lease is
//! renewed. A lost pop receipt does not stop the work — the state lease is what owns it —
//! but a lost lease does: another replica owns the page now, and posting on would duplicate.
//!
//! A renewal that fails for want of an answer (storage down) is not a lost lease: the keeper
//! keeps trying, because renewing a lease that expired succeeds as long as nobody leased the
//! blob since (<https://learn.microsoft.com/rest/api/storageservices/lease-blob>, "renew").
//! Only an answer saying the lease is someone else's now ends the claim. Meanwhile the worker
//! asks [`Keeper::lease_left`] before every POST and does not post on a lease it cannot vouch
//! for (docs/design.md §2 step 3).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::storage::{Blobs, Queue};
use tokio_util::sync::CancellationToken;

struct Claim {
    pop_receipt: String,
    lease: Option<(String, String)>,
    /// When the request that last acquired or renewed the lease was *sent* (the lease runs
    /// from some moment after that; monotonic, so a paused process sees the pause here).
    lease_ok_at: Instant,
}

pub struct Keeper {
    claim: Arc<Mutex<Claim>>,
    /// The state lease's duration.
    lease: Duration,
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
                loop {
                    tokio::time::sleep(every).await;
                    let (pop, held) = {
                        let c = claim
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        (c.pop_receipt.clone(), c.lease.clone())
                    };
                    if !pop.is_empty() {
                        match queue.update_visibility(&message_id, &pop, visibility).await {
                            Ok(new_pop) => {
                                claim
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .pop_receipt = new_pop;
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot extend message visibility; the state lease still owns the page");
                                if e.is_pop_receipt_mismatch() || e.is_not_found() {
                                    claim
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .pop_receipt
                                        .clear();
                                }
                            }
                        }
                    }
                    if let Some((name, id)) = held {
                        let sent = Instant::now();
                        match blobs.renew_lease(&name, &id).await {
                            Ok(()) => {
                                let mut c = claim
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                c.lease_ok_at = c.lease_ok_at.max(sent);
                            }
                            Err(e) if is_lease_gone(&e) => {
                                tracing::warn!(state = %name, error = %e, "page-state lease lost; abandoning the page");
                                lost.cancel();
                                return;
                            }
                            Err(e) => {
                                // No answer is not a lost lease: an expired lease is renewed
                                // when storage answers again, unless someone took it since.
                                tracing::warn!(error = %e, "cannot renew the page-state lease; retrying");
                            }
                        }
                    }
                }
            })
        };
        Keeper {
            claim,
            lease,
            lost,
            task,
        }
    }

    /// Starts renewing `lease_id` on `blob`, acquired by a request sent at `sent`.
    pub fn set_lease(&self, blob: String, lease_id: String, sent: Instant) {
        let mut c = self
            .claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.lease = Some((blob, lease_id));
        c.lease_ok_at = sent;
    }

    /// How long the lease is known to be held from now: its duration counted from the moment
    /// the last successful acquire or renewal was sent (zero once that is over).
    pub fn lease_left(&self) -> Duration {
        let at = self
            .claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lease_ok_at;
        self.lease.saturating_sub(at.elapsed())
    }

    /// Records a successful renewal done outside the keeper, sent at `sent`.
    pub fn lease_renewed(&self, sent: Instant) {
        let mut c = self
            .claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.lease_ok_at = c.lease_ok_at.max(sent);
    }

    /// The newest pop receipt (empty when it was lost).
    pub fn pop_receipt(&self) -> String {
        self.claim
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_receipt
            .clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// An answer saying the lease is not ours any more (someone else leased the blob, or it is
/// gone): as opposed to no answer, after which the lease may still be regained.
pub fn is_lease_gone(e: &common::storage::StorageError) -> bool {
    e.is_lease_lost() || e.is_not_found() || e.status() == Some(409)
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
