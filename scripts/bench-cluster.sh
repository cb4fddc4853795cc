#!/usr/bin/env bash
# `make bench-cluster`: a fresh local 3-node release cluster (free loopback ports, a temporary
# data directory, fsync on), `kvctl bench` for puts and gets at 1, 16, 64 and 256 clients, one
# table (throughput, p50, p99, p99.9), after the machine's floor for a put (`kvctl floor`). The
# cluster is stopped and its data removed at the end.
#
#   DURATION=10 make bench-cluster          # seconds per case (default 5)
#   CLIENTS="1 64" OPS=put make bench-cluster
#   KEYVAL_BIN=/path/to/release make bench-cluster   # benchmark other binaries (before/after)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-"1 16 64 256"}
OPS=${OPS:-"put get"}
. scripts/lib/local-cluster.sh
release_bins

# What the machine allows at best for a 1-client put, on the disk the cluster will use: the
# floor the 1-client lines below are read against (see `kvctl floor --help`).
"$KEYVAL_BIN/kvctl" -o json floor --dir /tmp | python3 -c '
import json, sys
l = json.load(sys.stdin)["latency_ms"]
print("machine floor (kvctl floor): replicated put p50 %.2f ms (fsync), %.2f ms (no fsync); fdatasync p50 %.2f ms" % (
    l["replicated_fsync"]["p50"], l["replicated_no_fsync"]["p50"], l["disk_fdatasync"]["p50"]))'

start_local_cluster bench 2000

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
