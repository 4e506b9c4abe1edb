//! Storage probes: the queue and the container, with only the operations the service's own
//! role grants (`infra/modules/roles.bicep`, table "Storage operations and data actions" in
//! `infra/README.md`): doctor proves the service can do its job, so it must not need more
//! rights than the job.
//!
//! * collector queue: a probe message of its own, Put Message *invisible* until just before it
//!   expires (Put Message requires visibility < TTL), so no shipper sees it; the collector's
//!   role can only add, so the probe expires by itself.
//! * shipper queue: the shipper's role has no add, so it receives at most one message with a
//!   short visibility timeout and puts it back visible at once with Update Message (visibility
//!   0): that proves `messages/process/action` (receive and delete) and `messages/write`. An
//!   empty queue proves the receive only ("update not checked: queue empty"). A real message
//!   received this way has its dequeue count raised by one, which is harmless: a page's
//!   failures are counted in its page state, not by the dequeue count, and only an undecodable
//!   envelope (poison anyway) is judged by it (docs/design.md §2).
//! * container: the probe is `doctor/{service}-{uuid}.probe`, a prefix nothing else reads:
//!   written create-only (`If-None-Match: *`, as pages and page states are), read back, leased
//!   and released (as the leader blob and page states are). The shipper, whose role deletes
//!   blobs, deletes it; the collector's role cannot, so its probe is left for the storage
//!   account's lifecycle rule on `doctor/` (`infra/modules/storage.bicep`, one day).
//!
//! A 403 `AuthorizationPermissionMismatch` names the data action that was refused, the custom
//! role that grants it as `infra/modules/roles.bicep` assigns it, and the scope (docs/contracts.md
//! §7.2; data actions: learn.microsoft.com/azure/role-based-access-control/permissions/storage).

use std::time::Duration;

use bytes::Bytes;

use crate::storage::{Storage, StorageAuth, StorageError, StorageSettings};

use super::Check;

/// Life of the collector's queue probe: invisible all but its last second, so that no shipper
/// works on it in practice and it vanishes by itself (the collector cannot delete it).
const PROBE_TTL: Duration = Duration::from_secs(30);

/// Visibility timeout of the shipper's probe receive: if putting the message back fails, it
/// reappears by itself this soon and a shipper takes it as usual.
const PROBE_RECEIVE_VISIBILITY: Duration = Duration::from_secs(30);

/// Lease of the blob probe (the shortest the service accepts); released at once.
const PROBE_LEASE: Duration = Duration::from_secs(15);

/// Text of the queue probe: says what it is to anyone who ever sees it.
const PROBE_TEXT: &str = r#"{"okta_sentinel_doctor_probe":"written by `doctor` to check queue permissions; invisible, expires by itself, never a page"}"#;

const QUEUE_ACTIONS: &str = "Microsoft.Storage/storageAccounts/queueServices/queues/messages";
const BLOB_ACTIONS: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs";

/// What the service does with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueUse {
    /// Put Message only (the collector).
    Send,
    /// Receive, update visibility, delete (the shipper).
    Process,
}

/// What becomes of the probe blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCleanup {
    /// The role deletes blobs (the shipper): delete it, which checks `blobs/delete`.
    Delete,
    /// The role cannot delete blobs (the collector): leave it to the lifecycle rule on
    /// `doctor/` (`infra/modules/storage.bicep`).
    Lifecycle,
}

/// The service whose identity runs the probes.
pub struct Probe<'a> {
    pub storage: &'a Storage,
    pub settings: &'a StorageSettings,
    /// `collector` or `shipper`.
    pub service: &'a str,
    /// Whose identity, for the fixes (see [`super::identity_label`]).
    pub identity: String,
}

/// One storage operation, for the messages.
struct Op {
    /// `add message`, `lease`, …
    what: &'static str,
    /// The data action the service checks.
    action: String,
}

impl Probe<'_> {
    fn managed(&self) -> bool {
        matches!(self.settings.auth, StorageAuth::ManagedIdentity)
    }

    /// The custom role `infra/modules/roles.bicep` defines and assigns to this service's
    /// identity (its `roleName`, without the resource-group suffix in parentheses).
    fn role(&self) -> String {
        format!("okta-sentinel {} storage", self.service)
    }

    fn queue_scope(&self) -> String {
        format!(
            "queue {} of storage account {}",
            self.settings.queue_name, self.settings.account
        )
    }

    fn container_scope(&self) -> String {
        format!(
            "container {} of storage account {}",
            self.settings.container_name, self.settings.account
        )
    }

    /// The FAILED line of a refused or failed operation, with the fix for its cause.
    fn failed(&self, name: String, op: &Op, scope: &str, e: &StorageError) -> Check {
        let code = e.code().unwrap_or_default();
        let fix = match (e.status(), code) {
            (Some(403), "AuthorizationPermissionMismatch") => format!(
                "grant {} the data action {} on the {scope}: the custom role \"{} (…)\" holds it, assigned on the {scope} by infra/modules/roles.bicep (redeploy it, or add the data action to that role); a new role assignment can take up to 30 minutes to apply",
                self.identity,
                op.action,
                self.role()
            ),
            (Some(403), "AuthorizationFailure") => format!(
                "the storage account's network rules refuse this client: allow the app's subnet or private endpoint on storage account {} (Networking → firewalls and virtual networks)",
                self.settings.account
            ),
            (Some(401 | 403), _) if self.managed() => {
                "storage refused the identity's token: check AZURE_CLIENT_ID and that the storage account is in the identity's tenant".to_string()
            }
            (Some(401 | 403), _) => {
                "storage refused the account SAS: check the AccountKey in AZURE_STORAGE_CONNECTION_STRING".to_string()
            }
            (Some(404), "QueueNotFound") => format!(
                "create queue {} in storage account {} (the Bicep deployment creates it), or set OKTA_QUEUE to the queue's name",
                self.settings.queue_name, self.settings.account
            ),
            (Some(404), "ContainerNotFound") => format!(
                "create container {} in storage account {} (the Bicep deployment creates it), or set OKTA_CONTAINER to the container's name",
                self.settings.container_name, self.settings.account
            ),
            _ if matches!(e, StorageError::Transport(_)) => format!(
                "cannot reach storage account {}: check AZURE_STORAGE_ACCOUNT (or AZURE_STORAGE_QUEUE_ENDPOINT / AZURE_STORAGE_BLOB_ENDPOINT), DNS and the network path to it",
                self.settings.account
            ),
            _ => format!(
                "the {} was refused ({}); see the storage error above",
                op.what,
                e.status().map_or("no status".to_string(), |s| s.to_string())
            ),
        };
        Check::failed(name, e.to_string(), fix)
    }

    /// The queue checks for `usage`.
    pub async fn queue(&self, usage: QueueUse) -> Vec<Check> {
        match usage {
            QueueUse::Send => self.queue_send().await,
            QueueUse::Process => self.queue_process().await,
        }
    }

    /// The collector: one invisible, expiring probe message (Put Message).
    async fn queue_send(&self) -> Vec<Check> {
        let q = &self.settings.queue_name;
        let scope = self.queue_scope();
        let name = |what: &str| format!("storage queue {q}: {what}");
        let add = Op {
            what: "add message",
            action: format!("{QUEUE_ACTIONS}/add/action"),
        };
        let invisible = PROBE_TTL.saturating_sub(Duration::from_secs(1));
        match self
            .storage
            .queue
            .send_expiring(PROBE_TEXT, invisible, PROBE_TTL)
            .await
        {
            Ok(_) => vec![
                Check::ok(name("exists")),
                Check::ok_with(
                    name(add.what),
                    format!(
                        "an invisible probe message that expires unseen within {} s; the {}'s role cannot delete messages",
                        PROBE_TTL.as_secs(),
                        self.service
                    ),
                ),
            ],
            Err(e) if e.is_not_found() => vec![self.failed(name("exists"), &add, &scope, &e)],
            Err(e) => vec![self.failed(name(add.what), &add, &scope, &e)],
        }
    }

    /// The shipper: receive at most one message, put it back visible at once.
    async fn queue_process(&self) -> Vec<Check> {
        let q = &self.settings.queue_name;
        let scope = self.queue_scope();
        let name = |what: &str| format!("storage queue {q}: {what}");
        let receive = Op {
            what: "receive message",
            action: format!("{QUEUE_ACTIONS}/process/action"),
        };
        let got = match self
            .storage
            .queue
            .receive(1, PROBE_RECEIVE_VISIBILITY)
            .await
        {
            Ok(got) => got,
            Err(e) if e.is_not_found() => {
                return vec![self.failed(name("exists"), &receive, &scope, &e)];
            }
            Err(e) => return vec![self.failed(name(receive.what), &receive, &scope, &e)],
        };
        let mut out = vec![Check::ok(name("exists"))];
        let update = Op {
            what: "update message",
            action: format!("{QUEUE_ACTIONS}/write"),
        };
        match got.first() {
            None => {
                out.push(Check::ok_with(
                    name(receive.what),
                    "queue empty: nothing received",
                ));
                out.push(Check::ok_with(
                    name(update.what),
                    format!(
                        "update not checked: queue empty (it needs {}; run doctor again while pages are queued)",
                        update.action
                    ),
                ));
            }
            Some(m) => {
                out.push(Check::ok_with(
                    name(receive.what),
                    "one message received and put back below; its dequeue count went up by one, which is harmless (docs/design.md §2: page failures are counted in the page state)",
                ));
                match self
                    .storage
                    .queue
                    .update_visibility(&m.id, &m.pop_receipt, Duration::ZERO)
                    .await
                {
                    Ok(_) => out.push(Check::ok_with(
                        name(update.what),
                        "the received message is visible again at once",
                    )),
                    Err(e) => {
                        let mut c = self.failed(name(update.what), &update, &scope, &e);
                        if let super::Status::Failed { cause, .. } = &mut c.status {
                            cause.push_str(&format!(
                                " (the received message is visible again by itself within {} s)",
                                PROBE_RECEIVE_VISIBILITY.as_secs()
                            ));
                        }
                        out.push(c);
                    }
                }
            }
        }
        out.push(Check::ok_with(
            name("delete message"),
            format!(
                "not probed on a real message; Delete Message needs {}, the data action the receive above proved",
                receive.action
            ),
        ));
        out
    }

    /// The container checks: create-only write, read, lease and release of a probe blob, then
    /// its delete or its hand-over to the lifecycle rule (`cleanup`).
    pub async fn container(&self, cleanup: BlobCleanup) -> Vec<Check> {
        let c = &self.settings.container_name;
        let scope = self.container_scope();
        let blob = format!("doctor/{}-{}.probe", self.service, uuid::Uuid::new_v4());
        let name = |what: &str| format!("storage container {c}: {what}");
        let op = |what: &'static str, action: &str| Op {
            what,
            action: format!("{BLOB_ACTIONS}/{action}"),
        };
        let write = op("create-only write", "add/action");
        let body = Bytes::from_static(
            b"okta-sentinel doctor probe: deleted at once, or by the lifecycle rule on doctor/ within a day\n",
        );
        match self.storage.blobs.create_only(&blob, body.clone()).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("ContainerNotFound") => {
                return vec![self.failed(name("exists"), &write, &scope, &e)];
            }
            Err(e) => {
                return vec![self.failed(
                    name(&format!("{} {blob}", write.what)),
                    &write,
                    &scope,
                    &e,
                )]
            }
        }
        let mut out = vec![
            Check::ok(name("exists")),
            Check::ok(name(&format!("{} {blob}", write.what))),
        ];
        let read = op("read", "read");
        match self.storage.blobs.read(&blob).await {
            Ok(Some(got)) if got.bytes == body => out.push(Check::ok(name(read.what))),
            Ok(_) => out.push(Check::failed(
                name(read.what),
                "the probe blob read back differs from what was written",
                "check that nothing else writes under doctor/ and that AZURE_STORAGE_BLOB_ENDPOINT is the account's blob endpoint",
            )),
            Err(e) => out.push(self.failed(name(read.what), &read, &scope, &e)),
        }
        let lease = op("lease", "write");
        match self
            .storage
            .blobs
            .acquire_lease(&blob, PROBE_LEASE, None)
            .await
        {
            Ok(id) => match self.storage.blobs.release_lease(&blob, &id).await {
                Ok(()) => out.push(Check::ok(name(lease.what))),
                Err(e) => out.push(self.failed(name("lease release"), &lease, &scope, &e)),
            },
            Err(e) => out.push(self.failed(name(lease.what), &lease, &scope, &e)),
        }
        if cleanup == BlobCleanup::Lifecycle {
            out.push(Check::ok_with(
                name("probe blob left"),
                format!(
                    "{blob} is left for the storage account's lifecycle rule on doctor/ (deleted after one day): the {}'s role cannot delete blobs",
                    self.service
                ),
            ));
            return out;
        }
        let delete = op("delete", "delete");
        match self.storage.blobs.delete(&blob, None).await {
            Ok(_) => out.push(Check::ok(name(delete.what))),
            Err(e) if e.is_lease_lost() || e.status() == Some(412) => {
                // The release above failed: the lease ends within 15 s; nothing to grant.
                out.push(Check::ok_with(
                    name(delete.what),
                    format!(
                        "not checked: the probe is still leased; {blob} is removed by the lifecycle rule on doctor/"
                    ),
                ));
            }
            Err(e) => {
                let mut c = self.failed(name(delete.what), &delete, &scope, &e);
                if let super::Status::Failed { cause, .. } = &mut c.status {
                    cause.push_str(&format!(
                        " ({blob} is left behind for the lifecycle rule on doctor/)"
                    ));
                }
                out.push(c);
            }
        }
        out
    }
}
