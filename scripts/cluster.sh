#!/usr/bin/env bash
# The local 3-node cluster behind `make cluster-start|cluster-status|cluster-stop|cluster-logs`
# and `make cluster-add|cluster-remove ID`.
# Nodes 1..3 listen on 127.0.0.1:7001..7003, keep their data in data/node{N}, log to
# data/node{N}.log and record their PID in data/node{N}.pid. A node added later gets the next
# unused id N and listens on 127.0.0.1:(7000+N); a removed one is marked data/node{N}.removed
# and never started again (ids are never reused).
#   PROFILE=release make cluster-start   # optimized build (for benchmarks)
#   KEYVAL_ARGS="--heartbeat-ms 20" make cluster-start
#   TLS=1 make cluster-start      # mutual TLS between nodes, certificates in data/certs
#                                 # (made by `make certs` if missing); kvctl then needs
#                                 # --cacert data/certs/peer-ca.pem
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
PROFILE=${PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/$PROFILE"
DATA=data
PEERS="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"

# The nodes of this cluster: 1..3 and every added one, minus the removed ones.
members() {
  local ids=(1 2 3) d n
  for d in "$DATA"/node*/; do
    [ -d "$d" ] || continue
    n=${d%/}; n=${n##*/node}
    [[ "$n" =~ ^[0-9]+$ ]] && ids+=("$n")
  done
  for n in $(printf '%s\n' "${ids[@]}" | sort -n -u); do
    [ -f "$DATA/node$n.removed" ] || echo "$n"
  done
}
NODES=($(members))
addr_of() { echo "127.0.0.1:$((7000 + $1))"; }
ENDPOINTS=$(for n in "${NODES[@]}"; do addr_of "$n"; done | paste -sd, -)
WAIT_SECS=${WAIT_SECS:-20}
TLS=${TLS:-}
CERTS=$DATA/certs

# kvctl flags for this cluster: trust the peer CA when TLS is on.
kvctl_tls() {
  [ -n "$TLS" ] && [ "$TLS" != 0 ] && echo "--cacert $CERTS/peer-ca.pem"
  return 0
}

# keyval flags for node N when TLS is on.
node_tls() {
  [ -n "$TLS" ] && [ "$TLS" != 0 ] || return 0
  echo "--peer-cert-file $CERTS/node-$1.pem --peer-key-file $CERTS/node-$1.key --peer-trusted-ca-file $CERTS/peer-ca.pem"
}

# Prints the PID of node N if it is running (and really is a keyval process).
running_pid() {
  local f="$DATA/node$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "keyval .*--id $1 " || return 1
  echo "$pid"
}

build() {
  local flags=()
  [ "$PROFILE" = release ] && flags=(--release)
  "$CARGO" build -q -p native-node --bins "${flags[@]}"
}

start() {
  build
  mkdir -p "$DATA"
  if [ -n "$TLS" ] && [ "$TLS" != 0 ] && [ ! -f "$CERTS/peer-ca.pem" ]; then
    "$CARGO" run -q -p keyval-tests --example certs -- "$CERTS" "${NODES[@]}"
  fi
  for n in "${NODES[@]}"; do
    if pid=$(running_pid "$n"); then
      echo "node $n already running (pid $pid)"
      continue
    fi
    if [ "$n" -le 3 ]; then
      launch "$n" --peers "$PEERS"
    else
      # An added node: its data directory holds its membership; --join is then ignored.
      launch "$n" --join "$ENDPOINTS"
    fi
  done
  local deadline=$((SECONDS + WAIT_SECS))
  while [ $SECONDS -lt $deadline ]; do
    # shellcheck disable=SC2046
    if "$BIN/kvctl" $(kvctl_tls) --endpoints "$ENDPOINTS" --timeout-ms 1000 -o json status 2>/dev/null |
      grep -q '"role":"leader"'; then
      # shellcheck disable=SC2046
      "$BIN/kvctl" $(kvctl_tls) --endpoints "$ENDPOINTS" status
      return 0
    fi
    for n in "${NODES[@]}"; do
      if ! running_pid "$n" >/dev/null; then
        echo "node $n exited; last lines of $DATA/node$n.log:" >&2
        tail -n 5 "$DATA/node$n.log" >&2
        return 1
      fi
    done
    sleep 0.2
  done
  echo "no leader elected within ${WAIT_SECS}s; see make cluster-logs" >&2
  return 1
}

# Starts node N in the background with the extra flags given.
launch() {
  local n=$1
  shift
  # setsid: the node outlives this script and make, and a Ctrl-C in this terminal
  # does not reach it.
  # shellcheck disable=SC2086
  setsid "$BIN/keyval" --id "$n" --listen "$(addr_of "$n")" "$@" \
    --data-dir "$DATA/node$n" $(node_tls "$n") ${KEYVAL_ARGS:-} >>"$DATA/node$n.log" 2>&1 </dev/null &
  echo $! >"$DATA/node$n.pid"
  echo "node $n started (pid $!, log $DATA/node$n.log)"
}

# The next id never used here: past every data directory and removal mark.
next_id() {
  local max=3 f n
  for f in "$DATA"/node*; do
    n=${f##*/node}; n=${n%%.*}; n=${n%/}
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt "$max" ] && max=$n
  done
  echo $((max + 1))
}

# `make cluster-add`: kvctl member add, then start the node with --join; returns once the
# leader has promoted it (or says why not).
add() {
  build
  [ -n "$TLS" ] && [ "$TLS" != 0 ] && {
    echo "cluster-add with TLS needs a certificate for the new node: make certs covers nodes 1..3 only" >&2
    return 1
  }
  local id addr
  id=$(next_id)
  addr=$(addr_of "$id")
  "$BIN/kvctl" --endpoints "$ENDPOINTS" member add "$id" "$addr"
  launch "$id" --join "$ENDPOINTS"
  local deadline=$((SECONDS + WAIT_SECS))
  while [ $SECONDS -lt $deadline ]; do
    if "$BIN/kvctl" --endpoints "$ENDPOINTS" -o json member list 2>/dev/null |
      grep -q "{\"id\":$id,\"address\":\"$addr\",\"role\":\"voter\"}"; then
      "$BIN/kvctl" --endpoints "$ENDPOINTS,$addr" member list
      return 0
    fi
    # Whichever node leads promotes it once caught up: the intent is in the configuration.
    if ! running_pid "$id" >/dev/null; then
      echo "node $id exited; last lines of $DATA/node$id.log:" >&2
      tail -n 5 "$DATA/node$id.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "node $id was not promoted within ${WAIT_SECS}s; see make cluster-logs" >&2
  return 1
}

# `make cluster-remove ID`: kvctl member remove; the node stops by itself once it applies
# its removal, and is never started again.
remove() {
  local id=${1:-}
  [[ "$id" =~ ^[0-9]+$ ]] || { echo "usage: make cluster-remove ID=N" >&2; return 2; }
  [ -x "$BIN/kvctl" ] || build
  "$BIN/kvctl" $(kvctl_tls) --endpoints "$ENDPOINTS" member remove "$id"
  touch "$DATA/node$id.removed"
  local pid
  if pid=$(running_pid "$id"); then
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
  fi
  rm -f "$DATA/node$id.pid"
  echo "node $id removed; its data stays in $DATA/node$id (it will not serve again)"
}

status() {
  [ -x "$BIN/kvctl" ] || build
  # shellcheck disable=SC2046
  "$BIN/kvctl" $(kvctl_tls) --endpoints "$ENDPOINTS" status
}

stop() {
  local pids=()
  for n in "${NODES[@]}"; do
    if pid=$(running_pid "$n"); then
      kill -TERM "$pid" && pids+=("$pid") && echo "node $n: SIGTERM (pid $pid)"
    fi
    rm -f "$DATA/node$n.pid"
  done
  # Graceful shutdown takes milliseconds; give it a few seconds before forcing.
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid did not stop; SIGKILL" >&2
      kill -KILL "$pid" || true
    fi
  done
}

logs() {
  local files=()
  for n in "${NODES[@]}"; do
    [ -f "$DATA/node$n.log" ] && files+=("$DATA/node$n.log")
  done
  [ ${#files[@]} -gt 0 ] || { echo "no logs in $DATA/"; return 0; }
  if [ "${FOLLOW:-0}" = 1 ]; then
    tail -n "${LINES:-20}" -F "${files[@]}"
  else
    tail -n "${LINES:-40}" "${files[@]}"
  fi
}

case "${1:-}" in
  start) start ;;
  add) add ;;
  remove) remove "${2:-}" ;;
  status) status ;;
  stop) stop ;;
  logs) logs ;;
  *) echo "usage: $0 start|status|stop|logs|add|remove ID" >&2; exit 2 ;;
esac
