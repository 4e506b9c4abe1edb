//! The shipper's CPU path per page: build rows, pack chunks, gzip them.
//!
//! A page is 1,000 realistic events (≈ 2.5 KB each, `world::fakes::okta_events`, odd shapes
//! included) plus `domain`, like the collector stores. Throughput is reported in events/s
//! (criterion "elements"); the target is ≥ 60,000 events/s per core for the whole path.
//!
//! gzip is a large share, so the `page` group times the whole path with igzip (the shipper's,
//! `common::gzip`) at its two levels and with zlib-rs level 1 (what it used before), and the
//! `backend` group compares, in the same run, igzip, flate2's streaming zlib-rs and libdeflate's
//! whole-buffer compressor on the request bodies, and libdeflate's whole-buffer inflater (the
//! shipper's, for the stored page) with zlib-rs's streaming decoder:
//!
//! ```text
//! cargo bench -p shipper --bench transform -- --quick
//! ```
//!
//! The header also prints the ingestion bytes per row (the uncompressed JSON of the declared
//! columns, what Log Analytics bills) and which columns they go to.

use std::hint::black_box;
use std::io::Read;

use common::gzip::{gzip, Level};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shipper::chunk::{chunks, gunzip_fast, MAX_UNCOMPRESSED};
use shipper::rows::{build_dc_events, build_rows, RowLimits};

mod alternatives;
use alternatives::{libdeflate_gzip, zlib_rs_gzip};

/// Events in `world::fakes::okta_events::benchmark_page`.
const EVENTS: usize = 1_000;

fn page() -> Vec<u8> {
    world::fakes::okta_events::benchmark_page()
}

fn bench(c: &mut Criterion) {
    let page = page();
    let limits = RowLimits::default();
    let batch = build_rows(&page, 0, &limits).unwrap_or_default();
    let rows = batch.rows.clone();
    let bodies: Vec<Vec<u8>> = batch
        .chunks(MAX_UNCOMPRESSED)
        .iter()
        .map(|c| c.body().to_vec())
        .collect();
    let row_bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "page: {} events, {} bytes ({} B/event); rows: {} bytes in {} chunks",
        EVENTS,
        page.len(),
        page.len() / EVENTS,
        row_bytes,
        bodies.len()
    );
    let size = |f: &dyn Fn(&[u8]) -> Vec<u8>| bodies.iter().map(|b| f(b).len()).sum::<usize>();
    let ratio = |n: usize| row_bytes as f64 / n.max(1) as f64;
    for (name, n) in [
        (
            "igzip level 1 (the shipper's)",
            size(&|b| igzip(b, Level::Fast)),
        ),
        ("igzip level 3", size(&|b| igzip(b, Level::Best))),
        ("zlib-rs level 1", size(&|b| zlib_rs_gzip(b, 1))),
        ("zlib-rs level 6", size(&|b| zlib_rs_gzip(b, 6))),
        ("libdeflate level 1", size(&|b| libdeflate_gzip(b, 1))),
    ] {
        println!("{name}: {n} bytes (ratio {:.2})", ratio(n));
    }
    print_row_bytes(&rows);
    let stored = igzip(&page, Level::Fast);

    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("build_rows", |b| {
        b.iter(|| build_rows(black_box(&page), 0, &limits));
    });
    g.bench_function("build_dc_events", |b| {
        b.iter(|| build_dc_events(black_box(&page), 0));
    });
    g.bench_function("chunks", |b| {
        b.iter(|| black_box(&batch).chunks(MAX_UNCOMPRESSED));
    });
    g.bench_function("chunks_copied", |b| {
        b.iter(|| chunks(black_box(&rows), MAX_UNCOMPRESSED));
    });
    for (name, level) in [("gzip1", Level::Fast), ("gzip3", Level::Best)] {
        g.bench_function(format!("rows+chunks+{name}"), |b| {
            b.iter(|| {
                let batch = build_rows(black_box(&page), 0, &limits).unwrap_or_default();
                batch
                    .chunks(MAX_UNCOMPRESSED)
                    .iter()
                    .map(|c| gzip(c.body(), level).map_or(0, |z| z.len()))
                    .sum::<usize>()
            });
        });
    }
    // The same path with the compressor it had before igzip: the peer of `rows+chunks+gzip1`.
    g.bench_function("rows+chunks+gzip1_zlib_rs", |b| {
        b.iter(|| {
            let batch = build_rows(black_box(&page), 0, &limits).unwrap_or_default();
            batch
                .chunks(MAX_UNCOMPRESSED)
                .iter()
                .map(|c| zlib_rs_gzip(c.body(), 1).len())
                .sum::<usize>()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("backend");
    g.throughput(Throughput::Bytes(row_bytes as u64));
    g.bench_function("gzip1_igzip", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|body| igzip(black_box(body), Level::Fast).len())
                .sum::<usize>()
        });
    });
    g.bench_function("gzip1_zlib_rs_streaming", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|body| zlib_rs_gzip(black_box(body), 1).len())
                .sum::<usize>()
        });
    });
    g.bench_function("gzip1_libdeflate", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|body| libdeflate_gzip(black_box(body), 1).len())
                .sum::<usize>()
        });
    });
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("inflate_page_libdeflate", |b| {
        b.iter(|| gunzip_fast(black_box(&stored), 1 << 30).map_or(0, |v| v.len()));
    });
    g.bench_function("inflate_page_zlib_rs_streaming", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(stored.len() * 6);
            flate2::read::GzDecoder::new(black_box(&stored[..]))
                .read_to_end(&mut out)
                .map_or(0, |_| out.len())
        });
    });
    g.finish();
}

/// [`gzip`] for the bench: an error (not expected) counts as nothing.
fn igzip(body: &[u8], level: Level) -> Vec<u8> {
    gzip(body, level).unwrap_or_default()
}

/// Bytes per row and the columns that take the most of them.
fn print_row_bytes(rows: &[shipper::rows::Row]) {
    let total: usize = rows.iter().map(|r| r.json.len()).sum();
    println!(
        "ingestion bytes per row (uncompressed JSON of the declared columns): {}",
        total / rows.len().max(1)
    );
    let mut per = std::collections::BTreeMap::<String, usize>::new();
    for r in rows {
        let m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&r.json).unwrap_or_default();
        for (k, v) in &m {
            *per.entry(k.clone()).or_default() += k.len() + 4 + v.to_string().len();
        }
    }
    let mut per: Vec<(String, usize)> = per.into_iter().collect();
    per.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    let top: Vec<String> = per
        .iter()
        .take(8)
        .map(|(k, b)| format!("{k} {}", b / rows.len().max(1)))
        .collect();
    println!("largest columns, B/row: {}", top.join(", "));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
