#!/bin/sh
# Test set-up: Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; it
# never downloads a browser of its own), then the package with its test extra.
# Usage, from the repository root: sh scripts/setup-test.sh && python -m pytest
set -eu
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
python -m pip install -q -e ".[test]"
