#!/usr/bin/env bash
# Runs every test: unit, fakes, Azurite-backed storage, end-to-end, crash and fault suites,
# and the offline Bicep validation. Installs what it needs (Azurite from the pinned lockfile).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-build-tools.sh
source scripts/ensure-azurite.sh

# The debug build and the test binaries take about 2 GiB; say so up front when the disk is short.
avail_kib=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${avail_kib:-0}" -lt $((3 * 1024 * 1024)) ]; then
  echo "warning: only $((avail_kib / 1024)) MiB free here; the build and tests need about 2 GiB" >&2
fi

# The suites drive the real binaries. `cargo test` builds them together with the test targets
# (integration tests need their package's binaries): one build, with one feature resolution.
# A separate `cargo build --bins` first would resolve features without the dev-dependencies
# and compile about 300 dependency units twice.
# One-shot build: incremental caches would only take disk (CI's free disk is small).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked --no-run

# Every declared dependency must be used (issue 10): cargo-machete reads the manifests and the
# sources. On a machine without it, it is installed (a debug build: it only greps this small
# tree) in the background while the tests below spend their time waiting on each other.
machete_install=""
if ! command -v cargo-machete >/dev/null 2>&1; then
  mkdir -p .local
  cargo install --locked --debug --quiet cargo-machete --version 0.9.2 >.local/cargo-machete-install.log 2>&1 &
  machete_install=$!
fi

# Most end-to-end tests spend their time waiting (leases to expire, breakers to close, a fake
# org to publish), not computing: run more of them at once than there are cores. The suites
# assert outcomes, never durations, so a busier machine makes them slower, not flaky.
# With the worlds sharing one Azurite the suite uses ≈ 40 % of 2 cores at 10 threads and
# ends with its longest test (chaos, ≈ 150 s): 6 threads took 211 s, 10 took 155 s.
# --no-fail-fast: one failing test binary does not hide the results of the others.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-10}"
status=0
cargo test --workspace --locked --no-fail-fast -- "$@" || status=$?

if [ -n "${machete_install}" ] && ! wait "${machete_install}"; then
  echo "error: cannot install cargo-machete (see .local/cargo-machete-install.log)" >&2
  exit 1
fi
cargo machete || status=1
exit "${status}"
