//! The shipper's CPU path per page: build rows, pack chunks, gzip them.
//!
//! A page is 1,000 realistic events (≈ 2.5 KB each, `world::fakes::okta_events`, odd shapes
//! included) plus `domain`, like the collector stores. Throughput is reported in events/s
//! (criterion "elements"); the target is ≥ 60,000 events/s per core for the whole path.
//!
//! gzip dominates, so the `gzip` group compares levels; compare backends by running the bench
//! twice, without and with flate2's `zlib-rs` feature (the build prints which one it is):
//!
//! ```text
//! cargo bench -p shipper --bench transform -- --quick
//! cargo bench -p shipper --bench transform --features flate2/zlib-rs -- --quick
//! ```

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shipper::chunk::{chunks, gzip, MAX_UNCOMPRESSED};
use shipper::rows::{build_dc_events, build_rows, RowLimits};

const EVENTS: usize = 1_000;

fn page() -> Vec<u8> {
    let t0: DateTime<Utc> = DateTime::parse_from_rfc3339("2024-08-13T15:58:20.353Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let mut events =
        world::fakes::okta_events::generate(42, EVENTS, t0, chrono::Duration::milliseconds(60));
    for e in &mut events {
        e["domain"] = serde_json::Value::String("acme.okta.com".into());
    }
    serde_json::to_vec(&events).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let page = page();
    let limits = RowLimits::default();
    let rows = build_rows(&page, 0, &limits)
        .map(|b| b.rows)
        .unwrap_or_default();
    let bodies: Vec<Vec<u8>> = chunks(&rows, MAX_UNCOMPRESSED)
        .into_iter()
        .map(|c| c.body)
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
    for level in [1, 3, 6, 9] {
        let z: usize = bodies.iter().map(|b| gzip(b, level).len()).sum();
        println!(
            "gzip level {level}: {z} bytes, ratio {:.2}",
            row_bytes as f64 / z as f64
        );
    }

    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("build_rows", |b| {
        b.iter(|| build_rows(black_box(&page), 0, &limits))
    });
    g.bench_function("build_dc_events", |b| {
        b.iter(|| build_dc_events(black_box(&page), 0))
    });
    g.bench_function("chunks", |b| {
        b.iter(|| chunks(black_box(&rows), MAX_UNCOMPRESSED))
    });
    for level in [1, 3, 6] {
        g.bench_function(format!("rows+chunks+gzip{level}"), |b| {
            b.iter(|| {
                let rows = build_rows(black_box(&page), 0, &limits)
                    .map(|b| b.rows)
                    .unwrap_or_default();
                chunks(&rows, MAX_UNCOMPRESSED)
                    .iter()
                    .map(|c| gzip(&c.body, level).len())
                    .sum::<usize>()
            })
        });
    }
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
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
