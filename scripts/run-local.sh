#!/usr/bin/env bash
# Runs the whole pipeline on this machine: Azurite, a simulated Okta org (or your real org when
# OKTA_DOMAIN and a credential are set), a local Log Analytics endpoint, the managed-identity
# and Key Vault fakes, then `collector` and `shipper`, with a live progress line.
# Ctrl-C stops everything and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js and npm (Azurite runs on Node)…"
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if [ ! -x tests/azurite/node_modules/.bin/azurite ]; then
  (cd tests/azurite && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build --locked --bins -p collector -p shipper -p okta-sentinel-tests
exec target/debug/okta-sentinel-local "$@"
