//! Operator commands: `collector status` and `collector reset`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use chrono::Utc;
use common::org::{names, parse_number, OrgKey};
use common::storage::{Blobs, Storage, StorageError};
use url::Url;

use crate::checkpoint::{self, Checkpoint};
use crate::config::{validate_start, CollectorConfig};
use crate::leader;

/// Where an org's pipeline leaves traces: pages and page states while work is in flight, done
/// markers (kept for weeks) and poison records after it. A missing checkpoint next to any of them
/// means the checkpoint was lost, and reusing an epoch would let the shipper take new pages for
/// twins of shipped ones.
fn trace_prefixes(org: &OrgKey) -> [String; 4] {
    [
        names::pages_prefix(org),
        names::state_prefix(org),
        names::done_prefix(org),
        names::poison_prefix(org),
    ]
}

/// Returns the first prefix of [`trace_prefixes`] that holds any blob.
pub async fn org_has_data(blobs: &Blobs, org: &OrgKey) -> Result<Option<String>, StorageError> {
    for prefix in trace_prefixes(org) {
        if blobs.any_under(&prefix).await? {
            return Ok(Some(prefix));
        }
    }
    Ok(None)
}

/// Highest epoch named by any of the org's traces (so a reset after a lost checkpoint never
/// reuses an epoch). Lists every trace: only needed when the checkpoint is missing or unreadable.
async fn highest_epoch(blobs: &Blobs, org: &OrgKey) -> Result<u64, StorageError> {
    let mut max = 0;
    for prefix in trace_prefixes(org) {
        for item in blobs.list(&prefix).await? {
            let rest = item.name.strip_prefix(&prefix).unwrap_or_default();
            if let Some(epoch) = rest
                .split('/')
                .next()
                .and_then(|e| parse_number("epoch", e).ok())
                // Repair pages have their own epoch space; live epochs never reach it.
                .filter(|e| !crate::audit::repair::is_repair_epoch(*e))
            {
                max = max.max(epoch);
            }
        }
    }
    Ok(max)
}

/// `collector status`: leader, epoch, checkpoint, newest published, lag, last poll, queue depth.
pub async fn status(cfg: &CollectorConfig, storage: &Storage, json: bool) -> anyhow::Result<()> {
    let cp = match checkpoint::read(&storage.blobs, &cfg.org).await {
        Err(checkpoint::CheckpointError::Storage(e)) if e.code() == Some("ContainerNotFound") => {
            println!(
                "org {}: nothing collected yet (container {} does not exist)",
                cfg.org, cfg.storage.container_name
            );
            return Ok(());
        }
        other => other?,
    };
    let hb = leader::read_heartbeat(&storage.blobs, &cfg.org).await?;
    let depth = storage.queue.approximate_count().await.ok();
    let cp = cp.map(|v| Checkpoint {
        recent: None,
        ..v.checkpoint
    });
    let lag = cp
        .as_ref()
        .and_then(|c| c.newest_published)
        .map(|p| (Utc::now() - p).num_seconds());
    let audit = crate::audit::record::summary(&storage.blobs, &cfg.org)
        .await
        .ok()
        .flatten();
    let doc = serde_json::json!({
        "org": cfg.org,
        "leader": hb,
        "checkpoint": cp,
        "lag_seconds": lag,
        "queue_depth": depth,
        "audit": audit.as_ref().map(|(last, from, to, windows)| serde_json::json!({
            "audited_from": from, "audited_to": to, "windows": windows, "last": last,
        })),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("org:            {}", cfg.org);
    match &hb {
        Some(h) if !h.holder.is_empty() => {
            println!(
                "leader:         {} (since {:?}, last renewed {:?})",
                h.holder, h.since, h.renewed
            );
            println!(
                "last poll:      {:?} — {}",
                h.last_poll,
                h.last_poll_result.as_deref().unwrap_or("-")
            );
            if let (Some(r), Some(l)) = (h.rate_limit_remaining, h.rate_limit_limit) {
                println!("rate limit:     {r} of {l} left in the window");
            }
        }
        _ => println!("leader:         none has led yet"),
    }
    match &cp {
        Some(c) => {
            println!("epoch / seq:    {} / {}", c.epoch, c.seq);
            println!("next URL:       {}", c.next_url);
            println!(
                "pending:        {}",
                c.pending
                    .as_ref()
                    .map(|e| e.page_id())
                    .unwrap_or_else(|| "none".into())
            );
            println!("newest event:   {:?}", c.newest_published);
            if let Some(l) = lag {
                println!("lag:            {l} s");
            }
        }
        None => println!("checkpoint:     none (first run starts at OKTA_START)"),
    }
    if let Some(d) = depth {
        println!("queue depth:    {d} (all orgs)");
    }
    match &audit {
        Some((last, from, to, windows)) => {
            println!("audited:        {windows} windows between {from:?} and {to:?}");
            let f = &last.figures;
            println!(
                "last audit:     {} {} — {} in Okta, {} missing, {} repaired, {} in flight, {} parked, {} duplicated",
                last.window.describe(), last.result, f.okta_events, f.missing, f.repaired, f.in_flight, f.parked, f.duplicated
            );
        }
        None => println!("audited:        nothing yet"),
    }
    Ok(())
}

/// `collector reset`: start over from a time or from an exact next link, under a new epoch.
pub async fn reset(
    cfg: &CollectorConfig,
    storage: &Storage,
    start: Option<&str>,
    next_url: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let url = match (start, next_url) {
        (Some(s), None) => {
            crate::run::first_url(&cfg.origin, validate_start(s, now, cfg.allow_restamp)?)
        }
        (None, Some(u)) => validate_next_url(&cfg.origin, u)?,
        _ => bail!("give exactly one of --start and --next-url"),
    };
    let blobs = &storage.blobs;
    let (current, unreadable) = match checkpoint::read(blobs, &cfg.org).await {
        Ok(current) => (current, None),
        Err(checkpoint::CheckpointError::Corrupt { name, reason }) => (None, Some((name, reason))),
        Err(e) => return Err(e.into()),
    };
    // A readable checkpoint carries the highest epoch; without one, the org's traces tell.
    let epoch = match &current {
        Some(c) => c.checkpoint.epoch,
        None => highest_epoch(blobs, &cfg.org).await?,
    } + 1;
    if let Some((name, reason)) = &unreadable {
        println!(
            "org {}: the checkpoint {name} is unreadable ({reason}); it will be replaced, and a page \
             it recorded as pending is collected again from the new start.",
            cfg.org
        );
    }
    println!(
        "org {}: collection will restart at\n  {url}\nunder epoch {epoch}.",
        cfg.org
    );
    if !yes && !confirm()? {
        bail!("not confirmed; nothing changed (pass --yes to skip the question)");
    }
    // Hold the leader lease so no collector runs meanwhile.
    let cancel = tokio_util::sync::CancellationToken::new();
    let lead = {
        let c = cancel.clone();
        let attempt = leader::acquire(blobs, &cfg.org, cfg.lease, &cancel, move || c.cancel());
        attempt.await?
    };
    let Some(lead) = lead else {
        bail!(
            "a collector is leading org {} right now: stop it first, then reset",
            cfg.org
        );
    };
    let fresh = |epoch| Checkpoint {
        v: checkpoint::CURRENT_VERSION,
        org: cfg.org.clone(),
        epoch,
        seq: 0,
        next_url: url.to_string(),
        pending: None,
        newest_published: None,
        recent: None,
        updated: Utc::now(),
    };
    let result = async {
        if unreadable.is_some() {
            checkpoint::replace_unreadable(blobs, &cfg.org, fresh(epoch)).await?;
            return anyhow::Ok(());
        }
        let mut current = checkpoint::read(blobs, &cfg.org).await?;
        if let Some(v) = current.take() {
            // Never lose a recorded page: send its envelope before moving on.
            let v = crate::handoff::flush_pending(blobs, &storage.queue, &v).await?;
            let mut next = v.checkpoint.clone();
            next.epoch = epoch;
            next.seq = 0;
            next.next_url = url.to_string();
            // A new run: the old uuid window would drop every re-collected event as a repeat.
            next.recent = None;
            next.updated = Utc::now();
            checkpoint::replace(blobs, &v, next).await?;
        } else {
            checkpoint::create(blobs, fresh(epoch)).await?;
        }
        anyhow::Ok(())
    }
    .await;
    lead.release().await;
    result?;
    println!("reset done: epoch {epoch}");
    Ok(())
}

/// A next link to import must be this org's System Log endpoint.
pub fn validate_next_url(origin: &Url, value: &str) -> anyhow::Result<Url> {
    crate::config::parse_next_link(origin, value).map_err(|e| anyhow::anyhow!("--next-url {e}"))
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to reset without confirmation: pass --yes");
    }
    print!("Type yes to continue: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
