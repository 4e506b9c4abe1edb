//! Named crash points, so crash safety is proven rather than sampled (docs/design.md §2 "Both").
//!
//! Code calls [`hit`] at every step boundary where a crash must be harmless (after the page
//! blob is written but before the checkpoint, after the checkpoint but before the enqueue, …).
//! In production the call is inert: one atomic load of an already-parsed, empty list.
//!
//! A test arms points through the environment of the process it starts:
//!
//! ```text
//! OKTA_SENTINEL_FAILPOINTS=collector.after_page_write          # fire on the first hit
//! OKTA_SENTINEL_FAILPOINTS=shipper.after_chunk_post@3,other    # fire on the 3rd hit; two points
//! ```
//!
//! When a point fires the process writes one line, `failpoint {name} fired`, to stderr and
//! exits at once with [`EXIT_CODE`] through `std::process::exit`: no destructors run, no
//! future is polled again, so leases are not released, buffers are not flushed to storage and
//! in-flight work is abandoned — the same state a `SIGKILL` or an OOM kill leaves behind, but
//! with an exit code the test can tell apart from a real crash.
//!
//! The names are not listed here: each caller names its points in its own module docs (as
//! `&'static str` constants), so the list of points lives next to the steps it marks.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "OKTA_SENTINEL_FAILPOINTS";

/// Exit code of a process stopped by a failpoint.
pub const EXIT_CODE: i32 = 86;

/// Exit code when [`ENV`] cannot be parsed: a test that meant to crash somewhere must not
/// silently run to completion instead.
pub const BAD_SPEC_EXIT_CODE: i32 = 2;

/// One armed point.
#[derive(Debug)]
pub struct Armed {
    pub name: String,
    /// Fire on this hit (1-based).
    pub nth: u64,
    hits: AtomicU64,
}

/// A malformed [`ENV`] value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {ENV} entry {entry:?}: expected `name` or `name@N` with N ≥ 1")]
pub struct FailpointSpecError {
    pub entry: String,
}

static ARMED: OnceLock<Result<Vec<Armed>, FailpointSpecError>> = OnceLock::new();

fn armed_list() -> &'static Result<Vec<Armed>, FailpointSpecError> {
    ARMED.get_or_init(|| match std::env::var(ENV) {
        Ok(spec) => parse(&spec),
        Err(_) => Ok(Vec::new()),
    })
}

/// Parses a comma-separated list of `name` / `name@N`. Blank entries are ignored.
pub fn parse(spec: &str) -> Result<Vec<Armed>, FailpointSpecError> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || FailpointSpecError {
            entry: entry.to_string(),
        };
        let (name, nth) = match entry.split_once('@') {
            Some((name, n)) => (name.trim(), n.trim().parse::<u64>().map_err(|_| bad())?),
            None => (entry, 1),
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
        if !name_ok || nth == 0 {
            return Err(bad());
        }
        out.push(Armed {
            name: name.to_string(),
            nth,
            hits: AtomicU64::new(0),
        });
    }
    Ok(out)
}

/// True when [`ENV`] names at least one point (or is malformed). Lets callers log loudly that
/// this process is a crash-test subject.
pub fn armed() -> bool {
    !matches!(armed_list(), Ok(list) if list.is_empty())
}

/// Checks [`ENV`] up front so a typo fails at start-up, not at the first [`hit`].
pub fn validate_env() -> Result<(), &'static FailpointSpecError> {
    armed_list().as_ref().map(|_| ())
}

/// Marks a step boundary. Inert unless `name` is armed; when its N-th hit arrives the process
/// exits immediately with [`EXIT_CODE`] (see the module docs).
pub fn hit(name: &'static str) {
    match armed_list() {
        Ok(list) if list.is_empty() => {}
        Ok(list) => {
            for point in list.iter().filter(|p| p.name == name) {
                let n = point.hits.fetch_add(1, Ordering::SeqCst) + 1;
                if n == point.nth {
                    fire(name);
                }
            }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "{e}");
            std::process::exit(BAD_SPEC_EXIT_CODE);
        }
    }
}

fn fire(name: &str) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "failpoint {name} fired");
    let _ = err.flush();
    std::process::exit(EXIT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_counts() {
        let list = parse(" a.b , c_d@3,,e-f@1 ").unwrap();
        let got: Vec<_> = list.iter().map(|a| (a.name.as_str(), a.nth)).collect();
        assert_eq!(got, vec![("a.b", 1), ("c_d", 3), ("e-f", 1)]);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in ["a@0", "a@x", "@2", "a b", "a=sleep(5)"] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
