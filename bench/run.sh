#!/usr/bin/env bash
# Switchyard versus nginx as a failover proxy, on one machine, in one command.
#
#   bench/run.sh [options]
#
#   -d, --duration SECS   measured time per scenario and proxy (default 10)
#       --scenarios LIST  comma-separated subset of 1-12 (default all)
#       --repeat N        measure every scenario N times, alternating which proxy goes
#                         first; the tables show medians (default 1)
#       --smoke           1 s per scenario, no pass/fail judgement (CI: the harness works)
#       --write-results   also write the tables to bench/RESULTS.md
#       --no-build        skip bench/setup.sh (tools and release binaries must exist)
#       --quiet-wait SECS before each measurement, wait up to SECS (default 120; 0 = no
#                         wait; --smoke: 0) until other processes use < 10% of the CPUs
#       --before PATH     also measure another switchyard binary (e.g. the previous release)
#                         in scenarios 1-4 and 6, as "before", in the same rounds
#       --perf LIST       record `perf` on Switchyard during these scenarios' measured runs
#                         (1-4; needs linux-perf; slows the run it profiles)
#   -h, --help
#
# Scenarios (details in bench/README.md): 1 healthy primary; 2 primary answers 429 and is
# ejected; 3 every request meets the failing primary first; 4 1 MiB bodies with failover;
# 5 time to first byte of a 100-event SSE stream, gateway versus direct; 6 RSS with 1,000
# open keep-alive connections; 7 the healthy primary over TLS (keep-alive, HTTP/1.1);
# 8 10,000 concurrent slow SSE streams (an event a second), RSS and CPU; against Switchyard's
# own scenario 1: 9 with 1,000 configured clients and keys, 10 with quota headroom and
# hedging configured but never triggering, 11 a primary 3 s to its first byte, hedged after
# 200 ms, 12 a fleet configured (a local redis-server on the load CPU).
#
# The proxy under test (one worker) runs on CPU 0; wrk, bench-load and the mock upstream
# (nginx returning fixed OpenAI answers) on CPU 1. Everything listens on 127.0.0.1 on free
# ports; every process started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
COMMAND="bench/run.sh"
for arg in "$@"; do
  if [[ "$arg" =~ ^[A-Za-z0-9_./,=:+-]+$ ]]; then COMMAND+=" $arg"; else COMMAND+=" $(printf '%q' "$arg")"; fi
done

duration=10
scenarios="1,2,3,4,5,6,7,8,9,10,11,12"
repeat=1
smoke=0
write_results=0
build=1
wrk_conns=32
hold_conns=1000
slow_streams=10000
slow_events=20
warmup=1
perf_scenarios=""
quiet_wait=""
quiet_busy=10
BEFORE=""

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --duration=*) duration="${1#*=}"; shift ;;
    --scenarios) scenarios="${2:?--scenarios needs a value}"; shift 2 ;;
    --scenarios=*) scenarios="${1#*=}"; shift ;;
    --repeat) repeat="${2:?--repeat needs a value}"; shift 2 ;;
    --repeat=*) repeat="${1#*=}"; shift ;;
    --smoke) smoke=1; shift ;;
    --write-results) write_results=1; shift ;;
    --no-build) build=0; shift ;;
    --quiet-wait) quiet_wait="${2:?--quiet-wait needs a value}"; shift 2 ;;
    --quiet-wait=*) quiet_wait="${1#*=}"; shift ;;
    --before) BEFORE="$(readlink -f "${2:?--before needs a value}")"; shift 2 ;;
    --perf) perf_scenarios="${2:?--perf needs a value}"; shift 2 ;;
    --perf=*) perf_scenarios="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
duration="${duration%s}"
if [ "$smoke" = 1 ]; then duration=1; slow_streams=200; slow_events=3; fi
[ -n "$quiet_wait" ] || { if [ "$smoke" = 1 ]; then quiet_wait=0; else quiet_wait=120; fi; }
[[ "$quiet_wait" =~ ^[0-9]+$ ]] || { echo "run.sh: --quiet-wait must be whole seconds" >&2; exit 2; }
[[ "$duration" =~ ^[0-9]+$ && "$duration" -ge 1 ]] || { echo "run.sh: --duration must be whole seconds >= 1" >&2; exit 2; }
[[ "$repeat" =~ ^[0-9]+$ && "$repeat" -ge 1 ]] || { echo "run.sh: --repeat must be >= 1" >&2; exit 2; }
IFS=',' read -r -a selected <<<"$scenarios"
for s in "${selected[@]}"; do
  [[ "$s" =~ ^([1-9]|1[0-2])$ ]] || { echo "run.sh: unknown scenario '$s' (1-12)" >&2; exit 2; }
done
want() { [[ ",$scenarios," == *",$1,"* ]]; }
profile() { [[ ",$perf_scenarios," == *",$1,"* ]]; }

WORK="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
chmod 755 "$WORK"
mkdir -m 777 "$WORK/mock-body" "$WORK/peer-body" "$WORK/peer-proxy"
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---------------------------------------------------------------- tools and binaries
if [ "$build" = 1 ]; then
  log "setup: tools and release build (bench/setup.sh)"
  bench/setup.sh
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
if [ -n "$perf_scenarios" ] && ! command -v perf >/dev/null; then
  die "--perf needs perf (apt-get install linux-perf)"
fi
for tool in "$NGINX" wrk taskset curl; do
  command -v "$tool" >/dev/null || die "$tool not found (run bench/setup.sh)"
done
GATEWAY="${GATEWAY:-$ROOT/target/release/switchyard}"
LOAD="$ROOT/target/release/bench-load"
MOCK="$ROOT/target/release/mock-llm"
for bin in "$GATEWAY" "$LOAD" "$MOCK"; do
  [ -x "$bin" ] || die "$bin missing (run bench/setup.sh or drop --no-build)"
done

# ---------------------------------------------------------------- CPU pinning, limits
ncpu="$(nproc)"
if [ "$ncpu" -ge 2 ]; then
  PROXY_CPU="${PROXY_CPU:-0}"
  LOAD_CPU="${LOAD_CPU:-1}"
else
  log "only one CPU: proxy and load share it, numbers are not comparable to 2-CPU runs"
  PROXY_CPU=0
  LOAD_CPU=0
fi
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard" 2>/dev/null || true
# Scenario 8: a proxy holds two descriptors per stream (client and upstream).
if [ $((2 * slow_streams + 200)) -gt "$(ulimit -n)" ]; then
  slow_streams=$((($(ulimit -n) - 200) / 2))
  log "open-file limit $(ulimit -n): scenario 8 runs $slow_streams streams"
fi
[ "$(ulimit -n)" -ge $((2 * hold_conns + 200)) ] ||
  die "open-file limit $(ulimit -n) is too low for $hold_conns connections (raise ulimit -n)"

for port_var in PORT_OK_A PORT_OK_B PORT_429 PORT_503 PORT_SSE PORT_GATEWAY PORT_ADMIN PORT_PEER \
  PORT_GATEWAY_TLS PORT_PEER_TLS PORT_SLOW PORT_LATE PORT_REDIS; do
  pick_port "$port_var"
done

# ---------------------------------------------------------------- request bodies
BODY_CHAT="$WORK/body-600.json"
BODY_STREAM="$WORK/body-600-stream.json"
BODY_1M="$WORK/body-1mib.json"
"$LOAD" body --bytes 600 >"$BODY_CHAT"
"$LOAD" body --bytes 600 --stream >"$BODY_STREAM"
"$LOAD" body --bytes 1048576 >"$BODY_1M"

# ---------------------------------------------------------------- TLS (scenario 7)
# One self-signed certificate for both proxies' TLS listeners (wrk does not verify).
make_test_cert

# ---------------------------------------------------------------- mock upstream
render bench/nginx/mock.conf.in "$WORK/mock.conf"
"$NGINX" -t -q -p "$WORK" -c "$WORK/mock.conf" 2>"$WORK/mock-test.log" ||
  die "mock nginx config rejected: $(cat "$WORK/mock-test.log")"
taskset -c "$LOAD_CPU" "$NGINX" -p "$WORK" -c "$WORK/mock.conf" -g 'daemon off;' 2>>"$WORK/mock-error.log" &
PIDS+=($!)
for p in "$PORT_OK_A" "$PORT_OK_B" "$PORT_429" "$PORT_503" "$PORT_SSE"; do wait_port "$p" "mock nginx"; done
for w in $(children_of "${PIDS[0]}"); do WORKERS+=("$w"); done

expect_status() { # url want body_file -> dies unless the status is `want`
  local got
  got="$(curl -sk -D "$WORK/curl.head" -o "$WORK/curl.out" -w '%{http_code}' \
    -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' --data-binary "@$3" "$1")" || true
  [ "$got" = "$2" ] || die "$1 answered $got, expected $2: $(head -c 300 "$WORK/curl.out")"
}
expect_status "http://127.0.0.1:$PORT_OK_A/v1/chat/completions" 200 "$BODY_CHAT"
expect_status "http://127.0.0.1:$PORT_429/v1/chat/completions" 429 "$BODY_CHAT"
expect_status "http://127.0.0.1:$PORT_503/v1/chat/completions" 503 "$BODY_CHAT"
expect_status "http://127.0.0.1:$PORT_SSE/v1/chat/completions" 200 "$BODY_STREAM"
log "mock upstream on CPU $LOAD_CPU: 200 :$PORT_OK_A/:$PORT_OK_B, 429 :$PORT_429, 503 :$PORT_503, SSE :$PORT_SSE"

# ---------------------------------------------------------------- scenario setup
HEALTH_EJECT='{eviction: {duration: 1s, consecutiveFailures: 1}}'
RETRY_EJECT='{attempts: 2}'
HEALTH_NEVER='{unhealthyCondition: "false"}'
RETRY_ALWAYS='{attempts: 2, onStatus: [429, 503]}'

# Scenario 9: 1,000 clients; wrk's `Authorization: Bearer sk-bench` is the last one's key.
CLIENTS_1000="clients: [$(for i in $(seq 1 999); do
  printf '{name: c%d, key: {sha256: %s}}, ' "$i" "$(printf 'sk-client-%d' "$i" | sha256sum | cut -d' ' -f1)"
done){name: bench, key: {sha256: $(printf 'sk-bench' | sha256sum | cut -d' ' -f1)}}]"

configure() { # scenario: sets the upstreams and policies of both proxies
  BUFFERING=on
  CLIENTS=
  FLEET=
  case "$1" in
    1|6) PORT_PRIMARY=$PORT_OK_A; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT
         PRIMARY="127.0.0.1:$PORT_OK_A max_fails=1 fail_timeout=60s" ;;
    2)   PORT_PRIMARY=$PORT_429; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT
         PRIMARY="127.0.0.1:$PORT_429 max_fails=1 fail_timeout=60s" ;;
    3|4) PORT_PRIMARY=$PORT_429; HEALTH=$HEALTH_NEVER; RETRY=$RETRY_ALWAYS
         PRIMARY="127.0.0.1:$PORT_429 max_fails=0" ;;
    5)   PORT_PRIMARY=$PORT_SSE; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT; BUFFERING=off
         PRIMARY="127.0.0.1:$PORT_SSE max_fails=1 fail_timeout=60s" ;;
    7)   PORT_PRIMARY=$PORT_OK_A; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT
         PRIMARY="127.0.0.1:$PORT_OK_A max_fails=1 fail_timeout=60s" ;;
    8)   PORT_PRIMARY=$PORT_SLOW; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT; BUFFERING=off
         PRIMARY="127.0.0.1:$PORT_SLOW max_fails=1 fail_timeout=60s" ;;
    9)   PORT_PRIMARY=$PORT_OK_A; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT; CLIENTS="$CLIENTS_1000"
         PRIMARY="127.0.0.1:$PORT_OK_A" ;;
    10)  PORT_PRIMARY=$PORT_OK_A; RETRY='{attempts: 2, hedge: {after: 2s, maxExtra: 1}}'
         HEALTH='{eviction: {duration: 1s, consecutiveFailures: 1}, headroom: {minRemainingPercent: 5}}'
         PRIMARY="127.0.0.1:$PORT_OK_A" ;;
    11)  PORT_PRIMARY=$PORT_LATE; HEALTH=$HEALTH_NEVER; RETRY='{attempts: 2, hedge: {after: 200ms, maxExtra: 1}}'
         PRIMARY="127.0.0.1:$PORT_LATE" ;;
    12)  PORT_PRIMARY=$PORT_OK_A; HEALTH=$HEALTH_EJECT; RETRY=$RETRY_EJECT
         FLEET="fleet: {name: bench, redis: {url: \"redis://127.0.0.1:$PORT_REDIS/0\"}}"
         PRIMARY="127.0.0.1:$PORT_OK_A" ;;
  esac
  PORT_BACKUP=$PORT_OK_B
  BACKUP="127.0.0.1:$PORT_OK_B"
}

check_provider() { # scenario: the first answer through Switchyard names the expected provider
  local want=primary got attempts
  case "$1" in 2|3|4|11) want=backup ;; esac
  got="$(awk -F': *' 'tolower($1) == "x-switchyard-provider" { sub(/\r$/, "", $2); print $2 }' "$WORK/curl.head")"
  attempts="$(awk -F': *' 'tolower($1) == "x-switchyard-attempts" { sub(/\r$/, "", $2); print $2 }' "$WORK/curl.head")"
  if [ "$got" != "$want" ]; then
    log "  WARNING: first answer came from provider '${got:-?}' (expected $want)"
  else
    log "  check: answered by $got after ${attempts:-?} attempt(s)"
  fi
  if [ "$1" = 12 ]; then
    log "  check: fleet $(curl -s "http://127.0.0.1:$PORT_ADMIN/status" | grep -o '"fleet":{[^}]*}' || echo 'missing from /status')"
  fi
}

PROFILES=()
SY_PID=""
start_switchyard() { # scenario [binary]
  local bin="${2:-$GATEWAY}"
  configure "$1"
  # The TLS listener (scenario 7) only for the binary under test: --before may predate it.
  LISTEN_TLS=", {address: \"127.0.0.1:$PORT_GATEWAY_TLS\", tls: {certFile: \"$TLS_CERT\", keyFile: \"$TLS_KEY\"}}"
  [ "$bin" = "$GATEWAY" ] || LISTEN_TLS=""
  render bench/configs/switchyard.yaml.in "$WORK/switchyard-s$1.yaml"
  "$bin" --validate -c "$WORK/switchyard-s$1.yaml" >/dev/null 2>"$WORK/sy-validate.log" ||
    die "switchyard rejected its config: $(cat "$WORK/sy-validate.log")"
  SWITCHYARD_LOG="${SWITCHYARD_LOG:-warn}" taskset -c "$PROXY_CPU" "$bin" \
    -c "$WORK/switchyard-s$1.yaml" --upgrade-sock "$WORK/upgrade.sock" \
    >>"$WORK/switchyard-s$1.log" 2>&1 &
  SY_PID=$!
  PIDS+=("$SY_PID")
  local i
  for i in $(seq 200); do
    curl -sf "http://127.0.0.1:$PORT_ADMIN/healthz" >/dev/null 2>&1 && break
    kill -0 "$SY_PID" 2>/dev/null || die "switchyard exited: $(tail -5 "$WORK/switchyard-s$1.log")"
    [ "$i" -lt 200 ] || die "switchyard not ready after 10 s"
    sleep 0.05
  done
  wait_port "$PORT_GATEWAY" switchyard
}
stop_switchyard() {
  [ -z "$SY_PID" ] || { stop_pid "$SY_PID"; forget_pid "$SY_PID"; }
  SY_PID=""
}

PEER_PID=""
PEER_WORKER=""
start_peer() { # scenario
  configure "$1"
  render bench/nginx/peer.conf.in "$WORK/peer-s$1.conf"
  "$NGINX" -t -q -p "$WORK" -c "$WORK/peer-s$1.conf" 2>"$WORK/peer-test.log" ||
    die "peer nginx config rejected: $(cat "$WORK/peer-test.log")"
  taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK" -c "$WORK/peer-s$1.conf" -g 'daemon off;' \
    2>>"$WORK/peer-error.log" &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  wait_port "$PORT_PEER" "nginx peer"
  PEER_WORKER="$(nginx_worker "$PEER_PID" "nginx peer")"
  WORKERS+=("$PEER_WORKER")
}
stop_peer() {
  [ -z "$PEER_PID" ] || { stop_pid "$PEER_PID"; forget_pid "$PEER_PID"; }
  if [ -n "$PEER_WORKER" ]; then
    # The master has just taken its worker down; KILL it if it lingers, then forget it.
    kill -0 "$PEER_WORKER" 2>/dev/null && kill -KILL "$PEER_WORKER" 2>/dev/null
    local keep=() w
    for w in "${WORKERS[@]}"; do [ "$w" = "$PEER_WORKER" ] || keep+=("$w"); done
    WORKERS=("${keep[@]}")
  fi
  PEER_PID=""
  PEER_WORKER=""
}

# ---------------------------------------------------------------- wrk scenarios 1-4
measure_wrk() { # scenario proxy(sy|ng) body
  local s="$1" who="$2" body="$3" url pid line rq0 rq1
  wait_quiet
  if [ "$who" = sy ]; then
    start_switchyard "$s"; url="http://127.0.0.1:$PORT_GATEWAY/v1/chat/completions"; pid=$SY_PID
    [ "$s" != 7 ] || url="https://127.0.0.1:$PORT_GATEWAY_TLS/v1/chat/completions"
  elif [ "$who" = old ]; then
    start_switchyard "$s" "$BEFORE"; url="http://127.0.0.1:$PORT_GATEWAY/v1/chat/completions"; pid=$SY_PID
  else
    start_peer "$s"; url="http://127.0.0.1:$PORT_PEER/v1/chat/completions"; pid=$PEER_WORKER
    [ "$s" != 7 ] || url="https://127.0.0.1:$PORT_PEER_TLS/v1/chat/completions"
  fi
  expect_status "$url" 200 "$body"
  if [ "$who" != ng ]; then check_provider "$s"; fi
  run_wrk "$url" "$body" "$warmup" >/dev/null
  local perf_pid=""
  if [ "$who" = sy ] && profile "$s"; then
    taskset -c "$LOAD_CPU" perf record -q -F 999 --call-graph dwarf,16384 -p "$pid" -o "$WORK/perf-s$s.data" -- sleep "$duration" \
      >"$WORK/perf-s$s.log" 2>&1 &
    perf_pid=$!
  fi
  rq0="$(runq_ns "$pid")"
  line="$(run_wrk "$url" "$body" "$duration")"
  rq1="$(runq_ns "$pid")"
  add "$s.$who.wait" "$(awk -v a="$rq0" -v b="$rq1" -v d="$duration" 'BEGIN { printf "%.1f", (b - a) / (d * 1e7) }')"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || log "  perf record failed: $(tail -3 "$WORK/perf-s$s.log")"
    perf report -i "$WORK/perf-s$s.data" --no-children --stdio >"$WORK/perf-s$s.txt" 2>/dev/null || true
    perf report -i "$WORK/perf-s$s.data" --no-children --stdio -g none --percent-limit 0.5 \
      >"$WORK/perf-s$s-flat.txt" 2>/dev/null || true
    perf report -i "$WORK/perf-s$s.data" --no-children --stdio -g none --sort dso \
      >"$WORK/perf-s$s-dso.txt" 2>/dev/null || true
    perf report -i "$WORK/perf-s$s.data" --children --stdio -g none --percent-limit 2 \
      >"$WORK/perf-s$s-inclusive.txt" 2>/dev/null || true
    PROFILES+=("$s")
  fi
  add "$s.$who.rps" "$(field "$line" rps)"
  add "$s.$who.p50" "$(field "$line" p50_us)"
  add "$s.$who.p99" "$(field "$line" p99_us)"
  add "$s.$who.requests" "$(field "$line" requests)"
  add "$s.$who.errors" "$(($(field "$line" err_connect) + $(field "$line" err_read) + $(field "$line" err_write) + $(field "$line" err_timeout) + $(field "$line" non2xx)))"
  add "$s.$who.hwm" "$(hwm_kib "$pid")"
  if [ "$who" = ng ]; then stop_peer; else stop_switchyard; fi
  log "  $who: $(field "$line" rps) req/s, p50 $(field "$line" p50_us) us, p99 $(field "$line" p99_us) us, errors $(($(field "$line" err_connect) + $(field "$line" err_read) + $(field "$line" err_write) + $(field "$line" err_timeout))) socket / $(field "$line" non2xx) non-2xx"
}

scenario_wrk() { # scenario body round
  local order=(sy ng)
  [ $(($3 % 2)) = 1 ] || order=(ng sy)
  if [ -n "$BEFORE" ] && [ "$1" -le 4 ]; then order+=(old); fi
  local who
  for who in "${order[@]}"; do measure_wrk "$1" "$who" "$2"; done
}

# Scenarios 9-12 compare Switchyard with its own scenario 1 (no nginx counterpart).
scenario_self() { # scenario
  local late="" redis=""
  if [ "$1" = 12 ]; then
    taskset -c "$LOAD_CPU" redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save "" --appendonly no \
      >>"$WORK/redis.log" 2>&1 &
    redis=$!
    PIDS+=("$redis")
    wait_port "$PORT_REDIS" "redis-server"
  fi
  if [ "$1" = 11 ]; then
    taskset -c "$LOAD_CPU" "$MOCK" --name late --listen "127.0.0.1:$PORT_LATE" --delay-ms 3000 \
      >>"$WORK/mock-late.log" 2>&1 &
    late=$!
    PIDS+=("$late")
    wait_port "$PORT_LATE" "late mock"
  fi
  measure_wrk "$1" sy "$BODY_CHAT"
  if [ -n "$late" ]; then stop_pid "$late"; forget_pid "$late"; fi
  if [ -n "$redis" ]; then stop_pid "$redis"; forget_pid "$redis"; fi
}

# ---------------------------------------------------------------- scenario 5: TTFB
scenario_ttfb() {
  local line who
  wait_quiet
  start_switchyard 5
  start_peer 5
  local warm=200
  if [ "$smoke" = 1 ]; then warm=20; fi
  taskset -c "$LOAD_CPU" "$LOAD" ttfb --body-file "$BODY_STREAM" --duration "$duration" --warmup "$warm" \
    --target "direct=127.0.0.1:$PORT_SSE" \
    --target "sy=127.0.0.1:$PORT_GATEWAY" \
    --target "ng=127.0.0.1:$PORT_PEER" >"$WORK/ttfb.out" 2>"$WORK/ttfb.err" ||
    die "bench-load ttfb failed: $(cat "$WORK/ttfb.err")"
  add 5.sy.hwm "$(hwm_kib "$SY_PID")"
  add 5.ng.hwm "$(hwm_kib "$PEER_WORKER")"
  stop_switchyard
  stop_peer
  while read -r line; do
    who="$(field "$line" name)"
    for k in n errors non200 ttfb_p50_us ttfb_p99_us total_p50_us total_p99_us events; do
      add "5.$who.$k" "$(field "$line" "$k")"
    done
    log "  $who: TTFB p50 $(field "$line" ttfb_p50_us) us, p99 $(field "$line" ttfb_p99_us) us, n $(field "$line" n), errors $(field "$line" errors), events $(field "$line" events)"
  done < <(grep '^RESULT' "$WORK/ttfb.out")
}

# ---------------------------------------------------------------- scenario 6: 1,000 connections
scenario_hold() { # round
  local order=(sy ng) who line addr pid
  [ $(($1 % 2)) = 1 ] || order=(ng sy)
  [ -z "$BEFORE" ] || order+=(old)
  for who in "${order[@]}"; do
    if [ "$who" = sy ]; then
      wait_quiet
      start_switchyard 6; addr="127.0.0.1:$PORT_GATEWAY"; pid=$SY_PID
    elif [ "$who" = old ]; then
      wait_quiet
      start_switchyard 6 "$BEFORE"; addr="127.0.0.1:$PORT_GATEWAY"; pid=$SY_PID
    else
      wait_quiet
      start_peer 6; addr="127.0.0.1:$PORT_PEER"; pid=$PEER_WORKER
    fi
    line="$(taskset -c "$LOAD_CPU" "$LOAD" hold --addr "$addr" --conns "$hold_conns" \
      --body-file "$BODY_CHAT" --pid "p=$pid" 2>"$WORK/hold.err")" ||
      die "bench-load hold failed against $who: $(cat "$WORK/hold.err")"
    add "6.$who.ok1" "$(field "$line" ok1)"
    add "6.$who.ok2" "$(field "$line" ok2)"
    add "6.$who.rss" "$(field "$line" rss_kib_p)"
    add "6.$who.hwm" "$(field "$line" hwm_kib_p)"
    if [ "$who" = ng ]; then stop_peer; else stop_switchyard; fi
    log "  $who: $(field "$line" ok1)/$hold_conns answered, $(field "$line" ok2) still open; RSS $(field "$line" rss_kib_p) KiB, peak $(field "$line" hwm_kib_p) KiB"
  done
}

# ---------------------------------------------------------------- scenario 8: slow streams
SLOW_PID=""
scenario_streams() { # round
  local order=(sy ng) who line addr pid
  [ $(($1 % 2)) = 1 ] || order=(ng sy)
  # The upstream: an event a second (the mock provider, release build, on the load CPU).
  taskset -c "$LOAD_CPU" "$MOCK" --name slow --listen "127.0.0.1:$PORT_SLOW" \
    --stream-chunks "$slow_events" --chunk-delay-ms 1000 >>"$WORK/mock-slow.log" 2>&1 &
  SLOW_PID=$!
  PIDS+=("$SLOW_PID")
  wait_port "$PORT_SLOW" "slow mock"
  for who in "${order[@]}"; do
    wait_quiet
    if [ "$who" = sy ]; then
      start_switchyard 8; addr="127.0.0.1:$PORT_GATEWAY"; pid=$SY_PID
    else
      start_peer 8; addr="127.0.0.1:$PORT_PEER"; pid=$PEER_WORKER
    fi
    line="$(taskset -c "$LOAD_CPU" "$LOAD" streams --addr "$addr" --streams "$slow_streams" \
      --body-file "$BODY_STREAM" --pid "$pid" --window "$((slow_events / 4 + 1))" 2>"$WORK/streams.err")" ||
      die "bench-load streams failed against $who: $(cat "$WORK/streams.err")"
    for k in opened complete errors cpu_pct rss_kib hwm_kib open_ms; do add "8.$who.$k" "$(field "$line" "$k")"; done
    if [ "$who" = sy ]; then stop_switchyard; else stop_peer; fi
    log "  $who: $(field "$line" complete)/$slow_streams streams complete, $(field "$line" errors) errors; CPU $(field "$line" cpu_pct)%, RSS $(field "$line" rss_kib) KiB (peak $(field "$line" hwm_kib))"
  done
  stop_pid "$SLOW_PID"; forget_pid "$SLOW_PID"
}

# ---------------------------------------------------------------- run
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
names=([1]="Healthy primary" [2]="Primary answers 429 and is ejected"
       [3]="Every request meets the failing primary first (no ejection)"
       [4]="1 MiB request bodies, failover on every request"
       [5]="Streaming: time to first byte, 100-event SSE"
       [6]="1,000 concurrent keep-alive connections"
       [7]="Healthy primary over TLS (HTTP/1.1 keep-alive)"
       [8]="$slow_streams concurrent slow SSE streams (an event a second)"
       [9]="Healthy primary, 1,000 configured clients, every request authenticated"
       [10]="Healthy primary, quota headroom and hedging configured (never triggering)"
       [11]="Primary 3 s to its first byte, hedged after 200 ms"
       [12]="Healthy primary, fleet configured (Redis on the load CPU)")
for ((round = 1; round <= repeat; round++)); do
  for s in 1 2 3 4 5 6 7 8 9 10 11 12; do
    want "$s" || continue
    log "scenario $s (round $round/$repeat): ${names[$s]}"
    case "$s" in
      1|2|3|7) scenario_wrk "$s" "$BODY_CHAT" "$round" ;;
      4) scenario_wrk 4 "$BODY_1M" "$round" ;;
      5) scenario_ttfb ;;
      6) scenario_hold "$round" ;;
      8) scenario_streams "$round" ;;
      9|10|11|12) scenario_self "$s" ;;
    esac
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
ms() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.2f ms", v / 1000 }'; }
mib() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.1f MiB", v / 1024 }'; }
int() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.0f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 >= b + 0) }'; }
verdict() { # condition-exit-status
  if [ "$smoke" = 1 ]; then echo "not judged (smoke)"; elif [ "$1" = 0 ]; then echo "**PASS**"; else echo "**FAIL**"; fi
}
SUMMARY=()

report_wrk() { # scenario
  local s="$1" who
  local rs rn p50s p50n p99s p99n hs hn
  rs="$(med "$s.sy.rps")"; rn="$(med "$s.ng.rps")"
  p50s="$(med "$s.sy.p50")"; p50n="$(med "$s.ng.p50")"
  p99s="$(med "$s.sy.p99")"; p99n="$(med "$s.ng.p99")"
  hs="$(med "$s.sy.hwm")"; hn="$(med "$s.ng.hwm")"
  echo "### $s. ${names[$s]}"
  echo
  echo "| proxy | req/s | p50 | p99 | peak RSS | errors | waited for CPU |"
  echo "|---|--:|--:|--:|--:|--:|--:|"
  echo "| switchyard | $(int "$rs") | $(ms "$p50s") | $(ms "$p99s") | $(mib "$hs") | $(sum "$s.sy.errors") | $(med "$s.sy.wait")% |"
  echo "| nginx | $(int "$rn") | $(ms "$p50n") | $(ms "$p99n") | $(mib "$hn") | $(sum "$s.ng.errors") | $(med "$s.ng.wait")% |"
  echo "| switchyard/nginx | $(ratio "$rs" "$rn") | $(ratio "$p50s" "$p50n") | $(ratio "$p99s" "$p99n") | $(ratio "$hs" "$hn") | | |"
  if [ -n "$(med "$s.old.rps")" ]; then
    local ro; ro="$(med "$s.old.rps")"
    echo "| switchyard before (\`--before\`) | $(int "$ro") | $(ms "$(med "$s.old.p50")") | $(ms "$(med "$s.old.p99")") | $(mib "$(med "$s.old.hwm")") | $(sum "$s.old.errors") | $(med "$s.old.wait")% |"
    echo "| before/nginx | $(ratio "$ro" "$rn") | | | | | |"
    echo "| switchyard/before | $(ratio "$rs" "$ro") | $(ratio "$p50s" "$(med "$s.old.p50")") | $(ratio "$p99s" "$(med "$s.old.p99")") | | | |"
  fi
  echo
  if [ "$repeat" -gt 1 ]; then
    echo "Medians of $repeat rounds. req/s per round: switchyard $(get "$s.sy.rps" | tr ' ' '/'), nginx $(get "$s.ng.rps" | tr ' ' '/')."
    echo
  fi
  local ok=1 target measured errs_ok=0
  [ "$(sum "$s.sy.errors")" = 0 ] && [ "$(sum "$s.ng.errors")" = 0 ] && errs_ok=1
  case "$s" in
    1) target="req/s ≥ 1.0× nginx and p99 no worse"
       measured="$(ratio "$rs" "$rn") req/s; p99 $(ms "$p99s") vs $(ms "$p99n")"
       ge "$rs" "$rn" && ge "$p99n" "$p99s" && [ "$errs_ok" = 1 ] && ok=0 ;;
    2) local r1; r1="$(med 1.sy.rps)"
       target="req/s ≥ 0.95× Switchyard's scenario 1"
       if [ -n "$r1" ]; then
         measured="$(ratio "$rs" "$r1") of $(int "$r1") req/s (nginx: $(ratio "$rn" "$(med 1.ng.rps)") of its scenario 1)"
         ge "$rs" "$(awk -v v="$r1" 'BEGIN { print 0.95 * v }')" && [ "$errs_ok" = 1 ] && ok=0
       else
         measured="scenario 1 not run"
       fi ;;
    3) target="req/s ≥ 1.5× nginx"
       measured="$(ratio "$rs" "$rn")"
       ge "$rs" "$(awk -v v="$rn" 'BEGIN { print 1.5 * v }')" && [ "$errs_ok" = 1 ] && ok=0 ;;
    7) target="req/s ≥ 0.8× nginx with TLS"
       measured="$(ratio "$rs" "$rn") req/s; p99 $(ms "$p99s") vs $(ms "$p99n")"
       ge "$rs" "$(awk -v v="$rn" 'BEGIN { print 0.8 * v }')" && [ "$errs_ok" = 1 ] && ok=0 ;;
    4) target="works for both (no errors) and req/s ≥ 0.8× nginx"
       measured="$(ratio "$rs" "$rn"); errors switchyard $(sum 4.sy.errors), nginx $(sum 4.ng.errors)"
       ge "$rs" "$(awk -v v="$rn" 'BEGIN { print 0.8 * v }')" && [ "$errs_ok" = 1 ] &&
         ge "$(med 4.sy.requests)" 1 && ge "$(med 4.ng.requests)" 1 && ok=0 ;;
  esac
  [ "$s" = 2 ] && [ -z "$(med 1.sy.rps)" ] && ok=2
  local v
  if [ "$ok" = 2 ]; then v="not judged (needs scenario 1)"; else v="$(verdict "$ok")"; fi
  echo "Target: $target — $v ($measured)"
  echo
  SUMMARY+=("| $s | $target | $measured | $v |")
}

report_ttfb() {
  local who d50 d99 label
  d50="$(med 5.direct.ttfb_p50_us)"; d99="$(med 5.direct.ttfb_p99_us)"
  echo "### 5. ${names[5]}"
  echo
  echo "| path | TTFB p50 | TTFB p99 | added p50 | added p99 | total p50 | total p99 | peak RSS | events | errors |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  for who in direct sy ng; do
    case "$who" in direct) label="direct to upstream" ;; sy) label="via switchyard" ;; ng) label="via nginx" ;; esac
    local t50 t99 a50 a99
    t50="$(med "5.$who.ttfb_p50_us")"; t99="$(med "5.$who.ttfb_p99_us")"
    if [ "$who" = direct ]; then a50="-"; a99="-"; else
      a50="$(ms "$(awk -v a="$t50" -v b="$d50" 'BEGIN { print a - b }')")"
      a99="$(ms "$(awk -v a="$t99" -v b="$d99" 'BEGIN { print a - b }')")"
    fi
    local h=""; [ "$who" = direct ] || h="$(med "5.$who.hwm")"
    echo "| $label | $(ms "$t50") | $(ms "$t99") | $a50 | $a99 | $(ms "$(med "5.$who.total_p50_us")") | $(ms "$(med "5.$who.total_p99_us")") | $(mib "$h") | $(med "5.$who.events") | $(( $(sum "5.$who.errors") + $(sum "5.$who.non200") )) |"
  done
  echo
  echo "Requests are sent one at a time over one keep-alive connection per path, interleaved (direct, switchyard, nginx, ...); $(med 5.sy.n) timed requests per path. nginx runs with \`proxy_buffering off\` here."
  echo
  local added ok=1
  added="$(awk -v a="$(med 5.sy.ttfb_p99_us)" -v b="$d99" 'BEGIN { print a - b }')"
  ge 500 "$added" && [ "$(( $(sum 5.sy.errors) + $(sum 5.sy.non200) ))" = 0 ] && ok=0
  local v; v="$(verdict "$ok")"
  echo "Target: Switchyard adds ≤ 0.5 ms to p99 TTFB — $v (adds $(ms "$added"))"
  echo
  SUMMARY+=("| 5 | adds ≤ 0.5 ms to p99 TTFB | $(ms "$added") | $v |")
}

report_hold() {
  local rs rn
  rs="$(med 6.sy.rss)"; rn="$(med 6.ng.rss)"
  echo "### 6. ${names[6]}"
  echo
  echo "| proxy | connections answered | still open after | RSS while open | peak RSS |"
  echo "|---|--:|--:|--:|--:|"
  echo "| switchyard | $(med 6.sy.ok1)/$hold_conns | $(med 6.sy.ok2)/$hold_conns | $(mib "$rs") | $(mib "$(med 6.sy.hwm)") |"
  echo "| nginx | $(med 6.ng.ok1)/$hold_conns | $(med 6.ng.ok2)/$hold_conns | $(mib "$rn") | $(mib "$(med 6.ng.hwm)") |"
  echo "| switchyard/nginx | | | $(ratio "$rs" "$rn") | $(ratio "$(med 6.sy.hwm)" "$(med 6.ng.hwm)") |"
  if [ -n "$(med 6.old.rss)" ]; then
    echo "| switchyard before (\`--before\`) | $(med 6.old.ok1)/$hold_conns | $(med 6.old.ok2)/$hold_conns | $(mib "$(med 6.old.rss)") | $(mib "$(med 6.old.hwm)") |"
  fi
  echo
  local ok=1
  ge $((50 * 1024)) "$rs" && ! ge "$rs" $((50 * 1024)) && [ "$(med 6.sy.ok1)" = "$hold_conns" ] && ok=0
  local v; v="$(verdict "$ok")"
  echo "Target: Switchyard RSS < 50 MiB with $hold_conns connections open — $v ($(mib "$rs"))"
  echo
  SUMMARY+=("| 6 | RSS < 50 MiB with $hold_conns connections | $(mib "$rs") | $v |")
}

report_streams() {
  local rs rn
  rs="$(med 8.sy.rss_kib)"; rn="$(med 8.ng.rss_kib)"
  echo "### 8. ${names[8]}"
  echo
  echo "| proxy | streams complete | errors | CPU while open | RSS while open | peak RSS |"
  echo "|---|--:|--:|--:|--:|--:|"
  echo "| switchyard | $(med 8.sy.complete)/$slow_streams | $(sum 8.sy.errors) | $(med 8.sy.cpu_pct)% | $(mib "$rs") | $(mib "$(med 8.sy.hwm_kib)") |"
  echo "| nginx | $(med 8.ng.complete)/$slow_streams | $(sum 8.ng.errors) | $(med 8.ng.cpu_pct)% | $(mib "$rn") | $(mib "$(med 8.ng.hwm_kib)") |"
  echo "| switchyard/nginx | | | $(ratio "$(med 8.sy.cpu_pct)" "$(med 8.ng.cpu_pct)") | $(ratio "$rs" "$rn") | $(ratio "$(med 8.sy.hwm_kib)" "$(med 8.ng.hwm_kib)") |"
  echo
  echo "Each stream: one connection, one streaming chat request, $slow_events events a second apart from the upstream (the mock provider on CPU $LOAD_CPU). CPU and RSS are sampled while every stream is open."
  echo
  local ok=1
  ge "$(awk -v v="$rn" 'BEGIN { print 2 * v }')" "$rs" && [ "$(sum 8.sy.errors)" = 0 ] && ok=0
  local v; v="$(verdict "$ok")"
  echo "Target: RSS ≤ 2× nginx's and no errors — $v ($(ratio "$rs" "$rn"), $(sum 8.sy.errors) errors)"
  echo
  SUMMARY+=("| 8 | $slow_streams slow streams: RSS ≤ 2× nginx, no errors | $(ratio "$rs" "$rn") RSS, CPU $(med 8.sy.cpu_pct)% vs $(med 8.ng.cpu_pct)%, $(sum 8.sy.errors) errors | $v |")
}

report_self() { # scenario
  local s="$1" rs r1 p99 p991
  rs="$(med "$s.sy.rps")"; r1="$(med 1.sy.rps)"; p99="$(med "$s.sy.p99")"; p991="$(med 1.sy.p99)"
  echo "### $s. ${names[$s]}"
  echo
  echo "| switchyard | req/s | p50 | p99 | errors |"
  echo "|---|--:|--:|--:|--:|"
  echo "| scenario $s | $(int "$rs") | $(ms "$(med "$s.sy.p50")") | $(ms "$p99") | $(sum "$s.sy.errors") |"
  echo "| scenario 1 | $(int "$r1") | $(ms "$(med 1.sy.p50)") | $(ms "$p991") | $(sum 1.sy.errors) |"
  echo
  local ok=1 target measured
  case "$s" in
    9|10|12) local f=0.95; [ "$s" = 10 ] && f=0.97
       target="req/s ≥ ${f}× Switchyard's scenario 1"
       measured="$(ratio "$rs" "$r1")"
       [ -n "$r1" ] && ge "$rs" "$(awk -v v="$r1" -v f="$f" 'BEGIN { print f * v }')" && [ "$(sum "$s.sy.errors")" = 0 ] && ok=0 ;;
    11) target="p99 within 300 ms of scenario 1's (healthy provider)"
       measured="p99 $(ms "$p99") vs $(ms "$p991")"
       [ -n "$p991" ] && ge "$(awk -v v="$p991" 'BEGIN { print v + 300000 }')" "$p99" && [ "$(sum 11.sy.errors)" = 0 ] && ok=0 ;;
  esac
  [ -n "$r1" ] || ok=2
  local v
  if [ "$ok" = 2 ]; then v="not judged (needs scenario 1)"; else v="$(verdict "$ok")"; fi
  echo "Target: $target — $v ($measured)"
  echo
  SUMMARY+=("| $s | $target | $measured | $v |")
}

REPORT="$WORK/report.md"
{
  for s in 1 2 3 4; do
    if want "$s"; then report_wrk "$s"; fi
  done
  if want 5; then report_ttfb; fi
  if want 6; then report_hold; fi
  if want 7; then report_wrk 7; fi
  if want 8; then report_streams; fi
  for s in 9 10 11 12; do
    if want "$s"; then report_self "$s"; fi
  done
  echo "### Targets"
  echo
  echo "| # | target | measured | result |"
  echo "|---|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"
} >"$REPORT"

cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
mem_total="$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
HEADER="$WORK/header.md"
{
  echo "- Date: $STARTED"
  echo "- Command: \`$COMMAND\`"
  echo "- Machine: $ncpu CPUs ($cpu_model), $mem_total RAM, kernel $(uname -sr)"
  echo "- Software: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$GATEWAY" --version 2>/dev/null || echo switchyard)"
  echo "- Setup: proxy under test (1 worker) on CPU $PROXY_CPU; wrk (1 thread, $wrk_conns connections, 600-byte chat POST), bench-load and the mock upstream (nginx, 1 worker) on CPU $LOAD_CPU; ${duration} s measured per scenario and proxy after a ${warmup} s warm-up; $repeat round(s)$([ "$smoke" = 1 ] && echo '; **smoke run: numbers are not meaningful**')"
  echo "- Load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER; waited ${QUIET_WAITED} s for other processes to leave the CPUs; $BUSY_MEASUREMENTS measurement(s) started on a busy machine anyway$([ "$quiet_wait" = 0 ] && echo ' (no waiting: --quiet-wait 0)')"
} >"$HEADER"

echo
cat "$HEADER"
echo
cat "$REPORT"

if [ "$write_results" = 1 ]; then
  {
    echo "# Benchmark results"
    echo
    echo "Written by \`bench/run.sh --write-results\`; do not edit by hand, rerun the script."
    echo "How to read these tables: [README.md](README.md)."
    echo
    cat "$HEADER"
    echo
    cat "$REPORT"
  } >bench/RESULTS.md
  log "wrote bench/RESULTS.md"
fi
for s in "${PROFILES[@]}"; do
  mkdir -p bench/profiles
  cp "$WORK/perf-s$s.txt" "bench/profiles/perf-s$s.txt"
  cp "$WORK/perf-s$s-flat.txt" "bench/profiles/perf-s$s-flat.txt"
  cp "$WORK/perf-s$s-dso.txt" "bench/profiles/perf-s$s-dso.txt"
  cp "$WORK/perf-s$s-inclusive.txt" "bench/profiles/perf-s$s-inclusive.txt"
  echo
  echo "perf, Switchyard, scenario $s: self time, top 40 (bench/profiles/perf-s$s-flat.txt; callers"
  echo "in perf-s$s.txt, inclusive time in perf-s$s-inclusive.txt, by DSO in perf-s$s-dso.txt):"
  # awk, not grep | head: with pipefail, head closing early fails the script (SIGPIPE).
  awk '!/^#/ && !/^$/ && n++ < 40' "$WORK/perf-s$s-flat.txt"
done

# A benchmark whose requests fail measures nothing: say so in the exit status (missed
# targets do not change it; they are in the tables).
broken=""
for key in "${!R[@]}"; do
  case "$key" in
    *.errors|*.non200) [ "$(sum "$key")" = 0 ] || broken+=" ${key%.*}" ;;
    6.*.ok1|6.*.ok2) [ "$(med "$key")" = "$hold_conns" ] || broken+=" ${key%.*}" ;;
    8.*.complete) [ "$(med "$key")" = "$slow_streams" ] || broken+=" ${key%.*}" ;;
  esac
done
finished=1
if [ -n "$broken" ]; then
  log "requests failed in:$broken (scenario.proxy); see the tables above and the logs in $WORK"
  exit 3
fi
