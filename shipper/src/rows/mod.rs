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
//! the other, separated by commas, into one buffer that each [`Row`] is a slice of: a request
//! body is a run of that buffer between `[` and `]` ([`RowBatch::chunks`]), never a copy.
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
pub const MAX_NESTING: usize = 128;

/// Log Analytics' limits as they apply to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimits {
    /// Per-value limit of a column, in bytes of the value (docs/contracts.md §3.2: 64 KB per field on
    /// the Logs Ingestion API, longer values truncated by the service). Read as KiB.
    pub max_field_bytes: usize,
    /// Largest row: one row must fit in a request body of 1,000,000 bytes with its `[` `]`.
    pub max_row_bytes: usize,
}

impl Default for RowLimits {
    fn default() -> Self {
        RowLimits {
            max_field_bytes: 64 * 1024,
            max_row_bytes: crate::chunk::MAX_UNCOMPRESSED - 2,
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
    /// The buffer the rows are slices of, rows separated by commas (empty when they are not).
    joined: Bytes,
    /// Values we truncated (field limit, or shrinking a row above the request limit).
    pub truncations: u64,
    /// Fields kept in `additionalFields_s` because no declared column holds them (metric
    /// `unmapped_fields_total`).
    pub unmapped_fields: u64,
}

impl RowBatch {
    /// The request bodies of the rows, at most `max_uncompressed` bytes each
    /// ([`chunk::chunks`]'s packing). Rows that are consecutive slices of the batch's buffer,
    /// as [`build_rows`] makes them, become bodies without a copy: a chunk is a run of that
    /// buffer; any other rows are joined into new buffers.
    pub fn chunks(&self, max_uncompressed: usize) -> Vec<Chunk> {
        match self.row_offsets() {
            Some(offsets) => chunk::pack_runs(&self.rows, max_uncompressed, |first, last| {
                self.joined
                    .slice(offsets[first]..offsets[last] + self.rows[last].json.len())
            }),
            None => chunk::chunks(&self.rows, max_uncompressed),
        }
    }

    /// Each row's offset in `joined` when every row is a slice of it and consecutive rows are
    /// separated by exactly one comma; `None` otherwise.
    fn row_offsets(&self) -> Option<Vec<usize>> {
        let base = self.joined.as_ptr() as usize;
        let mut offsets = Vec::with_capacity(self.rows.len());
        let mut next = 0;
        for (k, row) in self.rows.iter().enumerate() {
            let at = (row.json.as_ptr() as usize).checked_sub(base)?;
            let expected = if k == 0 { at } else { next + 1 };
            let end = at.checked_add(row.json.len())?;
            if at != expected || end > self.joined.len() || (k > 0 && self.joined[next] != b',') {
                return None;
            }
            offsets.push(at);
            next = end;
        }
        Some(offsets)
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
        Err(scan::Refused) => build_rows_streamed(text, from_event, limits, table),
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
    /// The rows written so far, separated by commas.
    data: Vec<u8>,
    spans: Vec<Span>,
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
            truncations: 0,
            unmapped_fields: 0,
        }
    }

    /// Writes the row of event `index`, whose values are in `cap`.
    fn push(&mut self, index: usize, cap: &flatten::Captured<'_>) {
        let (m, limits, table) = (self.m, &self.limits, self.table);
        self.writer.load_times(cap);
        if !self.spans.is_empty() {
            self.data.push(b',');
        }
        let start = self.data.len();
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
        self.spans.push(Span {
            event_index: index,
            start,
            end: self.data.len(),
            published: m.published_leaf.and_then(|id| self.writer.time(id)),
        });
    }

    /// The batch: every row a slice of the one buffer they were written into.
    fn finish(self) -> RowBatch {
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

    /// The bodies of a built page are runs of its one row buffer (no copy), equal to packing
    /// copies of the rows, also when a row was rewritten smaller in place.
    #[test]
    fn built_rows_are_packed_without_a_copy() {
        let long = "x".repeat(5000);
        let page = format!(
            r#"[{{"uuid":"a","displayMessage":"one"}},{{"uuid":"b","displayMessage":"{long}"}},{{"uuid":"c"}},{{"uuid":"d"}}]"#
        );
        let limits = RowLimits {
            max_field_bytes: 64 * 1024,
            max_row_bytes: 2000,
        };
        let batch = build_rows(page.as_bytes(), 0, &limits).unwrap();
        assert_eq!(batch.truncations, 1, "the long row was shrunk");
        assert!(batch.rows.iter().all(|r| r.json.len() <= 2000));
        for max in [crate::chunk::MAX_UNCOMPRESSED, 1000] {
            let shared = batch.chunks(max);
            assert_eq!(shared, chunk::chunks(&batch.rows, max));
            for c in &shared {
                let first = &batch.rows[c.first_event].json;
                assert_eq!(c.body_parts()[1].as_ptr(), first.as_ptr(), "not a copy");
            }
        }
        let sizes: Vec<usize> = batch.rows.iter().map(|r| r.json.len()).collect();
        assert!(batch.chunks(1000).len() > 1, "{sizes:?}");
        // Rows made elsewhere are joined into new buffers.
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
