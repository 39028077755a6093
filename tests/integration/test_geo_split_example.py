"""policies/geo-split/: every row of its README's tables, asked of the real server with dig
as the row shows it; the committed database holds what make_geo_db.py writes."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
from pathlib import Path

import pytest

from dnspol.config import check_config
from dnspol.policy.geoip import _Opened
from dnspol.testing import Server

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "geo-split"
ROW = re.compile(r"^\| `(dig [^`]+)` \| `([^`]+)` \|(?: `([^`]+)` \|)?", re.MULTILINE)


def readme_rows() -> list[tuple[str, str, str | None]]:
    """(dig command, answer, CLIENT-SUBNET or None) of every table row of the README."""
    return ROW.findall((EXAMPLE / "README.md").read_text())


@pytest.fixture(scope="module")
def site():
    with Server(config=EXAMPLE / "dnspol.yaml") as srv:
        yield srv


def test_the_readme_has_both_tables() -> None:
    rows = readme_rows()
    assert len(rows) >= 15
    assert sum(1 for _, _, subnet in rows if subnet) >= 5


@pytest.mark.parametrize("command, answer, subnet", readme_rows(), ids=lambda x: str(x)[:60])
def test_each_readme_row_is_what_the_server_answers(site, command, answer, subnet) -> None:
    words = shlex.split(command)[1:]
    source = words[words.index("-b") + 1] if "-b" in words else None
    name = next(w for w in words if w.endswith(".example.net"))
    options = [w for w in words if w.startswith("+subnet=")]
    result = site.dig(name, "A", *options, source=source)
    if answer.startswith("status: "):
        assert result.rcode == answer.removeprefix("status: ")
    else:
        assert result.rcode == "NOERROR" and result.addresses == [answer]
    if subnet:
        assert result.edns is not None
        assert result.edns.option("CLIENT-SUBNET") == subnet


def test_the_example_checks_clean() -> None:
    assert check_config(EXAMPLE / "dnspol.yaml") == []


def test_the_committed_database_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_geo_db", EXAMPLE / "make_geo_db.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    opened = _Opened(str(EXAMPLE / "geo" / "example-city.mmdb"))
    try:
        held = {
            str(ipaddress.ip_network((value, length))): opened.record(value, bits)
            for value, bits, length, _ in opened.networks()
        }
    finally:
        opened.close()
    assert held == script.NETWORKS
