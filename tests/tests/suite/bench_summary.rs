//! `scripts/bench_summary.py`, which `scripts/bench.sh --runs N` ends with: the figures a goal
//! is judged on (BENCHMARKS.md) are the median and range of each run's own ratio, so the
//! summary must take the ratio per run, not from the medians of the two CPU figures.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench_summary.py");

/// A run's JSON as okta-sentinel-bench writes it (the fields the summary reads), for 100k events.
fn run_json(shipper_cpu: f64, python_cpu: f64, events_per_sec: f64) -> Value {
    json!({
        "shipper": {
            "cpu_secs": shipper_cpu,
            "cpu_secs_per_100k_events": shipper_cpu,
            "events_per_sec": events_per_sec,
            "peak_rss_mib": 38.0,
        },
        "collector": {
            "cpu_secs_per_100k_events": 1.0,
            "events_per_sec": 40000.0,
            "peak_rss_mib": 25.0,
        },
        "python": {"process": {"cpu_secs": python_cpu, "cpu_secs_per_100k_events": python_cpu}},
    })
}

fn summary(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "bench_summary.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn several_runs_report_the_median_and_range_of_each_runs_own_ratio() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Ratios 8.0, 6.0 and 6.5: the median is 6.5 (their mean is 6.83). The medians of the two
    // CPU columns (1.2 and 8.0) would give 6.67 — the mistake this guards against.
    let runs = [
        (1.0, 8.0, 45000.0),
        (1.5, 9.0, 40000.0),
        (1.2, 7.8, 42000.0),
    ];
    let mut files = Vec::new();
    for (i, (s, p, eps)) in runs.iter().enumerate() {
        let name = format!("e2e-{i}.json");
        std::fs::write(
            dir.path().join(&name),
            serde_json::to_vec(&run_json(*s, *p, *eps))?,
        )?;
        // Each run records the load around it, as bench.sh does.
        let text = summary(
            dir.path(),
            &["run", &name, "1.10 0.90 0.50", "1.40 1.00 0.60"],
        )?;
        assert!(
            text.contains(&format!("(same run): {:.2}x", p / s)),
            "{text}"
        );
        files.push(name);
    }
    let mut args = vec!["runs", "runs.json"];
    args.extend(files.iter().map(String::as_str));
    let text = summary(dir.path(), &args)?;
    assert!(
        text.contains("over 3 runs: median 6.50x (range 6.00–8.00x"),
        "{text}"
    );
    assert!(text.contains("1.10 0.90 0.50 → 1.40 1.00 0.60"), "{text}");

    let written: Value = serde_json::from_slice(&std::fs::read(dir.path().join("runs.json"))?)?;
    let figure = |name: &str, pick: &str| written["summary"][name][pick].as_f64().unwrap_or(-1.0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(figure("ratio", "median"), 6.5), "{written}");
    assert!(close(figure("ratio", "min"), 6.0), "{written}");
    assert!(close(figure("ratio", "max"), 8.0), "{written}");
    assert!(
        close(figure("shipper_events_per_sec", "median"), 42000.0),
        "{written}"
    );
    Ok(())
}
