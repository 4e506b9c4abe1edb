//! Turning a stored Okta page into Log Analytics rows.
//!
//! A page is the JSON array of Okta events the collector stored (each with `domain` added).
//! Every event becomes exactly one row — never zero, never two — so that an event index is a
//! stable unit of progress (`posted_upto`) whatever the chunk boundaries are.
//!
//! * [`build_rows`]: the `okta_cl` rows for the Logs Ingestion sink, flattened per the
//!   [`manifest`] (legacy `Okta_CL` column names), serialised straight to bytes.
//! * [`build_dc_events`]: the original nested events, byte for byte, for the legacy Data
//!   Collector sink (the service flattens them itself; flattening twice would produce
//!   `client_ipAddress_s_s`) — but for a value over the API's field limit, cut first
//!   ([`dc_fit`]).
//!
//! The page is read once ([`scan`], a hand-written pass; [`stream`], serde_json's streaming
//! parser, for any page the fast pass cannot vouch for): each event's values are captured as
//! borrowed slices of the page while it is walked, and copied, not
//! re-serialised, except where a value must change (truncation, type conversion, GUID
//! normalisation, JSON text embedded in a string column). A page's rows are written one after
//! the other into one buffer that each [`Row`] is a slice of, already laid out as the request
//! bodies (`[r,r,…][r,…]`, the body limit applied as each row is written): a body is a run of
//! that buffer ([`RowBatch::chunks`]), handed to gzip and to the request without a copy.
//!
//! A broken page is read a second time, the simple two-pass way ([`events`] then
//! [`flatten::capture`] per event), only to name its error precisely: errors are rare (the
//! page is then poisoned) and their kind and event index must not depend on the fast path.

mod additional;
mod dc_fit;
mod encode;
mod flatten;
mod jsontext;
pub mod manifest;
pub mod pool;
mod scan;
mod stream;
mod truncate;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::chunk::{self, Chunk};

pub use dc_fit::DC_FIELD_LIMIT;
pub use manifest::{
    manifest, manifest_json, Column, ColumnKind, ColumnType, Manifest, TableColumns,
    MAX_COLUMN_NAME,
};

/// Deepest nesting of arrays/objects accepted in a page (the page's own array counts as one).
/// serde_json's own recursion limit is 128; we check first, iteratively, so a hostile page is
/// a clean [`PageError::TooDeep`] rather than a parser error deep inside or a stack overflow.
pub use common::json_scan::MAX_NESTING;

/// Log Analytics' limits as they apply to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimits {
    /// Per-value limit of a column, in bytes of the value (docs/contracts.md §3.2: 64 KB per field on
    /// the Logs Ingestion API, longer values truncated by the service). Read as KiB.
    pub max_field_bytes: usize,
    /// Largest row: one row must fit in a request body of 1,000,000 bytes with its `[` `]`.
    pub max_row_bytes: usize,
    /// Largest request body the rows are laid out for as they are written
    /// ([`RowBatch::chunks`] with this limit costs no copy).
    pub max_body_bytes: usize,
}

impl Default for RowLimits {
    fn default() -> Self {
        RowLimits {
            max_field_bytes: 64 * 1024,
            max_row_bytes: crate::chunk::MAX_UNCOMPRESSED - 2,
            max_body_bytes: crate::chunk::MAX_UNCOMPRESSED,
        }
    }
}

/// One row (or, for the Data Collector sink, one original event) ready to be packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Index of the event in the page.
    pub event_index: usize,
    /// The row as one JSON object (for the rows [`build_rows`] makes, a slice of the batch's
    /// one buffer).
    pub json: Bytes,
    /// The event's `published` time, if present and valid.
    pub published: Option<DateTime<Utc>>,
}

/// The rows of a page from some event on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowBatch {
    pub rows: Vec<Row>,
    /// The buffer the rows are slices of, laid out as request bodies one after the other
    /// (`[r,r,…][r,…]`); empty when the rows were made otherwise.
    joined: Bytes,
    /// The bodies in `joined`: their first row and their bytes.
    bodies: Vec<Body>,
    /// The body limit `joined` was laid out for.
    packed_for: usize,
    /// Values we truncated (field limit, or shrinking a row above the request limit).
    pub truncations: u64,
    /// Fields kept in `additionalFields_s` because no declared column holds them (metric
    /// `unmapped_fields_total`).
    pub unmapped_fields: u64,
}

/// One request body laid out in [`RowBatch::joined`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    /// Index in [`RowBatch::rows`] of its first row.
    first_row: usize,
    /// Its bytes in `joined`, brackets included.
    range: std::ops::Range<usize>,
}

impl RowBatch {
    /// The request bodies of the rows, at most `max_uncompressed` bytes each
    /// ([`chunk::chunks`]'s packing). For the limit the rows were built for
    /// ([`RowLimits::max_body_bytes`]) the bodies are already laid out in the batch's one
    /// buffer and become chunks without a copy; for another limit, or rows made otherwise,
    /// they are joined into new buffers.
    pub fn chunks(&self, max_uncompressed: usize) -> Vec<Chunk> {
        if max_uncompressed != self.packed_for || !self.laid_out() {
            return chunk::chunks(&self.rows, max_uncompressed);
        }
        let ends = self.bodies.iter().skip(1).map(|b| b.first_row);
        self.bodies
            .iter()
            .zip(ends.chain([self.rows.len()]))
            .map(|(b, end)| {
                Chunk::from_body(
                    self.rows[b.first_row].event_index,
                    self.rows[end - 1].event_index + 1,
                    self.joined.slice(b.range.clone()),
                )
            })
            .collect()
    }

    /// Whether the bodies still describe `rows` (`rows` is public: a caller could have changed
    /// them): every row lies in its body right after the `[` or the comma that precedes it, the
    /// last one right before the `]`, and the bodies cover all the rows and the whole buffer.
    fn laid_out(&self) -> bool {
        let base = self.joined.as_ptr() as usize;
        let ends = self.bodies.iter().skip(1).map(|b| b.first_row);
        let mut next_row = 0;
        let mut next_byte = 0;
        for (b, end) in self.bodies.iter().zip(ends.chain([self.rows.len()])) {
            if b.first_row != next_row || b.range.start != next_byte || end <= b.first_row {
                return false;
            }
            let Some(rows) = self.rows.get(b.first_row..end) else {
                return false;
            };
            let mut at = b.range.start + 1; // after the `[`
            for row in rows {
                if (row.json.as_ptr() as usize).checked_sub(base) != Some(at) {
                    return false;
                }
                at += row.json.len() + 1; // the row and its `,` or `]`
            }
            if at != b.range.end || b.range.end > self.joined.len() {
                return false;
            }
            next_row = end;
            next_byte = b.range.end;
        }
        !self.bodies.is_empty() && next_row == self.rows.len() && next_byte == self.joined.len()
    }
}

/// Why a page cannot be turned into rows. Always the page's own fault: retrying will not help.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("page is not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("page nests arrays/objects deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("page is not a JSON array")]
    NotAnArray,
    #[error("page is not valid JSON: {0}")]
    Json(String),
    #[error("event {index} of the page is not a JSON object")]
    NotAnObject { index: usize },
    #[error("event {index} of the page is not valid JSON: {message}")]
    BadEvent { index: usize, message: String },
}

/// The page as text, after the checks that come before any parsing: UTF-8, nesting depth,
/// and an array at the top.
fn page_text(page: &[u8]) -> Result<&str, PageError> {
    let text = std::str::from_utf8(page).map_err(|e| PageError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    if jsontext::depth_exceeds(page, MAX_NESTING) {
        return Err(PageError::TooDeep { limit: MAX_NESTING });
    }
    if !text.trim_start().starts_with('[') {
        return Err(PageError::NotAnArray);
    }
    Ok(text)
}

/// Splits a page into its events (borrowed), after the UTF-8 and nesting checks.
fn events(page: &[u8]) -> Result<Vec<&RawValue>, PageError> {
    let text = page_text(page)?;
    let events: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| PageError::Json(e.to_string()))?;
    for (index, ev) in events.iter().enumerate() {
        if !ev.get().starts_with('{') {
            return Err(PageError::NotAnObject { index });
        }
    }
    Ok(events)
}

/// Builds the `okta_cl` rows of events `from_event..` of `page`, for a table that declares
/// every manifest column.
///
/// Rows are never dropped: an over-long value is truncated (counted in
/// [`RowBatch::truncations`]), and a row above `limits.max_row_bytes` is shrunk by truncating
/// its largest values until it fits.
pub fn build_rows(
    page: &[u8],
    from_event: usize,
    limits: &RowLimits,
) -> Result<RowBatch, PageError> {
    build_rows_for(page, from_event, limits, TableColumns::All)
}

/// [`build_rows`] for a table that declares the columns `table` says; the values of the
/// others are kept in `additionalFields_s`.
pub fn build_rows_for(
    page: &[u8],
    from_event: usize,
    limits: &RowLimits,
    table: TableColumns,
) -> Result<RowBatch, PageError> {
    // Only UTF-8 is checked before the walk: both passes refuse what is not an array, and
    // check the nesting of the whole page as they go (`scan` itself, `stream` on what it
    // borrows); a page the serde_json pass refuses is read again by `diagnose`, whose
    // `page_text` names the error as before.
    let text = std::str::from_utf8(page).map_err(|e| PageError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let m = manifest();
    let mut cap = flatten::Captured::new(m.leaf_count, m.rest_count);
    let mut builder = RowBuilder::new(m, limits, table, page.len());
    let scanned = scan::for_each_event(text, &m.tree, from_event, &mut cap, |index, cap| {
        builder.push(index, cap);
    });
    match scanned {
        Ok(()) => Ok(builder.finish()),
        // The fast pass could not vouch for the page (almost always: it is broken).
        Err(common::json_scan::Refused) => build_rows_streamed(text, from_event, limits, table),
    }
}

/// [`build_rows_for`] through serde_json's streaming parser only: the reference the fast
/// pass must agree with, and the reading of every page it refuses.
fn build_rows_streamed(
    text: &str,
    from_event: usize,
    limits: &RowLimits,
    table: TableColumns,
) -> Result<RowBatch, PageError> {
    let m = manifest();
    let mut cap = flatten::Captured::new(m.leaf_count, m.rest_count);
    let mut builder = RowBuilder::new(m, limits, table, text.len());
    let streamed = stream::for_each_event(text, &m.tree, from_event, &mut cap, |index, cap| {
        builder.push(index, cap);
    });
    match streamed {
        Ok(()) => Ok(builder.finish()),
        Err(e) => Err(diagnose(text.as_bytes(), from_event, e)),
    }
}

/// Names the error of a page the streaming pass refused, exactly as reading it in two passes
/// does: nesting too deep is [`PageError::TooDeep`], a syntax error anywhere is
/// [`PageError::Json`], then the first event that is not an
/// object, then the first wanted event the capture refuses ([`PageError::BadEvent`]).
fn diagnose(page: &[u8], from_event: usize, streamed: serde_json::Error) -> PageError {
    let events = match events(page) {
        Ok(events) => events,
        Err(e) => return e,
    };
    let m = manifest();
    let mut cap = flatten::Captured::new(m.leaf_count, m.rest_count);
    for (index, ev) in events.iter().enumerate().skip(from_event) {
        cap.clear();
        if let Err(e) = flatten::capture(ev.get(), &m.tree, &mut cap) {
            return PageError::BadEvent {
                index,
                message: e.to_string(),
            };
        }
    }
    // The streaming pass refuses exactly what the two passes refuse (`stream`'s contract), so
    // this is not reached; if it were, the page is still refused, with the parser's reason.
    PageError::Json(streamed.to_string())
}

/// Accumulates the rows of a page, one event at a time, reusing its buffers.
struct RowBuilder<'m> {
    m: &'m Manifest,
    limits: RowLimits,
    table: TableColumns,
    writer: encode::RowWriter,
    /// The rows written so far, laid out as request bodies: `[r,r,…][r,…` (the last `]` comes
    /// at the end).
    data: Vec<u8>,
    spans: Vec<Span>,
    /// Decides where each body ends, as [`chunk::chunks`] would.
    packer: chunk::Packer,
    /// The bodies begun so far: their first row and where their `[` is.
    bodies: Vec<(usize, usize)>,
    truncations: u64,
    unmapped_fields: u64,
}

impl<'m> RowBuilder<'m> {
    /// A builder for the rows of a page of `page_len` bytes (rows take about 1.2 times the
    /// page's bytes: the buffer is reserved once rather than grown by copies, and reused from
    /// an earlier page when one is free: [`pool`]).
    fn new(m: &'m Manifest, limits: &RowLimits, table: TableColumns, page_len: usize) -> Self {
        RowBuilder {
            m,
            limits: *limits,
            table,
            writer: encode::RowWriter::new(m),
            data: pool::take(page_len + page_len / 4),
            spans: Vec::new(),
            packer: chunk::Packer::new(limits.max_body_bytes),
            bodies: Vec::new(),
            truncations: 0,
            unmapped_fields: 0,
        }
    }

    /// Writes the row of event `index`, whose values are in `cap`.
    fn push(&mut self, index: usize, cap: &flatten::Captured<'_>) {
        let (m, limits, table) = (self.m, &self.limits, self.table);
        self.writer.load_times(cap);
        // The separator before the row: a comma for now; it becomes `][` below when the row
        // begins a new body.
        self.data
            .push(if self.spans.is_empty() { b'[' } else { b',' });
        let mut start = self.data.len();
        let mut counts = self
            .writer
            .write(m, cap, table, limits.max_field_bytes, &mut self.data);
        if self.data.len() - start > limits.max_row_bytes {
            counts = shrink(
                m,
                cap,
                table,
                limits,
                &mut self.writer,
                &mut self.data,
                start,
            );
        }
        self.truncations += counts.truncations;
        self.unmapped_fields += counts.unmapped;
        if !self.packer.fits(self.data.len() - start) {
            if !self.spans.is_empty() {
                // Close the body before: `,` → `]`, then the new body's `[` (the row moves one
                // byte; this happens a few times a page).
                self.data[start - 1] = b']';
                self.data.insert(start, b'[');
                start += 1;
            }
            self.bodies.push((self.spans.len(), start - 1));
        }
        self.spans.push(Span {
            event_index: index,
            start,
            end: self.data.len(),
            published: m.published_leaf.and_then(|id| self.writer.time(id)),
        });
    }

    /// The batch: every row a slice of the one buffer they were written into.
    fn finish(mut self) -> RowBatch {
        if !self.spans.is_empty() {
            self.data.push(b']');
        }
        let ends = self.bodies.iter().skip(1).map(|&(_, at)| at);
        let bodies = self
            .bodies
            .iter()
            .zip(ends.chain([self.data.len()]))
            .map(|(&(first_row, at), end)| Body {
                first_row,
                range: at..end,
            })
            .collect();
        let joined = pool::share(self.data);
        let rows = self
            .spans
            .into_iter()
            .map(|s| Row {
                event_index: s.event_index,
                json: joined.slice(s.start..s.end),
                published: s.published,
            })
            .collect();
        RowBatch {
            rows,
            joined,
            bodies,
            packed_for: self.packer.max_uncompressed(),
            truncations: self.truncations,
            unmapped_fields: self.unmapped_fields,
        }
    }
}

/// Where a written row lies in [`RowBuilder::data`].
struct Span {
    event_index: usize,
    start: usize,
    end: usize,
    published: Option<DateTime<Utc>>,
}

/// Rewrites a row that is above the request limit, the bytes of `data` from `start` on, with a
/// smaller per-value cap, chosen so that only its largest values are cut. Returns what the
/// final row counted.
fn shrink(
    m: &Manifest,
    cap: &flatten::Captured<'_>,
    table: TableColumns,
    limits: &RowLimits,
    writer: &mut encode::RowWriter,
    data: &mut Vec<u8>,
    start: usize,
) -> encode::RowCounts {
    let mut field_cap =
        truncate::cap_for_excess(writer.sizes(), data.len() - start - limits.max_row_bytes)
            .min(limits.max_field_bytes);
    loop {
        data.truncate(start);
        let counts = writer.write(m, cap, table, field_cap, data);
        if data.len() - start <= limits.max_row_bytes || field_cap == 0 {
            return counts;
        }
        // Escapes can make a value longer than its cap in bytes: tighten and try again.
        let excess = data.len() - start - limits.max_row_bytes;
        field_cap = truncate::cap_for_excess(writer.sizes(), excess)
            .min(field_cap.saturating_sub(1) * 9 / 10);
    }
}

/// Cuts the row (or original event) `row` to at most `max` bytes, its largest values first,
/// never inside a JSON value (docs/design.md §4): for a single row the service refused as too
/// large although it is under the limit we pack for. Returns the new row and the number of
/// values cut; `None` when it cannot get smaller.
pub fn shrink_row(row: &[u8], max: usize) -> Option<(Vec<u8>, u64)> {
    let text = std::str::from_utf8(row).ok()?;
    let m = manifest();
    let json_text = |name: &str| {
        m.columns().iter().any(|c| {
            c.name == name
                && matches!(
                    c.kind,
                    ColumnKind::Json | ColumnKind::Rest | ColumnKind::Additional
                )
        })
    };
    truncate::shrink_object(text, max, json_text)
}

/// The original events `from_event..` of `page` for the Data Collector sink: byte for byte, but
/// for values over the API's per-field limit, which are cut and counted ([`dc_fit`]).
pub fn build_dc_events(page: &[u8], from_event: usize) -> Result<RowBatch, PageError> {
    #[derive(Deserialize)]
    struct Published<'a> {
        #[serde(borrow)]
        published: Option<&'a RawValue>,
    }
    let events = events(page)?;
    let mut rows = Vec::with_capacity(events.len().saturating_sub(from_event));
    let mut truncations = 0;
    for (index, ev) in events.iter().enumerate().skip(from_event) {
        let bad = |e: serde_json::Error| PageError::BadEvent {
            index,
            message: e.to_string(),
        };
        let p: Published<'_> = serde_json::from_str(ev.get()).map_err(bad)?;
        let (json, cuts) = dc_fit::fit(ev.get()).map_err(bad)?;
        truncations += cuts;
        rows.push(Row {
            event_index: index,
            json: json.into(),
            published: p.published.and_then(|r| encode::parse_time(r.get())),
        });
    }
    Ok(RowBatch {
        rows,
        truncations,
        ..RowBatch::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Absent values are not written, but a row always has its `TimeGenerated`: the shipping
    /// time for an event without `published` (and then no `published_t`).
    #[test]
    fn an_event_without_published_gets_the_shipping_time_and_nothing_absent_is_written() {
        let page = br#"[{"uuid":"a","eventType":"user.session.start"},{"uuid":"b","published":"2024-08-13T16:20:00.000Z"}]"#;
        let batch = build_rows(page, 0, &RowLimits::default()).unwrap();
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = batch
            .rows
            .iter()
            .map(|r| serde_json::from_slice(&r.json).unwrap())
            .collect();
        let time = rows[0]["TimeGenerated"].as_str().unwrap();
        let age = Utc::now() - time.parse::<DateTime<Utc>>().unwrap();
        assert!(age.num_seconds().abs() < 600, "{time}");
        assert!(!rows[0].contains_key("published_t"));
        assert_eq!(rows[0]["eventType_s"], "user.session.start");
        assert_eq!(rows[1]["TimeGenerated"], "2024-08-13T16:20:00.000Z");
        assert_eq!(rows[1]["published_t"], "2024-08-13T16:20:00.000Z");
        for row in &rows {
            assert!(row.values().all(|v| !v.is_null() && v != ""), "{row:?}");
            assert!(!row.contains_key("actor_id_s"), "absent, not written");
        }
    }

    /// The bodies of a built page are laid out in its one row buffer as the rows are written
    /// (no copy at packing), equal to packing copies of the rows, also when a row was
    /// rewritten smaller in place; for another limit they are packed from copies.
    #[test]
    fn built_rows_are_packed_without_a_copy() {
        let long = "x".repeat(5000);
        let page = format!(
            r#"[{{"uuid":"a","displayMessage":"one"}},{{"uuid":"b","displayMessage":"{long}"}},{{"uuid":"c"}},{{"uuid":"d"}},{{"uuid":"e","displayMessage":"five"}}]"#
        );
        for (body_limit, other) in [
            (1000, crate::chunk::MAX_UNCOMPRESSED),
            (crate::chunk::MAX_UNCOMPRESSED, 1000),
        ] {
            let limits = RowLimits {
                max_field_bytes: 64 * 1024,
                max_row_bytes: 2000,
                max_body_bytes: body_limit,
            };
            let batch = build_rows(page.as_bytes(), 0, &limits).unwrap();
            assert_eq!(batch.truncations, 1, "the long row was shrunk");
            assert!(batch.rows.iter().all(|r| r.json.len() <= 2000));
            let laid_out = batch.chunks(body_limit);
            assert_eq!(laid_out, chunk::chunks(&batch.rows, body_limit));
            for c in &laid_out {
                let first = &batch.rows[c.first_event].json;
                assert_eq!(c.body()[1..].as_ptr(), first.as_ptr(), "not a copy");
            }
            // Another limit: the same packing as copies would give.
            let copied = batch.chunks(other);
            assert_eq!(copied, chunk::chunks(&batch.rows, other));
            for c in &copied {
                let first = &batch.rows[c.first_event].json;
                assert_ne!(c.body()[1..].as_ptr(), first.as_ptr(), "a copy");
            }
        }
        let small = RowLimits {
            max_body_bytes: 1000,
            max_row_bytes: 2000,
            ..RowLimits::default()
        };
        let batch = build_rows(page.as_bytes(), 1, &small).unwrap();
        let cs = batch.chunks(1000);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(cs[1].body()[1..].as_ptr(), batch.rows[1].json.as_ptr());
        assert_eq!(cs[0].first_event, 1, "resumed after event 0");
        assert_eq!(cs.last().map(|c| c.end_event), Some(5));
        // Rows made elsewhere, or changed after building, are joined into new buffers.
        let mut changed = batch.clone();
        changed.rows.remove(1);
        assert_eq!(changed.chunks(1000), chunk::chunks(&changed.rows, 1000));
        let copied = RowBatch {
            rows: batch
                .rows
                .iter()
                .map(|r| Row {
                    json: Bytes::copy_from_slice(&r.json),
                    ..r.clone()
                })
                .collect(),
            ..RowBatch::default()
        };
        assert_eq!(copied.chunks(1000), batch.chunks(1000));
    }
}
