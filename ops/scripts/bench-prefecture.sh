#!/usr/bin/env bash
# A prefecture-sized hub's figures (docs/benchmarks.md, "A prefecture-sized hub"): a 3-process
# hub on loopback (plaintext, fsync, encryption at rest) is filled by `kizuna generate --scale
# SCALE` (1.0: 10,000 facilities, 100,000 professionals, 50,000 patients, 10,000,000 posts),
# then measured: load rates, disk and RSS per node, a snapshot's size and time, the time a new
# node takes to catch up from it (added as a learner), and the read latencies of `kizuna bench`
# (patient list, timeline) and its posting rate on the filled hub.
# usage: ops/scripts/bench-prefecture.sh PATH/TO/kizuna [OUT_DIR]
#        (env: SCALE=0.01 WORKERS=64 KEEP=1 keeps the hub's directory;
#         LINK_RTT_MS=20 LINK_MBIT=100: the members reach the new node over a link of that round
#         trip and bandwidth, served by the kizuna-chaos beside PATH/TO/kizuna (or $CHAOS);
#         CATCH_UP_ONLY=1 stops after the new node's catch-up;
#         HUB_DIR=DIR builds the hub in DIR and keeps it, and run again with the same DIR resumes
#         a load that stopped — a 10,000,000-post load takes hours: stop it (or lose the
#         session) before the new node's catch-up, run the same command later; each part's
#         rates are appended to DIR/generate-parts.txt)
set -euo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "${2:-bench-prefecture-$(date +%Y%m%d-%H%M%S)}")
SCALE=${SCALE:-0.01}
LINKED=${LINK_RTT_MS:-}${LINK_MBIT:-}
WORKERS=${WORKERS:-64}
mkdir -p "$OUT"
# Every run builds a new hub, except in HUB_DIR: a generator's state file names one hub's
# people, so it is kept beside that hub (in OUT it would only fail to sign them in next time).
if [ -n "${HUB_DIR:-}" ]; then
  D=$(realpath -m "$HUB_DIR"); mkdir -p "$D"; KEEP=1
else
  D=$(mktemp -d /tmp/kizuna-prefecture-XXXX)
fi
GENERATE_STATE=$D/generate-state.json
# A hub whose operator signed in once; one stopped before that is set up again (its master key
# kept: the nodes' data directories may be sealed under it already).
RESUMING=; [ -s "$D/office.password" ] && RESUMING=1
if [ -d "$D/n4" ]; then
  echo "bench-prefecture: $D holds a hub whose run got to its new node's catch-up: give another HUB_DIR" >&2
  exit 1
fi
# Nodes of an earlier run (killed without its clean-up) would hold the ports and the databases.
if pgrep -f -- "--node n[1-4] --insecure" > /dev/null; then
  echo "bench-prefecture: nodes of an earlier run are still running (pgrep -af -- '--node n[1-4] --insecure'): stop them first" >&2
  exit 1
fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT
cd "$D"

[ -f "$D/master.key" ] || "$BIN" admin master-key --out "$D/master.key" > /dev/null
topology() { # NODES...: a topology file of those nodes (n4 a non-voter)
  printf '[hub]\nname = "prefecture"\n\n[encryption]\nmaster_key_file = "%s/master.key"\n' "$D"
  for i in "$@"; do
    voter=true; [ "$i" -eq 4 ] && voter=false
    # With a shaped link, the members dial n4 through it (its port 27214).
    routes=""; [ -n "$LINKED" ] && [ "$i" -lt 4 ] && routes='routes = { "127.0.0.1:27204" = "127.0.0.1:27214" }'
    printf '\n[[node]]\nid = %s\nname = "n%s"\nregion = "r%s"\nvoter = %s\nraft_addr = "127.0.0.1:2720%s"\napi_addr = "127.0.0.1:2730%s"\nmetrics_addr = "127.0.0.1:2740%s"\ndata_dir = "%s/n%s"\n%s\n' \
      "$i" "$i" "$((i < 4 ? i : 3))" "$voter" "$i" "$i" "$i" "$D" "$i" "$routes"
  done
}
if [ -n "$LINKED" ]; then
  CHAOS=${CHAOS:-$(dirname "$BIN")/kizuna-chaos}
  "$CHAOS" --link 127.0.0.1:27214=127.0.0.1:27204 --rtt-ms "${LINK_RTT_MS:-0}" \
    ${LINK_MBIT:+--link-mbit "$LINK_MBIT"} > "$D/link.log" 2>&1 & PIDS+=($!)
fi
# The fourth node is not in the first three's topology: a member that is down holds back the
# hub's move to sealed state (its build is unknown), so with it listed the whole load would be
# stored unsealed — not what a real hub stores. It joins later, by `admin add-learner`.
topology 1 2 3 > hub.toml
topology 1 2 3 4 > hub-with-n4.toml
start() { # a node; its log goes on across resumed runs
  local config=hub.toml; [ "$1" -eq 4 ] && config=hub-with-n4.toml
  "$BIN" serve --config "$config" --node "n$1" --insecure >> "$D/n$1.log" 2>&1 & PIDS+=($!)
}
for i in 1 2 3; do start "$i"; done
HUB=127.0.0.1:27301,127.0.0.1:27302,127.0.0.1:27303
export KIZUNA_SESSION_FILE=$D/session.json
# The operator signs in with the password kept in the directory: on a resumed run, and again
# after a load of hours, her session idle all along.
operator_login() {
  for try in $(seq 1 60); do
    KIZUNA_PASSWORD=$(cat "$D/office.password") "$BIN" --endpoint "$HUB" login office > /dev/null 2> "$D/login.err" && return
    [ "$try" -eq 60 ] && { echo "bench-prefecture: the operator could not sign in again: $(cat "$D/login.err"); see $D/n*.log" >&2; exit 1; }
    sleep 1
  done
}
if [ -n "$RESUMING" ]; then
  echo "bench-prefecture: resuming the load of the hub in $D" >&2
  operator_login
else
  for try in $(seq 1 60); do
    INIT=$("$BIN" --endpoint "$HUB" admin init --login office --name 事務局 2>/dev/null) && break
    [ "$try" -eq 60 ] && { echo "bench-prefecture: the hub never answered; see $D/n*.log" >&2; exit 1; }
    sleep 1
  done
  # Kept for a resumed run's sign-in (the hub is a benchmark's, on loopback).
  sed -n 's/^one-time password: //p' <<< "$INIT" > "$D/office.password"
  KIZUNA_PASSWORD=$(cat "$D/office.password") "$BIN" --endpoint "$HUB" login office > /dev/null
fi
# The hub seals its state once every member runs a build that does (a few keeper ticks; a
# resumed hub's logs say it did already).
for try in $(seq 1 30); do
  grep -q "sealed under its first data key" "$D"/n[123].log && break
  [ "$try" -eq 30 ] && { echo "bench-prefecture: the hub never took its first data key; see $D/n*.log" >&2; exit 1; }
  sleep 1
done

pid_of() { pgrep -f -- "--node n$1 --insecure" | head -1; }
sizes() { # LABEL: disk (bytes of the node's data directory) and RSS (KiB) per node
  for i in 1 2 3 4; do
    [ -d "$D/n$i" ] || continue
    printf '%s n%s disk_bytes %s rss_kib %s\n' "$1" "$i" "$(du -sb "$D/n$i" | cut -f1)" \
      "$(ps -o rss= -p "$(pid_of "$i")" | tr -d ' ')"
    memory "$1" "$i"
  done
}
memory() { # LABEL NODE: where the node's memory is, from its metrics (MiB)
  curl -s "http://127.0.0.1:2740$2/metrics" | python3 -c '
import sys, re
label, node = sys.argv[1], sys.argv[2]
seen = {}
for line in sys.stdin:
    m = re.match(r"(kizuna_(?:heap_\w+|rocksdb_(?:memtable|table_readers|block_cache|block_cache_pinned)_bytes|process_resident_memory_bytes))\{([^}]*)\} (\S+)", line)
    if not m: continue
    name, labels, value = m.group(1), m.group(2), float(m.group(3))
    # The block cache is one per node: every family reports it; count it once.
    if "block_cache" in name: seen[name] = value
    else: seen[name] = seen.get(name, 0) + value
figures = ["%s_mib %.0f" % (k[len("kizuna_"):], v / 2**20) for k, v in sorted(seen.items())]
print(label, "n" + node, " ".join(figures))
' "$1" "$2" || true
}

# Sessions idle the longest a hub allows (4 hours, at most a day in all): at 10,000,000 posts a
# generated author posts about once every 100,000, tens of minutes apart, and past the default
# 30 minutes each post would first sign her in again (an argon2id hash: ~130 sign-ins a second
# on this machine). Session 35's 10M run fell into that and posted at ~130/s until this was
# set, ~2,600/s after.
"$BIN" --endpoint "$HUB" admin session-policy --idle-minutes 240 --absolute-hours 24 > /dev/null
echo "generating at scale $SCALE with $WORKERS workers" >&2
# Each part of a resumed load starts with what was saved before, and when: a part stopped
# half way has no figures of its own, but these lines give its rate.
progress() {
  [ -f "$GENERATE_STATE" ] || { echo "nothing generated"; return; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); n=lambda v: v if isinstance(v, int) else len(v); print(", ".join(f"{k} {n(d[k])}" for k in ("facilities","professionals","patients","posts")))' "$GENERATE_STATE"
  echo "saved at $(date -Is -r "$GENERATE_STATE")"
}
{ echo "== part started at $(date -Is): $(progress | paste -sd' ')"; } >> "$D/generate-parts.txt"
"$BIN" --endpoint "$HUB" generate --scale "$SCALE" --state "$GENERATE_STATE" \
  --workers "$WORKERS" > "$OUT/generate.txt" 2> "$OUT/generate.err"
cat "$OUT/generate.txt"
cp "$GENERATE_STATE" "$OUT/generate-state.json"
# Each resumed run's rates cover its own part of the load: all parts are kept beside the hub.
{ echo "== part ended at $(date -Is)"; cat "$OUT/generate.txt"; } >> "$D/generate-parts.txt"
sleep 5 # the last entries apply everywhere
operator_login
sizes after-load | tee "$OUT/sizes.txt"

# A snapshot of the leader's state, its size and the time it took.
LEADER=$("$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["api_addr"] for m in v["members"] if m["id"]==v["leader_id"]))')
since() { python3 -c "print(round($EPOCHREALTIME - $1, 2))"; }
START=$EPOCHREALTIME
"$BIN" --endpoint "$LEADER" admin snapshot --purge | tee "$OUT/snapshot.txt"
echo "snapshot_seconds $(since "$START")" | tee -a "$OUT/snapshot.txt"
LEADER_ID=$("$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])')
# The snapshot is a checkpoint: hard links to the database's tables. What it adds to the disk is
# the node's directory less its database (du counts a linked file once per run).
NODE_BYTES=$(du -sb "$D/n$LEADER_ID" | cut -f1)
DB_BYTES=$(du -csb "$D/n$LEADER_ID/db" "$D/n$LEADER_ID/log" | tail -1 | cut -f1)
echo "snapshot_dir_bytes_beyond_db $((NODE_BYTES - DB_BYTES))" | tee -a "$OUT/snapshot.txt"
# Where the state's bytes go, table by table, and each node's disk once the log is purged. Read
# from hard links to the checkpoint's files: the running node may take a newer checkpoint
# meanwhile (its snapshot policy, its scrub) and retire this one's files under the reader (seen
# once: "No such file" for a table). A retirement during the linking itself is tried again.
for try in 1 2 3; do
  rm -rf "$D/space.ckpt"
  cp -rl "$(readlink -f "$D/n$LEADER_ID/snapshots/current.ckpt")" "$D/space.ckpt" 2>/dev/null && break
  [ "$try" -eq 3 ] && { echo "bench-prefecture: could not link the leader's checkpoint" >&2; exit 1; }
done
"$BIN" admin snapshot-space "$D/space.ckpt" | tee "$OUT/snapshot-space.txt"
rm -rf "$D/space.ckpt"
sizes after-snapshot | tee -a "$OUT/sizes.txt"

# A new node catches up from it (the log before the snapshot is purged).
start 4
sleep 2
START=$EPOCHREALTIME
"$BIN" --endpoint "$HUB" admin add-learner --id 4 --name n4 --region r3 --raft-addr 127.0.0.1:27204 --api-addr 127.0.0.1:27304
echo "catch_up_seconds $(since "$START")" | tee "$OUT/catch-up.txt"
[ -z "$LINKED" ] || echo "link $(cat "$D/link.log")" | tee -a "$OUT/catch-up.txt"
sizes after-catch-up | tee -a "$OUT/sizes.txt"
[ -z "${CATCH_UP_ONLY:-}" ] || { echo "figures in $OUT"; exit 0; }

# Reads and writes on the filled hub, as one of the generated doctors, once its compactions
# after the load have settled.
sleep "${SETTLE_SECONDS:-60}"
RUN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"])' "$GENERATE_STATE")
KIZUNA_PASSWORD=kizuna-generated-2026 "$BIN" --endpoint "$HUB" login "g$RUN.0" > /dev/null
"$BIN" --endpoint "$HUB" bench --clients 16 --seconds 20 --patients 500 --readers 1,16 --read-seconds 20 \
  --json > "$OUT/bench.json"
python3 - "$OUT/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"posts on the filled hub: {r['posts_per_second']:.0f}/s, p50 {r['post_latency']['p50']} p99 {r['post_latency']['p99']} ms")
for run in r["reads"]["runs"]:
    for name in ("patient_list", "timeline"):
        p = run[name]
        print(f"{name} ({r['reads']['patients']} patients, {run['readers']} readers): p50 {p['p50']} p99 {p['p99']} max {p['max']} ms")
PY
echo "figures in $OUT"
