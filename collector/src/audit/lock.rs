//! One audit at a time per org: a lease on `audit/{org}/lock`, renewed while the audit runs.
//! Two audits of one window at once could both find the same events missing and both repair
//! them; the lease makes the second wait (or, for the background audit, skip its turn).

use std::time::Duration;

use bytes::Bytes;
use common::org::OrgKey;
use common::storage::{Blobs, StorageError};
use tokio_util::sync::CancellationToken;

pub struct AuditLock {
    blobs: Blobs,
    name: String,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
    /// Cancelled when a renewal fails: the audit must stop before it repairs anything more.
    pub lost: CancellationToken,
}

fn name(org: &OrgKey) -> String {
    format!("audit/{org}/lock")
}

/// Tries once; `Ok(None)` when another audit holds the lock.
pub async fn try_acquire(
    blobs: &Blobs,
    org: &OrgKey,
    lease: Duration,
    parent: &CancellationToken,
) -> Result<Option<AuditLock>, StorageError> {
    let name = name(org);
    match blobs
        .create_only(&name, Bytes::from_static(b"audit lock\n"))
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_already_exists() || e.is_lease_already_present() => {}
        Err(e) => return Err(e),
    }
    let id = match blobs.acquire_lease(&name, lease, None).await {
        Ok(id) => id,
        Err(e) if e.is_lease_already_present() => return Ok(None),
        Err(e) => return Err(e),
    };
    let lost = parent.child_token();
    let renewer = {
        let (blobs, name, id, lost) = (blobs.clone(), name.clone(), id.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = lost.cancelled() => return,
                    () = tokio::time::sleep(lease / 3) => {}
                }
                if let Err(e) = blobs.renew_lease(&name, &id).await {
                    tracing::warn!(error = %e, "audit lock lost; the audit stops");
                    lost.cancel();
                    return;
                }
            }
        })
    };
    Ok(Some(AuditLock {
        blobs: blobs.clone(),
        name,
        id,
        renewer,
        lost,
    }))
}

impl AuditLock {
    pub async fn release(self) {
        self.renewer.abort();
        let _ = self.blobs.release_lease(&self.name, &self.id).await;
    }
}
