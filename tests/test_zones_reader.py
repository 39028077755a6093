"""Tests for dnspol.zones.reader: $INCLUDE, and syntax errors named by file:line and what."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE
from zonekit import HEAD, INCLUDE, assert_problems, line_of

from dnspol.errors import ZoneError
from dnspol.names import from_text
from dnspol.zones.loader import load_zone_file, read_records

# --------------------------------------------------------------------------- $INCLUDE


def test_include_is_relative_to_the_including_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    main = INCLUDE / "main.zone"
    records = read_records(main, from_text("inc.test."), str(main))
    where = {(r.name, r.rtype): r.where for r in records}
    hosts, nested = INCLUDE / "hosts" / "hosts.inc", INCLUDE / "hosts" / "nested.inc"
    assert where[from_text("web.inc.test."), QTYPE.A] == f"{hosts}:2"
    assert where[from_text("deep.inc.test."), QTYPE.A] == f"{nested}:2"
    # the second $INCLUDE gives the file another origin
    assert where[from_text("web.lab.inc.test."), QTYPE.A] == f"{hosts}:2"
    assert where[from_text("deep.lab.inc.test."), QTYPE.A] == f"{nested}:2"
    # after an include, the including file's origin and line numbers carry on
    assert where[from_text("after.inc.test."), QTYPE.A] == f"{main}:{line_of(main, 'after')}"
    assert load_zone_file(main).origin == from_text("inc.test.")


@pytest.mark.parametrize(
    ("zone_file", "problem"),
    [
        ("broken.zone", f"{INCLUDE / 'hosts' / 'broken.inc'}:3: bad record 'bad A 192.0.2'"),
        ("loop.zone", f"{INCLUDE / 'loop.zone'}:3: $INCLUDE loop.zone: the file includes itself"),
        ("missing.zone", f"{INCLUDE / 'missing.zone'}:4: $INCLUDE hosts/not-there.inc: cannot"),
    ],
)
def test_include_problems_name_the_file_and_line(zone_file: str, problem: str):
    with pytest.raises(ZoneError) as caught:
        load_zone_file(INCLUDE / zone_file)
    (found,) = caught.value.problems
    assert found.startswith(problem)


# --------------------------------------------------------------------------- errors

# case, text after HEAD, [(line of the problem, what it says)]; dnspython stops at the first one
SYNTAX_CASES = [
    ("bad address", "www A 192.0.2\n", [(5, "bad record 'www A 192.0.2': malformed")]),
    ("unknown type", "www FOO 1\n", [(5, "unknown rdatatype 'FOO'")]),
    ("class not IN", "www CH A 192.0.2.1\n", [(5, "the class is not IN")]),
    ("TTL over 2**32-1", "www 4294967296 A 192.0.2.1\n",
     [(5, "'4294967296' is neither a type nor a TTL")]),
    ("bad TTL unit", "www 1x A 192.0.2.1\n", [(5, "'1x' is neither a type nor a TTL")]),
    ("unbalanced ( at the record's first line", '\n\nwww TXT ( "a"\n "b"\n',
     [(7, "unbalanced parentheses")]),
    ("TXT string over 255", f'www TXT "{"a" * 256}"\n', [(5, "string too long")]),
    ("\\# length wrong", "x TYPE65280 \\# 4 0a00\n", [(5, "hex data has wrong length")]),
    ("label over 63", f"{'a' * 64} A 192.0.2.1\n", [(5, "label is > 63 octets")]),
    ("bad $TTL", "$TTL soon\n", [(5, "bad directive '$TTL soon'")]),
    ("unknown directive", "$FOO bar\n", [(5, "'$FOO' is not allowed")]),
    ("$INCLUDE without a file", "$INCLUDE\n", [(5, "$INCLUDE needs a file name")]),
    ("dnslib cannot hold", "x CNAME a\\200b\n", [(5, "CNAME a\\200b.example.com.: cannot be")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=case) for case, t, e in SYNTAX_CASES]
)
def test_syntax_errors_name_file_line_and_what_is_wrong(text: str, expected: list[tuple[int, str]]):
    assert_problems(HEAD + text, expected)
