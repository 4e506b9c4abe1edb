#!/usr/bin/env bash
# Makes sure the tools that build ISA-L's igzip (the `isal-rs` crate builds it from its vendored
# source: autotools, libtool and the nasm assembler) are installed; common/src/gzip.rs says why
# the shipper and the collector compress with it. Sourced by test.sh, run-local.sh and bench.sh
# from the repository root. The Dockerfile installs the same packages in its build stage.

build_tools_missing=()
for tool in nasm autoconf automake libtoolize make; do
  command -v "${tool}" >/dev/null 2>&1 || build_tools_missing+=("${tool}")
done
if [ "${#build_tools_missing[@]}" -gt 0 ]; then
  echo "installing the ISA-L build tools (missing: ${build_tools_missing[*]})…"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: install nasm, autoconf, automake, libtool and make (no apt-get here)" >&2
    exit 1
  fi
  # Root in CI and on the development machines; sudo elsewhere.
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends nasm autoconf automake libtool make >/dev/null
fi
unset build_tools_missing
