#!/usr/bin/env bash
# `make bench-catchup`: how fast a follower that fell ~STATE_MB (100) MB behind is caught up by
# snapshot, on a fresh local 3-node release cluster (fsync on). Not a test: it prints numbers.
#
# Node 3 is stopped, ~STATE_MB of state is written (the leader snapshots and compacts its log
# meanwhile), then node 3 restarts with its old data: the leader has compacted the entries it
# lacks, so it sends its snapshot. Reported: the snapshot's size, the time from the restart to
# node 3 having installed the snapshot and to node 3 applying the leader's commit index (the
# log written after the snapshot included), MB/s of snapshot data, and whether any election
# happened while the leader snapshotted or during the transfer (the term must not move).
#
#   STATE_MB=100 make bench-catchup
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_MB=${STATE_MB:-100}
. scripts/lib/local-cluster.sh
release_bins

start_local_cluster catchup 5000
# The node logs outlive the cluster, for the elections and the snapshot transfer's timeline.
LOGS=artifacts/bench-catchup
rm -rf "$LOGS" && mkdir -p "$LOGS"
trap 'cp "$DATA"/node*.log "$LOGS"/ 2>/dev/null; stop_local_cluster' EXIT
trap 'exit 143' TERM INT

now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }
# "term leader_commit node3_applied" from `kvctl status` (node 3's fields are -1 while down).
cluster_state() {
  "${KVCTL[@]}" -o json status 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
nodes = {n["id"]: n for n in r["nodes"] if n.get("reachable")}
leader = [n for n in nodes.values() if n.get("role") == "leader"]
if not leader:
    print("-1 -1 -1"); sys.exit()
l = leader[0]
n3 = nodes.get(3, {})
print(l["term"], l["commit_index"], n3.get("applied_index", -1))'
}

kill "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
unset 'PIDS[2]'
# Node 3 may have led and handed leadership over as it stopped: count from the new term.
until read -r TERM0 _ _ < <(cluster_state) && [ "$TERM0" -ge 0 ]; do sleep 0.05; done

KEYS=$((STATE_MB * 1000))
echo "node 3 stopped; loading ~${STATE_MB} MB (${KEYS} keys of 1 KiB) ..."
"${KVCTL[@]}" -o json bench --op put --clients 64 --keys "$KEYS" --value-size 1024 \
  --total $((KEYS * 2)) >/dev/null
# One more snapshot past the load, so the leader's log no longer holds what node 3 lacks.
sleep 2
read -r TERM1 COMMIT _ < <(cluster_state)
snap=$(find "$DATA/node1" -name '*.snap' -printf '%s %p\n' 2>/dev/null | sort -n | tail -1)
SNAP_BYTES=${snap%% *}
if [ -z "$SNAP_BYTES" ]; then
  echo "the leader took no snapshot: ~${STATE_MB} MB is below the snapshot threshold; raise STATE_MB" >&2
  exit 1
fi
echo "leader: term $TERM1, commit index $COMMIT, newest snapshot file ${SNAP_BYTES:-?} bytes"

t0=$(now_ms)
"$KEYVAL_BIN/keyval" --id 3 --listen "127.0.0.1:${PORTS[2]}" --peers "$PEERS" \
  --data-dir "$DATA/node3" >>"$DATA/node3.log" 2>&1 &
PIDS+=($!)
while :; do
  read -r term commit applied < <(cluster_state)
  if [ "$applied" -ge "$COMMIT" ] 2>/dev/null; then
    break
  fi
  if [ $(($(now_ms) - t0)) -gt 600000 ]; then
    echo "node 3 did not catch up within 10 minutes; logs in $DATA" >&2
    exit 1
  fi
  sleep 0.02
done
MS=$(($(now_ms) - t0))
read -r TERM2 _ _ < <(cluster_state)
python3 - "$SNAP_BYTES" "$MS" "$TERM0" "$TERM1" "$TERM2" "$t0" "$DATA/node3.log" <<'EOF'
import datetime, sys
size, ms, t0, t1, t2, restart = (int(x) for x in sys.argv[1:7])
# When node 3 logged the snapshot installed (decoded and swapped in), after its restart.
installed = None
for line in open(sys.argv[7], errors="replace"):
    if "snapshot installed" in line:
        at = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
        at_ms = int(at.timestamp() * 1000)
        if at_ms >= restart:
            installed = at_ms - restart
if installed:
    print("node 3 installed the snapshot %d ms after its restart (process start, transfer, decode): %.0f MB/s"
          % (installed, size / 1e6 / (installed / 1000)))
print("node 3 caught up: %d ms from restart, %.1f MB of snapshot plus the log after it, %.0f MB/s overall"
      % (ms, size / 1e6, size / 1e6 / (ms / 1000)))
print("elections: %s (term %d before the load, %d after it, %d after the catch-up)"
      % ("none" if t0 == t1 == t2 else "YES", t0, t1, t2))
EOF
grep -c "snapshot" "$DATA/node3.log" | awk '{print "node 3 log lines about snapshots: " $1}'
