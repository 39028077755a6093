"""Tests for dnspol.zones.model: nodes, RRsets, existing names, cuts, the zone set."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from dnslib import QTYPE, A, DNSLabel
from dnslib import dns as dnslib_dns
from hypothesis import given, settings
from hypothesis import strategies as st

from dnspol.names import Name, from_text
from dnspol.zones.model import Existing, OneRRsetNode, Record, RRset, Zone, ZoneSet

ORIGIN = from_text("example.com.")
SOA = dnslib_dns.SOA(DNSLabel("ns.example.com."), DNSLabel("hm.example.com."), (1, 2, 3, 4, 5))


def rec(owner: str, rtype: str, ttl: int = 300, rdata: object = None, where: str = "t:1"):
    name = from_text(f"{owner}.example.com." if owner != "@" else "example.com.")
    if rdata is None:
        rdata = A("192.0.2.1") if rtype == "A" else dnslib_dns.NS(DNSLabel("ns.example.com."))
    return Record(name, getattr(QTYPE, rtype), ttl, rdata, where)


def zone_of(*records: Record) -> Zone:
    return Zone.from_records(ORIGIN, [rec("@", "SOA", rdata=SOA), *records])


# --------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("file", "line", "where"),
    [("zone.db", 7, "zone.db:7"), ("zone.db:7", 0, "zone.db:7"), ("example.com.zone", 0,
      "example.com.zone")],
)  # fmt: skip
def test_record_where_is_file_and_line(file: str, line: int, where: str):
    assert Record(ORIGIN, QTYPE.A, 60, A("192.0.2.1"), file, line).where == where


# --------------------------------------------------------------------------- nodes


def test_a_node_with_one_rrset_is_a_small_read_only_mapping():
    rrset = RRset(from_text("www.example.com."), QTYPE.A, 300, (A("192.0.2.1"),))
    node = OneRRsetNode(rrset)
    assert node[QTYPE.A] is rrset
    assert node.get(QTYPE.A) is rrset
    assert node.get(QTYPE.AAAA) is None
    assert node.get(QTYPE.AAAA, "absent") == "absent"
    assert QTYPE.A in node and QTYPE.AAAA not in node
    assert list(node) == [QTYPE.A] and len(node) == 1 and min(node) == QTYPE.A
    assert dict(node) == {QTYPE.A: rrset}
    assert node == {QTYPE.A: rrset}
    assert list(node.values()) == [rrset]
    with pytest.raises(KeyError):
        node[QTYPE.AAAA]
    with pytest.raises(AttributeError):
        node.other = 1  # type: ignore[attr-defined]


def test_from_records_groups_by_owner_and_type():
    zone = zone_of(
        rec("www", "A", 300, A("192.0.2.1")),
        rec("www", "AAAA", 300, dnslib_dns.AAAA("2001:db8::1")),
        rec("www", "A", 100, A("192.0.2.2")),
        rec("mail", "A", 300, A("192.0.2.25")),
    )
    www = zone.nodes[from_text("www.example.com.")]
    assert isinstance(www, MappingProxyType) and set(www) == {QTYPE.A, QTYPE.AAAA}
    assert [str(rd) for rd in www[QTYPE.A].rdatas] == ["192.0.2.1", "192.0.2.2"]
    assert www[QTYPE.A].ttl == 100  # RFC 2181 §5.2: one TTL per RRset, the lowest
    assert isinstance(zone.nodes[from_text("mail.example.com.")], OneRRsetNode)
    assert list(zone.nodes) == [
        ORIGIN,
        from_text("www.example.com."),
        from_text("mail.example.com."),
    ]
    assert zone.soa.rdatas == (SOA,)


def test_duplicate_records_collapse():
    zone = zone_of(rec("x", "A", 300, A("192.0.2.1")), rec("x", "A", 600, A("192.0.2.1")))
    (only,) = zone.nodes[from_text("x.example.com.")].values()
    assert len(only.rdatas) == 1 and only.ttl == 300


def test_cuts_are_ns_owners_below_the_apex():
    zone = zone_of(rec("@", "NS"), rec("sub", "NS"), rec("ns.sub", "A"), rec("www", "A"))
    assert zone.cuts == frozenset({from_text("sub.example.com.")})


# --------------------------------------------------------------------------- existing names


def old_existing(origin: Name, owners: list[Name]) -> set[Name]:
    """What ``Zone.existing`` was before it became a view: every owner and its ancestors."""
    return {name[i:] for name in owners for i in range(len(name) - len(origin) + 1)}


@pytest.mark.parametrize(
    ("owners", "empty_non_terminals"),
    [
        (["www"], []),
        (["a.b.c"], ["b.c", "c"]),
        (["a.b.c", "b.c"], ["c"]),
        (["b.c", "a.b.c"], ["c"]),
        (["x.y", "z.y", "*.w.y"], ["y", "w.y"]),
    ],
)
def test_existing_is_owners_and_empty_non_terminals(owners: list[str], empty_non_terminals):
    zone = zone_of(*(rec(owner, "A") for owner in owners))
    ents = {from_text(f"{e}.example.com.") for e in empty_non_terminals}
    assert zone.existing.empty_non_terminals == ents
    assert set(zone.existing) == set(zone.nodes) | ents
    assert len(zone.existing) == len(zone.nodes) + len(ents)
    for name in [*zone.nodes, *ents]:
        assert name in zone.existing
    for absent in ("nope.example.com.", "com.", "www.example.org.", "x.a.b.c.example.com."):
        assert from_text(absent) not in zone.existing


LABELS = st.sampled_from([b"a", b"b", b"c", b"*", b"www"])


@given(st.lists(st.lists(LABELS, min_size=0, max_size=4), min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_existing_matches_owners_and_all_their_ancestors(relative: list[list[bytes]]):
    owners = [(*labels, *ORIGIN) for labels in relative]
    records = [Record(name, QTYPE.A, 60, A("192.0.2.1")) for name in owners]
    zone = Zone.from_records(ORIGIN, records)
    assert set(zone.existing) == old_existing(ORIGIN, owners)
    assert isinstance(zone.existing, Existing)


# --------------------------------------------------------------------------- zone set


def test_zone_set_finds_the_longest_suffix():
    parent = zone_of(rec("@", "NS"))
    child_origin = from_text("sub.example.com.")
    child = Zone.from_records(child_origin, [Record(child_origin, QTYPE.SOA, 60, SOA)])
    zones = ZoneSet([parent, child])
    assert zones.find(from_text("www.sub.example.com.")) is child
    assert zones.find(from_text("www.example.com.")) is parent
    assert zones.find(from_text("example.org.")) is None
    assert len(zones) == 2 and zones.get(child_origin) is child
