//! The container: leader leases, checkpoints, pages, page state, done markers, poison records.
//!
//! The delivery guarantees (docs/design.md §2) rest on three blob primitives:
//! * create-only writes (`If-None-Match: *`) so an immutable page or a first checkpoint can
//!   never be overwritten;
//! * `If-Match` writes so a deposed writer's stale ETag makes its write fail;
//! * leases so one shipper owns a page state and one collector leads an org.
//!
//! All three run on the no-retry SDK client (see [`super::clients`]).

use std::num::NonZero;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{ClientOptions, Etag, NoFormat, RequestContent};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders as _,
    BlobClientBreakLeaseOptions, BlobClientDeleteOptions, BlobClientDownloadOptions,
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use url::Url;

use super::clients::{Auth, Refreshing};
use super::{time_to_chrono, StorageError};

/// The most a download reserves up front from the size the service announces.
const MAX_SIZE_HINT: u64 = 64 << 20;

/// A blob's bytes and the ETag they were read at.
#[derive(Clone, Debug)]
pub struct BlobContent {
    pub bytes: Bytes,
    /// The ETag as the service sent it (quoted); pass it back to [`Blobs::write_if_match`].
    pub etag: String,
}

/// A lease just taken, and the blob's ETag at that moment (when the service sent it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquiredLease {
    pub lease_id: String,
    pub etag: Option<String>,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobItem {
    pub name: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// The container. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    clients: Arc<Refreshing<BlobContainerClient>>,
    name: Arc<str>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("container", &self.name)
            .finish_non_exhaustive()
    }
}

fn build(
    url: Url,
    credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    client_options: ClientOptions,
) -> azure_core::Result<BlobContainerClient> {
    BlobContainerClient::new(
        url,
        credential,
        Some(BlobContainerClientOptions {
            client_options,
            ..BlobContainerClientOptions::default()
        }),
    )
}

/// Shortest and longest finite lease the service accepts.
const LEASE_MIN_SECS: u64 = 15;
const LEASE_MAX_SECS: u64 = 60;
/// Longest blob name the service accepts.
const MAX_NAME_LEN: usize = 1024;

impl Blobs {
    pub(crate) fn new(
        auth: Auth,
        url: Url,
        name: &str,
        http: reqwest::Client,
    ) -> Result<Blobs, StorageError> {
        Ok(Blobs {
            clients: Arc::new(Refreshing::new(auth, url, http, build)?),
            name: Arc::from(name),
        })
    }

    /// The container's name.
    pub fn container(&self) -> &str {
        &self.name
    }

    fn blob(&self, name: &str, once: bool) -> Result<BlobClient, StorageError> {
        check_blob_name(name)?;
        let c = self.clients.get()?;
        Ok(if once { &c.once } else { &c.retrying }.blob_client(name))
    }

    /// Creates the container when missing (local and test runs only).
    pub async fn create_container_if_missing(&self) -> Result<(), StorageError> {
        let c = self.clients.get()?;
        match c.retrying.create(None).await.map_err(StorageError::from) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ContainerAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The whole blob, or `None` when it does not exist.
    pub async fn read(&self, name: &str) -> Result<Option<BlobContent>, StorageError> {
        self.download(name, None).await
    }

    /// Like [`Self::read`], but refuses (with a `Decode` error) a blob larger than `max_bytes`
    /// without downloading more than `max_bytes + 1` bytes: blob contents can be hostile.
    pub async fn read_limited(
        &self,
        name: &str,
        max_bytes: u64,
    ) -> Result<Option<BlobContent>, StorageError> {
        let got = self.download(name, Some(max_bytes)).await?;
        if let Some(c) = &got {
            if c.bytes.len() as u64 > max_bytes {
                return Err(StorageError::Decode(format!(
                    "blob {name} is larger than the {max_bytes}-byte limit"
                )));
            }
        }
        Ok(got)
    }

    async fn download(
        &self,
        name: &str,
        limit: Option<u64>,
    ) -> Result<Option<BlobContent>, StorageError> {
        let blob = self.blob(name, false)?;
        let options = BlobClientDownloadOptions {
            // One extra byte tells "exactly the limit" from "over the limit".
            range: limit.map(|max| (0..max.saturating_add(1)).into()),
            parallel: NonZero::new(2),
            ..Default::default()
        };
        let rsp = match blob
            .download(Some(options))
            .await
            .map_err(StorageError::from)
        {
            Ok(r) => r,
            Err(e) if is_blob_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = rsp
            .properties
            .etag
            .as_ref()
            .map(std::string::ToString::to_string)
            .ok_or_else(|| StorageError::Decode(format!("download of {name} lacks an ETag")))?;
        // The body goes into one buffer sized from Content-Length (the SDK's `collect` grows
        // its buffer chunk by chunk: each growth copies what came before, and for a page of
        // half a megabyte that, with the fresh memory it touches, was ≈ 1.5 % of the
        // shipper's CPU). Past the hint (a partitioned download's first part) it grows as usual.
        let room = limit.map_or(MAX_SIZE_HINT, |max| {
            max.saturating_add(1).min(MAX_SIZE_HINT)
        });
        let hint = rsp.properties.content_length.unwrap_or(0).min(room);
        let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
        let mut body = rsp.body;
        while let Some(chunk) = body.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(Some(BlobContent {
            bytes: buf.freeze(),
            etag,
        }))
    }

    /// Writes a new blob; fails with [`StorageError::is_already_exists`] when the name is taken.
    /// Returns the new ETag. Not retried by the SDK.
    pub async fn create_only(&self, name: &str, body: Bytes) -> Result<String, StorageError> {
        let options = BlobClientUploadOptions {
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        match self.upload(name, body, options, true).await {
            // The service answers 409 BlobAlreadyExists; a 412 on `If-None-Match: *` means the
            // same thing, so callers test a single predicate.
            Err(e) if e.is_condition_not_met() => Err(StorageError::service(
                409,
                Some("BlobAlreadyExists"),
                format!("blob {name} already exists (412 on If-None-Match: *)"),
            )),
            other => other,
        }
    }

    /// Overwrites a blob only if its ETag is still `etag` (and with `lease_id` when it is
    /// leased). A stale ETag fails with [`StorageError::is_condition_not_met`], a missing or
    /// wrong lease with [`StorageError::is_lease_lost`]. Not retried by the SDK.
    pub async fn write_if_match(
        &self,
        name: &str,
        body: Bytes,
        etag: &str,
        lease_id: Option<&str>,
    ) -> Result<String, StorageError> {
        let options = BlobClientUploadOptions {
            if_match: Some(Etag::from(etag)),
            lease_id: lease_id.map(str::to_owned),
            ..Default::default()
        };
        self.upload(name, body, options, true).await
    }

    /// Writes a blob unconditionally (with `lease_id` when it is leased). Idempotent, so the
    /// SDK may retry it.
    pub async fn write(
        &self,
        name: &str,
        body: Bytes,
        lease_id: Option<&str>,
    ) -> Result<String, StorageError> {
        let options = BlobClientUploadOptions {
            lease_id: lease_id.map(str::to_owned),
            ..Default::default()
        };
        self.upload(name, body, options, false).await
    }

    async fn upload(
        &self,
        name: &str,
        body: Bytes,
        mut options: BlobClientUploadOptions<'_>,
        once: bool,
    ) -> Result<String, StorageError> {
        let blob = self.blob(name, once)?;
        // One Put Blob, never staged blocks: the condition then covers the whole write.
        options.partition_size = NonZero::new((body.len() as u64).max(1));
        options.parallel = NonZero::new(1);
        let content: RequestContent<Bytes, NoFormat> = body.into();
        let rsp = blob.upload(content, Some(options)).await?;
        rsp.etag
            .map(|e| e.to_string())
            .ok_or_else(|| StorageError::Decode(format!("upload of {name} returned no ETag")))
    }

    /// Deletes a blob; `false` when it did not exist. Not retried by the SDK (a retry after a
    /// lost success would report "did not exist").
    pub async fn delete(&self, name: &str, lease_id: Option<&str>) -> Result<bool, StorageError> {
        let blob = self.blob(name, true)?;
        let options = BlobClientDeleteOptions {
            lease_id: lease_id.map(str::to_owned),
            ..Default::default()
        };
        match blob.delete(Some(options)).await.map_err(StorageError::from) {
            Ok(_) => Ok(true),
            Err(e) if is_blob_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a blob only if its ETag is still `etag`: a blob rewritten since it was read
    /// (say, a poison record written again) is kept, failing with
    /// [`StorageError::is_condition_not_met`]; `false` when it did not exist. Not retried by
    /// the SDK.
    pub async fn delete_if_match(&self, name: &str, etag: &str) -> Result<bool, StorageError> {
        let blob = self.blob(name, true)?;
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(etag)),
            ..Default::default()
        };
        match blob.delete(Some(options)).await.map_err(StorageError::from) {
            Ok(_) => Ok(true),
            Err(e) if is_blob_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the blob exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StorageError> {
        Ok(self.blob(name, false)?.exists().await?)
    }

    /// Whether any blob's name starts with `prefix` (one request, however many there are).
    pub async fn any_under(&self, prefix: &str) -> Result<bool, StorageError> {
        let c = self.clients.get()?;
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            maxresults: Some(1),
            ..Default::default()
        };
        let mut pages = c.retrying.list_blobs(Some(options))?.into_pages();
        // A page may come back empty with a continuation marker: follow it.
        while let Some(page) = pages.try_next().await? {
            if page
                .into_model()?
                .blob_items
                .iter()
                .any(|i| i.name.is_some())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every blob whose name starts with `prefix`, all pages, in name order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobItem>, StorageError> {
        let c = self.clients.get()?;
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..Default::default()
        };
        let mut pages = c.retrying.list_blobs(Some(options))?.into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await? {
            for item in page.into_model()?.blob_items {
                let Some(name) = item.name else { continue };
                let props = item.properties.as_ref();
                out.push(BlobItem {
                    name,
                    size: props.and_then(|p| p.content_length).unwrap_or(0),
                    last_modified: props.and_then(|p| p.last_modified).and_then(time_to_chrono),
                });
            }
        }
        Ok(out)
    }

    /// Acquires a lease of `duration` (clamped to 15–60 s) and returns its id. Fails with
    /// [`StorageError::is_lease_already_present`] when someone else holds it, and with
    /// [`StorageError::is_not_found`] when the blob does not exist. Not retried by the SDK.
    pub async fn acquire_lease(
        &self,
        name: &str,
        duration: Duration,
        proposed_id: Option<&str>,
    ) -> Result<String, StorageError> {
        Ok(self
            .acquire_lease_at(name, duration, proposed_id)
            .await?
            .lease_id)
    }

    /// Like [`Self::acquire_lease`], also returning the blob's ETag at the moment the lease
    /// was taken (the Lease Blob answer carries it): a caller that knows which ETag it wrote
    /// then knows the content without reading it back.
    /// <https://learn.microsoft.com/rest/api/storageservices/lease-blob#response-headers>
    pub async fn acquire_lease_at(
        &self,
        name: &str,
        duration: Duration,
        proposed_id: Option<&str>,
    ) -> Result<AcquiredLease, StorageError> {
        let blob = self.blob(name, true)?;
        let secs = duration.as_secs().clamp(LEASE_MIN_SECS, LEASE_MAX_SECS);
        let options = BlobClientAcquireLeaseOptions {
            proposed_lease_id: proposed_id.map(str::to_owned),
            ..Default::default()
        };
        // `secs` is at most 60: the conversion cannot fail.
        let rsp = blob
            .acquire_lease(i32::try_from(secs).unwrap_or(60), Some(options))
            .await?;
        let lease_id = rsp.lease_id()?.ok_or_else(|| {
            StorageError::Decode(format!("lease acquire on {name} returned no lease id"))
        })?;
        let etag = rsp.etag().ok().flatten().map(|e| e.to_string());
        Ok(AcquiredLease { lease_id, etag })
    }

    /// Renews a lease; [`StorageError::is_lease_lost`] when it is no longer ours.
    pub async fn renew_lease(&self, name: &str, lease_id: &str) -> Result<(), StorageError> {
        let blob = self.blob(name, true)?;
        blob.renew_lease(lease_id.to_owned(), None).await?;
        Ok(())
    }

    /// Releases a lease so another holder can take it at once.
    pub async fn release_lease(&self, name: &str, lease_id: &str) -> Result<(), StorageError> {
        let blob = self.blob(name, true)?;
        blob.release_lease(lease_id.to_owned(), None).await?;
        Ok(())
    }

    /// Breaks any lease on the blob immediately (operator tooling: a stuck leader).
    pub async fn break_lease(&self, name: &str) -> Result<(), StorageError> {
        let blob = self.blob(name, true)?;
        let options = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        blob.break_lease(Some(options)).await?;
        Ok(())
    }
}

/// 404 for the blob itself. A missing *container* is a configuration problem and stays an error.
fn is_blob_missing(e: &StorageError) -> bool {
    e.is_not_found() && e.code() != Some("ContainerNotFound")
}

/// Callers pass names they validated; this is defence in depth against a name that would
/// escape its prefix or confuse the URL.
fn check_blob_name(name: &str) -> Result<(), StorageError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('/')
        || name.contains("..")
        || name.contains('\\')
        || name.chars().any(char::is_control);
    if bad {
        Err(StorageError::Config(format!(
            "refusing blob name {:?}: empty, too long, leading `/`, `..`, `\\` or control characters",
            name.chars().take(80).collect::<String>()
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_are_checked() {
        for ok in [
            "checkpoints/acme.okta.com.json",
            "pages/a/1/2-abc.json.gz",
            "leader/x-8443",
        ] {
            assert!(check_blob_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "pages/../leader/x", "..", "a\\b", "a\nb"] {
            assert!(
                matches!(check_blob_name(bad), Err(StorageError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(check_blob_name(&"a".repeat(1025)).is_err());
    }
}
