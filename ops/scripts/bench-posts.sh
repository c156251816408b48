#!/bin/bash
# The posts figures of docs/benchmarks.md: a fresh `kizuna demo` (three nodes, TLS, one
# process) in a temp dir, settled (its first minute seals and compacts), a demo nurse signed in,
# then `kizuna bench` over all three nodes: 1, 16 and 64 posting clients; 16 clients with 48 live
# subscribers (16 per node, one account's limit); 4 clients with 10,000 live subscribers on one
# node (625 accounts the bench registers in the nurse's facility, each a member of one of 64
# rooms), alone and with logins of other accounts meanwhile; and the reads of a 500-patient list by 1, 4 and 16 readers (one alone, then a
# saturated hub). Each
# run's JSON is kept in OUT (default: the temp dir, removed).
# usage: ops/scripts/bench-posts.sh PATH/TO/kizuna LABEL [OUT]   (uses the demo's ports 7001-7003)
set -eu
. "$(dirname "$0")/demo-for-bench.sh"
LABEL=$2; OUT=${3:+$(realpath -m "$3")}
demo_for_bench "$1" "$LABEL"
sleep 60 # sealing and the scrub's compactions run in the first minute of a fresh hub
"$BIN" login vn.suzuki > /dev/null
echo "== $LABEL"
run() { # NAME ARGS...
  local name=$1; shift
  "$BIN" ${ENDPOINT:+--endpoint "$ENDPOINT"} bench --json "$@" > "$name.json"
  python3 - "$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["post_latency"]; f = r["fanout_latency"]
line = f'{sys.argv[2]:<12} {r["clients"]:>3} clients: {r["posts_per_second"]:>7.0f} posts/s  p50 {p["p50"]:.2f} p90 {p["p90"]:.2f} p99 {p["p99"]:.2f} p99.9 {p["p999"]:.2f} max {p["max"]:.2f} ms'
if r["subscribers"]: line += f'  fan-out x{r["subscribers"]}: p50 {f["p50"]:.2f} p99 {f["p99"]:.2f} max {f["max"]:.2f} ms'
for run in (r.get("reads") or {}).get("runs", []):
    l, t = run["patient_list"], run["timeline"]
    line += f'\n  {run["readers"]:>2} readers, list of {r["reads"]["patients"]}: p50 {l["p50"]:.2f} p99 {l["p99"]:.2f} ms; timeline p50 {t["p50"]:.2f} p99 {t["p99"]:.2f} ms'
print(line)
PY
}
run one --clients 1 --seconds 15
run sixteen --clients 16 --seconds 15
run sixty-four --clients 64 --seconds 15
run fan-out --clients 16 --seconds 15 --subscribers 48
ENDPOINT=https://127.0.0.1:7001 run fan-out-10k --clients 4 --seconds 20 --subscribers 10000 --rooms 64
# The same while three other accounts sign in at node 1 (2-3 logins a second): a login must
# not send every stream of the node back to a read of its rooms.
( while [ ! -e stop-logins ]; do
    for who in dr.sato ph.mori cm.watanabe; do
      KIZUNA_SESSION_FILE=$PWD/logins.json "$BIN" --endpoint https://127.0.0.1:7001 login "$who" > /dev/null 2>&1 || true
      sleep 0.25
    done
  done ) &
LOGINS=$!
ENDPOINT=https://127.0.0.1:7001 run fan-out-logins --clients 4 --seconds 20 --subscribers 10000 --rooms 64
touch stop-logins; wait $LOGINS
run reads --clients 4 --seconds 1 --patients 500 --readers 1,4,16 --read-seconds 15
du -sb data/demo/*/db data/demo/*/log
if [ -n "$OUT" ]; then mkdir -p "$OUT"; cp one.json sixteen.json sixty-four.json fan-out.json fan-out-10k.json fan-out-logins.json reads.json "$OUT/"; fi
