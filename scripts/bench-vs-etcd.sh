#!/usr/bin/env bash
# `make bench-etcd`: KeyVal and etcd 3.4 side by side on this machine, in one run.
#
# Both systems: 3 members on loopback, fsync on, 16-byte keys, 256-byte values, closed-loop
# clients, a fresh cluster for every case. Each round runs every case on both systems, etcd first
# in odd rounds and KeyVal first in even ones, so a burst of load from elsewhere hits both; the
# machine's 1-minute load average is recorded beside every figure. The table reports medians
# over the rounds and KeyVal/etcd ratios (absolute numbers move 30-40 % between runs here).
#
# Clients connect as etcd's load generator's do (`--conns 1 --conn-mode leader`): the KeyVal
# clients of a multi-client case share KV_CONNS connections to the leader (`kvctl bench
# --conns`, default 1; KV_CONNS=0 gives every client its own connection, as before 2026-12-01).
#
# KeyVal runs with its defaults; the lease case adds --lease-reads (which also keeps followers
# from campaigning early when the leader's connection closes, see failover). Cases:
#   put   1 / 64 / 256 clients                    put vs put (etcd clients talk to the leader)
#   get   1 / 64 clients, linearizable            ReadIndex vs etcd's linearizable Range
#   get   1 client, lease                         lease read vs etcd's serializable Range
#   failover                                      kill -9 of the leader -> next successful put
#     KeyVal: a fresh `kvctl put` with every endpoint from the kill on, retried until it
#     succeeds (kvctl's own leader discovery and backoff included); etcd: see etcd_failover.
#
#   ROUNDS=3 DURATION=10 FAILOVER_TRIALS=2 make bench-etcd
#   CASES="put1 failover" make bench-etcd        # a subset (names below)
#   KEYVAL_BIN=/path/to/release ETCD_BENCH=/path/to/etcd-bench make bench-etcd
#
# Needs etcd and etcdctl (`apt-get install etcd-server etcd-client protobuf-compiler`) and the
# load generator in ../shared/bench-etcd (built here when ETCD_BENCH is not given).
# Raw rows go to $OUT/raw.tsv, the table to $OUT/table.md (OUT defaults to
# artifacts/bench-etcd/<UTC time>).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-2}
KV_CONNS=${KV_CONNS:-1}
CASES=${CASES:-"put1 put64 put256 linget1 linget64 leaseget1 failover"}
ETCD_DIR=${ETCD_BENCH_DIR:-../shared/bench-etcd}
OUT=${OUT:-artifacts/bench-etcd/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RAW="$OUT/raw.tsv"
: >"$RAW"

command -v etcd >/dev/null && command -v etcdctl >/dev/null || {
  echo "etcd/etcdctl missing: apt-get install -y etcd-server etcd-client protobuf-compiler" >&2
  exit 2
}
if [ -z "${KEYVAL_BIN:-}" ]; then
  ${CARGO:-cargo} build -q --release -p native-node --bins
  KEYVAL_BIN="${CARGO_TARGET_DIR:-target}/release"
fi
if [ -z "${ETCD_BENCH:-}" ]; then
  ETCD_TARGET=${ETCD_BENCH_TARGET:-/tmp/bench-etcd}
  CARGO_TARGET_DIR="$ETCD_TARGET" ${CARGO:-cargo} build -q --release \
    --manifest-path "$ETCD_DIR/Cargo.toml"
  ETCD_BENCH="$ETCD_TARGET/release/etcd-bench"
fi
export ETCD_STATE=${ETCD_STATE:-$(mktemp -d /tmp/etcd-bench-state.XXXXXX)}
RUN_ETCD=(bash "$ETCD_DIR/run-etcd.sh")
ETCD_ENDPOINTS="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
declare -A ETCD_CPORT=([m1]=2379 [m2]=22379 [m3]=32379)

load1() { cut -d' ' -f1 /proc/loadavg; }
now_ns() { date +%s%N; }

# ---- KeyVal cluster -------------------------------------------------------------------------
KV_DATA=""
KV_PIDS=()
kv_start() { # [extra keyval flags]
  KV_DATA=$(mktemp -d /tmp/keyval-vs-etcd.XXXXXX)
  read -r P1 P2 P3 < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
  local peers="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3" n=0 port
  KV_ENDPOINTS="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
  KV_PIDS=()
  for port in "$P1" "$P2" "$P3"; do
    n=$((n + 1))
    "$KEYVAL_BIN/keyval" --id "$n" --listen "127.0.0.1:$port" --peers "$peers" \
      --data-dir "$KV_DATA/node$n" ${1:-} ${KEYVAL_EXTRA_FLAGS:-} >"$KV_DATA/node$n.log" 2>&1 &
    KV_PIDS+=($!)
  done
  KVCTL=("$KEYVAL_BIN/kvctl" --endpoints "$KV_ENDPOINTS" --timeout-ms 5000)
  for _ in $(seq 1 100); do
    "${KVCTL[@]}" put bench-ready 1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "KeyVal cluster did not come up (logs in $KV_DATA)" >&2
  return 1
}
kv_stop() {
  local p
  for p in "${KV_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${KV_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  KV_PIDS=()
  [ -n "$KV_DATA" ] && rm -rf "$KV_DATA"
  KV_DATA=""
}
# The leader's pid, from `kvctl status` (node ids are 1..3 in start order).
kv_leader_pid() {
  local id
  id=$("${KVCTL[@]}" -o json status | python3 -c '
import json,sys
for n in json.load(sys.stdin)["nodes"]:
    if n.get("role")=="leader": print(n["id"]); break')
  [ -n "$id" ] && echo "${KV_PIDS[$((id - 1))]}"
}

# ---- etcd cluster ---------------------------------------------------------------------------
etcd_start() { "${RUN_ETCD[@]}" start >/dev/null; }
etcd_stop() { "${RUN_ETCD[@]}" stop >/dev/null 2>&1 || true; }

cleanup() { kv_stop; etcd_stop; rm -rf "$ETCD_STATE"; }
trap cleanup EXIT

# ---- one measurement ------------------------------------------------------------------------
# Appends "round system case ops_s p50 p99 p999 load1" to $RAW.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; echo "  $*"; }

# The leader's endpoint first, then the others: kvctl's clients start at the first endpoint, and
# a linearizable get taken by a follower is a follower read (one more round trip to the
# leader). etcd's load generator connects to the leader (--conn-mode leader): same here.
kv_leader_first() {
  "${KVCTL[@]}" -o json status | python3 -c '
import json, sys
eps = sys.argv[1].split(",")
nodes = json.load(sys.stdin)["nodes"]
lead = [n["id"] for n in nodes if n.get("role") == "leader"]
if lead:
    eps.insert(0, eps.pop(lead[0] - 1))
print(",".join(eps))' "$KV_ENDPOINTS"
}

kv_case() { # round case op clients consistency
  local round=$1 case=$2 op=$3 clients=$4 consistency=$5 l json conns
  if [ "$consistency" = lease ]; then kv_start --lease-reads; else kv_start; fi
  l=$(load1)
  conns=()
  if [ "$clients" -gt 1 ] && [ "$KV_CONNS" != 0 ]; then conns=(--conns "$KV_CONNS"); fi
  json=$("$KEYVAL_BIN/kvctl" --endpoints "$(kv_leader_first)" --timeout-ms 5000 -o json bench --op "$op" --consistency "$consistency" \
    --clients "$clients" --duration "$DURATION" "${conns[@]}")
  kv_stop
  record "$round" keyval "$case" $(echo "$json" | python3 -c '
import json,sys
r=json.load(sys.stdin); l=r["latency_ms"]
print("%.1f %.3f %.3f %.3f" % (r["throughput_ops_s"], l["p50"], l["p99"], l["p99_9"]))') "$l"
}

etcd_case() { # round case op clients
  local round=$1 case=$2 op=$3 clients=$4 l line
  etcd_start
  l=$(load1)
  line=$("$ETCD_BENCH" --op "$op" --clients "$clients" --conns 1 --conn-mode leader \
    --duration "$DURATION" | grep '^RESULT')
  etcd_stop
  record "$round" etcd "$case" $(echo "$line" | python3 -c '
import sys
kv=dict(f.split("=",1) for f in sys.stdin.read().split()[1:])
print(kv["ops_per_s"], kv["p50_ms"], kv["p99_ms"], kv["p999_ms"])') "$l"
}

# The machine's floor for a 1-client put (`kvctl floor`: the put's path with bare blocking I/O,
# on the disk the clusters use), once per round, so the put1 rows can be read against it.
floor_case() { # round
  local round=$1 l json
  l=$(load1)
  json=$("$KEYVAL_BIN/kvctl" -o json floor --dir /tmp)
  record "$round" floor put1 - $(echo "$json" | python3 -c '
import json,sys
l=json.load(sys.stdin)["latency_ms"]["replicated_fsync"]
print("%.3f %.3f -" % (l["p50"], l["p99"]))') "$l"
}

# Failover: kill -9 the leader, then put from a fresh client until one succeeds.
kv_failover() {
  local round=$1 t0 t1 pid l
  kv_start
  "${KVCTL[@]}" put warm 1 >/dev/null
  sleep 1 # let heartbeats settle: the kill lands in steady state
  pid=$(kv_leader_pid)
  l=$(load1)
  t0=$(now_ns)
  kill -9 "$pid"
  until "${KVCTL[@]}" put after-kill 1 >/dev/null 2>&1; do :; done
  t1=$(now_ns)
  kv_stop
  record "$round" keyval failover "-" "$(((t1 - t0) / 1000))e-3" "-" "-" "$l"
}
# etcd: etcdctl 3.4 can hang on a dead or leaderless member for its whole command timeout,
# which would time the client rather than etcd. So the load generator keeps one client putting
# through a balanced channel over all members, with etcd's "hasleader" metadata (a member
# without a leader fails at once), 200 ms timeouts and a 1 ms retry backoff, and reports the
# first success after the kill (this favours etcd).
etcd_failover() {
  local round=$1 t0 name l bench end
  etcd_start
  name=$("${RUN_ETCD[@]}" leader | awk '{print $1}')
  "$ETCD_BENCH" --op put --clients 1 --conns 1 --conn-mode balanced --duration 6 --warmup 0.5 \
    --continue-on-error --retry-backoff-ms 1 --require-leader --timeout-ms 200 --gap-ms 20 \
    >"$ETCD_STATE/failover.out" 2>&1 &
  bench=$!
  sleep 2
  l=$(load1)
  t0=$(now_ns)
  "${RUN_ETCD[@]}" kill9 "$name" >/dev/null
  wait "$bench" || true
  end=$(awk -v t0="$t0" '/^GAP/ { for (i = 1; i <= NF; i++) if ($i ~ /^end_unix_ns=/) {
          split($i, kv, "="); if (kv[2] > t0) { print kv[2]; exit } } }' "$ETCD_STATE/failover.out")
  etcd_stop
  if [ -z "$end" ]; then echo "  etcd failover: no success after the kill" >&2; return 0; fi
  record "$round" etcd failover "-" "$(((end - t0) / 1000))e-3" "-" "-" "$l"
}

run_case() { # system round case
  local sys=$1 round=$2 case=$3 i
  case "$sys:$case" in
    keyval:put1) kv_case "$round" "$case" put 1 linearizable ;;
    keyval:put64) kv_case "$round" "$case" put 64 linearizable ;;
    keyval:put256) kv_case "$round" "$case" put 256 linearizable ;;
    keyval:linget1) kv_case "$round" "$case" get 1 linearizable ;;
    keyval:linget64) kv_case "$round" "$case" get 64 linearizable ;;
    keyval:leaseget1) kv_case "$round" "$case" get 1 lease ;;
    etcd:put1) etcd_case "$round" "$case" put 1 ;;
    etcd:put64) etcd_case "$round" "$case" put 64 ;;
    etcd:put256) etcd_case "$round" "$case" put 256 ;;
    etcd:linget1) etcd_case "$round" "$case" lin-get 1 ;;
    etcd:linget64) etcd_case "$round" "$case" lin-get 64 ;;
    etcd:leaseget1) etcd_case "$round" "$case" ser-get 1 ;;
    keyval:failover) for i in $(seq 1 "$FAILOVER_TRIALS"); do kv_failover "$round"; done ;;
    etcd:failover) for i in $(seq 1 "$FAILOVER_TRIALS"); do etcd_failover "$round"; done ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
  esac
}

echo "KeyVal: $KEYVAL_BIN   etcd: $(etcd --version | head -1)   rounds: $ROUNDS x ${DURATION}s"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="etcd keyval"; else order="keyval etcd"; fi
  echo "round $round ($order first)"
  case " $CASES " in *" put1 "*) floor_case "$round" ;; esac
  for case in $CASES; do
    for sys in $order; do run_case "$sys" "$round" "$case"; done
  done
done

python3 - "$RAW" >"$OUT/table.md" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = {"put1": "put, 1 client", "put64": "put, 64 clients", "put256": "put, 256 clients",
         "linget1": "linearizable get, 1 client", "linget64": "linearizable get, 64 clients",
         "leaseget1": "lease get (etcd: serializable), 1 client",
         "failover": "leader kill -9 -> next put"}
def med(xs): return statistics.median(xs) if xs else float("nan")
def col(sys_, case, i):
    return [float(r[i]) for r in rows if r[1] == sys_ and r[2] == case and r[i] != "-"]
def loads(case):
    return "/".join(sorted({r[7] for r in rows if r[2] == case}, key=float))
print("| case | etcd | KeyVal | KeyVal/etcd | load avg (1 min) during runs |")
print("|---|---|---|---|---|")
for case in names:
    if not any(r[2] == case for r in rows):
        continue
    if case == "failover":
        e, k = med(col("etcd", case, 4)), med(col("keyval", case, 4))
        n = len(col("keyval", case, 4))
        print(f"| {names[case]} (median of {n}) | {e:.0f} ms | {k:.0f} ms | {e/k:.2f}x faster | {loads(case)} |")
        continue
    def cell(s):
        return "%s/s, p50 %.2f ms, p99 %.2f ms" % (f"{med(col(s, case, 3)):,.0f}", med(col(s, case, 4)), med(col(s, case, 5)))
    ratio = med(col("keyval", case, 3)) / med(col("etcd", case, 3))
    p99 = med(col("keyval", case, 5)) / med(col("etcd", case, 5))
    print(f"| {names[case]} | {cell('etcd')} | {cell('keyval')} | {ratio:.2f}x ops, p99 {p99:.2f}x | {loads(case)} |")
    if col("floor", case, 4):
        print(f"| {names[case]}: this machine's floor (`kvctl floor`, no Raft) | | p50 {med(col('floor', case, 4)):.2f} ms, p99 {med(col('floor', case, 5)):.2f} ms | | |")
EOF
echo
cat "$OUT/table.md"
echo "raw: $RAW"
