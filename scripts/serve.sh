#!/usr/bin/env bash
# Quick start: set up, then serve the bundled example policies on 127.0.0.1:5353.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bind9-dnsutils:dig
exec .venv/bin/dnspol serve --config policies/dnspol.yaml "$@"
