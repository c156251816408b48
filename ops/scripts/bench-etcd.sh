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
# usage: ops/scripts/bench-etcd.sh PATH/TO/kizuna [OUT_DIR]   (env: ROUNDS=3 SECONDS_PER_RUN=10 CLIENTS="1 64 256")
set -euo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-etcd-$(date +%Y%m%d-%H%M%S)}")
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-1 64 256}
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/setup-etcd.sh"
mkdir -p "$OUT"
D=$(mktemp -d /tmp/kizuna-bench-etcd-XXXX)
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

# Kizuna: three `serve` processes of a 3-region hub, plaintext, with the timers the demo hub had
# when the issue's first side-by-side was taken (100 / 500–1000 ms; writes do not depend on them),
# and encryption at rest on, as a deployed hub and the demo have it: without a master key a hub stays
# below apply version 4 (sealed state), so its record writes would take the older unsigned path
# (a read barrier each) that no deployed hub takes (session 18).
"$BIN" admin master-key --out "$D/master.key" > /dev/null
{
  printf '[hub]\nname = "bench"\n\n[encryption]\nmaster_key_file = "%s/master.key"\n\n' "$D"
  printf '[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\n'
  for i in 1 2 3; do
    printf '\n[[node]]\nid = %s\nname = "n%s"\nregion = "r%s"\nraft_addr = "127.0.0.1:2710%s"\napi_addr = "127.0.0.1:2700%s"\ndata_dir = "%s/kizuna/n%s"\n' \
      "$i" "$i" "$i" "$i" "$i" "$D" "$i"
  done
} > hub.toml
for i in 1 2 3; do
  "$BIN" serve --config hub.toml --node "n$i" --insecure > "$D/kizuna-$i.log" 2>&1 &
  KIZUNA_PIDS+=($!)
done
HUB=127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003
export KIZUNA_SESSION_FILE=$D/session.json
for try in $(seq 1 60); do
  INIT=$("$BIN" --endpoint "$HUB" admin init --login bench --name ベンチ 2>/dev/null) && break
  [ "$try" -eq 60 ] && { echo "bench-etcd: the hub never answered; see $D/kizuna-*.log" >&2; tail -5 "$D"/kizuna-*.log >&2; exit 1; }
  sleep 1
done
KIZUNA_PASSWORD=$(sed -n 's/^one-time password: //p' <<< "$INIT") "$BIN" --endpoint "$HUB" login bench > /dev/null
sleep 5 # leadership settles
# The leader moves the hub to the newest apply version all three builds take (sealed state,
# signed record writes) within a few of its ticks: measure only once it did.
at_build_version() {
  "$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; m=json.load(sys.stdin)["members"]; sys.exit(0 if len(m)==3 and all(x["reachable"] and x["apply_version"]==x["max_apply_version"] for x in m) else 1)'
}
for try in $(seq 1 60); do
  at_build_version && break
  [ "$try" -eq 60 ] && { echo "bench-etcd: the hub never reached its build's apply version" >&2; exit 1; }
  sleep 1
done
# Once sealed, each node scrubs its files once in its life (a snapshot and a compaction of every
# column family, staggered by 5 s per node: `server/src/scrub.rs`), ~5–20 s after sealing ends.
# Measured before, the first rounds would time that one-off work of a new hub, not its writes:
# in a profile of the leader it was 14 % of the CPU of a 10-second window (session 20).
for try in $(seq 1 120); do
  [ "$(grep -l "scrubbed: this node" "$D"/kizuna-[123].log | wc -l)" -eq 3 ] && break
  [ "$try" -eq 120 ] && { echo "bench-etcd: the nodes never scrubbed; see $D/kizuna-*.log" >&2; exit 1; }
  sleep 1
done
LEADER=$("$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["api_addr"] for m in v["members"] if m["id"]==v["leader_id"]))')

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
echo "bench-etcd: warming up both stores" >&2
load etcd 64 3; load kizuna 64 3
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
for i in 1 2 3; do du -sb "$D/etcd/e$i" "$D/kizuna/n$i/db"; done > "$OUT/disk.txt"
python3 "$HERE/bench_report.py" etcd "$OUT"
