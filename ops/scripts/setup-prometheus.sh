#!/usr/bin/env bash
# Installs Debian's Prometheus (the server and promtool) for the operations checks: `promtool
# check rules` on ops/prometheus/*.yml and the metrics test (node/tests/metrics.rs), which
# scrapes a running hub with a real Prometheus server. Only the binaries are used: the package's
# own service is never started (policy-rc.d refuses it where there is no init system). `make
# test` runs it. Safe to run again: silent when both are present.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
echo "setup-prometheus: installing Debian's prometheus package"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || echo "setup-prometheus: apt-get update failed; trying to install from the current lists"
if ! $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
  cat >&2 <<MSG
setup-prometheus: could not install prometheus with apt-get.
  The metrics test (cargo test --workspace --test metrics) and the alert rules check need
  Debian's prometheus package (prometheus and promtool). As root:
    apt-get update && apt-get install -y --no-install-recommends prometheus
MSG
  exit 1
fi
# The package starts its own server where it can; the tests start their own.
$sudo systemctl stop prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
