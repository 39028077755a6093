#!/usr/bin/env bash
# Prepare a machine to run dnspol: a virtualenv with dnspol installed, and the
# Debian tools named as arguments (e.g. dig from bind9-dnsutils) when missing.
# Usage: scripts/setup.sh [--test] [--floor] [debian-package:command ...]
#   --test   with the test extra (pytest, hypothesis, ruff, jsonschema)
#   --floor  into .venv-floor/ at the lowest versions pyproject.toml allows
#            (constraints/floor.txt), instead of into .venv/ at the newest versions
#            tested (constraints/latest.txt, what the container image installs)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
venv=.venv
constraints=constraints/latest.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --test) extras="[test]" ;;
    --floor) venv=.venv-floor; constraints=constraints/floor.txt ;;
    *) break ;;
  esac
  shift
done

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
if [ ! -x "$venv/bin/python" ]; then
  if ! "$PYTHON" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    "$PYTHON" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" -e ".${extras}"
