# Sourced by bench-etcd.sh and bench-stalls.sh (not run alone): the side-by-side's Kizuna hub.
# Needs BIN (the kizuna binary), D (an empty working directory, the current one) and the array
# KIZUNA_PIDS (the nodes' processes are added to it); sets HUB (every node's API), LEADER (the
# leader's API) and KIZUNA_SESSION_FILE (an operator signed in).
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
  [ "$try" -eq 60 ] && { echo "$(basename "$0"): the hub never answered; see $D/kizuna-*.log" >&2; tail -5 "$D"/kizuna-*.log >&2; exit 1; }
  sleep 1
done
# Retried like the set-up: a new hub's first leader may step down for a higher term just then
# (a run lost its hub to "the leader is node None" at this login, session 48).
for try in $(seq 1 30); do
  KIZUNA_PASSWORD=$(sed -n 's/^one-time password: //p' <<< "$INIT") "$BIN" --endpoint "$HUB" login bench > /dev/null 2>&1 && break
  [ "$try" -eq 30 ] && { echo "$(basename "$0"): the operator could not log in; see $D/kizuna-*.log" >&2; exit 1; }
  sleep 1
done
sleep 5 # leadership settles
# The leader moves the hub to the newest apply version all three builds take (sealed state,
# signed record writes) within a few of its ticks: measure only once it did.
at_build_version() {
  "$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; m=json.load(sys.stdin)["members"]; sys.exit(0 if len(m)==3 and all(x["reachable"] and x["apply_version"]==x["max_apply_version"] for x in m) else 1)'
}
for try in $(seq 1 60); do
  at_build_version && break
  [ "$try" -eq 60 ] && { echo "$(basename "$0"): the hub never reached its build's apply version" >&2; exit 1; }
  sleep 1
done
# Once sealed, each node scrubs its files once in its life (a snapshot and a compaction of every
# column family, staggered by 5 s per node: `server/src/scrub.rs`), ~5–20 s after sealing ends.
# Measured before, the first rounds would time that one-off work of a new hub, not its writes:
# in a profile of the leader it was 14 % of the CPU of a 10-second window (session 20).
for try in $(seq 1 120); do
  [ "$(grep -l "scrubbed: this node" "$D"/kizuna-[123].log | wc -l)" -eq 3 ] && break
  [ "$try" -eq 120 ] && { echo "$(basename "$0"): the nodes never scrubbed; see $D/kizuna-*.log" >&2; exit 1; }
  sleep 1
done
LEADER=$("$BIN" --endpoint "$HUB" status --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["api_addr"] for m in v["members"] if m["id"]==v["leader_id"]))')
