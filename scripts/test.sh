#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt -e .
# The browser test drives Debian's Chromium (no browser download); install it when missing and possible.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"
fi
exec python3 -m pytest -q "$@"
