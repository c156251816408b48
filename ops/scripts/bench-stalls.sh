#!/usr/bin/env bash
# Where the commit latency's tail comes from (docs/benchmarks.md, session 35): the side-by-side's
# Kizuna hub alone (bench-hub.sh), a 20-second warm-up at 256 clients, then RUNS open-loop runs of
# SECONDS_PER_RUN at RATE writes/s (bench-etcd.sh's half of the peak is its last line). Keeps each
# run's JSON (`by_second`: each second's slowest write) and the nodes' RocksDB LOGs, then
# prints every second whose slowest write took STALL_MS or more beside what the nodes' RocksDB
# did within a second of it: flushes, compactions and checkpoints (`bench_report.py stalls`).
# usage: ops/scripts/bench-stalls.sh PATH/TO/kizuna [OUT_DIR]   (env: RATE=7200 RUNS=4 SECONDS_PER_RUN=30 STALL_MS=25)
set -euo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-stalls-$(date +%Y%m%d-%H%M%S)}")
RATE=${RATE:-7200}
RUNS=${RUNS:-4}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
D=$(mktemp -d /tmp/kizuna-bench-stalls-XXXX)
KIZUNA_PIDS=()
cleanup() {
  for p in "${KIZUNA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
cd "$D"
source "$HERE/bench-hub.sh"
load() { # OUT_FILE SECONDS [MORE LOAD ARGS]
  "$BIN" --endpoint "$LEADER" load --clients 256 --seconds "$2" --value-bytes 64 --json "${@:3}" > "$1"
}
echo "bench-stalls: warming up" >&2
load /dev/null 20
for r in $(seq 1 "$RUNS"); do
  echo "bench-stalls: run $r of $RUNS at $RATE writes/s" >&2
  load "$OUT/stalls-$r.json" "$SECONDS_PER_RUN" --rate "$RATE"
done
# The state's RocksDB (`rocksdb-nI.LOG`) and the log's (`rocksdb-nI-log.LOG`).
for i in 1 2 3; do cp "$D/kizuna/n$i/db/LOG" "$OUT/rocksdb-n$i.LOG"; cp "$D/kizuna/n$i/log/LOG" "$OUT/rocksdb-n$i-log.LOG"; done
python3 "$HERE/bench_report.py" stalls "$OUT" "${STALL_MS:-25}"
