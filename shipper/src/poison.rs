//! Poison records and the `shipper poison …` commands.
//!
//! A page that keeps failing because of itself (missing blob, sha256 mismatch, a 400 for its
//! data) is parked as `poison/{org}/{epoch}/{seq}.json` — envelope, reason, attempts, time,
//! progress — and its message deleted; the page blob and state stay, so after the cause is
//! fixed `requeue` ships it from where it stopped. A message that is not an envelope at all
//! becomes `poison/_undecodable/{message id}.json` with its raw text (truncated).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::envelope::Envelope;
use common::org::{names, parse_number, OrgKey};
use common::page_state::{DoneMarker, PageState};
use common::storage::{Blobs, Queue, ReceivedMessage, Storage, StorageError};
use serde::{Deserialize, Serialize};

/// Longest raw message text kept in an undecodable record.
pub const MAX_RAW: usize = 8 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoisonRecord {
    pub v: u32,
    /// `{org}/{epoch}/{seq}` or `_undecodable/{message id}`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// Raw text of an undecodable message (truncated to [`MAX_RAW`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub reason: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted_upto: Option<u64>,
    pub time: DateTime<Utc>,
}

/// Parks a page (page blob and state stay).
pub async fn park_page(
    blobs: &Blobs,
    env: &Envelope,
    state: &PageState,
    reason: &str,
    message_id: &str,
) -> Result<(), StorageError> {
    let rec = PoisonRecord {
        v: 1,
        id: env.page_id(),
        envelope: Some(env.clone()),
        raw: None,
        raw_truncated: None,
        message_id: Some(message_id.to_string()),
        reason: reason.to_string(),
        attempts: state.failures,
        posted_upto: Some(state.posted_upto),
        time: Utc::now(),
    };
    let name = names::poison(&env.org, env.epoch, env.seq);
    blobs.write(&name, Bytes::from(to_json(&rec)), None).await?;
    Ok(())
}

/// Parks an undecodable message.
pub async fn park_undecodable(
    blobs: &Blobs,
    msg: &ReceivedMessage,
    reason: &str,
) -> Result<(), StorageError> {
    let mut end = msg.text.len().min(MAX_RAW);
    while !msg.text.is_char_boundary(end) {
        end -= 1;
    }
    let rec = PoisonRecord {
        v: 1,
        id: format!("_undecodable/{}", safe_id(&msg.id)),
        envelope: None,
        raw: Some(msg.text[..end].to_string()),
        raw_truncated: Some(end < msg.text.len()),
        message_id: Some(msg.id.clone()),
        reason: reason.to_string(),
        attempts: msg.dequeue_count.min(u64::from(u32::MAX)) as u32,
        posted_upto: None,
        time: Utc::now(),
    };
    blobs
        .write(
            &names::undecodable(&msg.id),
            Bytes::from(to_json(&rec)),
            None,
        )
        .await?;
    Ok(())
}

fn safe_id(id: &str) -> String {
    names::undecodable(id)
        .trim_start_matches(names::UNDECODABLE_PREFIX)
        .trim_end_matches(".json")
        .to_string()
}

fn to_json(rec: &PoisonRecord) -> Vec<u8> {
    // A struct of plain fields always serialises.
    serde_json::to_vec_pretty(rec).unwrap_or_default()
}

/// Maps a record id to its blob name, validating every part.
pub fn blob_for_id(id: &str) -> anyhow::Result<String> {
    let id = id
        .trim()
        .trim_start_matches(names::POISON_PREFIX)
        .trim_end_matches(".json");
    if let Some(msg) = id.strip_prefix("_undecodable/") {
        if msg.is_empty()
            || !msg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("`{id}` is not a poison record id");
        }
        return Ok(names::undecodable(msg));
    }
    let parts: Vec<&str> = id.split('/').collect();
    let [org, epoch, seq] = parts.as_slice() else {
        bail!("`{id}` is not a poison record id (`{{org}}/{{epoch}}/{{seq}}` or `_undecodable/{{message id}}`)");
    };
    let org = OrgKey::parse(org)?;
    Ok(names::poison(
        &org,
        parse_number("epoch", epoch)?,
        parse_number("seq", seq)?,
    ))
}

async fn read_record(blobs: &Blobs, name: &str) -> anyhow::Result<PoisonRecord> {
    Ok(read_record_at(blobs, name).await?.0)
}

/// The record and the ETag it was read at.
async fn read_record_at(blobs: &Blobs, name: &str) -> anyhow::Result<(PoisonRecord, String)> {
    let content = blobs
        .read_limited(name, 1024 * 1024)
        .await?
        .with_context(|| format!("no poison record {name}"))?;
    let rec = serde_json::from_slice(&content.bytes)
        .with_context(|| format!("{name} is not a poison record"))?;
    Ok((rec, content.etag))
}

async fn all_records(blobs: &Blobs) -> anyhow::Result<Vec<(String, PoisonRecord)>> {
    let mut out = Vec::new();
    for item in blobs.list(names::POISON_PREFIX).await? {
        match read_record(blobs, &item.name).await {
            Ok(r) => out.push((item.name, r)),
            Err(e) => {
                tracing::warn!(blob = %item.name, error = %e, "skipping an unreadable poison record");
            }
        }
    }
    Ok(out)
}

/// `poison list`
pub async fn list(storage: &Storage, json: bool) -> anyhow::Result<()> {
    let records = all_records(&storage.blobs).await?;
    if json {
        let v: Vec<&PoisonRecord> = records.iter().map(|(_, r)| r).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no poison records");
        return Ok(());
    }
    println!(
        "{:<48} {:>8} {:>10} {:<25} REASON",
        "ID", "ATTEMPTS", "PROGRESS", "TIME"
    );
    for (_, r) in &records {
        let progress = match (&r.envelope, r.posted_upto) {
            (Some(e), Some(p)) => format!("{p}/{}", e.events),
            _ => "-".into(),
        };
        let reason: String = r.reason.chars().take(80).collect();
        println!(
            "{:<48} {:>8} {:>10} {:<25} {}",
            r.id,
            r.attempts,
            progress,
            r.time.to_rfc3339(),
            reason
        );
    }
    println!("{} record(s)", records.len());
    Ok(())
}

/// `poison show ID`
pub async fn show(storage: &Storage, id: &str) -> anyhow::Result<()> {
    let rec = read_record(&storage.blobs, &blob_for_id(id)?).await?;
    println!("{}", serde_json::to_string_pretty(&rec)?);
    Ok(())
}

/// `poison requeue ID…|--all`
pub async fn requeue(storage: &Storage, ids: &[String], all: bool) -> anyhow::Result<()> {
    let names: Vec<String> = if all {
        storage
            .blobs
            .list(names::POISON_PREFIX)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect()
    } else if ids.is_empty() {
        bail!("name the records to requeue, or pass --all");
    } else {
        ids.iter()
            .map(|i| blob_for_id(i))
            .collect::<anyhow::Result<_>>()?
    };
    let bar = progress_bar(names.len());
    let mut failed = 0;
    for name in &names {
        if let Err(e) = requeue_one(&storage.blobs, &storage.queue, name).await {
            failed += 1;
            // `println` of a hidden bar (no terminal) prints nothing: say it on stderr.
            bar.suspend(|| eprintln!("{name}: {e:#}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("requeued {} of {}", names.len() - failed, names.len());
    if failed > 0 {
        bail!("{failed} record(s) could not be requeued");
    }
    Ok(())
}

/// Sends the envelope, then deletes the record only if it is still the one read (If-Match):
/// should the page be parked again in between (a shipper wrote a new record), the new record
/// is kept — deleting it would leave a parked page nobody is told about.
async fn requeue_one(blobs: &Blobs, queue: &Queue, name: &str) -> anyhow::Result<()> {
    let (rec, etag) = read_record_at(blobs, name).await?;
    let text = match (&rec.envelope, &rec.raw) {
        (Some(env), _) => {
            // Keep the progress, reset the failure count.
            let state_name = names::state(&env.org, env.epoch, env.seq);
            if let Some(c) = blobs.read_limited(&state_name, 64 * 1024).await? {
                let mut st = PageState::from_bytes(&c.bytes).map_err(anyhow::Error::msg)?;
                st.failures = 0;
                st.last_error = None;
                st.updated = Utc::now();
                blobs
                    .write_if_match(&state_name, Bytes::from(st.to_bytes()), &c.etag, None)
                    .await
                    .with_context(|| format!("{state_name} is in use by a shipper; try again"))?;
            }
            env.encode()
        }
        (None, Some(raw)) if rec.raw_truncated != Some(true) => raw.clone(),
        _ => bail!("the record holds no complete message to requeue"),
    };
    queue.send(&text, None).await?;
    match blobs.delete_if_match(name, &etag).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_condition_not_met() => bail!(
            "requeued, but the page was parked again meanwhile: its new record is kept (see `shipper poison show {}`)",
            rec.id
        ),
        Err(e) => Err(e.into()),
    }
}

/// `poison purge [--older-than D] [--yes]`: gives up on pages for good. Their page blob and
/// state are deleted and a `done` marker written, so a late twin envelope is absorbed.
pub async fn purge(
    storage: &Storage,
    older_than: Option<Duration>,
    yes: bool,
) -> anyhow::Result<()> {
    let cutoff = older_than
        .map(|d| Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()));
    let records: Vec<(String, PoisonRecord)> = all_records(&storage.blobs)
        .await?
        .into_iter()
        .filter(|(_, r)| cutoff.is_none_or(|c| r.time < c))
        .collect();
    if records.is_empty() {
        println!("nothing to purge");
        return Ok(());
    }
    println!(
        "{} record(s) will be deleted for good, with their pages.",
        records.len()
    );
    if !yes {
        bail!("pass --yes to purge");
    }
    let bar = progress_bar(records.len());
    let blobs = &storage.blobs;
    for (name, rec) in &records {
        if let Some(env) = &rec.envelope {
            blobs
                .write(
                    &names::done(&env.org, env.epoch, env.seq),
                    Bytes::from(DoneMarker::new(&env.sha256).to_bytes()),
                    None,
                )
                .await?;
            blobs.delete(&env.page_blob(), None).await?;
            let state = names::state(&env.org, env.epoch, env.seq);
            if let Err(e) = blobs.delete(&state, None).await {
                bar.suspend(|| eprintln!("{state}: {e} (left in place)"));
            }
        }
        blobs.delete(name, None).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("purged {}", records.len());
    Ok(())
}

fn progress_bar(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_names_inside_the_prefix() {
        assert_eq!(
            blob_for_id("acme.okta.com/1/7").unwrap(),
            "poison/acme.okta.com/1/7.json"
        );
        assert_eq!(
            blob_for_id("poison/acme.okta.com/1/7.json").unwrap(),
            "poison/acme.okta.com/1/7.json"
        );
        assert_eq!(
            blob_for_id("_undecodable/abc-1").unwrap(),
            "poison/_undecodable/abc-1.json"
        );
        for bad in [
            "../checkpoints/x/1",
            "acme.okta.com/1",
            "acme.okta.com/x/1",
            "_undecodable/../x",
            "a/1/2/3",
        ] {
            assert!(blob_for_id(bad).is_err(), "{bad} accepted");
        }
    }
}
