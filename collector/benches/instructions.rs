//! Instruction counts of the collector's CPU steps for one 1,000-event Okta page, the
//! counterpart of `shipper/benches/instructions.rs` (issue 14: what the collector parses and
//! compresses per page). Run one step `N` times under callgrind and subtract the `none` step
//! (page generation, the same in every run); counts are reproducible on a noisy machine where
//! timings are not.
//!
//! ```text
//! cargo bench -p collector --bench instructions --no-run
//! for op in none parse prepare compress; do
//!   OP=$op N=3 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/instructions-* 2>&1 | grep Collected
//! done
//! ```

use std::hint::black_box;

use collector::dedupe::RecentUuids;
use collector::handoff::compress;
use collector::okta::prepare_page;
use collector::okta::response::parse_events;
use reqwest::header::HeaderMap;

fn main() {
    let op = std::env::var("OP").unwrap_or_else(|_| "none".into());
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // What Okta answers: the events without `domain`.
    let body =
        serde_json::to_vec(&world::fakes::okta_events::benchmark_events()).unwrap_or_default();
    let headers = HeaderMap::new();
    let parsed = parse_events(&headers, body.clone()).unwrap_or_default();
    let stored = prepare_page(
        parsed.iter(),
        "acme.okta.com",
        &mut RecentUuids::new(10_000),
    )
    .map(|p| p.json)
    .unwrap_or_default();
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match op.as_str() {
            // The response body split into its events, each head read on the way (the copy of
            // the body is the bench's: the client hands over the buffer it read).
            "parse" => parse_events(&headers, black_box(body.clone())).map_or(0, |e| e.len()),
            // Dedupe and splicing `domain` in (the heads are already read).
            "prepare" => {
                let mut dedupe = RecentUuids::new(10_000);
                prepare_page(black_box(&parsed).iter(), "acme.okta.com", &mut dedupe)
                    .map_or(0, |p| p.json.len())
            }
            // gzip level 1 and sha256 of the page to store.
            "compress" => compress(black_box(&stored)).map_or(0, |(gz, _)| gz.len()),
            _ => 0,
        };
    }
    println!("{op} x{n}: {sink}");
}
