# Sourced by the bench scripts: a fresh local 3-node release cluster on free loopback ports, in
# a temporary data directory (fsync on), stopped and removed when the script exits.
#
#   start_local_cluster NAME KVCTL_TIMEOUT_MS [keyval flags...]
#
# Needs KEYVAL_BIN. Sets DATA, PIDS, PORTS, PEERS, ENDPOINTS and KVCTL (kvctl with the
# cluster's endpoints), and returns once the cluster has acknowledged a write.

# Sets KEYVAL_BIN to freshly built release binaries unless the caller gave a directory (to
# benchmark other binaries, before/after).
release_bins() {
  if [ -z "${KEYVAL_BIN:-}" ]; then
    ${CARGO:-cargo} build -q --release -p native-node --bins
    KEYVAL_BIN="${CARGO_TARGET_DIR:-target}/release"
  fi
}

stop_local_cluster() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}

start_local_cluster() {
  local name=$1 timeout_ms=$2
  shift 2
  DATA=$(mktemp -d "/tmp/keyval-$name.XXXXXX")
  PIDS=()
  trap stop_local_cluster EXIT
  # Three free loopback ports (bound and released by the OS, like the process tests do).
  read -r -a PORTS < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
  PEERS="1=127.0.0.1:${PORTS[0]},2=127.0.0.1:${PORTS[1]},3=127.0.0.1:${PORTS[2]}"
  ENDPOINTS="127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}"
  local n
  for n in 1 2 3; do
    "$KEYVAL_BIN/keyval" --id "$n" --listen "127.0.0.1:${PORTS[$((n - 1))]}" --peers "$PEERS" \
      --data-dir "$DATA/node$n" "$@" >"$DATA/node$n.log" 2>&1 &
    PIDS+=($!)
  done
  KVCTL=("$KEYVAL_BIN/kvctl" --endpoints "$ENDPOINTS" --timeout-ms "$timeout_ms")
  for _ in $(seq 1 100); do
    "${KVCTL[@]}" put "$name-ready" 1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the local cluster did not accept a write; logs in $DATA" >&2
  return 1
}
