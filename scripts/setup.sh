#!/usr/bin/env bash
# Prepare a machine to run dnspol: a virtualenv with dnspol installed, and the
# Debian tools named as arguments (e.g. dig from bind9-dnsutils) when missing.
# Usage: scripts/setup.sh [--test] [debian-package:command ...]
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; shift; fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: '$1' is missing; install it (sudo apt-get install $1) and run again" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

for pair in "$@"; do
  pkg="${pair%%:*}"; cmd="${pair##*:}"
  command -v "$cmd" >/dev/null 2>&1 || apt_install "$pkg"
done

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
