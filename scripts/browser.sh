#!/usr/bin/env bash
# The browser of the console's and /docs' tests: Debian's Chromium and its WebDriver,
# installed with apt-get when missing and running as root; otherwise names what to install.
# Prints nothing when both are there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CHROMIUM="${TMS_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${TMS_CHROMEDRIVER:-/usr/bin/chromedriver}"
[ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Chromium and ChromeDriver for the browser tests (apt-get, first run only)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed: install chromium and chromium-driver yourself"
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
    || die "apt-get could not install chromium and chromium-driver (is the Debian mirror reachable?)"
fi
[ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] \
  || die "the browser tests need Chromium and ChromeDriver: install them (Debian/Ubuntu: sudo apt-get install chromium chromium-driver), or point TMS_CHROMIUM and TMS_CHROMEDRIVER at them."
