"""Shared pieces of the zone tests (tests/test_zones_*.py): the test zone files and helpers."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdata
import pytest
from dnslib import QTYPE, DNSBuffer

from dnspol.errors import ZoneError
from dnspol.names import from_text
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import Zone

ZONES = Path(__file__).parent / "data" / "zones"
FEATURES = ZONES / "features.test.zone"
EXAMPLE = ZONES / "example.com.zone"
INCLUDE = ZONES / "include"
SMALL_ZONE = "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"

HEAD = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.1
"""  # four lines: what each case adds starts on line 5


class UncompressedBuffer(DNSBuffer):
    encode_name = DNSBuffer.encode_name_nocompress


def packed(rdata: object) -> bytes:
    """RDATA as dnslib packs it, without name compression."""
    buf = UncompressedBuffer()
    rdata.pack(buf)  # type: ignore[attr-defined]
    return bytes(buf.data)


def wire_of(rtype: str, text: str, origin: str = "features.test.") -> bytes:
    """Expected RDATA, from presentation text, by dnspython."""
    rdata = dns.rdata.from_text(
        "IN", rtype, text, origin=dns.name.from_text(origin), relativize=False
    )
    return rdata.to_wire()


def line_of(path: Path, start: str) -> int:
    """Number of the first line of ``path`` that starts with ``start``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(start):
            return number
    raise AssertionError(f"{start!r} not in {path}")


def rrset(zone: Zone, owner: str, rtype: str):
    return zone.nodes[from_text(owner)][getattr(QTYPE, rtype)]


def assert_problems(text: str, expected: list[tuple[int, str]]) -> None:
    """Loading ``text`` as bad.zone fails with these problems: (line, what it says) each."""
    with pytest.raises(ZoneError) as caught:
        load_zone_text(text, "example.com.", filename="bad.zone")
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for problem, (line, what) in zip(problems, expected, strict=True):
        assert problem.startswith(f"bad.zone:{line}: "), problem
        assert what in problem
