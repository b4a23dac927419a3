#!/usr/bin/env bash
# Prepares a machine for bench/run.sh: installs what the benchmark needs from Debian's
# archive (nginx, wrk, redis-server, cmake for the build, curl, taskset) and builds the release binaries.
# bench/run.sh calls this first (skip with --no-build); CI can call it as its own step.
#
#   bench/setup.sh            install missing tools, then build
#   bench/setup.sh --no-build install missing tools only
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)   # with its TLS module (scenario 7)
command -v openssl >/dev/null || need+=(openssl)      # the test certificate of scenario 7
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)   # scenario 12 (a fleet)
if [ "$build" = 1 ]; then
  command -v cmake >/dev/null || need+=(cmake)
  command -v cc >/dev/null || need+=(build-essential)
fi

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  command -v apt-get >/dev/null || { echo "setup.sh: no apt-get; install these yourself: ${need[*]}" >&2; exit 1; }
  echo "setup.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # nginx-light is a transitional package for nginx on Debian 12; fall back to nginx.
  if ! $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sed 's/^nginx-light$/nginx/')
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [ "$build" = 1 ]; then
  command -v cargo >/dev/null || { echo "setup.sh: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
  cargo build --release -p switchyard -p switchyard-bench -p switchyard-load
  # The client side alone, for bench/edge-ab.sh.
  cargo build --release -p switchyard --example edge_ab
fi
