#!/usr/bin/env bash
# Makes sure Node.js and the pinned Azurite (tests/azurite/package-lock.json) are installed.
# Sourced by run-local.sh and test.sh from the repository root.

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js and npm (Azurite runs on Node)…"
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
# Azurite 3.37 declares Node.js >= 22 and is verified here on 20; older ones are refused
# with a clear message rather than a crash deep inside a test.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "${node_major}" -lt 20 ]; then
  echo "error: Node.js $(node --version 2>/dev/null || echo '?') is too old for the pinned Azurite; install Node.js 20 or newer (22 recommended)" >&2
  exit 1
fi
pinned=$(node -p 'require("./tests/azurite/package-lock.json").packages["node_modules/azurite"].version')
installed=$(node -p 'try { require("./tests/azurite/node_modules/azurite/package.json").version } catch { "" }')
if [ ! -x tests/azurite/node_modules/.bin/azurite ] || [ "${installed}" != "${pinned}" ]; then
  (cd tests/azurite && npm ci --no-audit --no-fund --loglevel=error)
fi
