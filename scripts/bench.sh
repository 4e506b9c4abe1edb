#!/usr/bin/env bash
# The benchmarks (docs/design.md §6; figures in BENCHMARKS.md). Not part of the test suite.
#
#   scripts/bench.sh                  # everything: e2e bench + Python client + cargo bench
#   scripts/bench.sh --no-python      # skip the azure-monitor-ingestion comparison
#   scripts/bench.sh --no-criterion   # skip `cargo bench -p shipper --bench transform`
#   scripts/bench.sh --runs 3         # the e2e bench three times, back to back, then the median
#                                     # and range of each figure (a goal is judged on these)
#   scripts/bench.sh --events 100000  # other arguments go to okta-sentinel-bench (see --help)
#
# 1. builds the release binaries (collector, shipper, okta-sentinel-bench);
# 2. runs target/release/okta-sentinel-bench: fake Okta → collector → Azurite → shipper →
#    counting Log Analytics fake, measuring each process from /proc, and (unless --no-python)
#    the official Python client `azure-monitor-ingestion`, installed from PyPI into
#    .local/bench-venv, uploading the same number of events to the same fake;
# 3. runs the transform + chunk + gzip criterion bench.
# Figures are also written to .local/bench/e2e.json (run i of --runs: e2e-i.json, and
# runs.json). About 5 minutes a run on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

python=1
criterion=1
runs=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-python) python=0 ;;
    --no-criterion) criterion=0 ;;
    --runs)
      runs="${2:-}"
      shift
      ;;
    *) args+=("$1") ;;
  esac
  shift
done
case "$runs" in
  '' | *[!0-9]* | 0)
    echo "error: --runs takes a whole number of runs, at least 1" >&2
    exit 2
    ;;
esac

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

# One run: the bench, then its summary line (issue 14): the Python client's CPU over the
# shipper's in this same run — both share the machine's noise, so this ratio, not either figure
# alone, is the result.
one_run() {
  local json="$1"
  local load_before load_after
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  # RUST_BACKTRACE makes every internal error value of the Azure SDK capture a backtrace in the
  # measured binaries; production does not set it, so neither does the bench.
  env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
    OKTA_SENTINEL_BIN_DIR="$PWD/target/release" \
    target/release/okta-sentinel-bench --json "$json" --log-dir .local/bench/logs "${args[@]}"
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "== summary"
  python3 scripts/bench_summary.py run "$json" "$load_before" "$load_after"
}

if [ "$runs" = 1 ]; then
  echo "== end-to-end bench"
  one_run .local/bench/e2e.json
else
  jsons=()
  for i in $(seq 1 "$runs"); do
    echo "== end-to-end bench, run $i of $runs"
    one_run ".local/bench/e2e-$i.json"
    jsons+=(".local/bench/e2e-$i.json")
  done
  echo "== $runs runs"
  python3 scripts/bench_summary.py runs .local/bench/runs.json "${jsons[@]}"
fi

if [ "$criterion" = 1 ]; then
  echo "== cargo bench -p shipper --bench transform"
  cargo bench --locked -p shipper --bench transform
fi
