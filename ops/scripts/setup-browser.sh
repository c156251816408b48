#!/usr/bin/env bash
# Installs what the real-browser test (node/tests/browser.rs) needs on Debian and is not there
# yet: Debian's Chromium (driven through playwright-core; never a downloaded browser) and the
# Noto CJK fonts (without them Japanese renders as empty boxes), then the browser client's npm
# packages (node/web/node_modules, with playwright-core). `make test` runs it; `make demo` does
# not need it. Safe to run again: silent when everything is present.
set -euo pipefail

cd "$(dirname "$0")/../.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The Japanese face of Noto Sans CJK (fonts-noto-cjk); fc-list comes with fontconfig.
if ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=ja family | grep -qi "Noto Sans CJK JP"; }; then
  missing+=(fonts-noto-cjk)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-browser: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || echo "setup-browser: apt-get update failed; trying to install from the current lists"
  if ! $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; then
    cat >&2 <<EOF
setup-browser: could not install ${missing[*]} with apt-get.
  The browser test (cargo test --workspace --test browser) needs /usr/bin/chromium and the
  Noto CJK fonts from Debian. Install them by hand, as root:
    apt-get update && apt-get install -y chromium fonts-noto-cjk
  (Do not use \`playwright install\`: the test drives Debian's Chromium only.)
EOF
    exit 1
  fi
fi

# The client's packages, playwright-core among them: installed when missing or older than the
# lock file (npm ci is exact and quick from its cache).
web=node/web
if [ ! -f $web/node_modules/playwright-core/package.json ] || [ $web/package-lock.json -nt $web/node_modules/.package-lock.json ]; then
  echo "setup-browser: npm ci in $web"
  if ! (cd $web && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "setup-browser: \`npm ci\` in $web failed (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
