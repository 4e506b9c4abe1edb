//! Our own token cache, for a caller that must be able to throw a token away.
//!
//! `azure_identity`'s credentials cache a token per scope and hand it out until five minutes
//! before it expires, with no way to ask for a new one (azure_identity 1.0.0, `cache.rs`). A
//! token the service refuses with 401 — revoked, or issued before the identity's assignment
//! changed — would then be sent again for up to an hour, with the sink down all that time.
//! So this cache sits in front of a *source* of credentials and asks a fresh one for each
//! token it fetches (its own cache is then always empty): [`TokenCache::refused`] drops the
//! refused token so the next [`TokenCache::token`] fetches a new one. To spare the identity
//! endpoint, a refusal forces a refresh at most once per [`MIN_FORCED_REFRESH`]. (The managed
//! identity endpoint may itself serve a cached token for a while; then the refresh returns the
//! same token, the caller gets its 401 again and reports it.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential};
use azure_core::error::ErrorKind;

use crate::identity::IdentityError;

/// Least time between two refreshes forced by a refused token.
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(60);

/// A token is fetched again this long before it expires, as `azure_identity` does.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

type Source = dyn Fn() -> Result<Arc<dyn TokenCredential>, IdentityError> + Send + Sync;

/// Tokens per scope, fetched from a fresh credential of `source` each time.
pub struct TokenCache {
    source: Box<Source>,
    inner: tokio::sync::Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, AccessToken>,
    forced_at: Option<Instant>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache over `source`, which must build a credential whose first `get_token` asks the
    /// identity provider (a new `ManagedIdentityCredential` does). It is called once now, so a
    /// setting that cannot work fails at start-up.
    pub fn new(
        source: impl Fn() -> Result<Arc<dyn TokenCredential>, IdentityError> + Send + Sync + 'static,
    ) -> Result<TokenCache, IdentityError> {
        source()?;
        Ok(TokenCache {
            source: Box::new(source),
            inner: tokio::sync::Mutex::new(Inner::default()),
        })
    }

    /// The process's managed identity (see [`crate::identity::managed_identity`]).
    pub fn managed_identity(
        client_id: Option<&str>,
        http: reqwest::Client,
    ) -> Result<TokenCache, IdentityError> {
        let client_id = client_id.map(str::to_string);
        TokenCache::new(move || {
            crate::identity::managed_identity(client_id.as_deref(), http.clone())
        })
    }

    /// Over one credential that does not cache by itself (tests); with a caching credential a
    /// forced refresh gets its cached token back.
    pub fn over(credential: Arc<dyn TokenCredential>) -> TokenCache {
        TokenCache {
            source: Box::new(move || Ok(credential.clone())),
            inner: tokio::sync::Mutex::new(Inner::default()),
        }
    }

    /// A token for `scope`: the cached one while it has more than five minutes left, else a
    /// new one. Callers wait for one fetch at a time, so a burst of them makes one request.
    pub async fn token(&self, scope: &str) -> azure_core::Result<AccessToken> {
        let mut g = self.inner.lock().await;
        if let Some(t) = g.tokens.get(scope) {
            if t.expires_on > azure_core::time::OffsetDateTime::now_utc() + EXPIRY_MARGIN {
                return Ok(t.clone());
            }
        }
        let credential =
            (self.source)().map_err(|e| azure_core::Error::new(ErrorKind::Credential, e))?;
        let token = credential.get_token(&[scope], None).await?;
        g.tokens.insert(scope.to_string(), token.clone());
        Ok(token)
    }

    /// The service refused `token` (401). Returns whether another token is worth a try: the
    /// refused one was already replaced, or it is dropped now so the next [`Self::token`]
    /// fetches a new one — at most once per [`MIN_FORCED_REFRESH`]; `false` means keep
    /// reporting the failure.
    pub async fn refused(&self, scope: &str, token: &AccessToken) -> bool {
        let mut g = self.inner.lock().await;
        match g.tokens.get(scope) {
            Some(current) if current.token.secret() == token.token.secret() => {}
            // Replaced or dropped since it was handed out: the next token is another one.
            _ => return true,
        }
        if g.forced_at
            .is_some_and(|at| at.elapsed() < MIN_FORCED_REFRESH)
        {
            return false;
        }
        g.forced_at = Some(Instant::now());
        g.tokens.remove(scope);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::TokenRequestOptions;
    use azure_core::time::OffsetDateTime;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Issues `token-1`, `token-2`, … valid for `ttl`.
    #[derive(Debug)]
    struct Counting {
        issued: AtomicUsize,
        ttl: azure_core::time::Duration,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(
                format!("token-{n}"),
                OffsetDateTime::now_utc() + self.ttl,
            ))
        }
    }

    fn counting_cache(ttl_secs: i64) -> (Arc<Counting>, TokenCache) {
        let c = Arc::new(Counting {
            issued: AtomicUsize::new(0),
            ttl: azure_core::time::Duration::seconds(ttl_secs),
        });
        (c.clone(), TokenCache::over(c))
    }

    #[tokio::test]
    async fn caches_until_near_expiry() {
        let (c, cache) = counting_cache(3600);
        let a = cache.token("s").await.unwrap();
        let b = cache.token("s").await.unwrap();
        assert_eq!(a.token.secret(), b.token.secret());
        cache.token("other").await.unwrap();
        assert_eq!(c.issued.load(Ordering::SeqCst), 2, "one per scope");
        // A token with a minute left is inside the margin: every call fetches again.
        let (c, cache) = counting_cache(60);
        cache.token("s").await.unwrap();
        cache.token("s").await.unwrap();
        assert_eq!(
            c.issued.load(Ordering::SeqCst),
            2,
            "within the margin: fetched again"
        );
    }

    #[tokio::test]
    async fn a_refusal_forces_one_refresh_a_minute() {
        let (c, cache) = counting_cache(3600);
        let first = cache.token("s").await.unwrap();
        assert!(cache.refused("s", &first).await, "first refusal: refresh");
        let second = cache.token("s").await.unwrap();
        assert_eq!(second.token.secret(), "token-2");
        // Another caller that still held the first token: the new one is worth a try, and
        // no further fetch is made for it.
        assert!(cache.refused("s", &first).await);
        assert_eq!(cache.token("s").await.unwrap().token.secret(), "token-2");
        // The new token is refused too, within the minute: no refresh.
        assert!(!cache.refused("s", &second).await);
        assert_eq!(cache.token("s").await.unwrap().token.secret(), "token-2");
        assert_eq!(c.issued.load(Ordering::SeqCst), 2);
        // A minute later it may refresh again.
        cache.inner.lock().await.forced_at =
            Some(Instant::now().checked_sub(MIN_FORCED_REFRESH).unwrap());
        assert!(cache.refused("s", &second).await);
        assert_eq!(cache.token("s").await.unwrap().token.secret(), "token-3");
    }

    #[test]
    fn debug_shows_no_token() {
        let (_, cache) = counting_cache(3600);
        assert_eq!(format!("{cache:?}"), "TokenCache { .. }");
    }
}
