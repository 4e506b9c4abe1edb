//! The page queue: envelopes from the collector to the shippers (docs/contracts.md §4.1).
//!
//! Message text goes on the wire as is; the SDK XML-escapes it inside `<MessageText>` and
//! un-escapes it on receive, so a JSON envelope containing `<` or `&` round-trips unchanged. No
//! base64: nothing on the other side is an Azure Functions trigger.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::headers::HeaderName;
use azure_core::http::{ClientOptions, RequestContent, XmlFormat};
use azure_storage_queue::models::{
    ListOfSentMessage, QueueClientGetPropertiesResultHeaders as _,
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use chrono::{DateTime, Utc};
use url::Url;

use super::clients::{Auth, Refreshing};
use super::{time_to_chrono, StorageError};

/// Longest visibility timeout / delay the service accepts (7 days).
const MAX_VISIBILITY_SECS: u64 = 7 * 24 * 60 * 60;
/// `messagettl=-1`: the message never expires. A page envelope must not silently vanish
/// from a backlog that outlives the default 7-day TTL (docs/design.md §2 step 7).
const NEVER_EXPIRES: i32 = -1;

/// A message just enqueued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    pub id: String,
    pub pop_receipt: String,
}

/// A message received (and now invisible to others until its visibility timeout ends).
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    pub id: String,
    pub pop_receipt: String,
    /// How many times the message has been received, this time included.
    pub dequeue_count: u64,
    pub text: String,
    pub inserted_at: Option<DateTime<Utc>>,
    /// When the message expires; far in the future (year 9999) for messages sent by [`Queue::send`].
    pub expires_at: Option<DateTime<Utc>>,
}

/// The queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    clients: Arc<Refreshing<QueueClient>>,
    name: Arc<str>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn build(
    url: Url,
    credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    client_options: ClientOptions,
) -> azure_core::Result<QueueClient> {
    QueueClient::new(
        url,
        credential,
        Some(QueueClientOptions {
            client_options,
            ..QueueClientOptions::default()
        }),
    )
}

impl Queue {
    pub(crate) fn new(
        auth: Auth,
        url: Url,
        name: &str,
        http: reqwest::Client,
    ) -> Result<Queue, StorageError> {
        Ok(Queue {
            clients: Arc::new(Refreshing::new(auth, url, http, build)?),
            name: Arc::from(name),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the queue when it does not exist (local and test runs only: in production the
    /// Bicep creates it and the identities may not).
    pub async fn create_if_missing(&self) -> Result<(), StorageError> {
        let c = self.clients.get()?;
        match c.retrying.create(None).await.map_err(StorageError::from) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("QueueAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Enqueues `text` with `messagettl=-1` (never expires), visible after `visibility_delay`.
    ///
    /// Put Message may be retried by the SDK after a lost response, so a message can be
    /// enqueued twice; consumers de-duplicate by page (docs/design.md §2).
    pub async fn send(
        &self,
        text: &str,
        visibility_delay: Option<Duration>,
    ) -> Result<SentMessage, StorageError> {
        let c = self.clients.get()?;
        let body: RequestContent<QueueMessage, XmlFormat> = QueueMessage {
            message_text: Some(text.to_owned()),
        }
        .try_into()?;
        let options = QueueClientSendMessageOptions {
            message_time_to_live: Some(NEVER_EXPIRES),
            visibility_timeout: visibility_delay.map(|d| secs(d, 0)),
            ..Default::default()
        };
        sent_message(c.retrying.send_message(body, Some(options)).await?)
    }

    /// Enqueues `text` invisible for `invisible_for` and expiring after `ttl` (at least one
    /// second longer: Put Message requires visibility < TTL). For `doctor`'s probe: a message
    /// no receiver should see, which vanishes by itself if it cannot be deleted. Not retried
    /// by the SDK.
    pub async fn send_expiring(
        &self,
        text: &str,
        invisible_for: Duration,
        ttl: Duration,
    ) -> Result<SentMessage, StorageError> {
        let c = self.clients.get()?;
        let body: RequestContent<QueueMessage, XmlFormat> = QueueMessage {
            message_text: Some(text.to_owned()),
        }
        .try_into()?;
        let visibility = secs(invisible_for, 0);
        let options = QueueClientSendMessageOptions {
            message_time_to_live: Some(secs(ttl, 1).max(visibility + 1)),
            visibility_timeout: Some(visibility),
            ..Default::default()
        };
        sent_message(c.once.send_message(body, Some(options)).await?)
    }

    /// Receives up to `max` messages (clamped to 1..=32; 0 returns nothing without a call),
    /// hiding them from other receivers for `visibility_timeout` (at least 1 s).
    pub async fn receive(
        &self,
        max: u8,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let c = self.clients.get()?;
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(i32::from(max.min(32))),
            visibility_timeout: Some(secs(visibility_timeout, 1)),
            ..Default::default()
        };
        let got = c
            .retrying
            .receive_messages(Some(options))
            .await?
            .into_model()?;
        got.items
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let (Some(id), Some(pop_receipt)) = (m.message_id, m.pop_receipt) else {
                    return Err(StorageError::Decode(
                        "Get Messages answer lacks MessageId or PopReceipt".into(),
                    ));
                };
                Ok(ReceivedMessage {
                    id,
                    pop_receipt,
                    dequeue_count: m.dequeue_count.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                    text: m.message_text.unwrap_or_default(),
                    inserted_at: m.insertion_time.and_then(time_to_chrono),
                    expires_at: m.expiration_time.and_then(time_to_chrono),
                })
            })
            .collect()
    }

    /// Makes a received message invisible for `visibility_timeout` from now (0 = visible now),
    /// returning the new pop receipt; the old one stops working.
    ///
    /// Not retried by the SDK: a retry after a lost success would fail with
    /// `PopReceiptMismatch` although the update happened.
    pub async fn update_visibility(
        &self,
        id: &str,
        pop_receipt: &str,
        visibility_timeout: Duration,
    ) -> Result<String, StorageError> {
        check_message_id(id)?;
        let c = self.clients.get()?;
        let rsp = c
            .once
            .update_message(id, pop_receipt, secs(visibility_timeout, 0), None)
            .await?;
        // The new receipt is only in this header (docs/azure-sdk-notes.md §Q2).
        rsp.headers()
            .get_optional_string(&HeaderName::from_static("x-ms-popreceipt"))
            .ok_or_else(|| {
                StorageError::Decode("Update Message answer lacks x-ms-popreceipt".into())
            })
    }

    /// Deletes a received message. Not retried by the SDK (a retry would see 404).
    pub async fn delete(&self, id: &str, pop_receipt: &str) -> Result<(), StorageError> {
        check_message_id(id)?;
        let c = self.clients.get()?;
        c.once.delete_message(id, pop_receipt, None).await?;
        Ok(())
    }

    /// The approximate number of messages (visible and invisible), as KEDA sees it.
    pub async fn approximate_count(&self) -> Result<u64, StorageError> {
        let c = self.clients.get()?;
        let rsp = c.retrying.get_properties(None).await?;
        let n = rsp.approximate_messages_count()?.ok_or_else(|| {
            StorageError::Decode("queue properties lack x-ms-approximate-messages-count".into())
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Whole seconds, at least `min`, at most 7 days.
fn secs(d: Duration, min: u64) -> i32 {
    let s = d.as_secs().clamp(min, MAX_VISIBILITY_SECS);
    // In range by the clamp above (7 days < i32::MAX).
    i32::try_from(s).unwrap_or(i32::MAX)
}

/// Message ids go into the request path unescaped by the SDK: accept only what the service
/// issues (GUIDs), so a hostile id read from elsewhere cannot alter the path.
fn check_message_id(id: &str) -> Result<(), StorageError> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(StorageError::Config(format!(
            "invalid queue message id {:?}",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// The id and pop receipt of a Put Message answer (both senders read it the same way).
fn sent_message(
    resp: azure_core::http::Response<ListOfSentMessage, XmlFormat>,
) -> Result<SentMessage, StorageError> {
    let sent = resp.into_model()?.into_message()?;
    match (sent.message_id, sent.pop_receipt) {
        (Some(id), Some(pop_receipt)) => Ok(SentMessage { id, pop_receipt }),
        _ => Err(StorageError::Decode(
            "Put Message answer lacks MessageId or PopReceipt".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_clamped() {
        assert_eq!(secs(Duration::from_millis(300), 1), 1);
        assert_eq!(secs(Duration::from_secs(0), 0), 0);
        assert_eq!(secs(Duration::from_secs(90), 1), 90);
        assert_eq!(secs(Duration::from_secs(u64::MAX), 0), 604_800);
    }

    #[test]
    fn message_ids_must_look_like_guids() {
        assert!(check_message_id("6f1c2a1e-8d5b-4f5e-9c1a-1b2c3d4e5f60").is_ok());
        assert!(check_message_id("").is_err());
        assert!(check_message_id("../x").is_err());
        assert!(check_message_id("a?b=c").is_err());
    }
}
