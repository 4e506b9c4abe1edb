#!/usr/bin/env bash
# The benchmarks (docs/design.md §6; figures in BENCHMARKS.md). Not part of the test suite.
#
#   scripts/bench.sh                  # everything: e2e bench + Python client + cargo bench
#   scripts/bench.sh --no-python      # skip the azure-monitor-ingestion comparison
#   scripts/bench.sh --no-criterion   # skip `cargo bench -p shipper --bench transform`
#   scripts/bench.sh --events 100000  # other arguments go to okta-sentinel-bench (see --help)
#
# 1. builds the release binaries (collector, shipper, okta-sentinel-bench);
# 2. runs target/release/okta-sentinel-bench: fake Okta → collector → Azurite → shipper →
#    counting Log Analytics fake, measuring each process from /proc, and (unless --no-python)
#    the official Python client `azure-monitor-ingestion`, installed from PyPI into
#    .local/bench-venv, uploading the same number of events to the same fake;
# 3. runs the transform + chunk + gzip criterion bench.
# Figures are also written to .local/bench/e2e.json. About 5 minutes on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

python=1
criterion=1
args=()
for a in "$@"; do
  case "$a" in
    --no-python) python=0 ;;
    --no-criterion) criterion=0 ;;
    *) args+=("$a") ;;
  esac
done

source scripts/ensure-build-tools.sh
source scripts/ensure-azurite.sh

echo "== building release binaries"
cargo build --release --locked -p collector -p shipper -p okta-sentinel-tests --bins

mkdir -p .local/bench
if [ "$python" = 1 ]; then
  venv=.local/bench-venv
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv (azure-monitor-ingestion, azure-core from PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check azure-monitor-ingestion azure-core
  fi
  args+=(--python "$venv/bin/python" --python-script scripts/bench_python_ingestion.py)
fi

echo "== end-to-end bench"
load_before=$(cat /proc/loadavg)
# RUST_BACKTRACE makes every internal error value of the Azure SDK capture a backtrace in the
# measured binaries; production does not set it, so neither does the bench.
env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
  OKTA_SENTINEL_BIN_DIR="$PWD/target/release" \
  target/release/okta-sentinel-bench --json .local/bench/e2e.json --log-dir .local/bench/logs "${args[@]}"
load_after=$(cat /proc/loadavg)

# One summary line per run (issue 14): the Python client's CPU over the shipper's in this same
# run — both share the machine's noise, so this ratio, not either figure alone, is the result.
echo "== summary"
echo "load average before: $load_before"
echo "load average after:  $load_after"
python3 - .local/bench/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, c, p = d["shipper"], d["collector"], d.get("python")
print(f"collector: {c['cpu_secs_per_100k_events']:.3f} CPU s per 100k events, "
      f"{c['events_per_sec']:.0f} events/s, peak RSS {c['peak_rss_mib']:.1f} MiB")
print(f"shipper:   {s['cpu_secs_per_100k_events']:.3f} CPU s per 100k events, "
      f"{s['events_per_sec']:.0f} events/s, peak RSS {s['peak_rss_mib']:.1f} MiB")
if p:
    pp = p["process"]
    ratio = pp["cpu_secs"] / max(s["cpu_secs"], 1e-9)
    print(f"python:    {pp['cpu_secs_per_100k_events']:.3f} CPU s per 100k events")
    print(f"python CPU / shipper CPU (same run): {ratio:.2f}x (goal >= 8)")
PY

if [ "$criterion" = 1 ]; then
  echo "== cargo bench -p shipper --bench transform"
  cargo bench --locked -p shipper --bench transform
fi
