//! Construction of the SDK clients: transport, retry policy, auth, SAS refresh.
//!
//! Every resource gets two SDK clients over the same shared `reqwest::Client`:
//! * `retrying`, with a small explicit retry budget, for calls whose repetition is harmless
//!   (reads, lists, existence checks, Put Message — a twin envelope is expected, docs/design.md §2);
//! * `once`, with the SDK's retries off, for conditional writes, lease operations and message
//!   updates/deletes. If such a call were retried after its first attempt had succeeded, the
//!   retry would fail (412, 409, 404, PopReceiptMismatch) and be misread as "someone else did
//!   it". Our own loops decide what to do instead.
//!
//! The SDK default (8 retries over about 60 s, also on TLS errors) is never used.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use chrono::Utc;
use url::Url;

use super::error::redact;
use super::sas::{with_sas, AccountSasSigner, SAS_REFRESH_AFTER};
use super::StorageError;

/// How the SDK clients authenticate.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Account SAS in the URL, no credential (http allowed for loopback).
    Sas(Arc<AccountSasSigner>),
    /// Bearer tokens from a credential (https only).
    Bearer(Arc<dyn TokenCredential>),
}

/// The retry budget of idempotent calls: at most 3 retries within about 15 s.
pub(crate) fn retrying_policy() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(250),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(15),
        max_delay: azure_core::time::Duration::seconds(4),
    })
}

/// The two SDK clients of one resource.
pub(crate) struct ClientPair<C> {
    pub retrying: C,
    pub once: C,
}

/// Builds an SDK client from a URL, an optional credential and client options.
pub(crate) type BuildFn<C> =
    fn(Url, Option<Arc<dyn TokenCredential>>, ClientOptions) -> azure_core::Result<C>;

/// A [`ClientPair`] that is rebuilt with a fresh SAS before the old one expires.
pub(crate) struct Refreshing<C> {
    auth: Auth,
    url: Url,
    http: reqwest::Client,
    build: BuildFn<C>,
    /// Age after which a SAS-signed pair is rebuilt ([`SAS_REFRESH_AFTER`]; tests shorten it).
    refresh_after: Duration,
    current: RwLock<Current<C>>,
}

struct Current<C> {
    pair: Arc<ClientPair<C>>,
    /// When the SAS in `pair` was minted; `None` for bearer auth (never rebuilt).
    minted: Option<Instant>,
}

impl<C> Refreshing<C> {
    pub(crate) fn new(
        auth: Auth,
        url: Url,
        http: reqwest::Client,
        build: BuildFn<C>,
    ) -> Result<Self, StorageError> {
        let current = make(&auth, &url, &http, build)?;
        Ok(Refreshing {
            auth,
            url,
            http,
            build,
            refresh_after: SAS_REFRESH_AFTER,
            current: RwLock::new(current),
        })
    }

    /// The current clients; rebuilds them when their SAS is older than [`SAS_REFRESH_AFTER`].
    pub(crate) fn get(&self) -> Result<Arc<ClientPair<C>>, StorageError> {
        let fresh = |c: &Current<C>| c.minted.is_none_or(|m| m.elapsed() < self.refresh_after);
        {
            // A poisoned lock only means a panic elsewhere while holding it; the value is a
            // plain Arc swap and stays consistent.
            let cur = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fresh(&cur) {
                return Ok(cur.pair.clone());
            }
        }
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !fresh(&cur) {
            *cur = make(&self.auth, &self.url, &self.http, self.build)?;
            tracing::debug!(url = %self.url, "storage clients rebuilt with a fresh SAS");
        }
        Ok(cur.pair.clone())
    }
}

fn make<C>(
    auth: &Auth,
    url: &Url,
    http: &reqwest::Client,
    build: BuildFn<C>,
) -> Result<Current<C>, StorageError> {
    let (url, credential, minted) = match auth {
        Auth::Sas(signer) => (
            with_sas(url, &signer.sign(Utc::now())?),
            None,
            Some(Instant::now()),
        ),
        Auth::Bearer(cred) => (url.clone(), Some(cred.clone()), None),
    };
    let options = |retry: RetryOptions| ClientOptions {
        retry,
        transport: Some(Transport::new(Arc::new(http.clone()))),
        ..ClientOptions::default()
    };
    // Construction fails only on an unusable URL (e.g. http with a credential): configuration.
    let config = |e: azure_core::Error| StorageError::Config(redact(&e.to_string()));
    let retrying =
        build(url.clone(), credential.clone(), options(retrying_policy())).map_err(config)?;
    let once = build(url, credential, options(RetryOptions::none())).map_err(config)?;
    Ok(Current {
        pair: Arc::new(ClientPair { retrying, once }),
        minted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretString;

    /// A stand-in "client" that just remembers the URL it was built with.
    fn url_client(
        url: Url,
        _: Option<Arc<dyn TokenCredential>>,
        _: ClientOptions,
    ) -> azure_core::Result<Url> {
        Ok(url)
    }

    fn sas_auth() -> Auth {
        let key = SecretString::new("a2V5a2V5a2V5");
        Auth::Sas(Arc::new(AccountSasSigner::new("acct", &key, true).unwrap()))
    }

    #[test]
    fn sas_clients_are_reused_until_the_refresh_age_then_rebuilt() {
        let url = Url::parse("http://127.0.0.1:10001/acct/q").unwrap();
        let mut r = Refreshing::new(sas_auth(), url, reqwest::Client::new(), url_client).unwrap();
        let a = r.get().unwrap();
        assert!(a.once.query().is_some_and(|q| q.contains("sig=")));
        assert_eq!(a.once.path(), "/acct/q");
        assert!(
            Arc::ptr_eq(&a, &r.get().unwrap()),
            "fresh clients are reused"
        );
        r.refresh_after = Duration::ZERO;
        let b = r.get().unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "stale clients are rebuilt");
        assert!(b.retrying.query().is_some_and(|q| q.contains("sig=")));
    }
}
