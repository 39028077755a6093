#!/usr/bin/env bash
# Quick start: set up (venv, test extras, dig), lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test bind9-dnsutils:dig bind9:named knot:knotd nsd:nsd dnsdist:dnsdist prometheus:prometheus docker-compose:docker-compose
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
