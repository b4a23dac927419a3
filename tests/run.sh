#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the build and the tests need (Debian
# packages), then the whole workspace's tests. This is the command the README and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)          # pingora 0.9 builds libz-ng with cmake
command -v cc >/dev/null || need+=(build-essential)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

cargo build --workspace --all-targets
cargo test --workspace
