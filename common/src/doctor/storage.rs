//! Storage probes: the queue and the container, with the operations the service performs.
//!
//! Real messages and blobs are never touched:
//! * the queue probe is a message of its own, put *invisible* until just before it expires
//!   (Put Message requires visibility < TTL), so no receiver sees it; the shipper then updates
//!   it and deletes it by its pop receipt. Nothing is *received*: on a live queue a receive
//!   would take a real page's message. The collector's role can only add (Storage Queue Data
//!   Message Sender), so its probe is left to expire by itself.
//! * the blob probe is `doctor/{service}-{uuid}.probe`, a prefix nothing else reads: written
//!   create-only (`If-None-Match: *`, as pages and page states are), read back, leased and
//!   released (as the leader blob and page states are), then deleted.
//!
//! A 403 `AuthorizationPermissionMismatch` names the data action that was refused, the
//! built-in role that grants it as `infra/modules/roles.bicep` assigns it, and the scope
//! (contracts.md §7.2; role definitions: learn.microsoft.com/azure/role-based-access-control/
//! built-in-roles/storage).

use std::time::Duration;

use bytes::Bytes;

use crate::storage::{Storage, StorageAuth, StorageError, StorageSettings};

use super::Check;

/// Life of the queue probe: invisible all but its last second, so that a probe that could not
/// be deleted (the collector's, or a refused delete) is never worked on by a shipper in
/// practice and vanishes by itself.
const PROBE_TTL: Duration = Duration::from_secs(30);

/// Lease of the blob probe (the shortest the service accepts); released at once.
const PROBE_LEASE: Duration = Duration::from_secs(15);

/// Text of the queue probe: says what it is to anyone who ever sees it.
const PROBE_TEXT: &str = r#"{"okta_sentinel_doctor_probe":"written by `doctor` to check queue permissions; invisible, expires by itself, never a page"}"#;

const QUEUE_ACTIONS: &str = "Microsoft.Storage/storageAccounts/queueServices/queues/messages";
const BLOB_ACTIONS: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs";
const QUEUE_CONTRIBUTOR: &str = "Storage Queue Data Contributor";
const QUEUE_SENDER: &str = "Storage Queue Data Message Sender";
const BLOB_CONTRIBUTOR: &str = "Storage Blob Data Contributor";

/// What the service does with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueUse {
    /// Put Message only (the collector).
    Send,
    /// Receive, update visibility, delete (the shipper; `poison requeue` also adds).
    Process,
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
    /// The built-in role that grants it, as the deployment assigns it.
    role: &'static str,
}

impl Probe<'_> {
    fn managed(&self) -> bool {
        matches!(self.settings.auth, StorageAuth::ManagedIdentity)
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
                "grant {} the data action {} on the {scope}: the built-in role {} grants it (as infra/modules/roles.bicep assigns it); a new role assignment can take up to 30 minutes to apply",
                self.identity, op.action, op.role
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
        let q = &self.settings.queue_name;
        let scope = self.queue_scope();
        let name = |what: &str| format!("storage queue {q}: {what}");
        let add = Op {
            what: "add message",
            action: format!("{QUEUE_ACTIONS}/add/action"),
            role: match usage {
                QueueUse::Send => QUEUE_SENDER,
                QueueUse::Process => QUEUE_CONTRIBUTOR,
            },
        };
        let invisible = PROBE_TTL - Duration::from_secs(1);
        let sent = match self
            .storage
            .queue
            .send_expiring(PROBE_TEXT, invisible, PROBE_TTL)
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return vec![self.failed(name("exists"), &add, &scope, &e)];
            }
            Err(e) => return vec![self.failed(name(add.what), &add, &scope, &e)],
        };
        let mut out = vec![Check::ok(name("exists"))];
        if usage == QueueUse::Send {
            out.push(Check::ok_with(
                name(add.what),
                format!(
                    "an invisible probe message that expires unseen within {} s; the {}'s role cannot delete messages",
                    PROBE_TTL.as_secs(),
                    self.service
                ),
            ));
            return out;
        }
        out.push(Check::ok_with(
            name(add.what),
            "an invisible probe message, deleted below",
        ));
        let update = Op {
            what: "update message",
            action: format!("{QUEUE_ACTIONS}/write"),
            role: QUEUE_CONTRIBUTOR,
        };
        let mut pop = sent.pop_receipt.clone();
        match self
            .storage
            .queue
            .update_visibility(&sent.id, &sent.pop_receipt, invisible)
            .await
        {
            Ok(p) => {
                pop = p;
                out.push(Check::ok(name(update.what)));
            }
            Err(e) => out.push(self.failed(name(update.what), &update, &scope, &e)),
        }
        let delete = Op {
            what: "delete message",
            action: format!("{QUEUE_ACTIONS}/delete"),
            role: QUEUE_CONTRIBUTOR,
        };
        match self.storage.queue.delete(&sent.id, &pop).await {
            Ok(()) => out.push(Check::ok(name(delete.what))),
            Err(e) => {
                let mut c = self.failed(name(delete.what), &delete, &scope, &e);
                if let super::Status::Failed { cause, .. } = &mut c.status {
                    cause.push_str(&format!(
                        " (the probe message expires by itself within {} s)",
                        PROBE_TTL.as_secs()
                    ));
                }
                out.push(c);
            }
        }
        out.push(Check::ok_with(
            name("receive message"),
            format!(
                "skipped: a receive on a live queue would take a real page's message; it needs {QUEUE_ACTIONS}/process/action, which {QUEUE_CONTRIBUTOR} grants with delete"
            ),
        ));
        out
    }

    /// The container checks: create-only write, read, lease, delete of a probe blob.
    pub async fn container(&self) -> Vec<Check> {
        let c = &self.settings.container_name;
        let scope = self.container_scope();
        let blob = format!("doctor/{}-{}.probe", self.service, uuid::Uuid::new_v4());
        let name = |what: &str| format!("storage container {c}: {what}");
        let op = |what: &'static str, action: &str| Op {
            what,
            action: format!("{BLOB_ACTIONS}/{action}"),
            role: BLOB_CONTRIBUTOR,
        };
        let write = op("create-only write", "write");
        let body = Bytes::from_static(b"okta-sentinel doctor probe: deleted at once\n");
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
        let delete = op("delete", "delete");
        match self.storage.blobs.delete(&blob, None).await {
            Ok(_) => out.push(Check::ok(name(delete.what))),
            Err(e) if e.is_lease_lost() || e.status() == Some(412) => {
                // The release above failed: the lease ends within 15 s; nothing to grant.
                out.push(Check::ok_with(
                    name(delete.what),
                    format!(
                        "not checked: the probe is still leased; {blob} can be deleted after 15 s"
                    ),
                ))
            }
            Err(e) => {
                let mut c = self.failed(name(delete.what), &delete, &scope, &e);
                if let super::Status::Failed { cause, .. } = &mut c.status {
                    cause.push_str(&format!(" ({blob} is left behind: delete it by hand)"));
                }
                out.push(c);
            }
        }
        out
    }
}
