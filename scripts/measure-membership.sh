#!/usr/bin/env bash
# `make measure-membership`: figures for membership changes on a fresh local release cluster
# (free loopback ports, temporary data directories, fsync on). Not a test: it prints numbers.
#
# 1. Time to add a node to a cluster holding ~100 MB: from `kvctl member add` to the leader
#    reporting it a voter (the start of `keyval --join`, the snapshot and the catch-up included).
# 2. The write-throughput dip during a change: one 16 s `kvctl bench` (64 clients, 256-byte
#    values) reporting throughput per WINDOW_MS (500) ms while a node is added (and promoted)
#    and then removed.
#
#   STATE_MB=100 CLIENTS=64 make measure-membership
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_MB=${STATE_MB:-100}
CLIENTS=${CLIENTS:-64}
. scripts/lib/local-cluster.sh
release_bins

start_local_cluster members 5000
# The node logs outlive the cluster (artifacts/measure-membership/) for the timeline of a change.
LOGS=artifacts/measure-membership
rm -rf "$LOGS" && mkdir -p "$LOGS"
trap 'cp "$DATA"/node*.log "$LOGS"/ 2>/dev/null; stop_local_cluster' EXIT
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

WINDOW_MS=${WINDOW_MS:-500}
echo "write throughput in ${WINDOW_MS} ms windows of one $CLIENTS-client bench (add node 5 at ~3 s, remove it at ~9 s):"
"${KVCTL[@]}" -o json bench --op put --clients "$CLIENTS" --duration 16 \
  --interval-ms "$WINDOW_MS" >"$DATA/windows.json" 2>"$DATA/windows.err" &
BENCH=$!
sleep 3
t_add=$(now_ms)
add_node 5
ms5=$ADD_MS
sleep $((6 - ms5 / 1000 > 0 ? 6 - ms5 / 1000 : 1))
t_rm=$(now_ms)
"${KVCTL[@]}" member remove 5 >/dev/null
t_rm_done=$(now_ms)
wait "$BENCH" || { echo "the bench failed:"; cat "$DATA/windows.err"; exit 1; }
echo "add node 5 under load: ${ms5} ms to voter; remove node 5: $((t_rm_done - t_rm)) ms"
python3 - "$DATA/windows.json" "$WINDOW_MS" "$t_add" "$((t_add + ms5))" "$t_rm" "$t_rm_done" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = float(sys.argv[2])
a0, a1, r0, r1 = map(float, sys.argv[3:7])
start = r["started_unix_ms"]
rows = [(start + i * w, ops) for i, ops in enumerate(r["intervals"])]
def label(t):
    end = t + w
    if end > a0 and t < a1: return "adding"
    if end > r0 and t < r1 + 1: return "removing"
    return ""
# The first second holds the workers' connections and sessions: not a baseline.
base = [ops for t, ops in rows if not label(t) and t >= start + 1000]
for t, ops in rows:
    print("  %+6.1f s  %8.0f ops/s  %s" % ((t - start) / 1000, ops, label(t)))
print("whole run: %.0f ops/s, %d errors, p99 %.1f ms"
      % (r["throughput_ops_s"], r["errors"], r["latency_ms"]["p99"]))
if base:
    b = sorted(base)[len(base) // 2]
    for what in ("adding", "removing"):
        during = [ops for t, ops in rows if label(t) == what]
        if during:
            print("%s: lowest window %.0f ops/s = %.0f%% of the median undisturbed window (%.0f ops/s); mean while %s %.0f%%"
                  % (what, min(during), 100 * min(during) / b, b, what, 100 * sum(during) / len(during) / b))
PY
