//! Operator commands: `collector status` and `collector reset`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use chrono::Utc;
use common::storage::Storage;
use url::Url;

use crate::checkpoint::{self, Checkpoint};
use crate::config::{validate_start, CollectorConfig};
use crate::leader;

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
        "caught_up": hb.as_ref().and_then(|h| h.caught_up),
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
            match h.caught_up {
                Some(true) => println!(
                    "caught up:      yes (at the head of the log; polling every OKTA_POLL_INTERVAL)"
                ),
                Some(false) => {
                    println!("caught up:      no (draining a backlog at the pacer's spacing)");
                }
                None => {}
            }
        }
        _ => println!("leader:         none has led yet"),
    }
    match &cp {
        Some(c) => {
            println!("epoch / seq:    {} / {}", c.epoch, c.seq);
            println!("next URL:       {}", c.next_url);
            // The last envelope stays recorded after it was sent (docs/design.md §2 step 7):
            // the next leader sends it again after a kill, a twin the shippers absorb.
            println!(
                "last envelope:  {}",
                c.pending.as_ref().map_or_else(
                    || "none".into(),
                    |e| format!(
                        "{} (sent again at start-up if the collector was killed)",
                        e.page_id()
                    )
                )
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
                "last audit:     {} {} — {} in Okta, {} in Log Analytics, {} missing, {} repaired, {} in flight, {} parked, {} duplicated",
                last.window.describe(), last.result, f.okta_events, f.la_events, f.missing, f.repaired, f.in_flight, f.parked, f.duplicated
            );
        }
        None => println!("audited:        nothing yet"),
    }
    Ok(())
}

/// `collector reset`: start over from a time or from an exact next link, under a new epoch.
///
/// The new epoch is chosen only once the leader lease is held (no collector can create pages
/// meanwhile), as one above every epoch found anywhere: the checkpoint, `pages/`, `state/`,
/// `done/` and `poison/`. Computing it before the confirmation prompt would let a collector
/// that started meanwhile create that very epoch, and the shipper would then take the new
/// pages for twins of shipped ones (`done/` markers) and drop them.
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
            crate::okta::first_url(&cfg.origin, validate_start(s, now, cfg.allow_restamp)?)
        }
        (None, Some(u)) => validate_next_url(&cfg.origin, u)?,
        _ => bail!("give exactly one of --start and --next-url"),
    };
    let blobs = &storage.blobs;
    // Only to tell the operator what will happen; everything is read again under the lease.
    if let Err(checkpoint::CheckpointError::Corrupt { name, reason }) =
        checkpoint::read(blobs, &cfg.org).await
    {
        println!(
            "org {}: the checkpoint {name} is unreadable ({reason}); it will be replaced, and a page \
             it recorded as pending is collected again from the new start.",
            cfg.org
        );
    }
    println!(
        "org {}: collection will restart at\n  {url}\nunder a new epoch (one above every epoch in use).",
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
    let result = reset_under_lease(cfg, storage, &url).await;
    lead.release().await;
    let epoch = result?;
    println!("reset done: epoch {epoch}");
    Ok(())
}

/// The writes of [`reset`], with the leader lease held. Returns the new epoch.
async fn reset_under_lease(
    cfg: &CollectorConfig,
    storage: &Storage,
    url: &Url,
) -> anyhow::Result<u64> {
    let blobs = &storage.blobs;
    let current = match checkpoint::read(blobs, &cfg.org).await {
        Ok(current) => Some(current),
        Err(checkpoint::CheckpointError::Corrupt { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let in_checkpoint = current
        .as_ref()
        .and_then(|c| c.as_ref())
        .map_or(0, |c| c.checkpoint.epoch);
    let epoch = in_checkpoint.max(checkpoint::highest_epoch(blobs, &cfg.org).await?) + 1;
    let fresh = Checkpoint {
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
    match current {
        // Unreadable: replaced, if it is still the blob that was read.
        None => {
            checkpoint::replace_unreadable(blobs, &cfg.org, fresh).await?;
        }
        Some(Some(v)) => {
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
        }
        Some(None) => {
            checkpoint::create(blobs, fresh).await?;
        }
    }
    Ok(epoch)
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
