#!/usr/bin/env bash
# The client side alone, A/B: the gateway's edge (Pingora's HTTP sessions, as the proxy
# drives them) against hyper's server over the same Pingora listener streams, with nginx as
# the reference. Each answers every request itself with the mock's fixed chat answer after
# reading the whole body (gateway/examples/edge_ab.rs; nginx: bench/nginx/fixed.conf.in), so
# what is measured is the HTTP server and nothing of the proxy.
#
#   bench/edge-ab.sh [-d SECS] [--repeat N] [--no-build] [--quiet-wait SECS]
#   bench/edge-ab.sh --smoke   1 s, one round, no build, no waiting (CI: the harness works)
#
# Per round, for each server in turn (the order rotates): wrk -t1 -c32 with the 600-byte
# chat POST, plain HTTP/1.1 and TLS (HTTP/1.1 keep-alive); then 1,000 idle keep-alive
# connections that have each done a request (bench-load hold): RSS. The server runs on CPU
# 0, the load on CPU 1, as in bench/run.sh. Prints medians and ratios to nginx.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
duration=10
repeat=3
build=1
quiet_wait=120
quiet_busy=10
LOAD_CPU=1 # the server is pinned to CPU 0
wrk_conns=32
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --repeat) repeat="${2:?--repeat needs a value}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --quiet-wait) quiet_wait="${2:?--quiet-wait needs a value}"; shift 2 ;;
    --smoke) duration=1; repeat=1; quiet_wait=0; build=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "edge-ab.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d /tmp/switchyard-edge-ab.XXXXXX)"
chmod 755 "$WORK"
mkdir -m 777 "$WORK/fixed-body"
# shellcheck source=bench/lib.sh
source bench/lib.sh

if [ "$build" = 1 ]; then
  bench/setup.sh
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
EDGE="$ROOT/target/release/examples/edge_ab"
LOAD="$ROOT/target/release/bench-load"
for bin in "$EDGE" "$LOAD"; do [ -x "$bin" ] || die "$bin missing (drop --no-build)"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for port_var in PORT_PLAIN PORT_TLS; do pick_port "$port_var"; done
BODY="$WORK/body-600.json"
"$LOAD" body --bytes 600 >"$BODY"
make_test_cert
# The mock upstream's chat answer, the one answer of all three servers.
ANSWER="$(grep -o "return 200 '{\"id\":\"chatcmpl-bench0001\"[^']*'" bench/nginx/mock.conf.in | sed "s/^return 200 '//; s/'\$//")"
[ -n "$ANSWER" ] || die "no chat answer found in bench/nginx/mock.conf.in"
printf '%s' "$ANSWER" >"$WORK/answer.json"
render bench/nginx/fixed.conf.in "$WORK/fixed.conf"

SERVER_PID=""
start_server() { # nginx|pingora|hyper: sets SERVER_PID to the process that serves
  if [ "$1" = nginx ]; then
    taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/fixed.conf" -g 'daemon off;' 2>>"$WORK/fixed-error.log" &
    PIDS+=($!)
    wait_port "$PORT_PLAIN" nginx
    SERVER_PID="$(nginx_worker "$!" nginx)"
    WORKERS+=("$SERVER_PID")
  else
    taskset -c 0 "$EDGE" --server "$1" --listen "127.0.0.1:$PORT_PLAIN" --listen-tls "127.0.0.1:$PORT_TLS" \
      --cert "$TLS_CERT" --key "$TLS_KEY" --answer-file "$WORK/answer.json" >>"$WORK/$1.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=($!)
    wait_port "$PORT_PLAIN" "$1"
  fi
  wait_port "$PORT_TLS" "$1 (TLS)"
}
stop_server() {
  local p="${PIDS[${#PIDS[@]}-1]}"
  stop_pid "$p"
  forget_pid "$p"
  SERVER_PID=""
}

cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # user, system (clock ticks)
per_request() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; } # ticks requests -> us

measure() { # server
  local who="$1" line proto url n u0 s0 u1 s1 user sys
  for proto in plain tls; do
    url="http://127.0.0.1:$PORT_PLAIN/v1/chat/completions"
    [ "$proto" = plain ] || url="https://127.0.0.1:$PORT_TLS/v1/chat/completions"
    wait_quiet
    start_server "$who"
    [ "$(curl -sk -o /dev/null -w '%{http_code}' --data-binary "@$BODY" "$url")" = 200 ] || die "$who did not answer 200"
    run_wrk "$url" "$BODY" 1 >/dev/null
    read -r u0 s0 < <(cpu_ticks "$SERVER_PID")
    line="$(run_wrk "$url" "$BODY" "$duration")"
    read -r u1 s1 < <(cpu_ticks "$SERVER_PID")
    [ "$(field "$line" non2xx)" = 0 ] || die "$who: non-2xx answers: $line"
    n="$(field "$line" requests)"
    user="$(per_request "$((u1 - u0))" "$n")"
    sys="$(per_request "$((s1 - s0))" "$n")"
    add "$who.$proto" "$(field "$line" rps)"
    add "$who.$proto.user" "$user"
    add "$who.$proto.sys" "$sys"
    log "  $who $proto: $(field "$line" rps) req/s, p99 $(field "$line" p99_us) us, CPU per request: user $user us, system $sys us"
    stop_server
  done
  wait_quiet
  start_server "$who"
  line="$(taskset -c "$LOAD_CPU" "$LOAD" hold --addr "127.0.0.1:$PORT_PLAIN" --conns 1000 --body-file "$BODY" \
    --pid "p=$SERVER_PID" 2>"$WORK/hold.err")" || die "bench-load hold failed against $who: $(cat "$WORK/hold.err")"
  add "$who.rss" "$(field "$line" rss_kib_p)"
  log "  $who: 1,000 idle keep-alive connections, RSS $(field "$line" rss_kib_p) KiB"
  stop_server
}

servers=(nginx pingora hyper)
for ((round = 1; round <= repeat; round++)); do
  log "round $round/$repeat"
  for ((i = 0; i < 3; i++)); do measure "${servers[(i + round - 1) % 3]}"; done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo ""
echo "Client side alone, medians of $repeat rounds, ${duration} s each ($(date -u '+%Y-%m-%d %H:%M UTC')):"
echo ""
echo "| server | plain req/s | vs nginx | CPU per request, user + system | TLS req/s | vs nginx | CPU per request | RSS, 1,000 idle conns |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for who in nginx pingora hyper; do
  p="$(med "$who.plain")"; t="$(med "$who.tls")"
  printf '| %s | %.0f | %s× | %s + %s us | %.0f | %s× | %s + %s us | %s KiB |\n' "$who" \
    "$p" "$(ratio "$p" "$(med nginx.plain)")" "$(med "$who.plain.user")" "$(med "$who.plain.sys")" \
    "$t" "$(ratio "$t" "$(med nginx.tls)")" "$(med "$who.tls.user")" "$(med "$who.tls.sys")" "$(med "$who.rss")"
done
finished=1
