//! The background audit of a running collector: while it leads its org and is caught up, it
//! audits the most recent settled window not audited yet, then windows whose last audit found
//! events missing (once `AUDIT_SETTLE` has passed, to see the repair land — or raise the
//! alarm when it did not), then random older ones (within Okta's retention and not before the
//! collection started), one at a time, on spare budget.
//!
//! The run loop knows nothing of it beyond [`AuditHook`]: started with the leader term,
//! told about every polling response (rate-limit headers and whether the page was full), and
//! dropped with the term.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::seq::IndexedRandom;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::budget::Budget;
use super::check::Auditor;
use super::lock;
use super::logs_query::LogsQuery;
use super::metrics::AuditMetrics;
use super::record;
use super::settings::Enabled;
use super::window::{self, Window};
use crate::checkpoint;
use crate::okta::{OktaClient, OktaError, OktaPage};
use crate::run::Collector;
use crate::wiring::Wiring;

/// The run loop's handle on the background audit. Dropping it stops the audit.
pub struct AuditHook {
    budget: Option<Arc<Budget>>,
    stop: CancellationToken,
}

impl AuditHook {
    /// Starts the background audit for one leader term (unless it is off); `lost` ends with
    /// the term.
    pub fn start(c: &Collector, lost: &CancellationToken) -> AuditHook {
        let s = &c.cfg.audit;
        let stop = lost.child_token();
        if s.enabled == Enabled::Off || s.workspace_id.is_none() {
            return AuditHook { budget: None, stop };
        }
        let budget = Arc::new(Budget::background(
            c.cfg.reserve,
            c.cfg.poll_interval,
            s.max_requests_per_hour,
        ));
        let task = Task {
            cfg: c.cfg.clone(),
            blobs: c.blobs.clone(),
            queue: c.queue.clone(),
            metrics: AuditMetrics::new(&c.metrics.registry),
            budget: budget.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move { task.run().await });
        AuditHook {
            budget: Some(budget),
            stop,
        }
    }

    /// Every answered polling request of the live feed.
    pub fn observe(&self, url: &Url, page: &OktaPage) {
        if let Some(b) = &self.budget {
            b.observe(page.rate.as_ref(), page.date);
            let limit = url
                .query_pairs()
                .find(|(k, _)| k == "limit")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(100);
            b.observe_live_page(page.events.len(), limit);
        }
    }

    /// A failed polling request: a 429 pauses the audit too.
    pub fn observe_error(&self, e: &OktaError) {
        if let (Some(b), OktaError::RateLimited { rate, date }) = (&self.budget, e) {
            b.observe_429(rate.as_ref(), *date);
        }
    }
}

impl Drop for AuditHook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Task {
    cfg: crate::config::CollectorConfig,
    blobs: common::storage::Blobs,
    queue: common::storage::Queue,
    metrics: AuditMetrics,
    budget: Arc<Budget>,
    stop: CancellationToken,
}

impl Task {
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    async fn run(self) {
        let s = &self.cfg.audit;
        let mut recheck = self.unfinished().await;
        let (la, okta) = match self.clients().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "audit off: cannot build its clients");
                return;
            }
        };
        // The start-up check: can the identity query the workspace?
        loop {
            let now = Utc::now();
            match la
                .uuid_counts(&self.cfg.domain, now - chrono::Duration::seconds(1), now)
                .await
            {
                Ok(_) => {
                    tracing::info!(table = %s.table, window = ?s.window, "audit on: the identity can query the workspace");
                    self.metrics.enabled.set(1);
                    break;
                }
                Err(e) if e.is_refused() && s.enabled == Enabled::Auto => {
                    tracing::warn!(error = %e, "audit off (AUDIT_ENABLED=auto): the workspace cannot be queried");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit: the workspace cannot be queried yet; retrying");
                    if !self.sleep(s.pause).await {
                        return;
                    }
                }
            }
        }
        loop {
            if !self.sleep(s.pause).await || !self.budget.wait_caught_up(&self.stop).await {
                break;
            }
            match self.one(&la, &okta, &mut recheck).await {
                Ok(()) => {}
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %e, "audit failed; it is repeated later");
                }
            }
        }
        self.metrics.enabled.set(0);
    }

    async fn clients(&self) -> anyhow::Result<(LogsQuery, OktaClient)> {
        let w = Wiring::new(&self.cfg).await?;
        let credential = match &w.credential {
            Some(c) => c.clone(),
            None => common::identity::managed_identity(
                self.cfg.azure_client_id.as_deref(),
                w.azure_http.clone(),
            )?,
        };
        let la = LogsQuery::new(&self.cfg.audit, w.azure_http.clone(), credential)
            .ok_or_else(|| anyhow::anyhow!("LOG_ANALYTICS_WORKSPACE_ID is not set"))?;
        let okta = OktaClient::new(
            self.cfg.origin.clone(),
            w.okta_credential(&self.cfg)?,
            w.okta_http.clone(),
        )?;
        Ok((la, okta))
    }

    /// Windows whose newest record found events missing: audited again once settled.
    async fn unfinished(&self) -> Vec<(Window, DateTime<Utc>)> {
        let p = record::prefix(&self.cfg.org);
        let Ok(mut items) = self.blobs.list(&p).await else {
            return Vec::new();
        };
        items.sort_by_key(|i| std::cmp::Reverse(i.last_modified));
        let mut out = Vec::new();
        for i in items.into_iter().take(500) {
            if let Ok(Some(c)) = self.blobs.read_limited(&i.name, 1024 * 1024).await {
                if let Ok(r) = serde_json::from_slice::<record::AuditRecord>(&c.bytes) {
                    if r.figures.missing > 0 {
                        out.push((r.window, r.when));
                    }
                }
            }
        }
        out
    }

    /// Picks and audits one window (none when there is nothing to audit).
    async fn one(
        &self,
        la: &LogsQuery,
        okta: &OktaClient,
        recheck: &mut Vec<(Window, DateTime<Utc>)>,
    ) -> anyhow::Result<()> {
        let s = &self.cfg.audit;
        let Some(cp) = checkpoint::read(&self.blobs, &self.cfg.org)
            .await?
            .map(|v| v.checkpoint)
        else {
            return Ok(());
        };
        let Some(head) = cp.newest_published else {
            return Ok(());
        };
        let now = Utc::now();
        // Collection began at the `since` Okta echoes in every next link; without one, only
        // the newest settled window (never before the collection's known start).
        let floor = since_of(&cp.next_url);
        let candidates = window::settled(
            head,
            s.settle,
            s.window,
            floor.unwrap_or(
                head - chrono::Duration::from_std(s.settle + s.window * 2).unwrap_or_default(),
            ),
            now,
        );
        let audited = record::audited_keys(&self.blobs, &self.cfg.org).await?;
        let unaudited: Vec<Window> = candidates
            .iter()
            .filter(|w| !audited.contains(&w.key()))
            .copied()
            .collect();
        let settle = chrono::Duration::from_std(s.settle).unwrap_or_default();
        let due = recheck.iter().position(|(_, when)| *when + settle <= now);
        let pick = match (candidates.first(), unaudited.first(), due) {
            (Some(newest), Some(first), _) if newest == first => *first,
            (_, _, Some(i)) => recheck.remove(i).0,
            _ => match unaudited.choose(&mut rand::rng()) {
                Some(w) => *w,
                None => return Ok(()),
            },
        };
        let Some(held) =
            lock::try_acquire(&self.blobs, &self.cfg.org, self.cfg.lease, &self.stop).await?
        else {
            return Ok(());
        };
        let auditor = Auditor {
            org: &self.cfg.org,
            domain: &self.cfg.domain,
            blobs: &self.blobs,
            queue: &self.queue,
            okta,
            la,
            budget: &self.budget,
            metrics: &self.metrics,
            confirm_delay: s.confirm_delay,
            max_rows_per_query: s.max_rows_per_query,
            trigger: "background",
        };
        let result = auditor.audit(&pick, &held.lost).await;
        held.release().await;
        let rec = match result {
            Ok(r) => r,
            Err(e) => {
                // Tried again once settled (a window never audited is picked again anyway).
                if !recheck.iter().any(|(w, _)| *w == pick) {
                    recheck.push((pick, now));
                }
                return Err(e.into());
            }
        };
        if rec.figures.missing > 0 {
            recheck.push((rec.window, rec.when));
        }
        Ok(())
    }
}

/// The `since` of a polling link (Okta repeats the original query in every next link).
fn since_of(next_url: &str) -> Option<DateTime<Utc>> {
    let u = Url::parse(next_url).ok()?;
    let v = u.query_pairs().find(|(k, _)| k == "since")?.1.into_owned();
    DateTime::parse_from_rfc3339(&v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
