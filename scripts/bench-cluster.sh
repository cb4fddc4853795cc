#!/usr/bin/env bash
# `make bench-cluster`: a fresh local 3-node release cluster (free loopback ports, a temporary
# data directory, fsync on), `kvctl bench` for puts and gets at 1, 16, 64 and 256 clients, one
# table (throughput, p50, p99, p99.9). The cluster is stopped and its data removed at the end.
#
#   DURATION=10 make bench-cluster          # seconds per case (default 5)
#   CLIENTS="1 64" OPS=put make bench-cluster
#   KEYVAL_BIN=/path/to/release make bench-cluster   # benchmark other binaries (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-"1 16 64 256"}
OPS=${OPS:-"put get"}
if [ -z "${KEYVAL_BIN:-}" ]; then
  ${CARGO:-cargo} build -q --release -p native-node --bins
  KEYVAL_BIN="${CARGO_TARGET_DIR:-target}/release"
fi

DATA=$(mktemp -d /tmp/keyval-bench.XXXXXX)
PIDS=()
stop() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap stop EXIT

# Three free loopback ports (bound and released by the OS, like the process tests do).
read -r P1 P2 P3 < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
ENDPOINTS="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
n=0
for port in "$P1" "$P2" "$P3"; do
  n=$((n + 1))
  "$KEYVAL_BIN/keyval" --id "$n" --listen "127.0.0.1:$port" --peers "$PEERS" \
    --data-dir "$DATA/node$n" >"$DATA/node$n.log" 2>&1 &
  PIDS+=($!)
done

KVCTL=("$KEYVAL_BIN/kvctl" --endpoints "$ENDPOINTS" --timeout-ms 2000)
for _ in $(seq 1 100); do
  "${KVCTL[@]}" put bench-ready 1 >/dev/null 2>&1 && break
  sleep 0.1
done

printf '%-4s %8s %12s %9s %9s %9s\n' op clients "ops/s" "p50 ms" "p99 ms" "p99.9 ms"
for op in $OPS; do
  for c in $CLIENTS; do
    "${KVCTL[@]}" -o json bench --op "$op" --clients "$c" --duration "$DURATION" |
      python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_ms"]
print("%-4s %8d %12.0f %9.2f %9.2f %9.2f" % (r["op"], r["clients"], r["throughput_ops_s"], l["p50"], l["p99"], l["p99_9"]))'
  done
done
