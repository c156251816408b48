#!/usr/bin/env bash
# Installs Debian's etcd (the etcd-server package: the `etcd` binary) for the side-by-side of
# docs/benchmarks.md (`make bench`, ops/scripts/bench-etcd.sh) and the test of its load loop
# (node/tests/bench.rs). Only the binary is used: the package's own service is stopped where an
# init system started it; the tests and the bench start their own members on loopback.
# Safe to run again: silent when etcd is present.
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
  exit 0
fi
echo "setup-etcd: installing Debian's etcd-server package"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || echo "setup-etcd: apt-get update failed; trying to install from the current lists"
if ! $sudo apt-get install -y -qq --no-install-recommends etcd-server >/dev/null; then
  cat >&2 <<MSG
setup-etcd: could not install etcd-server with apt-get.
  The etcd side-by-side (make bench) and its test need Debian's etcd-server package. As root:
    apt-get update && apt-get install -y --no-install-recommends etcd-server
MSG
  exit 1
fi
$sudo systemctl stop etcd >/dev/null 2>&1 || $sudo service etcd stop >/dev/null 2>&1 || true
