//! Instruction counts of the shipper's CPU steps, for before/after comparisons on a noisy
//! machine: run one step `N` times under callgrind and subtract the `none` step (page
//! generation, the same in every run). Counts are reproducible where timings are not; they are
//! not times (vector code does more per instruction), so a choice also needs the criterion
//! bench's timing in the same run (`benches/transform.rs`, group `backend`).
//!
//! ```text
//! cargo bench -p shipper --bench instructions --no-run
//! for op in none rows gzip1 gzip1_zlib_rs gzip1_libdeflate page page_zlib_rs inflate inflate_verified inflate_zlib_rs; do
//!   OP=$op N=5 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/instructions-* 2>&1 | grep Collected
//! done
//! ```

use std::hint::black_box;
use std::io::Read;

use common::gzip::{gzip, Level};
use shipper::chunk::{gunzip_fast, gunzip_fast_into, Integrity, MAX_UNCOMPRESSED};
use shipper::rows::{build_rows, RowLimits};

mod alternatives;
use alternatives::{libdeflate_gzip, zlib_rs_gzip};

fn main() {
    let op = std::env::var("OP").unwrap_or_else(|_| "none".into());
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let page = world::fakes::okta_events::benchmark_page();
    let batch = build_rows(&page, 0, &RowLimits::default()).unwrap_or_default();
    let chunks = batch.chunks(MAX_UNCOMPRESSED);
    let bodies: Vec<Vec<u8>> = chunks.iter().map(|c| c.body().to_vec()).collect();
    let stored = gzip(&page, Level::Fast).unwrap_or_default();
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match op.as_str() {
            "rows" => {
                build_rows(black_box(&page), 0, &RowLimits::default()).map_or(0, |b| b.rows.len())
            }
            "gzip1" => chunks
                .iter()
                .map(|c| gzip(black_box(c.body()), Level::Fast).map_or(0, |z| z.len()))
                .sum(),
            // Rows, packed and compressed, as the shipper does for a page.
            "page" => build_rows(black_box(&page), 0, &RowLimits::default()).map_or(0, |b| {
                b.chunks(MAX_UNCOMPRESSED)
                    .iter()
                    .map(|c| gzip(c.body(), Level::Fast).map_or(0, |z| z.len()))
                    .sum()
            }),
            // The same with the compressor before igzip.
            "page_zlib_rs" => {
                build_rows(black_box(&page), 0, &RowLimits::default()).map_or(0, |b| {
                    b.chunks(MAX_UNCOMPRESSED)
                        .iter()
                        .map(|c| zlib_rs_gzip(c.body(), 1).len())
                        .sum()
                })
            }
            "gzip1_zlib_rs" => bodies
                .iter()
                .map(|b| zlib_rs_gzip(black_box(b), 1).len())
                .sum(),
            "gzip1_libdeflate" => bodies
                .iter()
                .map(|b| libdeflate_gzip(black_box(b), 1).len())
                .sum(),
            "inflate" => gunzip_fast(black_box(&stored), 1 << 30).map_or(0, |v| v.len()),
            // As the shipper inflates a page whose sha256 it has checked: no CRC.
            "inflate_verified" => {
                let mut out = Vec::new();
                gunzip_fast_into(
                    black_box(&stored),
                    1 << 30,
                    &mut out,
                    Integrity::VerifiedBySha256,
                );
                out.len()
            }
            "inflate_zlib_rs" => {
                let mut out = Vec::with_capacity(stored.len() * 6);
                flate2::read::GzDecoder::new(black_box(&stored[..]))
                    .read_to_end(&mut out)
                    .map_or(0, |_| out.len())
            }
            _ => 0,
        };
    }
    println!("{op} x{n}: {sink}");
}
