# Sourced by the bench scripts: `demo_for_bench BIN LABEL` starts a fresh `kizuna demo` of BIN in
# a temp dir (the working directory from then on), with a session file and the demo password in
# the environment, stops and removes it when the script exits, and waits until it has seeded.
demo_for_bench() {
  BIN=$(realpath "$1")
  D=$(mktemp -d "/tmp/kizuna-bench-$2-XXXX"); cd "$D"
  export KIZUNA_SESSION_FILE=$D/session.json KIZUNA_PASSWORD=kizuna-demo-2026
  "$BIN" demo > demo.log 2>&1 &
  DEMO=$!
  trap 'kill -INT $DEMO 2>/dev/null; wait $DEMO; rm -rf "$D"' EXIT
  for _ in $(seq 1 60); do grep -q "Operators (kizuna login" demo.log && break; sleep 1; done
}
