#!/usr/bin/env bash
# `make bench-steady`: a long put benchmark on a fresh local 3-node release cluster (fsync on)
# that must not cost the cluster its leader: CLIENTS (256) closed-loop clients for DURATION
# (60) s. Reported: kvctl bench's table, then every node's term and leader before and after and
# each node's keyval_server_leader_changes_seen_total. Exits 1 if the term or the leader moved.
# Not a test (timing-dependent): it prints numbers for the performance notes.
#
#   DURATION=60 CLIENTS=256 make bench-steady
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
CLIENTS=${CLIENTS:-256}
. scripts/lib/local-cluster.sh
release_bins
start_local_cluster steady 5000
trap 'exit 143' TERM INT

# "id term leader" per node, from `kvctl status`.
terms() {
  "${KVCTL[@]}" -o json status | python3 -c '
import json, sys
for n in sorted(json.load(sys.stdin)["nodes"], key=lambda n: n["id"]):
    print(n["id"], n.get("term"), n.get("leader"))'
}
leader_changes() {
  local p
  for p in "${PORTS[@]}"; do
    python3 - "$p" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((l.split()[-1] for l in body.splitlines()
            if l.startswith("keyval_server_leader_changes_seen_total")), "?"), end=" ")
PY
  done
  echo
}

BEFORE=$(terms)
CHANGES_BEFORE=$(leader_changes)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"${KVCTL[@]}" bench --op put --clients "$CLIENTS" --duration "$DURATION"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
AFTER=$(terms)
CHANGES_AFTER=$(leader_changes)
echo "node term leader, before:"; echo "$BEFORE"
echo "node term leader, after:"; echo "$AFTER"
echo "leader changes seen per node (nodes 1..3), before: $CHANGES_BEFORE after: $CHANGES_AFTER"
if [ "$BEFORE" != "$AFTER" ]; then
  echo "the leader or the term changed during the run" >&2
  exit 1
fi
echo "no leader change during ${DURATION} s of ${CLIENTS}-client puts"
