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
if [ -z "${KEYVAL_BIN:-}" ]; then
  ${CARGO:-cargo} build -q --release -p native-node --bins
  KEYVAL_BIN="${CARGO_TARGET_DIR:-target}/release"
fi

DATA=$(mktemp -d /tmp/keyval-members.XXXXXX)
PIDS=()
stop() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap stop EXIT

read -r P1 P2 P3 P4 P5 < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
PORTS=("" "$P1" "$P2" "$P3" "$P4" "$P5")
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
ENDPOINTS="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
for n in 1 2 3; do
  "$KEYVAL_BIN/keyval" --id "$n" --listen "127.0.0.1:${PORTS[$n]}" --peers "$PEERS" \
    --data-dir "$DATA/node$n" >"$DATA/node$n.log" 2>&1 &
  PIDS+=($!)
done
KVCTL=("$KEYVAL_BIN/kvctl" --endpoints "$ENDPOINTS" --timeout-ms 5000)
for _ in $(seq 1 100); do
  "${KVCTL[@]}" put ready 1 >/dev/null 2>&1 && break
  sleep 0.1
done

now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# Adds node N and prints the milliseconds until it is a voter.
add_node() {
  local n=$1 addr="127.0.0.1:${PORTS[$1]}" t0 t1
  t0=$(now_ms)
  "${KVCTL[@]}" member add "$n" "$addr" >/dev/null
  "$KEYVAL_BIN/keyval" --id "$n" --listen "$addr" --join "$ENDPOINTS" \
    --data-dir "$DATA/node$n" >"$DATA/node$n.log" 2>&1 &
  PIDS+=($!)
  until "${KVCTL[@]}" -o json member list | grep -q "{\"id\":$n,\"address\":\"$addr\",\"role\":\"voter\"}"; do
    sleep 0.02
  done
  t1=$(now_ms)
  echo $((t1 - t0))
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
ms=$(add_node 4)
echo "add node 4 (member add -> promoted voter) with ~${STATE_MB} MB: ${ms} ms"
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
ms5=$(add_node 5)
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
