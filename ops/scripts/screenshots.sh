#!/usr/bin/env bash
# Regenerates the screenshots in docs/screenshots (shown by the README): runs the real-browser
# test (node/tests/browser.rs), whose story saves its PNGs into $KIZUNA_SCREENSHOTS.
# `make screenshots` runs it after installing what it needs (ops/scripts/setup-browser.sh).
set -euo pipefail

cd "$(dirname "$0")/../.."
out="$PWD/docs/screenshots"
mkdir -p "$out"
# Failure evidence of an earlier run does not belong in the docs.
rm -f "$out"/FAILED-*
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kizuna/target}"
KIZUNA_SCREENSHOTS="$out" cargo test --workspace --test browser -- --nocapture
echo "screenshots: $(ls "$out"/*.png | wc -l) PNGs in docs/screenshots"
