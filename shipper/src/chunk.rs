//! Packing rows into request bodies.
//!
//! The Logs Ingestion API refuses bodies above 1 MiB; the .NET SDK packs at 1,000,000 bytes of
//! serialised JSON including `[`, `,` and `]`, which is safe under every reading of the limit
//! (docs/contracts.md §3.2, §3.5), so that is what we do, before gzip. A chunk remembers which events
//! it carries: after the service accepts it, progress (`posted_upto`) becomes `end_event`.

use std::cell::RefCell;

use bytes::Bytes;
use common::gzip::Level;
use libdeflater::Decompressor;
use serde_json::value::RawValue;

use crate::rows::Row;

/// Largest uncompressed body of one Logs Ingestion request.
pub const MAX_UNCOMPRESSED: usize = 1_000_000;

/// Largest body of one Data Collector API post (30 MB per post, docs/contracts.md §2.3).
pub const DATA_COLLECTOR_MAX: usize = 30_000_000;

/// Compression of request bodies by default (`SINK_GZIP_LEVEL=1`). Requests are packed by
/// *uncompressed* size, so a better ratio saves only bandwidth, while gzip is a large share of
/// the shipper's CPU: the fastest level wins. `benches/transform.rs` compares the levels and
/// the compressors on 1,000 realistic events; [`common::gzip`] says which one and why.
pub const DEFAULT_GZIP: Level = Level::Fast;

/// A request body: consecutive rows of one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Event index of the first row.
    pub first_event: usize,
    /// One past the last row's event index: the page's `posted_upto` once this chunk is
    /// accepted.
    pub end_event: usize,
    /// The body as sent: `[`, the rows separated by commas, `]` (for the rows of a built page,
    /// a run of the page's one row buffer, shared, not copied: `RowBatch::chunks`).
    body: Bytes,
}

impl Chunk {
    /// The chunk of events `first_event..end_event` whose rows, separated by commas, are `rows`
    /// (copied into a body with its brackets).
    pub fn new(first_event: usize, end_event: usize, rows: &[u8]) -> Self {
        let mut body = Vec::with_capacity(rows.len() + 2);
        body.push(b'[');
        body.extend_from_slice(rows);
        body.push(b']');
        Self::from_body(first_event, end_event, Bytes::from(body))
    }

    /// The chunk whose whole body (brackets included) is `body`, as is.
    pub(crate) fn from_body(first_event: usize, end_event: usize, body: Bytes) -> Self {
        Chunk {
            first_event,
            end_event,
            body,
        }
    }

    /// The body as sent: the rows as one JSON array.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as a shared buffer (no copy), for a request.
    pub fn body_shared(&self) -> Bytes {
        self.body.clone()
    }

    /// Size of the body in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Number of rows in the chunk (rows are one per event, consecutive).
    pub fn len(&self) -> usize {
        self.end_event - self.first_event
    }

    pub fn is_empty(&self) -> bool {
        self.end_event == self.first_event
    }
}

/// Packs `rows` (consecutive events, in order) into bodies of at most `max_uncompressed` bytes,
/// joining each body's rows into a new buffer (the row builder lays a built page's rows out as
/// these same bodies as it writes them: `RowBatch::chunks`).
///
/// A single row larger than the limit goes alone in its chunk (the row builder shrinks rows
/// below the Logs Ingestion limit, so this happens only with a smaller `max_uncompressed`).
pub fn chunks(rows: &[Row], max_uncompressed: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut packer = Packer::new(max_uncompressed);
    let mut first = 0;
    for (i, row) in rows.iter().enumerate() {
        if !packer.fits(row.json.len()) && i > first {
            out.push(join(&rows[first..i]));
            first = i;
        }
    }
    if first < rows.len() {
        out.push(join(&rows[first..]));
    }
    out
}

/// The packing rule, one row at a time: a row joins the current body while the body (`[`, rows
/// separated by `,`, `]`) stays within the limit, else it starts the next one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packer {
    max_uncompressed: usize,
    /// Size of the current body with its brackets; 0 before the first row.
    size: usize,
}

impl Packer {
    pub(crate) fn new(max_uncompressed: usize) -> Self {
        Packer {
            max_uncompressed,
            size: 0,
        }
    }

    /// Takes a row of `len` bytes: `true` if it joins the current body, `false` if it starts a
    /// new one (always for the first row).
    pub(crate) fn fits(&mut self, len: usize) -> bool {
        if self.size > 0 && self.size + 1 + len <= self.max_uncompressed {
            self.size += 1 + len;
            true
        } else {
            self.size = 2 + len;
            false
        }
    }

    pub(crate) fn max_uncompressed(&self) -> usize {
        self.max_uncompressed
    }
}

/// The chunk of `rows` (consecutive, at least one): their JSON as an array, in a new buffer.
fn join(rows: &[Row]) -> Chunk {
    let size = rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(size);
    for row in rows {
        body.push(if body.is_empty() { b'[' } else { b',' });
        body.extend_from_slice(&row.json);
    }
    body.push(b']');
    let first_event = rows.first().map_or(0, |r| r.event_index);
    let end_event = rows.last().map_or(0, |r| r.event_index + 1);
    Chunk::from_body(first_event, end_event, Bytes::from(body))
}

/// Splits a chunk the service refused as too large (413) into two halves by row count.
/// `None` when it holds a single row (or its body is not the JSON array we built).
///
/// A 413 after our own packing is a bug (log it); splitting keeps the page moving meanwhile.
pub fn split(chunk: &Chunk) -> Option<(Chunk, Chunk)> {
    let body = chunk.body();
    let text = std::str::from_utf8(body).ok()?;
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    if items.len() < 2 || items.len() != chunk.len() {
        return None;
    }
    let mid = items.len() / 2;
    let half = |part: &[&RawValue], first_event: usize| {
        let rows: Vec<Row> = part
            .iter()
            .enumerate()
            .map(|(k, r)| Row {
                event_index: first_event + k,
                json: Bytes::copy_from_slice(r.get().as_bytes()),
                published: None,
            })
            .collect();
        join(&rows)
    };
    Some((
        half(&items[..mid], chunk.first_event),
        half(&items[mid..], chunk.first_event + mid),
    ))
}

/// A single-row chunk the service refused as too large (413) although it is under the limit
/// we pack for: the service's limit is lower than assumed, so the row is cut like any
/// over-long value (docs/design.md §4: largest values first, never inside a JSON value,
/// counted) to at most half its size, and posted again; a further 413 halves it again.
/// Returns the new chunk and the number of values cut; `None` when the chunk has more than one
/// row, is not a body we built, or its row cannot get any smaller.
pub fn shrink_single(chunk: &Chunk) -> Option<(Chunk, u64)> {
    if chunk.len() != 1 {
        return None;
    }
    let row = chunk.body().get(1..chunk.body_len().checked_sub(1)?)?;
    let (smaller, cuts) = crate::rows::shrink_row(row, row.len() / 2)?;
    Some((
        Chunk::new(chunk.first_event, chunk.end_event, &smaller),
        cuts,
    ))
}

/// What of a gzip member [`gunzip_fast_into`] checks besides the stream itself and the size
/// in its trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The member's CRC-32 of the inflated bytes: for bytes of unknown origin.
    Crc32,
    /// Not the CRC: the caller has already verified these exact compressed bytes against the
    /// sha256 the collector recorded for them (a page blob against its envelope), which
    /// proves them the collector's own far more strongly than the CRC could. Recomputing the
    /// CRC over the inflated page was ≈ 1.2 % of the shipper's CPU (BENCHMARKS.md, issue 14).
    /// Only the plain header the collector writes (no optional fields) is taken this way.
    VerifiedBySha256,
}

/// Inflates the single-member gzip `gz` in one call when its trailer announces a size of at
/// most `limit` bytes and the stream really inflates to exactly that size; `None` otherwise
/// (malformed, truncated, lying or over the limit), and the caller's careful streaming path
/// decides and explains. A stored page is whole in memory: libdeflate's whole-buffer inflater
/// takes ≈ 20 % fewer instructions than zlib-rs's streaming decoder on the bench's page
/// (`benches/instructions.rs`; BENCHMARKS.md), and the output is allocated once at its size.
pub fn gunzip_fast(gz: &[u8], limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    gunzip_fast_into(gz, limit, &mut out, Integrity::Crc32).then_some(out)
}

/// The fixed gzip header of a member with no optional fields (FLG 0): magic, deflate, flags.
const PLAIN_HEADER: [u8; 4] = [0x1f, 0x8b, 0x08, 0x00];
/// Bytes of that header (with MTIME, XFL and OS) and of the trailer (CRC-32 and ISIZE).
const HEADER_BYTES: usize = 10;
const TRAILER_BYTES: usize = 8;

/// [`gunzip_fast`] into `out`, whose length becomes the inflated size (its earlier bytes are
/// overwritten; only growth is zeroed, so a reused buffer costs no clearing), checking what
/// `integrity` says. `false` as `None` there, with `out`'s contents unspecified.
pub fn gunzip_fast_into(gz: &[u8], limit: u64, out: &mut Vec<u8>, integrity: Integrity) -> bool {
    thread_local! {
        static DECOMPRESSOR: RefCell<Decompressor> = RefCell::new(Decompressor::new());
    }
    // ISIZE: the uncompressed size modulo 2^32, the last four bytes of the member.
    let Some(trailer) = gz
        .len()
        .checked_sub(4)
        .and_then(|at| <[u8; 4]>::try_from(&gz[at..]).ok())
    else {
        return false;
    };
    let size = u32::from_le_bytes(trailer) as usize;
    // Deflate cannot expand data more than 1032 times: a trailer claiming more lies, and is
    // not worth zeroing a buffer for.
    if gz.len() < HEADER_BYTES + TRAILER_BYTES || size as u64 > limit || size / 1032 > gz.len() {
        return false;
    }
    let deflate = match integrity {
        Integrity::Crc32 => None,
        Integrity::VerifiedBySha256 if gz.starts_with(&PLAIN_HEADER) => {
            Some(&gz[HEADER_BYTES..gz.len() - TRAILER_BYTES])
        }
        // A header with optional fields: libdeflate's gzip reader skips them (and checks the CRC).
        Integrity::VerifiedBySha256 => None,
    };
    if out.capacity() == 0 {
        *out = vec![0; size]; // fresh zeroed memory, zeroed by the kernel as touched
    } else {
        out.resize(size, 0);
    }
    let n = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        match deflate {
            Some(stream) => d.deflate_decompress(stream, out),
            None => d.gzip_decompress(gz, out),
        }
    });
    n.ok() == Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn row(i: usize, n: usize) -> Row {
        let pad = "x".repeat(n.saturating_sub(8));
        Row {
            event_index: i,
            json: format!(r#"{{"a":"{pad}"}}"#).into(),
            published: None,
        }
    }

    #[test]
    fn packs_to_the_limit_and_keeps_event_continuity() {
        let rows: Vec<Row> = (5..105).map(|i| row(i, 100)).collect();
        let cs = chunks(&rows, 1000);
        assert!(cs.len() > 1);
        let mut expect = 5;
        for c in &cs {
            assert!(c.body().len() <= 1000, "{}", c.body().len());
            assert_eq!(c.first_event, expect);
            let v: Vec<serde_json::Value> = serde_json::from_slice(c.body()).unwrap();
            assert_eq!(v.len(), c.len());
            expect = c.end_event;
        }
        assert_eq!(expect, 105);
        // 9 rows of 100 bytes + 8 commas + 2 brackets = 910; a 10th would make 1011.
        assert_eq!(cs[0].len(), 9);
    }

    #[test]
    fn split_halves_and_keeps_indices() {
        let rows: Vec<Row> = (0..5).map(|i| row(i + 10, 30)).collect();
        let c = chunks(&rows, 10_000).remove(0);
        let (a, b) = split(&c).unwrap();
        assert_eq!((a.first_event, a.end_event), (10, 12));
        assert_eq!((b.first_event, b.end_event), (12, 15));
        let whole: Vec<serde_json::Value> = serde_json::from_slice(c.body()).unwrap();
        let mut parts: Vec<serde_json::Value> = serde_json::from_slice(a.body()).unwrap();
        parts.extend(serde_json::from_slice::<Vec<serde_json::Value>>(b.body()).unwrap());
        assert_eq!(whole, parts);
        let (single, _) = split(&a).unwrap();
        assert!(split(&single).is_none());
    }

    #[test]
    fn a_single_row_shrinks_to_half_until_nothing_is_left_to_cut() {
        let rows = vec![row(7, 10_000)];
        let mut c = chunks(&rows, MAX_UNCOMPRESSED).remove(0);
        let mut rounds = 0;
        while let Some((smaller, cuts)) = shrink_single(&c) {
            let empty = smaller.body() == br#"[{"a":""}]"#;
            assert!(smaller.body().len() <= c.body().len() / 2 + 2 || empty);
            assert!(smaller.body().len() < c.body().len());
            assert_eq!((smaller.first_event, smaller.end_event), (7, 8));
            assert_eq!(cuts, 1);
            let v: Vec<serde_json::Value> = serde_json::from_slice(smaller.body()).unwrap();
            assert!(v[0]["a"].as_str().unwrap().chars().all(|ch| ch == 'x'));
            c = smaller;
            rounds += 1;
        }
        assert!(rounds >= 8, "{rounds}");
        assert_eq!(c.body(), br#"[{"a":""}]"#);
        let two: Vec<Row> = (0..2).map(|i| row(i, 100)).collect();
        assert!(shrink_single(&chunks(&two, MAX_UNCOMPRESSED)[0]).is_none());
    }

    #[test]
    fn gunzip_fast_takes_only_what_it_can_vouch_for() {
        let body = br#"[{"a":1},{"a":2}]"#.repeat(100);
        let gz = common::gzip::gzip(&body, DEFAULT_GZIP).unwrap_or_default();
        assert_eq!(gunzip_fast(&gz, 1 << 20), Some(body.clone()));
        assert_eq!(
            gunzip_fast(&gz, body.len() as u64 - 1),
            None,
            "over the limit"
        );
        assert_eq!(gunzip_fast(&gz[..gz.len() - 1], 1 << 20), None, "truncated");
        let mut lying = gz.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(gunzip_fast(&lying, 1 << 20), None, "trailer lies");
        assert_eq!(gunzip_fast(b"", 1 << 20), None);
        // Into a reused buffer, longer or shorter than the page: exactly the page.
        for mut reused in [vec![7u8; body.len() * 3], vec![7u8; 5]] {
            assert!(gunzip_fast_into(
                &gz,
                1 << 20,
                &mut reused,
                Integrity::Crc32
            ));
            assert_eq!(reused, body);
        }
    }

    /// The CRC is checked unless the caller vouches for the bytes by their sha256; either way
    /// the stream, the size in the trailer and the limit still are.
    #[test]
    fn the_crc_is_skipped_only_for_bytes_verified_by_sha256() {
        use Integrity::{Crc32, VerifiedBySha256 as Sha256};
        let inflate = |gz: &[u8], limit: u64, integrity| {
            let mut out = vec![7u8; 3];
            gunzip_fast_into(gz, limit, &mut out, integrity).then_some(out)
        };
        let body = br#"[{"a":1},{"a":2}]"#.repeat(100);
        let gz = common::gzip::gzip(&body, DEFAULT_GZIP).unwrap_or_default();
        assert!(gz.starts_with(&PLAIN_HEADER), "no optional header fields");
        let mut bad_crc = gz.clone();
        let at = bad_crc.len() - TRAILER_BYTES;
        bad_crc[at] ^= 1;
        assert_eq!(inflate(&bad_crc, 1 << 20, Crc32), None);
        assert_eq!(inflate(&bad_crc, 1 << 20, Sha256), Some(body.clone()));
        let mut lying = gz.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        let short = &gz[..HEADER_BYTES + TRAILER_BYTES - 1];
        for (input, limit, why) in [
            (&gz[..gz.len() - 1], 1 << 20, "truncated"),
            (&gz[..], body.len() as u64 - 1, "over the limit"),
            (short, 1 << 20, "shorter than a header and a trailer"),
            (&lying[..], 1 << 20, "the trailer's size lies"),
        ] {
            assert_eq!(inflate(input, limit, Sha256), None, "{why}");
        }
        let mut damaged = gz.clone();
        damaged[HEADER_BYTES + 5] ^= 0xff;
        assert_ne!(inflate(&damaged, 1 << 20, Sha256), Some(body.clone()));
        // A header with a file name (FNAME) goes through libdeflate's gzip reader, CRC and all.
        let mut named = gz[..HEADER_BYTES].to_vec();
        named[3] = 0x08;
        named.extend_from_slice(b"page.json\0");
        named.extend_from_slice(&bad_crc[HEADER_BYTES..]);
        assert_eq!(inflate(&named, 1 << 20, Sha256), None);
        named.truncate(named.len() - TRAILER_BYTES);
        named.extend_from_slice(&gz[gz.len() - TRAILER_BYTES..]);
        assert_eq!(inflate(&named, 1 << 20, Sha256), Some(body));
    }

    #[test]
    fn a_chunks_gzip_inflates_to_its_body() {
        let c = chunks(&[row(0, 50), row(1, 60)], 1000).remove(0);
        let gz = common::gzip::gzip(c.body(), DEFAULT_GZIP).unwrap_or_default();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap_or_default();
        assert_eq!(back, c.body());
        assert_eq!(c.body_len(), c.body().len());
    }
}
