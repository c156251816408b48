#!/usr/bin/env bash
# The side-by-side of docs/benchmarks.md, in one command (`make bench` runs it on a release
# build): a 3-member etcd and a 3-process Kizuna hub on loopback, both plaintext and fsyncing
# (Kizuna's state sealed at rest, as deployed),
# loaded by the same program (`kizuna load`, `--etcd` for etcd) with the same keys, 64-byte
# values and one connection to each leader, at 1, 64 and 256 clients. Runs alternate between the
# two stores (and which goes first) to cancel the machine's drift; each run's JSON is kept, with
# the CPU its store's three processes used (`.cpu` beside it); the
# summary prints the median of the rounds and the ratio; then both stores at half of Kizuna's
# peak rate (open loop), for the commit latency there.
# usage: ops/scripts/bench-etcd.sh PATH/TO/kizuna [OUT_DIR]   (env: ROUNDS=3 SECONDS_PER_RUN=10 CLIENTS="1 64 256" WARMUP_SECONDS=30
#   WORK_ROOT=/tmp: where both stores' data dirs go; /dev/shm (tmpfs, where fsync returns at once)
#   separates what the disk costs each store from the rest, docs/benchmarks.md session 46)
set -euo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-etcd-$(date +%Y%m%d-%H%M%S)}")
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-1 64 256}
WARMUP_SECONDS=${WARMUP_SECONDS:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/setup-etcd.sh"
mkdir -p "$OUT"
D=$(mktemp -d "${WORK_ROOT:-/tmp}/kizuna-bench-etcd-XXXX")
ETCD_PIDS=()
KIZUNA_PIDS=()
cleanup() {
  for p in "${ETCD_PIDS[@]}" "${KIZUNA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
cd "$D"

# etcd: three members, its defaults (heartbeat 100 ms, election 1 s, fsync on every commit).
CLUSTER=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$D/etcd/e$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new > "$D/etcd-$i.log" 2>&1 &
  ETCD_PIDS+=($!)
done
ETCD=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793

# Kizuna: the hub of bench-hub.sh (three `serve` processes, plaintext, sealed, scrubbed).
source "$HERE/bench-hub.sh"

# CPU seconds (user + system) the three processes of STORE have used so far. A run's share per
# committed write says what a store spends where the rate says what it achieves: at 256 clients
# both saturate the cores, so the ratio of rates is the inverse of this one (bench_report.py
# prints it beside the rates).
cpu_seconds() { # STORE
  local pids
  if [ "$1" = etcd ]; then pids=("${ETCD_PIDS[@]}"); else pids=("${KIZUNA_PIDS[@]}"); fi
  for p in "${pids[@]}"; do cut -d' ' -f14,15 "/proc/$p/stat"; done |
    awk -v hz="$(getconf CLK_TCK)" '{t += $1 + $2} END {printf "%.2f\n", t / hz}'
}
load() { # STORE CLIENTS SECONDS [OUT_FILE [MORE LOAD ARGS]]
  local args=(load --clients "$2" --seconds "$3" --value-bytes 64 --json "${@:5}")
  if [ "$1" = etcd ]; then args+=(--etcd "$ETCD"); fi
  local before
  before=$(cpu_seconds "$1")
  "$BIN" --endpoint "$LEADER" "${args[@]}" > "${4:-/dev/null}"
  # Beside OUT_FILE: the CPU its run took, read by bench_report.py.
  if [ -n "${4:-}" ]; then echo "$before $(cpu_seconds "$1")" > "${4%.json}.cpu"; fi
}
# Both stores are warmed up alike, long enough for each to be past its first snapshots (~400,000
# writes at 64 clients): a Kizuna node writes its log's WAL over a recycled file, as a hub that
# has run a while does, only from its second or third checkpoint on (every 100,000 entries,
# the three nodes a third of that apart; the file a node writes over is the one it left at the
# checkpoint before last, and a new sealed hub's first is nearly empty: ~200,000–267,000
# writes). Until then it appends to new WAL files, and each fsync also writes a new file size
# (docs/benchmarks.md, session 43).
echo "bench-etcd: warming up both stores, ${WARMUP_SECONDS}s each at 64 clients" >&2
load etcd 64 "$WARMUP_SECONDS"; load kizuna 64 "$WARMUP_SECONDS"
for c in $CLIENTS; do
  for r in $(seq 1 "$ROUNDS"); do
    order="etcd kizuna"; [ $((r % 2)) -eq 0 ] && order="kizuna etcd"
    for store in $order; do
      echo "bench-etcd: $store, $c clients, round $r of $ROUNDS" >&2
      load "$store" "$c" "$SECONDS_PER_RUN" "$OUT/$store-c$c-r$r.json"
    done
  done
done
# The commit latency at half of Kizuna's peak: both stores at that fixed rate (an open loop over
# 256 clients, latency from each write's scheduled time).
HALF=$(python3 "$HERE/bench_report.py" half-rate "$OUT")
for store in etcd kizuna; do
  echo "bench-etcd: $store at $HALF writes/s, half of Kizuna's peak" >&2
  load "$store" 256 "$SECONDS_PER_RUN" "$OUT/$store-half.json" --rate "$HALF"
done
for i in 1 2 3; do du -sb "$D/etcd/e$i" "$D/kizuna/n$i/db" "$D/kizuna/n$i/log"; done > "$OUT/disk.txt"
python3 "$HERE/bench_report.py" etcd "$OUT"
