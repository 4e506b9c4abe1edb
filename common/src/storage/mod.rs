//! Storage access: the page queue and the container, over the Azure SDK 1.x crates.
//!
//! * [`settings`]: the CLI/env flags and their validation (which auth mode, which endpoints).
//! * [`sas`]: account SAS signing for account-key setups (Azurite), since the SDK has no
//!   SharedKey auth.
//! * [`queue`] and [`blob`]: the operations the collector and shipper use, with typed
//!   [`StorageError`]s that keep the storage error code (412 stale ETag ≠ 412 lease missing).
//!
//! ```no_run
//! # async fn f(args: common::storage::StorageArgs) -> anyhow::Result<()> {
//! use common::storage::Storage;
//! let settings = args.validate()?;
//! let http = common::http::build_client(&Default::default())?;
//! let storage = Storage::connect(&settings, http, None)?; // a credential for managed identity
//! storage.queue.send(r#"{"v":1}"#, None).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

pub mod blob;
mod clients;
pub mod error;
pub mod queue;
pub mod sas;
pub mod settings;

pub use blob::{AcquiredLease, BlobContent, BlobItem, Blobs};
pub use error::StorageError;
pub use queue::{Queue, ReceivedMessage, SentMessage};
pub use settings::{StorageArgs, StorageAuth, StorageSettings};

use clients::Auth;
use sas::AccountSasSigner;

/// The queue and the container. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    pub queue: Queue,
    pub blobs: Blobs,
}

impl Storage {
    /// Builds the clients (no network call).
    ///
    /// `credential` is required for [`StorageAuth::ManagedIdentity`] (share one credential with
    /// the rest of the process so tokens are cached once) and ignored for
    /// [`StorageAuth::AccountKey`], where an account SAS is signed in process and refreshed well
    /// before it expires. `http` is the shared client used as the SDK transport; it must not
    /// decompress automatically (see `common::http`).
    pub fn connect(
        settings: &StorageSettings,
        http: reqwest::Client,
        credential: Option<Arc<dyn TokenCredential>>,
    ) -> Result<Storage, StorageError> {
        let auth = match (&settings.auth, credential) {
            (StorageAuth::AccountKey { account, key }, _) => Auth::Sas(Arc::new(
                AccountSasSigner::new(account, key, settings.uses_http())?,
            )),
            (StorageAuth::ManagedIdentity, Some(cred)) => Auth::Bearer(cred),
            (StorageAuth::ManagedIdentity, None) => {
                return Err(StorageError::Config(
                    "managed-identity storage (AZURE_STORAGE_ACCOUNT) needs a token credential"
                        .into(),
                ))
            }
        };
        Ok(Storage {
            queue: Queue::new(
                auth.clone(),
                settings.queue_url.clone(),
                &settings.queue_name,
                http.clone(),
            )?,
            blobs: Blobs::new(
                auth,
                settings.container_url.clone(),
                &settings.container_name,
                http,
            )?,
        })
    }

    /// Creates the queue and the container when missing. Local and test runs only: in
    /// production the Bicep creates them and the services' roles cannot.
    pub async fn ensure_created(&self) -> Result<(), StorageError> {
        self.queue.create_if_missing().await?;
        self.blobs.create_container_if_missing().await
    }
}

/// SDK timestamps (`time`) to ours (`chrono`).
fn time_to_chrono(t: time::OffsetDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
}
