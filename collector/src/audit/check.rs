//! One audit of one window: compare, repair, record.
//!
//! Order matters, and each boundary where a kill must be harmless is a named failpoint:
//!
//! 1. enqueue a repair page a killed audit left pending (`repair::flush_pending`);
//! 2. list the pages still waiting or parked *before* asking Log Analytics: a page shipped
//!    after the listing is already in the answer, one shipped before it is in the listing;
//! 3. ask Log Analytics for the window's uuids and counts (split when the answer is too large);
//! 4. read the window from Okta (bounded request) and diff; events neither in Log Analytics nor
//!    waiting nor parked are *candidates*;
//! 5. confirm the candidates: list the waiting pages again, wait `AUDIT_CONFIRM_DELAY`
//!    (ingestion latency), ask Log Analytics again; only what is still missing is repaired
//!    (`audit.before_repair`);
//! 6. hand the missing events off as repair pages (`repair.rs` has its own failpoints);
//! 7. write the evidence record (`audit.after_record`).
//!
//! A kill anywhere repeats the audit, never a repair: before step 6 nothing was changed; a
//! repair page recorded in step 6 is in flight for the repeated audit (or pending, and sent
//! in its step 1).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::failpoint;
use common::org::OrgKey;
use common::storage::{Blobs, Queue};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::logs_query::{LogsQuery, QueryError};
use super::metrics::AuditMetrics;
use super::okta_side::{self, OktaSideError};
use super::record::{self, AuditRecord, Figures};
use super::repair::{self, RepairError};
use super::waiting::{self, Held, WaitingError};
use super::window::Window;
use crate::okta::OktaClient;

/// What one audit needs.
pub struct Auditor<'a> {
    pub org: &'a OrgKey,
    /// The org's host, as in each row's `domain_s`.
    pub domain: &'a str,
    pub blobs: &'a Blobs,
    pub queue: &'a Queue,
    pub okta: &'a OktaClient,
    pub la: &'a LogsQuery,
    pub budget: &'a Budget,
    pub metrics: &'a AuditMetrics,
    pub confirm_delay: Duration,
    pub max_rows_per_query: usize,
    /// `background` or `command`.
    pub trigger: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Okta(#[from] OktaSideError),
    #[error(transparent)]
    Repair(#[from] RepairError),
    #[error("listing waiting pages: {0}")]
    Waiting(#[from] WaitingError),
    #[error("writing the audit record: {0}")]
    Record(#[from] common::storage::StorageError),
    #[error("Log Analytics cannot answer for {0} even in one-second parts")]
    TooLarge(String),
    #[error("cancelled")]
    Cancelled,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    uuid: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    published: Option<std::borrow::Cow<'a, str>>,
}

impl Auditor<'_> {
    /// Uuid counts of the window, split into parts whose answers stay under the limits.
    async fn la_counts(
        &self,
        w: &Window,
        queries: &mut u64,
    ) -> Result<HashMap<String, u64>, AuditError> {
        let mut out = HashMap::new();
        let mut todo = vec![*w];
        while let Some(part) = todo.pop() {
            *queries += 1;
            self.metrics.la_queries.inc();
            let answer = self.la.uuid_counts(self.domain, part.from, part.to).await;
            let split = match answer {
                Ok(c) if c.len() < self.max_rows_per_query => {
                    out.extend(c);
                    false
                }
                Ok(_) => true,
                Err(QueryError::Partial(reason)) => {
                    tracing::info!(window = %part.describe(), reason, "audit: partial answer; splitting the window");
                    true
                }
                Err(e) => return Err(e.into()),
            };
            if split {
                let (a, b) = part
                    .halves()
                    .ok_or_else(|| AuditError::TooLarge(part.describe()))?;
                todo.push(a);
                todo.push(b);
            }
        }
        Ok(out)
    }

    async fn sleep(&self, d: Duration, cancel: &CancellationToken) -> Result<(), AuditError> {
        tokio::select! {
            () = cancel.cancelled() => Err(AuditError::Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Audits `w`: the record written, with what was found and repaired.
    pub async fn audit(
        &self,
        w: &Window,
        cancel: &CancellationToken,
    ) -> Result<AuditRecord, AuditError> {
        let state = repair::read(self.blobs, self.org).await?;
        let state = repair::flush_pending(self.blobs, self.queue, state).await?;

        let held = waiting::scan(self.blobs, self.org, w).await?;
        let mut queries = 0u64;
        let la = self.la_counts(w, &mut queries).await?;

        let mut okta_uuids: HashSet<String> = HashSet::new();
        let mut candidates: Vec<(String, String)> = Vec::new();
        let mut malformed = 0u64;
        let requests =
            okta_side::fetch_window(self.okta, self.budget, self.metrics, w, cancel, |events| {
                for event in events.iter() {
                    let Ok(head) = serde_json::from_str::<Head<'_>>(event.text()) else {
                        malformed += 1;
                        continue;
                    };
                    let (Some(uuid), Some(published)) = (head.uuid, head.published) else {
                        malformed += 1;
                        continue;
                    };
                    let in_window = DateTime::parse_from_rfc3339(&published)
                        .is_ok_and(|t| w.contains(t.with_timezone(&Utc)));
                    let uuid = uuid.to_ascii_lowercase();
                    if !in_window || !okta_uuids.insert(uuid.clone()) {
                        continue;
                    }
                    if !la.contains_key(&uuid) && !held.contains_key(&uuid) {
                        candidates.push((uuid, event.text().to_owned()));
                    }
                }
            })
            .await?;
        if malformed > 0 {
            tracing::warn!(
                malformed,
                "audit: Okta events without a readable uuid or published were skipped"
            );
        }

        // Confirm before repairing anything (see the module docs, step 5).
        let (la, held) = if candidates.is_empty() {
            (la, held)
        } else {
            let held_again = waiting::scan(self.blobs, self.org, w).await?;
            if !self.confirm_delay.is_zero() {
                tracing::info!(
                    window = %w.describe(),
                    candidates = candidates.len(),
                    delay = ?self.confirm_delay,
                    "audit: events look missing; asking Log Analytics again after the ingestion delay"
                );
                self.sleep(self.confirm_delay, cancel).await?;
            }
            let mut la_again = self.la_counts(w, &mut queries).await?;
            for (u, n) in la {
                la_again.entry(u).or_insert(n);
            }
            let mut merged = held;
            for (u, h) in held_again {
                merged.insert(u, h);
            }
            candidates.retain(|(u, _)| !la_again.contains_key(u) && !merged.contains_key(u));
            (la_again, merged)
        };
        if cancel.is_cancelled() {
            return Err(AuditError::Cancelled);
        }
        failpoint::hit("audit.before_repair");

        let mut figures = Figures {
            okta_events: okta_uuids.len() as u64,
            la_events: la.len() as u64,
            okta_requests: requests,
            la_queries: queries,
            ..Figures::default()
        };
        for u in &okta_uuids {
            if la.contains_key(u) {
                continue;
            }
            figures.missing += 1;
            match held.get(u) {
                Some(Held::InFlight) => figures.in_flight += 1,
                Some(Held::Parked) => figures.parked += 1,
                None => {}
            }
        }
        figures.duplicated = la.values().filter(|n| **n > 1).count() as u64;
        figures.not_in_okta = la.keys().filter(|u| !okta_uuids.contains(*u)).count() as u64;

        let raws: Vec<String> = candidates.into_iter().map(|(_, r)| r).collect();
        if !raws.is_empty() {
            let (_, handed) =
                repair::hand_off(self.blobs, self.queue, self.org, self.domain, &raws, state)
                    .await?;
            figures.repaired = handed;
            tracing::info!(window = %w.describe(), repaired = handed, "audit: missing events handed off as repair pages");
        }

        let previous = record::read(self.blobs, self.org, w).await.ok().flatten();
        let incomplete_after_repair = previous
            .as_ref()
            .is_some_and(|p| p.figures.repaired > 0 || p.incomplete_after_repair)
            && figures.missing > figures.in_flight;
        let result = if figures.missing == 0 {
            "complete"
        } else if figures.parked > 0 || incomplete_after_repair {
            "incomplete"
        } else {
            "repaired"
        };
        let rec = AuditRecord {
            v: record::CURRENT_VERSION,
            org: self.org.clone(),
            window: *w,
            figures,
            result: result.to_string(),
            incomplete_after_repair,
            audits: previous.as_ref().map_or(1, |p| p.audits + 1),
            trigger: self.trigger.to_string(),
            when: Utc::now(),
            previous: previous.map(|p| p.figures),
        };
        record::write(self.blobs, &rec).await?;
        failpoint::hit("audit.after_record");
        self.metrics.record(&rec);
        let doc = serde_json::to_string(&rec).unwrap_or_default();
        if rec.result == "incomplete" {
            tracing::warn!(target: "audit", record = %doc, window = %w.describe(), "audit: window incomplete");
        } else {
            tracing::info!(target: "audit", record = %doc, window = %w.describe(), "audit: window done");
        }
        Ok(rec)
    }
}
