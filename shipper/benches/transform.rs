//! The shipper's CPU path per page: build rows, pack chunks, gzip them.
//!
//! A page is 1,000 realistic events (≈ 2.5 KB each, `world::fakes::okta_events`, odd shapes
//! included) plus `domain`, like the collector stores. Throughput is reported in events/s
//! (criterion "elements"); the target is ≥ 60,000 events/s per core for the whole path.
//!
//! gzip is a large share, so the `gzip` group compares levels and the `backend` group compares,
//! in the same run, flate2's streaming zlib-rs (the shipper's gzip) with libdeflate's
//! whole-buffer compressor, and libdeflate's whole-buffer inflater (the shipper's, for the
//! stored page) with zlib-rs's streaming decoder (what it used before):
//!
//! ```text
//! cargo bench -p shipper --bench transform -- --quick
//! ```
//!
//! The header also prints the ingestion bytes per row (the uncompressed JSON of the declared
//! columns, what Log Analytics bills) and which columns they go to.

use std::hint::black_box;
use std::io::Read;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shipper::chunk::{chunks, gunzip_fast, gzip, gzip_parts, Chunk, MAX_UNCOMPRESSED};
use shipper::rows::{build_dc_events, build_rows, RowLimits};

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
        .map(Chunk::body)
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
    for level in [1u32, 3, 6, 9] {
        let z: usize = bodies
            .iter()
            .map(|b| libdeflate_gzip(b, level as i32).len())
            .sum();
        let zr: usize = bodies.iter().map(|b| gzip(b, level).len()).sum();
        println!(
            "gzip level {level}: libdeflate {z} bytes (ratio {:.2}), zlib-rs {zr} bytes (ratio {:.2})",
            row_bytes as f64 / z as f64,
            row_bytes as f64 / zr as f64
        );
    }
    print_row_bytes(&rows);
    let stored = gzip(&page, 1);

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
    for level in [1, 3, 6] {
        g.bench_function(format!("rows+chunks+gzip{level}"), |b| {
            b.iter(|| {
                let batch = build_rows(black_box(&page), 0, &limits).unwrap_or_default();
                batch
                    .chunks(MAX_UNCOMPRESSED)
                    .iter()
                    .map(|c| gzip_parts(&c.body_parts(), level).len())
                    .sum::<usize>()
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("backend");
    g.throughput(Throughput::Bytes(row_bytes as u64));
    g.bench_function("gzip1_zlib_rs_streaming", |b| {
        b.iter(|| {
            bodies
                .iter()
                .map(|body| gzip(black_box(body), 1).len())
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

    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Bytes(row_bytes as u64));
    for level in [1, 3, 6] {
        g.bench_function(format!("level{level}"), |b| {
            b.iter(|| {
                bodies
                    .iter()
                    .map(|body| gzip(black_box(body), level).len())
                    .sum::<usize>()
            });
        });
    }
    g.finish();
}

/// libdeflate's whole-buffer gzip, the alternative to `chunk::gzip` that was measured.
fn libdeflate_gzip(body: &[u8], level: i32) -> Vec<u8> {
    let lvl = libdeflater::CompressionLvl::new(level).unwrap_or_default();
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0; c.gzip_compress_bound(body.len())];
    let n = c.gzip_compress(body, &mut out).unwrap_or(0);
    out.truncate(n);
    out
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
