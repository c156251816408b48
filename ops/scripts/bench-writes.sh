#!/bin/bash
# The write-path figures of docs/benchmarks.md: a fresh `kizuna demo` in a temp dir, the operator
# signed in, record writes at the leader with 1 and 64 clients, then each node's db size.
# usage: ops/scripts/bench-writes.sh PATH/TO/kizuna LABEL   (uses the demo's ports 7001-7003)
set -eu
BIN=$(realpath "$1"); LABEL=$2
D=$(mktemp -d "/tmp/kizuna-bench-$LABEL-XXXX"); cd "$D"
export KIZUNA_SESSION_FILE=$D/session.json KIZUNA_PASSWORD=kizuna-demo-2026
"$BIN" demo > demo.log 2>&1 &
DEMO=$!
trap 'kill -INT $DEMO 2>/dev/null; wait $DEMO; rm -rf "$D"' EXIT
for _ in $(seq 1 60); do grep -q "Operators (kizuna login" demo.log && break; sleep 1; done
sleep 8 # let the keeper settle leadership in the preferred region
"$BIN" login jimukyoku > /dev/null
LEADER=$("$BIN" status --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["api_addr"] for m in v["members"] if m["id"]==v["leader_id"]))')
echo "== $LABEL, leader $LEADER"
"$BIN" --endpoint "$LEADER" load --clients 1 --seconds 10
"$BIN" --endpoint "$LEADER" load --clients 64 --seconds 10
du -sb data/demo/*/db
