#!/usr/bin/env bash
# `make measure-membership`: figures for membership changes on a fresh local release cluster
# (free loopback ports, temporary data directories, fsync on). Not a test: it prints numbers.
#
# 1. Time to add a node to a cluster holding ~100 MB: from `kvctl member add` to the leader
#    reporting it a voter (the start of `keyval --join`, the snapshot and the catch-up included).
# 2. The write-throughput dip during a change: back-to-back 1-second `kvctl bench` windows
#    (64 clients, 256-byte values) while a node is added (and promoted) and then removed.
#
#   STATE_MB=100 CLIENTS=64 make measure-membership
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_MB=${STATE_MB:-100}
CLIENTS=${CLIENTS:-64}
. scripts/lib/local-cluster.sh
release_bins

start_local_cluster members 5000
# A stop by signal runs the EXIT trap too, so no node outlives the script.
trap 'exit 143' TERM INT
# Two more free ports for the nodes that join (4 and 5); PORT_OF[n] is node n's port.
read -r P4 P5 < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
PORT_OF=("" "${PORTS[@]}" "$P4" "$P5")

now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# Adds node N and sets ADD_MS to the milliseconds until it is a voter. Not run in a subshell:
# the node's PID must reach PIDS, so the cluster's cleanup stops it.
add_node() {
  local n=$1 addr="127.0.0.1:${PORT_OF[$1]}" t0
  t0=$(now_ms)
  "${KVCTL[@]}" member add "$n" "$addr" >/dev/null
  "$KEYVAL_BIN/keyval" --id "$n" --listen "$addr" --join "$ENDPOINTS" \
    --data-dir "$DATA/node$n" >"$DATA/node$n.log" 2>&1 &
  PIDS+=($!)
  until "${KVCTL[@]}" -o json member list | grep -q "{\"id\":$n,\"address\":\"$addr\",\"role\":\"voter\"}"; do
    local waited=$(($(now_ms) - t0))
    if [ "$waited" -gt 600000 ]; then
      echo "node $n was not promoted within 10 minutes" >&2
      exit 1
    fi
    # Whichever node leads promotes it once caught up (the intent is in the configuration),
    # so a leader change during the add needs no `member promote`.
    sleep 0.02
  done
  ADD_MS=$(($(now_ms) - t0))
}

# ~STATE_MB of state: 1 KiB values over enough distinct keys.
KEYS=$((STATE_MB * 1000))
echo "loading ~${STATE_MB} MB (${KEYS} keys of 1 KiB) ..."
"${KVCTL[@]}" -o json bench --op put --clients 64 --keys "$KEYS" --value-size 1024 \
  --total $((KEYS * 3)) >/dev/null
"${KVCTL[@]}" -o json status | python3 -c '
import json, sys
r = json.load(sys.stdin)
n = [x for x in r["nodes"] if x.get("role") == "leader"][0]
print("state: last index %d, snapshot index %d" % (n["last_index"], n["snapshot_index"]))'
du -sh "$DATA/node1" | awk '{print "node 1 data directory: " $1}'
add_node 4
echo "add node 4 (member add -> promoted voter) with ~${STATE_MB} MB: ${ADD_MS} ms"
du -sh "$DATA/node4" | awk '{print "node 4 data directory after catch-up: " $1}'

echo "write throughput in 1 s windows, $CLIENTS clients (add node 5 at ~3 s, remove it at ~9 s):"
(
  for i in $(seq 1 14); do
    t=$(now_ms)
    "${KVCTL[@]}" -o json bench --op put --clients "$CLIENTS" --duration 1 |
      python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s %.0f" % (sys.argv[1], r["throughput_ops_s"]))' "$t"
  done
) >"$DATA/windows" &
BENCH=$!
sleep 3
t_add=$(now_ms)
add_node 5
ms5=$ADD_MS
sleep $((6 - ms5 / 1000 > 0 ? 6 - ms5 / 1000 : 1))
t_rm=$(now_ms)
"${KVCTL[@]}" member remove 5 >/dev/null
t_rm_done=$(now_ms)
wait "$BENCH"
echo "add node 5 under load: ${ms5} ms to voter; remove node 5: $((t_rm_done - t_rm)) ms"
python3 - "$DATA/windows" "$t_add" "$((t_add + ms5))" "$t_rm" "$t_rm_done" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
a0, a1, r0, r1 = map(float, sys.argv[2:6])
def label(t):
    end = t + 1000
    if end > a0 and t < a1: return "adding"
    if end > r0 and t < r1 + 1: return "removing"
    return ""
base = [ops for t, ops in rows if not label(t)]
for t, ops in rows:
    print("  %+6.1f s  %8.0f ops/s  %s" % ((t - rows[0][0]) / 1000, ops, label(t)))
if base:
    b = sorted(base)[len(base) // 2]
    for what in ("adding", "removing"):
        during = [ops for t, ops in rows if label(t) == what]
        if during:
            print("%s: lowest window %.0f ops/s = %.0f%% of the median undisturbed window (%.0f ops/s)"
                  % (what, min(during), 100 * min(during) / b, b))
PY
