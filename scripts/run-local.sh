#!/usr/bin/env bash
# Runs the whole pipeline on this machine: Azurite, a simulated Okta org (or your real org when
# OKTA_DOMAIN and a credential are set), a local Log Analytics endpoint, the managed-identity
# and Key Vault fakes, then `collector` and `shipper`, with a live progress line.
# Ctrl-C stops everything and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-build-tools.sh
source scripts/ensure-azurite.sh
cargo build --locked --bins -p collector -p shipper -p okta-sentinel-tests
exec target/debug/okta-sentinel-local "$@"
