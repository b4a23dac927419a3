#!/usr/bin/env bash
# Demo on a fresh machine: builds Switchyard and the mock provider, starts a primary mock
# that always answers 429 (:8000), a fallback mock that answers 200 (:8001), and the gateway
# on conf/demo.yaml (:8080, admin :9901). Sends one request, then keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake >/dev/null
fi
cargo build --release -p switchyard -p switchyard-bench

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/mock-llm --name primary --listen 127.0.0.1:8000 --status 429 & pids+=($!)
target/release/mock-llm --name fallback --listen 127.0.0.1:8001 & pids+=($!)
target/release/switchyard -c conf/demo.yaml & pids+=($!)

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/healthz >/dev/null 2>&1 && break
  sleep 0.1
done

cmd=(curl -s -i http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json'
     -d '{"messages":[{"role":"user","content":"What is 2+2?"}]}')
echo
echo "The primary answers 429; the same request is answered by the fallback:"
echo "  ${cmd[*]}"
echo
"${cmd[@]}"
echo
echo
echo "Gateway on :8080, admin on :9901 (/healthz, /readyz, /metrics). Ctrl-C stops everything."
wait
