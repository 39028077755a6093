#!/usr/bin/env bash
# Quick start: set up (venvs, test extras, dig), lint, and run the whole test suite.
# The suite runs at the newest versions tested (.venv/, constraints/latest.txt, as the
# container image installs them); first, the unit tests and the zone loader's integration
# tests run at the lowest versions pyproject.toml allows (.venv-floor/,
# constraints/floor.txt), so a declared minimum is one that passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test bind9-dnsutils:dig bind9:named bind9-utils:dnssec-verify knot:keymgr dnsdist:dnsdist prometheus:prometheus docker-compose:docker-compose dnstap-ldns:dnstap-ldns fstrm-bin:fstrm_capture kubernetes-client:kubectl
bash scripts/setup.sh --floor --test
.venv/bin/ruff check .
.venv-floor/bin/ruff check .
echo "== at the declared minimum versions (constraints/floor.txt)"
.venv-floor/bin/pytest -q tests/test_*.py tests/integration/test_authoritative.py \
  tests/integration/test_cli.py::test_check_good_zones \
  tests/integration/test_cli.py::test_check_bad_zone_names_file_and_line
echo "== at the tested versions (constraints/latest.txt)"
exec .venv/bin/pytest "$@"
