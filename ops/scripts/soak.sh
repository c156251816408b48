#!/usr/bin/env bash
# A soak of the demo hub: a write load for MINUTES (default 30) while every minute the data
# directories' size on disk and the hub process's resident memory are sampled. Prints one CSV
# line per sample (docs/benchmarks.md, "Soak"). Uses the release build unless BIN says otherwise.
#
#   ops/scripts/soak.sh                 # 30 minutes, 8 clients
#   MINUTES=5 CLIENTS=4 ops/scripts/soak.sh
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/kizuna}
MINUTES=${MINUTES:-30}
CLIENTS=${CLIENTS:-8}
DIR=$(mktemp -d /tmp/kizuna-soak.XXXXXX)
export KIZUNA_SESSION_FILE="$DIR/session.json"
export KIZUNA_PASSWORD=kizuna-demo-2026
CA="$DIR/data/certs/ca.pem"

"$BIN" demo --data-dir "$DIR/data" >"$DIR/demo.log" 2>&1 &
HUB=$!
trap 'kill "$HUB" 2>/dev/null; wait "$HUB" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    grep -q "Demo logins" "$DIR/demo.log" 2>/dev/null && break
    sleep 1
done
"$BIN" --ca "$CA" login jimukyoku >/dev/null

"$BIN" --ca "$CA" load --clients "$CLIENTS" --seconds $((MINUTES * 60)) >"$DIR/load.txt" 2>&1 &
LOAD=$!

echo "minute,data_dir_mib,rocksdb_mib,snapshots_mib,rss_mib"
sample() {
    local data db snapshots rss
    data=$(du -sm "$DIR/data" | cut -f1)
    db=$(du -cm "$DIR"/data/*/db "$DIR"/data/*/log 2>/dev/null | tail -1 | cut -f1)
    # A snapshot is a checkpoint linking the database's files: what it adds is the data
    # directory less the databases (du counts a linked file once per run).
    snapshots=$((data - db))
    rss=$(($(ps -o rss= -p "$HUB") / 1024))
    echo "$1,$data,$db,$snapshots,$rss"
}
for minute in $(seq 0 "$MINUTES"); do
    sample "$minute"
    [ "$minute" -lt "$MINUTES" ] && sleep 60
done
wait "$LOAD" || true
cat "$DIR/load.txt"
echo "(data kept in $DIR)"
