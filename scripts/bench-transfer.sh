#!/usr/bin/env bash
# `make bench-transfer`: time of a leadership transfer on a fresh local 3-node release cluster
# (free loopback ports, a temporary data directory, fsync on): from the moment `kvctl leader
# transfer --to T` is started to the first write acknowledged by the new leader T (a `kvctl
# put` sent to T alone, retried until it succeeds). RUNS transfers (default 10) round the
# nodes; prints every run, then the median and the maximum. Both times include starting the
# kvctl processes (a few ms each), so they are upper bounds of the cluster's own time.
#
#   RUNS=20 make bench-transfer
#   KEYVAL_BIN=/path/to/release make bench-transfer
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
. scripts/lib/local-cluster.sh
release_bins

start_local_cluster transfer 3000

leader() {
  "${KVCTL[@]}" -o json status | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(next(n["id"] for n in r["nodes"] if n.get("role") == "leader"))'
}


TIMES=()
for run in $(seq 1 "$RUNS"); do
  from=$(leader)
  to=$(( from % 3 + 1 ))
  start=$(date +%s%N)
  "${KVCTL[@]}" -o json leader transfer --to "$to" >/dev/null
  until "$KEYVAL_BIN/kvctl" --endpoints "127.0.0.1:${PORTS[$((to - 1))]}" --timeout-ms 50 \
      put "transfer-$run" 1 >/dev/null 2>&1; do :; done
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000 ))
  TIMES+=("$ms")
  printf 'run %2d: n%d -> n%d, first write on n%d after %d.%03d ms\n' \
    "$run" "$from" "$to" "$to" $((ms / 1000)) $((ms % 1000))
  sleep 0.3
done
printf '%s\n' "${TIMES[@]}" | python3 -c '
import statistics, sys
t = [int(l) / 1000 for l in sys.stdin]
print("transfer request to first write on the new leader: median %.1f ms, max %.1f ms over %d runs" % (statistics.median(t), max(t), len(t)))'
