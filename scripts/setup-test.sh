#!/bin/sh
# Test set-up: Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; it
# never downloads a browser of its own) and the C compiler and headers of the native chain
# scanner (hatch_build.py), then the package with its test extra, the scanner required.
# Usage, from the repository root: sh scripts/setup-test.sh && python -m pytest
set -eu
cd "$(dirname "$0")/.."
PACKAGES=""
[ -x /usr/bin/chromium ] || PACKAGES="$PACKAGES chromium"
command -v gcc >/dev/null 2>&1 || PACKAGES="$PACKAGES gcc"
[ -f /usr/include/sqlite3.h ] || PACKAGES="$PACKAGES libsqlite3-dev"
[ -f /usr/include/openssl/evp.h ] || PACKAGES="$PACKAGES libssl-dev"
if [ -n "$PACKAGES" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PACKAGES
fi
NEXML_REQUIRE_NATIVE=1 python -m pip install -q -e ".[test]"
