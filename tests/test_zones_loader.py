"""Tests for dnspol.zones.loader: master-file features, origins, reading files, whole zones."""

from __future__ import annotations

import shutil
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.zone
import pytest
from dnslib import QTYPE, DNSRecord
from zonekit import EXAMPLE, FEATURES, SMALL_ZONE, line_of, packed, rrset, wire_of

from dnspol.errors import ZoneError
from dnspol.names import Name, from_text
from dnspol.zones.loader import load_zone_file, load_zone_text, read_records
from dnspol.zones.model import Zone


@pytest.fixture(scope="module")
def features() -> Zone:
    return load_zone_file(FEATURES)


# --------------------------------------------------------------------------- features

# owner, type, TTL, expected RDATA in presentation form (absolute names)
FEATURE_CASES = [
    ("features.test.", "SOA", 5400,
     ["ns1.features.test. hostmaster.features.test. 2024010101 7200 900 1209600 300"]),
    ("features.test.", "NS", 5400, ["ns1.features.test.", "ns2.features.test."]),
    ("ttl-first.features.test.", "A", 600, ["192.0.2.3"]),
    ("class-first.features.test.", "A", 700, ["192.0.2.4"]),
    ("ttl-units.features.test.", "A", 93600, ["192.0.2.5"]),
    ("lower.features.test.", "A", 5400, ["192.0.2.6"]),
    ("mixed.case.features.test.", "A", 5400, ["192.0.2.7"]),
    ("www.features.test.", "AAAA", 5400, ["2001:db8::8"]),
    ("alias-apex.features.test.", "CNAME", 5400, ["features.test."]),
    ("alias-rel.features.test.", "CNAME", 5400, ["www.features.test."]),
    ("alias-abs.features.test.", "CNAME", 5400, ["www.example.net."]),
    ("mx.features.test.", "MX", 5400, ["10 Mail.Features.Test."]),
    ("txt-multi.features.test.", "TXT", 5400, ['"one" "two" "three"']),
    ("txt-escape.features.test.", "TXT", 5400, ['"say \\"hi\\"" "ABC" "semi;colon"']),
    ("txt-lines.features.test.", "TXT", 5400, ['"first line" "second line"']),
    ("_sip._tcp.features.test.", "SRV", 5400, ["0 5 5060 sip.features.test."]),
    ("caa.features.test.", "CAA", 5400, ['0 issue "letsencrypt.org"']),
    ("ptr.features.test.", "PTR", 5400, ["www.features.test."]),
    ("naptr.features.test.", "NAPTR", 5400,
     ['100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" naptr.features.test.']),
    ("ds.features.test.", "DS", 5400, ["60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"]),
    ("unknown.features.test.", "TYPE65280", 5400, ["\\# 4 0a000001"]),
    ("unknown-split.features.test.", "TYPE65281", 5400, ["\\# 4 0a000001"]),
    ("a-generic.features.test.", "A", 5400, ["192.0.2.10"]),
    ("hinfo.features.test.", "HINFO", 5400, ['"PC" "Linux"']),
    ("dname.features.test.", "DNAME", 5400, ["example.net."]),
    ("*.wild.features.test.", "A", 5400, ["192.0.2.20"]),
    ("ttl-300.features.test.", "A", 300, ["192.0.2.22"]),
    ("host.sub.features.test.", "A", 300, ["192.0.2.23"]),
    ("host.deeper.sub.features.test.", "A", 300, ["192.0.2.24"]),
    ("deeper.sub.features.test.", "A", 300, ["192.0.2.25"]),
    ("gen1.features.test.", "A", 300, ["192.0.2.101"]),
    ("gen3.features.test.", "A", 300, ["192.0.2.103"]),
]  # fmt: skip


@pytest.mark.parametrize(("owner", "rtype", "ttl", "expected"), FEATURE_CASES)
def test_feature_records(features: Zone, owner: str, rtype: str, ttl: int, expected: list[str]):
    found = features.nodes[from_text(owner)][dns.rdatatype.from_text(rtype)]
    assert found.ttl == ttl
    assert sorted(packed(rd) for rd in found.rdatas) == sorted(
        wire_of(rtype, text) for text in expected
    )


def test_dnskey_split_over_lines(features: Zone):
    (key,) = rrset(features, "dnskey.features.test.", "DNSKEY").rdatas
    assert (key.flags, key.protocol, key.algorithm) == (257, 3, 8)
    assert len(key.key) == 260


def test_owner_is_lowercased_and_rdata_keeps_spelling(features: Zone):
    assert from_text("mixed.case.features.test.") in features.nodes
    (mx,) = rrset(features, "mx.features.test.", "MX").rdatas
    assert b"\x04Mail\x08Features\x04Test\x00" in packed(mx)


def test_escaped_dot_stays_inside_one_label(features: Zone):
    assert (b"escaped.dot", b"features", b"test") in features.nodes


def test_soa_fields_reach_the_model(features: Zone):
    assert features.serial == 2024010101
    assert features.negative_ttl == 300  # min(SOA TTL 5400, minimum 5m)


@pytest.mark.parametrize(
    ("owner", "rtype", "line_starts_with"),
    [
        ("features.test.", "SOA", "@       IN  SOA"),  # multi-line: its first line
        ("txt-lines.features.test.", "TXT", "txt-lines"),
        ("dnskey.features.test.", "DNSKEY", "dnskey"),
        ("www.features.test.", "AAAA", "            AAAA"),  # inherited owner
        ("host.deeper.sub.features.test.", "A", "host        A   192.0.2.24"),
        ("gen2.features.test.", "A", "$GENERATE"),
    ],
)
def test_where_names_the_line_the_record_starts_on(owner: str, rtype: str, line_starts_with: str):
    records = read_records(FEATURES, from_text("features.test."), str(FEATURES))
    (record,) = [
        r for r in records if r.name == from_text(owner) and r.rtype == getattr(QTYPE, rtype)
    ]
    assert record.where == f"{FEATURES}:{line_of(FEATURES, line_starts_with)}"


def test_read_records_keeps_every_record_in_file_order():
    text = "$TTL 60\nx A 192.0.2.1\nx A 192.0.2.1\nX CNAME y\n"
    records = read_records(text, from_text("example."), "t.zone")
    assert [(r.name, r.rtype, r.where) for r in records] == [
        ((b"x", b"example"), QTYPE.A, "t.zone:2"),
        ((b"x", b"example"), QTYPE.A, "t.zone:3"),
        ((b"x", b"example"), QTYPE.CNAME, "t.zone:4"),
    ]


def test_record_without_any_ttl_takes_the_soa_minimum():
    zone = load_zone_text("@ SOA ns hm 1 2 3 4 300\n@ NS ns\nns A 192.0.2.1\n", "example.")
    assert zone.soa.ttl == 300
    assert rrset(zone, "ns.example.", "A").ttl == 300


# --------------------------------------------------------------------------- origin


def test_origin_from_first_origin_directive(tmp_path: Path):
    path = tmp_path / "whatever.zone"
    shutil.copy(EXAMPLE, path)
    assert load_zone_file(path).origin == from_text("example.com.")


@pytest.mark.parametrize("file_name", ["example.org.zone", "example.org.db", "example.org"])
def test_origin_from_file_name(tmp_path: Path, file_name: str):
    path = tmp_path / file_name
    path.write_text(SMALL_ZONE)
    zone = load_zone_file(path)
    assert zone.origin == from_text("example.org.")
    assert zone.source == str(path)


def test_given_origin_wins_over_the_file_name(tmp_path: Path):
    path = tmp_path / "example.org.zone"
    path.write_text(SMALL_ZONE)
    zone = load_zone_file(path, "Example.NET", scope="internal")
    assert zone.origin == from_text("example.net.")  # no trailing dot: still absolute
    assert zone.scope == "internal"


# --------------------------------------------------------------------------- files


def test_a_text_without_records():
    with pytest.raises(ZoneError) as caught:
        load_zone_text("; nothing\n", "example.com.", filename="bad.zone")
    assert caught.value.problems == [
        "bad.zone: no records: zone example.com. needs an SOA and NS at its apex"
    ]


def test_file_that_cannot_be_read(tmp_path: Path):
    missing = tmp_path / "nope.zone"
    with pytest.raises(ZoneError) as caught:
        load_zone_file(missing)
    assert caught.value.problems == [f"{missing}: cannot read: No such file or directory"]
    binary = tmp_path / "binary.zone"
    binary.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ZoneError, match=r"binary.zone: cannot read: not UTF-8"):
        load_zone_file(binary)


# --------------------------------------------------------------------------- example.com.zone


@pytest.fixture(scope="module")
def example() -> Zone:
    return load_zone_file(EXAMPLE)


def name(text: str) -> Name:
    return from_text(text + ".example.com." if text != "@" else "example.com.")


def test_example_apex(example: Zone):
    assert example.origin == from_text("example.com.")
    assert example.soa.ttl == 3600
    assert example.negative_ttl == 300
    assert len(rrset(example, "example.com.", "NS").rdatas) == 2
    for glue in ("ns1", "ns2"):
        assert QTYPE.A in example.nodes[name(glue)]


def test_example_delegation(example: Zone):
    assert example.cuts == frozenset({name("sub")})
    assert set(example.nodes[name("sub")]) == {QTYPE.NS, QTYPE.DS}
    assert QTYPE.A in example.nodes[name("ns.sub")]


def test_example_empty_non_terminals_and_wildcards(example: Zone):
    for ent in ("b.c", "c"):
        assert name(ent) in example.existing and name(ent) not in example.nodes
    assert set(example.nodes[name("*.wild")]) == {QTYPE.A}
    assert set(example.nodes[name("*.w")]) == {QTYPE.CNAME}
    assert set(example.nodes[name("*.t")]) == {QTYPE.TXT}


def test_example_cnames(example: Zone):
    def target(owner: str) -> str:
        (rd,) = rrset(example, f"{owner}.example.com.", "CNAME").rdatas
        return str(rd.label)

    assert target("alias") == "www.example.com."
    assert target("chain") == "alias.example.com."
    assert target("external") == "www.example.net."
    assert (target("loop1"), target("loop2")) == ("loop2.example.com.", "loop1.example.com.")


def test_example_srv_target_is_in_the_zone(example: Zone):
    (srv,) = rrset(example, "_sip._tcp.example.com.", "SRV").rdatas
    assert str(srv.target) == "sipserver.example.com."
    assert QTYPE.A in example.nodes[name("sipserver")]


def test_example_big_answer_is_over_udp_sizes(example: Zone):
    big = rrset(example, "big.example.com.", "TXT")
    assert len(big.rdatas) == 40
    assert all(len(rd.data[0]) == 60 for rd in big.rdatas)
    message = DNSRecord()
    for rr in big.to_rrs():
        message.add_answer(rr)
    assert len(message.pack()) > 1232
    assert len(rrset(example, "txt.example.com.", "TXT").rdatas[0].data) == 6
