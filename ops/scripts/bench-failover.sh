#!/usr/bin/env bash
# The failover series of docs/benchmarks.md: the chaos harness kills the leader of a 3-region
# hub of real `kizuna` processes again and again (`kizuna-chaos --scenario leader-kill`) under
# load, at a given round-trip time between regions and Raft timers, and measures how long no
# write was acknowledged after each kill; then the same timers under slow links (300 ms per hop,
# 150 ms jitter) count elections that should not happen. One JSON report per run; the table
# prints p50 / p99 / max per setting.
# usage: ops/scripts/bench-failover.sh TARGET_DIR [OUT_DIR]   (TARGET_DIR holds kizuna and kizuna-chaos;
#        env: SECONDS_PER_RUN=90, SETTINGS="RTT:HEARTBEAT,MIN,MAX:PREVOTE ...")
set -euo pipefail
BIN_DIR=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-failover-$(date +%Y%m%d-%H%M%S)}")
SECONDS_PER_RUN=${SECONDS_PER_RUN:-90}
# The old defaults (150 / 1000–2000), the harness's (100 / 500–1000) and today's (100 / 300–500,
# pre-vote) at loopback speed, 20 ms and 50 ms.
SETTINGS=${SETTINGS:-"20:150,1000,2000:false 20:100,500,1000:false 0:100,300,500:true 20:100,300,500:true 50:100,300,500:true"}
mkdir -p "$OUT"
for s in $SETTINGS; do
  IFS=: read -r rtt timers prevote <<< "$s"
  name="rtt${rtt}-raft${timers//,/-}-prevote${prevote}"
  for scenario in leader-kill slow; do
    echo "bench-failover: $scenario, RTT $rtt ms, raft $timers, pre-vote $prevote" >&2
    KIZUNA_BIN="$BIN_DIR/kizuna" "$BIN_DIR/kizuna-chaos" --scenario "$scenario" --rtt-ms "$rtt" --raft-ms "$timers" \
      --pre-vote "$prevote" --seconds "$SECONDS_PER_RUN" --clients 4 --rooms 4 \
      --report "$OUT/$scenario-$name.json" > "$OUT/$scenario-$name.txt"
  done
done
python3 "$(dirname "$0")/bench_report.py" failover "$OUT"
