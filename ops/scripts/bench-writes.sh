#!/bin/bash
# The write-path figures of docs/benchmarks.md: a fresh `kizuna demo` in a temp dir, the operator
# signed in, record writes at the leader with 1 and 64 clients, then each node's db size.
# usage: ops/scripts/bench-writes.sh PATH/TO/kizuna LABEL   (uses the demo's ports 7001-7003)
set -eu
. "$(dirname "$0")/demo-for-bench.sh"
LABEL=$2
demo_for_bench "$1" "$LABEL"
sleep 8 # let the keeper settle leadership in the preferred region
"$BIN" login jimukyoku > /dev/null
LEADER=$("$BIN" status --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["api_addr"] for m in v["members"] if m["id"]==v["leader_id"]))')
echo "== $LABEL, leader $LEADER"
"$BIN" --endpoint "$LEADER" load --clients 1 --seconds 10
"$BIN" --endpoint "$LEADER" load --clients 64 --seconds 10
du -sb data/demo/*/db data/demo/*/log
