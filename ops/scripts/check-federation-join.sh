#!/bin/bash
# Checks docs/federation.md "How an association joins a federation" on one machine: Ibaraki
# joins a running Tochigi–Gunma federation (laid out by the demo's generator, ports 7800–7933)
# with the documented commands, then `kizuna admin federation status` must show every peer
# REACHABLE from all three hubs. Usage: ops/scripts/check-federation-join.sh (after a build).
set -eu
K=${KIZUNA:-${CARGO_TARGET_DIR:-$HOME/.cache/kizuna/target}/debug/kizuna}
WORK=$(mktemp -d)
cd "$WORK"
touch pids
# Stop exactly the nodes this script started.
trap 'while read -r p; do kill -TERM "$p" 2>/dev/null || true; done < "$WORK/pids"; sleep 2' EXIT
mkdir -p ibaraki/federation
$K admin federation pair --out existing --base-port 7800 >/dev/null
# Ibaraki's hub as it runs before joining: three regions, TLS.
cat > ibaraki/ibaraki.toml <<TOML
[hub]
name = "ibaraki"
[raft]
heartbeat_interval_ms = 100
election_timeout_min_ms = 500
election_timeout_max_ms = 1000
[tls]
dir = "ibaraki/certs"
[[node]]
id = 1
name = "mito-1"
region = "mito"
raft_addr = "127.0.0.1:7861"
api_addr = "127.0.0.1:7851"
data_dir = "ibaraki/mito-1"
[[node]]
id = 2
name = "tsukuba-1"
region = "tsukuba"
raft_addr = "127.0.0.1:7862"
api_addr = "127.0.0.1:7852"
data_dir = "ibaraki/tsukuba-1"
[[node]]
id = 3
name = "sendai-1"
region = "sendai"
raft_addr = "127.0.0.1:7863"
api_addr = "127.0.0.1:7853"
data_dir = "ibaraki/sendai-1"
TOML
$K admin certs --config ibaraki/ibaraki.toml --out ibaraki/certs >/dev/null
start() { RUST_LOG=warn $K serve --config "$1" --node "$2" >/dev/null 2>>"logs-$2.txt" & echo $! >> pids; }
for n in mito-1 tsukuba-1 sendai-1; do start ibaraki/ibaraki.toml $n; done
for n in utsunomiya-1 oyama-1 tokyo-1; do start existing/tochigi.toml $n; done
for n in maebashi-1 takasaki-1 osaka-1; do start existing/gunma.toml $n; done
sleep 3
echo "== step 1: keygen"
$K admin federation keygen --out ibaraki/federation/ibaraki-2026.key --key-id ibaraki-2026 | tee keygen.txt
IBARAKI_KEY=$(grep '^{ key_id' keygen.txt)
echo "== step 2: what Tochigi hands over (its CA, verify key, endpoints)"
TOCHIGI_CA=existing/tochigi/certs/ca.pem
# Tochigi's verify key line is what its keygen printed; gunma.toml holds it (listed there for tochigi).
TOCHIGI_KEY=$(sed -n '/name = "tochigi"/,/^]/p' existing/gunma.toml | grep key_id | sed 's/^ *//')
echo "tochigi key: $TOCHIGI_KEY"
echo "== step 3: ibaraki.toml: federation_addr per node, [federation] with tochigi"
python3 - <<PY
p='ibaraki/ibaraki.toml'
s=open(p).read()
for n,port in (('mito-1',7871),('tsukuba-1',7872),('sendai-1',7873)):
    s=s.replace(f'name = "{n}"\n', f'name = "{n}"\nfederation_addr = "127.0.0.1:{port}"\n')
s=s.replace('[[node]]', '''[federation]
signing_key = "ibaraki/federation/ibaraki-2026.key"
key_id = "ibaraki-2026"

[[federation.peers]]
name = "tochigi"
endpoints = ["127.0.0.1:7821", "127.0.0.1:7822", "127.0.0.1:7823"]
ca_cert = "ibaraki/federation/tochigi-ca.pem"
verify_keys = [
  $TOCHIGI_KEY
]

[[node]]''', 1)
open(p,'w').write(s)
PY
cp $TOCHIGI_CA ibaraki/federation/tochigi-ca.pem
echo "== step 4: reissue ibaraki's node certificates (same CA) to name the federation addresses"
$K admin certs --config ibaraki/ibaraki.toml --out ibaraki/certs
echo "== step 5: tochigi adds ibaraki as a peer"
cp ibaraki/certs/ca.pem existing/tochigi/ibaraki-ca.pem
cat >> existing/tochigi.toml.peer <<TOML

[[federation.peers]]
name = "ibaraki"
endpoints = ["127.0.0.1:7871", "127.0.0.1:7872", "127.0.0.1:7873"]
ca_cert = "$PWD/existing/tochigi/ibaraki-ca.pem"
verify_keys = [
  $IBARAKI_KEY
]
TOML
python3 - <<PY
p='existing/tochigi.toml'
s=open(p).read()
peer=open('existing/tochigi.toml.peer').read()
i=s.index('[[node]]')
open(p,'w').write(s[:i]+peer.lstrip('\n')+'\n'+s[i:])
PY
echo "== step 6: rolling restart of both hubs (one node at a time)"
restart() { # $1 config $2 node $3 pid-line
  pid=$(sed -n "${3}p" pids); kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.2; done
  RUST_LOG=warn $K serve --config "$1" --node "$2" >/dev/null 2>>"logs-$2.txt" & sed -i "${3}s/.*/$!/" pids; sleep 2; }
restart ibaraki/ibaraki.toml mito-1 1; restart ibaraki/ibaraki.toml tsukuba-1 2; restart ibaraki/ibaraki.toml sendai-1 3
restart existing/tochigi.toml utsunomiya-1 4; restart existing/tochigi.toml oyama-1 5; restart existing/tochigi.toml tokyo-1 6
echo "== step 7: status"
$K admin federation status --config ibaraki/ibaraki.toml
$K admin federation status --config existing/tochigi.toml
$K admin federation status --config existing/gunma.toml
echo "OK: ibaraki joined (work folder $WORK)"
