#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the build and the tests need (Debian
# packages), then the whole workspace's tests. This is the command the README and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need=()
command -v cmake >/dev/null || need+=(cmake)          # pingora 0.9 builds libz-ng with cmake
command -v cc >/dev/null || need+=(build-essential)
command -v python3 >/dev/null || need+=(python3 python3-venv)   # tests/e2e/sdk.rs
command -v systemd-analyze >/dev/null || need+=(systemd)          # the unit is verified
command -v curl >/dev/null || need+=(curl)                       # HTTP/2 tests (tests/e2e/edge.rs)
command -v redis-server >/dev/null || need+=(redis-server)       # fleet tests (tests/e2e/fleet.rs)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

# The official OpenAI and Anthropic Python SDKs, for tests/e2e/sdk.rs, in a virtualenv.
venv=target/sdk-venv
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"                                     # Debian's python3 has no venv/ensurepip
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
export SWITCHYARD_SDK_PYTHON="$PWD/$venv/bin/python"

# The benchmark harness, for about a second per scenario with no thresholds, so it cannot rot
# (installs nginx and wrk, builds the release binaries).
bench/smoke.sh
bench/edge-ab.sh --smoke

# The code as the project keeps it: formatted, and clippy-clean with warnings as errors.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
log="$(mktemp)"
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: the sum of every test binary's summary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$status"
