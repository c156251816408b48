#!/usr/bin/env bash
# Installs the SMTP server the notification test (node/tests/notifications.rs) starts: Python's
# aiosmtpd from PyPI, in its own virtualenv under ~/.cache/kizuna/aiosmtpd (never the system's
# Python packages). `make test` runs it. Safe to run again: silent when it is present.
set -euo pipefail

AIOSMTPD_VERSION="${AIOSMTPD_VERSION:-1.4.6}"
venv="${KIZUNA_AIOSMTPD_VENV:-$HOME/.cache/kizuna/aiosmtpd}"

if "$venv/bin/python" -c "import aiosmtpd" >/dev/null 2>&1; then
  exit 0
fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "setup-smtp: python3 is needed for the test SMTP server (apt-get install python3 python3-venv)" >&2
  exit 1
fi
echo "setup-smtp: installing aiosmtpd $AIOSMTPD_VERSION into $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
