#!/usr/bin/env bash
# WAN figures on one machine (docs/benchmarks.md, "Posts at WAN latencies"): the chaos
# harness serves a 3-region hub of real `kizuna` processes (plaintext, fsync, encryption at
# rest) whose node-to-node links pass its proxies with a given round-trip time between regions
# (a tenth of it as jitter each way) and no faults (`kizuna-chaos --serve-session`); `kizuna
# bench` then posts from clients on every node at 1 and 16 clients, and with 48 live
# subscribers. Clients reach their own node directly, as they would in their region.
# usage: ops/scripts/bench-wan.sh TARGET_DIR [OUT_DIR]   (TARGET_DIR holds kizuna and kizuna-chaos;
#        env: RTTS="0 20 50" SECONDS_PER_RUN=15)
set -euo pipefail
BIN_DIR=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-wan-$(date +%Y%m%d-%H%M%S)}")
RTTS=${RTTS:-"0 20 50"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
mkdir -p "$OUT"
CHAOS=
SESSION=
cleanup() { # the harness stops its nodes once its session file is gone
  [ -n "$SESSION" ] && rm -f "$SESSION"
  [ -n "$CHAOS" ] && wait "$CHAOS" 2>/dev/null || true
}
trap cleanup EXIT
for rtt in $RTTS; do
  SESSION="$OUT/session-rtt$rtt.json"
  endpoints="$OUT/endpoints-rtt$rtt.txt"
  rm -f "$SESSION" "$endpoints"
  echo "bench-wan: RTT $rtt ms" >&2
  KIZUNA_BIN="$BIN_DIR/kizuna" "$BIN_DIR/kizuna-chaos" --rtt-ms "$rtt" --seconds 3600 \
    --serve-session "$SESSION" > "$endpoints" 2> "$OUT/harness-rtt$rtt.err" &
  CHAOS=$!
  for try in $(seq 1 120); do
    [ -s "$endpoints" ] && break
    kill -0 "$CHAOS" 2>/dev/null || { echo "bench-wan: the harness stopped; see $OUT/harness-rtt$rtt.err" >&2; exit 1; }
    sleep 1
  done
  HUB=$(head -1 "$endpoints")
  for run in "1" "16" "16 --subscribers 48"; do
    name="rtt$rtt-c${run// /}"
    # shellcheck disable=SC2086 # the run's words are its arguments
    KIZUNA_SESSION_FILE=$SESSION "$BIN_DIR/kizuna" --endpoint "$HUB" bench --seconds "$SECONDS_PER_RUN" \
      --clients $run --json > "$OUT/$name.json"
  done
  rm -f "$SESSION"
  wait "$CHAOS" || true
  CHAOS=
done
python3 - "$OUT" $RTTS <<'PY'
import glob, json, os, sys
out, rtts = sys.argv[1], sys.argv[2:]
print("| RTT (ms) | clients | posts/s | p50 | p99 | max (ms) | fan-out p50 / p99 (ms) |")
print("|---:|---|---:|---:|---:|---:|---:|")
for rtt in rtts:
    for path in sorted(glob.glob(os.path.join(out, f"rtt{rtt}-c*.json")), key=len):
        r = json.load(open(path)); p = r["post_latency"]; f = r["fanout_latency"]
        who = f'{r["clients"]}' + (f' + {r["subscribers"]} subscribers' if r["subscribers"] else "")
        fan = f'{f["p50"]:.2f} / {f["p99"]:.2f}' if r["subscribers"] else "—"
        print(f'| {rtt} | {who} | {r["posts_per_second"]:,.0f} | {p["p50"]:.2f} | {p["p99"]:.2f} | {p["max"]:.2f} | {fan} |')
PY
