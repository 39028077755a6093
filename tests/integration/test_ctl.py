"""``dnspol ctl`` against the real server, one process and a supervisor with workers, and
the CHAOS clock controls documented for clients that can only speak DNS."""

from __future__ import annotations

import re
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from itkit import need

DOCS = Path(__file__).resolve().parents[2] / "docs"

ZONE_V1 = """$ORIGIN ctl.test.
$TTL 60
@   IN SOA ns hostmaster 1 7200 900 1209600 60
    IN NS  ns
ns  IN A   192.0.2.1
www IN A   192.0.2.10
"""


def _doc_dig_lines() -> list[str]:
    """The ``dig`` lines of the shell recipe in docs/testing.md's CHAOS section."""
    text = (DOCS / "testing.md").read_text()
    section = text.split("### CHAOS queries", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/testing.md: no sh block under '### CHAOS queries'"
    return [line for line in block.group(1).splitlines() if line.startswith("dig ")]


def test_the_docs_chaos_recipe_works_with_real_dig(dnspol) -> None:
    need("dig", "bind9-dnsutils")
    srv = dnspol(zone=ZONE_V1, fake_time="2026-11-28T02:00:00+01:00")
    lines = _doc_dig_lines()
    assert len(lines) >= 3
    printed = []
    for line in lines:
        argv = shlex.split(line.replace("-p 5300", f"-p {srv.port}"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip(), f"{line!r} printed nothing"
        printed.append(done.stdout.strip().strip('"'))
    set_line = next(i for i, line in enumerate(lines) if ".set.clock." in line)
    epoch = int(re.search(r"(\d+)\.set\.clock", lines[set_line]).group(1))
    moved = datetime.fromisoformat(printed[set_line]) - datetime.fromtimestamp(epoch, UTC)
    assert 0 <= moved.total_seconds() < 5  # the clock runs on from where it was set
    assert "ok" in printed
