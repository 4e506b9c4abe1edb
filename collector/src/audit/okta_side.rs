//! The Okta side of the audit: one bounded request (`since` + `until`, both in the past,
//! `sortOrder=ASCENDING`), following `next` links until the window ends. A bounded request is
//! finite — its last page has no `next` link — and ordered by `published`
//! (<https://developer.okta.com/docs/reference/system-log-query/>; `docs/contracts.md` §1.2).
//! Every request waits for the audit's [`Budget`].

use std::time::Duration;

use chrono::SecondsFormat;
use common::backoff::Backoff;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::budget::Budget;
use super::metrics::AuditMetrics;
use super::window::Window;
use crate::okta::{Events, OktaClient, OktaError};

/// Errors of a transient kind tried this many times in a row before the audit gives up (it
/// is repeated later; nothing was changed).
const MAX_TRIES: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum OktaSideError {
    #[error("Okta: {0}")]
    Okta(#[from] OktaError),
    #[error("Okta's next link left the bounded window ({0}); the audit stops")]
    Unbounded(String),
    #[error("cancelled")]
    Cancelled,
}

/// The first URL of the window's bounded request.
pub fn bounded_url(origin: &Url, w: &Window) -> Url {
    let mut u = origin.clone();
    u.set_path("/api/v1/logs");
    u.query_pairs_mut()
        .clear()
        .append_pair(
            "since",
            &w.from.to_rfc3339_opts(SecondsFormat::Millis, true),
        )
        .append_pair("until", &w.to.to_rfc3339_opts(SecondsFormat::Millis, true))
        .append_pair("sortOrder", "ASCENDING")
        .append_pair("limit", "1000");
    u
}

fn param(u: &Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Fetches every event of `w`, page by page, into `on_page`. Returns the requests made.
pub async fn fetch_window(
    okta: &OktaClient,
    budget: &Budget,
    metrics: &AuditMetrics,
    w: &Window,
    cancel: &CancellationToken,
    mut on_page: impl FnMut(Events),
) -> Result<u64, OktaSideError> {
    let first = bounded_url(okta.origin(), w);
    let (since, until) = (param(&first, "since"), param(&first, "until"));
    let mut url = first;
    let mut requests = 0u64;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut tries = 0u32;
    loop {
        if !budget.acquire(cancel).await {
            return Err(OktaSideError::Cancelled);
        }
        requests += 1;
        let fetched = tokio::select! {
            () = cancel.cancelled() => return Err(OktaSideError::Cancelled),
            r = okta.fetch(&url) => r,
        };
        match fetched {
            Ok(page) => {
                metrics.okta_request(200);
                budget.observe(page.rate.as_ref(), page.date);
                tries = 0;
                backoff.reset();
                on_page(page.events);
                match page.next {
                    None => return Ok(requests),
                    Some(next) => {
                        // A next link without our bounds would be a polling request: infinite.
                        if param(&next, "since") != since || param(&next, "until") != until {
                            return Err(OktaSideError::Unbounded(next.to_string()));
                        }
                        url = next;
                    }
                }
            }
            Err(OktaError::RateLimited { rate, date }) => {
                metrics.okta_request(429);
                budget.observe_429(rate.as_ref(), date);
            }
            Err(e) if e.is_transient() && tries + 1 < MAX_TRIES => {
                metrics.okta_request(0);
                tries += 1;
                tracing::warn!(error = %e, "audit: Okta request failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return Err(OktaSideError::Cancelled),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => {
                metrics.okta_request(0);
                return Err(e.into());
            }
        }
    }
}
