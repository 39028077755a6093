"""Tests for dnspol.zones.validation: every problem of a zone's records, at once, by file:line."""

from __future__ import annotations

import pytest
from zonekit import HEAD, assert_problems

from dnspol.errors import ZoneError
from dnspol.names import from_text
from dnspol.zones.loader import load_zone_text, read_records
from dnspol.zones.validation import validate

# case, text after HEAD, [(line of the problem, what it says)]; every one is reported
SEMANTIC_CASES = [
    ("TTL over 2**31-1", "www 2147483648 A 192.0.2.1\n",
     [(5, "TTL 2147483648 is above 2147483647")]),
    ("second SOA", "@ SOA ns1 hostmaster 2 7200 900 1209600 300\n",
     [(5, "a second SOA (the first is at bad.zone:2)")]),
    ("SOA below the apex", "www SOA ns1 hostmaster 1 2 3 4 5\n",
     [(5, "SOA at www.example.com. is not at the apex example.com.")]),
    ("CNAME then A", "x CNAME www\nx A 192.0.2.1\n",
     [(5, "CNAME at x.example.com. beside other data (A at bad.zone:6)")]),
    ("A and MX then CNAME", "x A 192.0.2.1\nx MX 10 x\nx CNAME www\n",
     [(7, "beside other data (A at bad.zone:5, MX at bad.zone:6)")]),
    ("CNAME at the apex", "@ CNAME www\n",
     [(5, "CNAME at example.com. beside other data (SOA at bad.zone:2, NS at bad.zone:3)")]),
    ("two CNAMEs", "x CNAME a\nx CNAME b\n",
     [(6, "a second CNAME at x.example.com. (the first is at bad.zone:5)")]),
    ("outside the zone", "www.example.org. A 192.0.2.1\n",
     [(5, "www.example.org. is outside the zone example.com.")]),
    ("outside by $ORIGIN", "$ORIGIN example.net.\nwww A 192.0.2.1\n",
     [(6, "www.example.net. is outside the zone example.com.")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=case) for case, t, e in SEMANTIC_CASES]
)
def test_problems_name_file_line_and_what_is_wrong(text: str, expected: list[tuple[int, str]]):
    assert_problems(HEAD + text, expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("$TTL 300\n@ NS ns1\nns1 A 192.0.2.1\n",
         "bad.zone: zone example.com. has no SOA at its apex"),
        ("$TTL 300\n@ SOA ns1 hm 1 2 3 4 5\n",
         "bad.zone:2: zone example.com. has no NS records at its apex"),
    ],
)  # fmt: skip
def test_zone_wide_problems(text: str, problem: str):
    with pytest.raises(ZoneError) as caught:
        load_zone_text(text, "example.com.", filename="bad.zone")
    assert caught.value.problems == [problem]


def test_every_semantic_problem_is_reported_at_once():
    text = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
ns1 A 192.0.2.1
www.example.org. A 192.0.2.2
big 2147483648 A 192.0.2.3
x CNAME www
x TXT "beside"
sub SOA ns1 hostmaster 1 2 3 4 5
x CNAME elsewhere
"""
    with pytest.raises(ZoneError) as caught:
        load_zone_text(text, "example.com.", filename="bad.zone")
    assert caught.value.problems == [
        "bad.zone:2: zone example.com. has no NS records at its apex",
        "bad.zone:4: www.example.org. is outside the zone example.com.",
        "bad.zone:5: TTL 2147483648 is above 2147483647, the largest allowed (RFC 2181 §8)",
        "bad.zone:6: CNAME at x.example.com. beside other data (TXT at bad.zone:7); "
        "a CNAME must be alone at its name",
        "bad.zone:8: SOA at sub.example.com. is not at the apex example.com.",
        "bad.zone:9: a second CNAME at x.example.com. (the first is at bad.zone:6); "
        "a name can have only one CNAME",
    ]
    assert str(caught.value) == "\n".join(caught.value.problems)


@pytest.mark.parametrize(
    "text",
    [
        "x CNAME www\nx RRSIG CNAME 8 3 300 20250101000000 20240101000000 1 example.com. AAAA\n"
        "x NSEC y.example.com. CNAME RRSIG NSEC\n",  # DNSSEC data may sit beside a CNAME
        "x CNAME www\nx CNAME www\n",  # the same record twice is one record
        "@ SOA ns1 hostmaster 1 7200 900 1209600 300\n",  # likewise for the SOA
        "www 2147483647 A 192.0.2.1\n",  # the largest TTL allowed
        "www.example.com. A 192.0.2.1\n",  # absolute and inside
    ],
)
def test_accepted(text: str):
    load_zone_text(HEAD + text, "example.com.")


def test_validate_without_apex_checks():
    records = read_records("$TTL 60\nwww A 192.0.2.1\n", from_text("example."), "overlay.zone")
    assert validate(from_text("example."), records, require_apex=False) == []
    assert len(validate(from_text("example."), records)) == 2  # no SOA, no NS
