#!/usr/bin/env bash
# Make sure Debian's chromium is installed (the browser tests drive it through
# Playwright, which never downloads a browser of its own) and print its path on
# stdout (nothing else goes to stdout). As root with apt-get it is installed
# when missing; anywhere else a missing chromium is one line and exit 1.
set -euo pipefail

bin=/usr/bin/chromium

if [ ! -x "$bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: installing Debian's chromium package" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -x "$bin" ]; then
    echo "chromium.sh: $bin is missing; install Debian's chromium package (apt-get install chromium)" >&2
    exit 1
  fi
fi
echo "$bin"
