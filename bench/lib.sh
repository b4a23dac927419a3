# Shell helpers shared by bench/run.sh and bench/edge-ab.sh (sourced, not run). The caller
# first sets WORK (its scratch directory: removed at exit when `finished=1` and the exit
# status is 0, kept otherwise), quiet_wait and quiet_busy (wait_quiet), LOAD_CPU and
# wrk_conns (run_wrk).

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()    # our children (switchyard, nginx masters), until they have been stopped
WORKERS=() # nginx workers (children of our nginx masters)
finished=0

stop_pid() { # pid: TERM, wait up to 5 s, then KILL
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() { # pid: no longer ours to stop
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local rc=$? i w
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  # A master stopped with TERM takes its worker with it; KILL one that is somehow left.
  for w in "${WORKERS[@]}"; do
    if [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$w/cmdline")" == "nginx: worker process"* ]]; then
      kill -KILL "$w" 2>/dev/null || true
    fi
  done
  if [ "$finished" = 1 ] && [ "$rc" = 0 ]; then
    rm -rf "$WORK"
  else
    log "logs and configs kept in $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
# Listening ports below the ephemeral range, so that outgoing connections cannot take them.
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range
port_lo=20000
[ "$eph_lo" -gt 21000 ] || port_lo=10000
[ "$eph_lo" -gt $((port_lo + 1000)) ] || eph_lo=$((port_lo + 10000))
TAKEN=" "
pick_port() { # VAR: sets VAR to a free port not handed out before
  local p tries=0
  while :; do
    p=$((port_lo + (RANDOM * 32768 + RANDOM) % (eph_lo - port_lo)))
    if [[ "$TAKEN" != *" $p "* ]] && ! port_in_use "$p"; then
      TAKEN+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 1000 ] || die "no free port found"
  done
}

wait_port() { # port [what]
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "${2:-something} did not listen on 127.0.0.1:$1 within 5 s"
}

children_of() {
  cat "/proc/$1/task/$1/children" 2>/dev/null ||
    awk -v m="$1" '$4 == m { print $1 }' /proc/[0-9]*/stat 2>/dev/null || true
}

# Time a process's threads spent runnable but waiting for a CPU (ns): other processes on
# its CPU, or its own threads competing.
runq_ns() {
  local t w total=0
  for t in /proc/"$1"/task/*/schedstat; do
    read -r _ w _ <"$t" 2>/dev/null && total=$((total + w))
  done
  echo "$total"
}
# busy (without guest steal), steal, total jiffies over all CPUs
cpu_snapshot() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
BUSY_MEASUREMENTS=0
QUIET_WAITED=0
wait_quiet() { # before a measurement: wait until other processes leave the CPUs alone
  [ "$quiet_wait" -gt 0 ] || return 0
  local start=$SECONDS b0 t0 b1 t1 busy said=0
  while :; do
    read -r b0 _ t0 < <(cpu_snapshot)
    sleep 1
    read -r b1 _ t1 < <(cpu_snapshot)
    busy=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
    [ "$busy" -ge "$quiet_busy" ] || return 0
    if [ $((SECONDS - start)) -ge "$quiet_wait" ]; then
      log "  machine still busy ($busy% of the CPUs used by other processes): measuring anyway"
      BUSY_MEASUREMENTS=$((BUSY_MEASUREMENTS + 1))
      return 0
    fi
    if [ "$said" = 0 ]; then log "  other processes use $busy% of the CPUs: waiting (up to ${quiet_wait} s)"; said=1; fi
    QUIET_WAITED=$((QUIET_WAITED + 1))
  done
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

render() { # template output: replaces @KEY@ with the value of shell variable KEY
  local line key
  cp "$1" "$2"
  grep -v '^[[:space:]]*#' "$1" | grep -o '@[A-Z_0-9]*@' | sort -u | while read -r key; do
    key="${key//@/}"
    [ -n "${!key+x}" ] || die "template $1 uses @$key@ which is not set"
    line="${!key}"
    line="${line//\\/\\\\}"
    line="${line//|/\\|}"
    line="${line//&/\\&}"
    sed -i "s|@$key@|$line|g" "$2"
  done
}

nginx_worker() { # master what: prints the pid of the master's (only) worker, once it has one
  local i w
  for i in $(seq 50); do
    w="$(children_of "$1" | awk 'NR == 1 { print $1 }')"
    [ -z "$w" ] || { echo "$w"; return; }
    sleep 0.05
  done
  die "$2 has no worker process"
}

# wrk on LOAD_CPU with wrk_conns connections, POSTing the body file (bench/wrk/post.lua).
run_wrk() { # url body seconds -> RESULT line
  BENCH_BODY_FILE="$2" taskset -c "$LOAD_CPU" wrk -t1 -c"$wrk_conns" -d"$3s" --timeout 5s \
    -s bench/wrk/post.lua "$1" >"$WORK/wrk.out" 2>&1 || die "wrk failed: $(cat "$WORK/wrk.out")"
  grep '^RESULT' "$WORK/wrk.out" || die "wrk printed no result: $(cat "$WORK/wrk.out")"
}

# ---------------------------------------------------------------- TLS
# A self-signed certificate for 127.0.0.1 (the clients do not verify): sets TLS_CERT, TLS_KEY.
make_test_cert() {
  TLS_CERT="$WORK/tls.pem"
  TLS_KEY="$WORK/tls.key"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null ||
    die "openssl could not make a test certificate"
  chmod 600 "$TLS_KEY"
}

# ---------------------------------------------------------------- results store
declare -A R # "scenario.proxy.metric" -> space-separated values, one per round
add() { R["$1"]="${R["$1"]:-}${R["$1"]:+ }$2"; }
get() { echo "${R["$1"]:-}"; }
median() { # values... (empty -> nothing)
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
med() { # key
  # shellcheck disable=SC2046
  median $(get "$1")
}
sum() { local t=0 v; for v in $(get "$1"); do t=$((t + v)); done; echo "$t"; }
field() { # line key
  local kv
  for kv in $1; do
    [ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return; }
  done
  echo ""
}

