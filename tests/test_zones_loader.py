"""Tests for dnspol.zones.loader: master-file features, errors with file:line, wire fidelity."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.zone
import pytest
from dnslib import QTYPE, RD, RR, DNSBuffer, DNSRecord
from dnslib import dns as dnslib_dns
from hypothesis import given, settings
from hypothesis import strategies as st

from dnspol.errors import ZoneError
from dnspol.names import Name, from_text, to_text
from dnspol.zones import loader
from dnspol.zones.loader import (
    ZoneLimits,
    load_zone_file,
    load_zone_text,
    read_records,
    validate,
)
from dnspol.zones.model import Record, Zone

ZONES = Path(__file__).parent / "data" / "zones"
FEATURES = ZONES / "features.test.zone"
EXAMPLE = ZONES / "example.com.zone"
INCLUDE = ZONES / "include"
SMALL_ZONE = "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"


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

HEAD = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.1
"""  # four lines: what each case adds starts on line 5

# case, text after HEAD, [(line of the problem, what it says)]
ERROR_CASES = [
    # syntax: dnspython stops at the first one
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
    # semantic: every one is reported
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
    ("text", "expected"), [pytest.param(t, e, id=case) for case, t, e in ERROR_CASES]
)
def test_errors_name_file_line_and_what_is_wrong(text: str, expected: list[tuple[int, str]]):
    with pytest.raises(ZoneError) as caught:
        load_zone_text(HEAD + text, "example.com.", filename="bad.zone")
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for problem, (line, what) in zip(problems, expected, strict=True):
        assert problem.startswith(f"bad.zone:{line}: "), problem
        assert what in problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("$TTL 300\n@ NS ns1\nns1 A 192.0.2.1\n",
         "bad.zone: zone example.com. has no SOA at its apex"),
        ("$TTL 300\n@ SOA ns1 hm 1 2 3 4 5\n",
         "bad.zone:2: zone example.com. has no NS records at its apex"),
        ("; nothing\n",
         "bad.zone: no records: zone example.com. needs an SOA and NS at its apex"),
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


def test_file_that_cannot_be_read(tmp_path: Path):
    missing = tmp_path / "nope.zone"
    with pytest.raises(ZoneError) as caught:
        load_zone_file(missing)
    assert caught.value.problems == [f"{missing}: cannot read: No such file or directory"]
    binary = tmp_path / "binary.zone"
    binary.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ZoneError, match=r"binary.zone: cannot read: not UTF-8"):
        load_zone_file(binary)


# --------------------------------------------------------------------------- dnslib fidelity


@pytest.fixture(scope="module")
def reference() -> dns.zone.Zone:
    """The features zone as dnspython itself builds it."""
    return dns.zone.from_file(str(FEATURES), origin="features.test.", relativize=False)


def loaded_records() -> list[Record]:
    return read_records(FEATURES, from_text("features.test."), str(FEATURES))


@pytest.mark.parametrize(
    ("rtype", "rd_class"),
    [
        ("SOA", dnslib_dns.SOA), ("NS", dnslib_dns.NS), ("CNAME", dnslib_dns.CNAME),
        ("MX", dnslib_dns.MX), ("TXT", dnslib_dns.TXT), ("SRV", dnslib_dns.SRV),
        ("CAA", dnslib_dns.CAA), ("PTR", dnslib_dns.PTR), ("DS", dnslib_dns.DS),
        ("DNSKEY", dnslib_dns.DNSKEY), ("A", dnslib_dns.A), ("AAAA", dnslib_dns.AAAA),
        # raw RDATA: dnslib has no class, or would compress names it must not
        ("NAPTR", RD), ("HINFO", RD), ("DNAME", RD), ("TYPE65280", RD),
    ],
)  # fmt: skip
def test_dnslib_class_per_type(rtype: str, rd_class: type):
    rdtype = dns.rdatatype.from_text(rtype)
    classes = {type(r.rdata) for r in loaded_records() if r.rtype == rdtype}
    assert classes == {rd_class}


def test_every_rdata_packs_to_dnspythons_bytes(reference: dns.zone.Zone):
    for record in loaded_records():
        name = dns.name.Name([*record.name, b""])
        expected = {rd.to_wire() for rd in reference.find_rdataset(name, record.rtype)}
        assert packed(record.rdata) in expected, record.where


@pytest.mark.parametrize(
    "rtype", ["TXT", "CAA", "NAPTR", "SRV", "DS", "DNSKEY", "HINFO", "DNAME", "TYPE65280"]
)
def test_packs_byte_identical_with_compression_on(reference: dns.zone.Zone, rtype: str):
    rdtype = dns.rdatatype.from_text(rtype)
    for record in (r for r in loaded_records() if r.rtype == rdtype):
        buf = DNSBuffer()
        record.rdata.pack(buf)
        name = dns.name.Name([*record.name, b""])
        (expected,) = reference.find_rdataset(name, rdtype)
        assert bytes(buf.data) == expected.to_wire()


def test_a_message_of_every_record_reads_back_in_dnspython(
    features: Zone, reference: dns.zone.Zone
):
    message = DNSRecord()
    for node in features.nodes.values():
        for rrs in node.values():
            for rr in rrs.to_rrs():
                message.add_answer(rr)
    parsed = dns.message.from_wire(bytes(message.pack()))  # dnslib's pack gives a bytearray
    assert len(parsed.answer) == sum(len(node) for node in features.nodes.values())
    for rrset_ in parsed.answer:
        expected = reference.find_rdataset(rrset_.name, rrset_.rdtype)
        assert set(rrset_) == set(expected), rrset_.name


@pytest.mark.parametrize("owner", ["naptr.features.test.", "_sip._tcp.features.test."])
def test_names_that_must_not_be_compressed_are_not(features: Zone, owner: str):
    rtype = "NAPTR" if owner.startswith("naptr") else "SRV"
    (rr,) = rrset(features, owner, rtype).to_rrs()
    buf = DNSBuffer()
    RR(rr.rname, QTYPE.A, rdata=dnslib_dns.A("192.0.2.1")).pack(buf)  # names to point back at
    buf.encode_name(dnslib_dns.DNSLabel("sip.features.test."))
    start = len(buf.data)
    rr.pack(buf)
    rdata = bytes(buf.data[start + 2 + 10 :])  # after the owner pointer and the fixed fields
    assert rdata == packed(rr.rdata)
    assert b"\xc0" not in rdata


def test_why_naptr_is_kept_raw():
    """dnslib's own NAPTR compresses its replacement name (RFC 3403 §4.1 forbids it)."""
    naptr = dnslib_dns.NAPTR(100, 10, b"u", b"E2U+sip", b"", "naptr.example.")
    buf = DNSBuffer()
    buf.encode_name(dnslib_dns.DNSLabel("naptr.example."))
    naptr.pack(buf)
    assert bytes(buf.data).endswith(b"\xc0\x00")


def test_generic_rd_packs_its_bytes_unchanged():
    buf = DNSBuffer()
    RD(b"\x0a\x00\x00\x01").pack(buf)
    assert bytes(buf.data) == b"\x0a\x00\x00\x01"


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


# --------------------------------------------------------------------------- the fast reader
#
# The loader reads simple lines itself and hands every other statement to dnspython's
# Reader. Whatever the text, the result must be what the Reader alone gives: the same
# records (owner, type, TTL, dnslib class, packed bytes, file:line), or the same problems.


def outcome(read, text: str, origin: str, filename: str) -> tuple:
    try:
        records, problems = read(text, from_text(origin), filename)
    except ZoneError as error:
        return ("error", error.problems)
    described = [
        (r.name, r.rtype, r.ttl, type(r.rdata).__name__, packed(r.rdata), r.where) for r in records
    ]
    return ("records", described, problems)


def assert_read_alike(text: str, origin: str = "example.com.", filename: str = "t.zone"):
    fast = outcome(loader._read, text, origin, filename)
    slow = outcome(loader._read_by_dnspython, text, origin, filename)
    assert fast == slow
    return fast


def handed_over(text: str, origin: str = "example.com.") -> int:
    """How many statements of ``text`` the fast reader left to dnspython's Reader."""
    reader = loader._FastReader(from_text(origin), "t.zone")
    reader.read(text)
    return reader.handed_over


@pytest.mark.parametrize(
    "path", sorted(ZONES.glob("*.zone")) + sorted(INCLUDE.glob("*.zone")), ids=lambda p: p.name
)
def test_zone_files_read_alike(path: Path):
    origin = loader._origin_from_file(path.read_text(), str(path))
    assert_read_alike(path.read_text(), to_text(origin), str(path))


SIMPLE_ZONE = """\
$ORIGIN Example.COM.
$TTL 1h30m
@ IN SOA ns1 hostmaster.example.com. 2024010101 2h 15m 2w 5m ; one line
  IN NS ns1
\tIN NS ns2.Example.NET.
ns1 A 192.0.2.1 ; comment
ns2 in a 192.0.2.2
www 300 IN A 192.0.2.10
    IN 600 AAAA 2001:DB8::10
mail 1W2d IN MX 10 Mail
alias CNAME www
apex-alias CNAME @
ptr PTR host.example.net.
txt TXT plain "quoted; not a comment" "" ; a comment
*.wild A 192.0.2.30
$ORIGIN sub
host A 192.0.2.40
$ttl 60
Other.Example.COM. A 192.0.2.41
"""


def test_simple_zone_is_read_without_dnspython():
    assert handed_over(SIMPLE_ZONE) == 0
    _, records, problems = assert_read_alike(SIMPLE_ZONE)
    assert len(records) == 15 and problems == []


def test_only_the_statements_it_cannot_read_go_to_dnspython():
    text = SIMPLE_ZONE + 'multi TXT ( "a"\n  "b" )\nsrv SRV 0 5 5060 www\n  A 192.0.2.50\n'
    assert handed_over(text) == 2
    assert_read_alike(text)


# text of a zone (after "$ORIGIN example.com.\n") whose reading must not differ
FAST_READER_CASES = {
    "owner inherited after a statement dnspython read":
        '$TTL 60\nx TXT ( "a"\n "b" )\n  A 192.0.2.1\n',
    "owner inherited over a directive": "$TTL 60\nx A 192.0.2.1\n$TTL 30\n A 192.0.2.2\n",
    "inherited owner at the start is the origin": "$TTL 60\n  A 192.0.2.1\n",
    "@ and relative and absolute":
        "$TTL 60\n@ A 192.0.2.1\nA.b A 192.0.2.2\nc.Example.COM. A 192.0.2.3\n",
    "@ inside a name is a label": "$TTL 60\na.@ A 192.0.2.1\n",
    "root owner": "$TTL 60\n. A 192.0.2.1\n",
    "empty label": "$TTL 60\na..b A 192.0.2.1\n",
    "label of 63 and 64": f"$TTL 60\n{'a' * 63} A 192.0.2.1\n{'b' * 64} A 192.0.2.1\n",
    "name of 255 octets": "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ". A 192.0.2.1\n",
    "name of 256 octets": "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 62]) + ". A 192.0.2.1\n",
    "relative name of 255 octets":
        "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 49]) + " A 192.0.2.1\n",
    "relative name of 256 octets":
        "$TTL 60\n" + ".".join(["a" * 63] * 3 + ["b" * 50]) + " A 192.0.2.1\n",
    "target of 256 octets": "$TTL 60\nx CNAME " + ".".join(["a" * 63] * 3 + ["b" * 50]) + "\n",
    "TTL units and case": "x 1h30M A 192.0.2.1\ny 2W A 192.0.2.2\nz 1d1s A 192.0.2.3\n",
    "TTL 2**32-1 and 2**32": "x 4294967295 A 192.0.2.1\ny 4294967296 A 192.0.2.2\n",
    "class before TTL": "x IN 300 A 192.0.2.1\n",
    "two TTLs": "x 300 IN 400 A 192.0.2.1\n",
    "class CLASS1 is IN": "$TTL 60\nx CLASS1 A 192.0.2.1\n",
    "class CH": "$TTL 60\nx CH A 192.0.2.1\n",
    "class ANY": "$TTL 60\nx ANY A 192.0.2.1\n",
    "mixed-case type and class": "$TTL 60\nx iN Aaaa ::1\ny In cName x\n",
    "TYPE1 is A": "$TTL 60\nx TYPE1 192.0.2.1\n",
    "unknown type": "$TTL 60\nx FOO 1\n",
    "no type": "$TTL 60\nx 300 IN\n",
    "owner only": "$TTL 60\nx\n",
    "no TTL anywhere": "x A 192.0.2.1\n",
    "RFC 2308: last stated TTL": "x 300 A 192.0.2.1\ny A 192.0.2.2\n",
    "SOA MINIMUM is the default, the last TTL wins":
        "@ SOA ns hm 1 2 3 4 55\nx A 192.0.2.1\ny 300 A 192.0.2.2\nz A 192.0.2.3\n",
    "SOA without TTL after a stated TTL":
        "x 300 A 192.0.2.1\n@ SOA ns hm 1 2 3 4 55\ny A 192.0.2.2\n",
    "SOA TTL then $TTL": "@ 100 SOA ns hm 1 2 3 4 55\n$TTL 70\nx A 192.0.2.1\n",
    "$TTL then SOA MINIMUM ignored": "$TTL 70\n@ SOA ns hm 1 2 3 4 55\nx A 192.0.2.1\n",
    "SOA timers with units": "@ 1h SOA ns. hm. 4294967295 1h 2m 3w 4d\n",
    "SOA serial too big": "@ 1h SOA ns hm 4294967296 1 2 3 4\n",
    "SOA with a field missing": "@ 1h SOA ns hm 1 2 3 4\n",
    "SOA over lines": "@ 1h SOA ns hm (\n 1 2 3\n 4 5 )\n  NS ns\n",
    "SOA twice": "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ SOA ns hm 2 2 3 4 5\n",
    "addresses":
        "$TTL 60\na A 0.0.0.0\nb A 255.255.255.255\nc AAAA ::ffff:192.0.2.1\nd AAAA FE80::1\n",
    "address short": "$TTL 60\nx A 192.0.2\n",
    "address over 255": "$TTL 60\nx A 192.0.2.256\n",
    "address with leading zero": "$TTL 60\nx A 192.0.2.01\n",
    "address and more": "$TTL 60\nx A 192.0.2.1 192.0.2.2\n",
    "IPv6 two ::": "$TTL 60\nx AAAA 1::2::3\n",
    "IPv6 in A": "$TTL 60\nx A ::1\n",
    "MX": "$TTL 60\nx MX 0 .\ny MX 010 Mail.Example.NET.\nz MX 65535 @\n",
    "MX preference too big": "$TTL 60\nx MX 65536 mail\n",
    "MX without exchange": "$TTL 60\nx MX 10\n",
    "MX with a sign": "$TTL 60\nx MX +10 mail\n",
    "names in rdata keep their case": "$TTL 60\nx CNAME WWW\ny NS Ns1.Other.\nz PTR @\nw CNAME .\n",
    "CNAME with two names": "$TTL 60\nx CNAME a b\n",
    "TXT strings": '$TTL 60\nx TXT a "b c" "" d"e"f\ny TXT "a""b"\n',
    "TXT semicolon in quotes": '$TTL 60\nx TXT "a;b" ; "c"\ny TXT "d" ;e\n',
    "TXT of 255 and 256": f'$TTL 60\nx TXT "{"a" * 255}"\ny TXT "{"b" * 256}"\n',
    "TXT without strings": "$TTL 60\nx TXT\n",
    "TXT quote left open": '$TTL 60\nx TXT "abc\n',
    "quoted owner": '$TTL 60\n"x" A 192.0.2.1\n',
    "quoted address": '$TTL 60\nx A "192.0.2.1"\n',
    "quoted type": '$TTL 60\nx IN "TXT" a\n',
    "quoted TTL": '$TTL 60\nx "300" A 192.0.2.1\n',
    "quoted class": '$TTL 60\nx "IN" TXT a\n',
    "escapes": "$TTL 60\na\\.b A 192.0.2.1\nc TXT \\065\n",
    "IDN owner": "$TTL 60\nbücher A 192.0.2.1\n",
    "comments everywhere": "; top\n$TTL 60 ; ttl\n\n   \n\t; indented\nx A 192.0.2.1;tight\n;\n",
    "parentheses in a comment": "$TTL 60\nx A 192.0.2.1 ; (not a group\ny A 192.0.2.2\n",
    "parentheses on one line": "$TTL 60\nx A ( 192.0.2.1 )\ny A 192.0.2.2\n",
    "closing parenthesis alone": "$TTL 60\nx A 192.0.2.1 )\n",
    "unbalanced at the end": "$TTL 60\nx TXT ( a\n",
    "$ORIGIN relative, absolute, root":
        "$TTL 60\n$ORIGIN sub\nx A 192.0.2.1\n$ORIGIN Other.\ny CNAME z\n"
        "$ORIGIN .\nw A 192.0.2.2\n",
    "$ORIGIN bad": "$ORIGIN a..b\n",
    "$ORIGIN without a name": "$ORIGIN\n",
    "$TTL bad": "$TTL 1x\n",
    "$TTL and more": "$TTL 60 70\n",
    "directive lower case": "$ttl 60\n$origin sub\nx A 192.0.2.1\n",
    "directive indented is a record": "$TTL 60\n  $TTL 70\n",
    "unknown directive": "$FOO bar\n",
    "$GENERATE between simple lines":
        "$TTL 60\nx A 192.0.2.1\n$GENERATE 1-3 g$ A 192.0.2.$\n  AAAA ::1\ny A 192.0.2.9\n",
    "$UNICODE": "$TTL 60\n$UNICODE 2008\nx A 192.0.2.1\n",
    "no newline at the end": "$TTL 60\nx A 192.0.2.1",
    "CR LF": "$TTL 60\r\nx A 192.0.2.1\r\n  AAAA ::1\r\ny TXT ( a\r\n b )\r\n",
    "CR LF with quotes": '$TTL 60\r\nx TXT "a"\r\n',
    "lone CR": "$TTL 60\rx A 192.0.2.1\ry A 192.0.2\r",
    "form feed": "$TTL 60\nx A\f192.0.2.1\n",
    "backslash at the end of a line": "$TTL 60\nx A 192.0.2.1\\\ny A 192.0.2.2\n",
    "escaped line break in quotes": '$TTL 60\nx TXT "a\\\nb"\ny A 192.0.2.2\n',
    "rdata dnslib cannot hold": "$TTL 60\nx CNAME a\\200b\ny A 192.0.2.1\n",
}  # fmt: skip


@pytest.mark.parametrize("text", FAST_READER_CASES.values(), ids=FAST_READER_CASES.keys())
def test_fast_reader_reads_like_dnspython(text: str):
    assert_read_alike("$ORIGIN example.com.\n" + text)


def test_include_between_simple_lines(tmp_path: Path):
    (tmp_path / "hosts.inc").write_text("$TTL 30\nweb A 192.0.2.10\n  AAAA ::1\n")
    main = tmp_path / "main.zone"
    text = (
        "$ORIGIN inc.test.\n$TTL 300\nx A 192.0.2.1\n$INCLUDE hosts.inc sub.inc.test.\n"
        "  A 192.0.2.2\ny A 192.0.2.3\n"
    )
    main.write_text(text)
    _, records, _ = assert_read_alike(text, "inc.test.", str(main))
    assert [r[5] for r in records] == [
        f"{main}:3", f"{tmp_path / 'hosts.inc'}:2", f"{tmp_path / 'hosts.inc'}:3",
        f"{main}:5", f"{main}:6",
    ]  # fmt: skip
    assert records[3][0] == from_text("x.inc.test.")  # owner and $TTL restored after it


# --- random zone texts made of such pieces: (pieces that read, pieces that do not)

OWNERS = (["", " ", "\t", "@", "www", "WWW.Sub", "x.example.com.", "Other.NET.", "*", "*.wild",
           "a.@", ".", "a" * 63, "bücher", "_sip._tcp", "a\\.b"],
          ["a..b", "b" * 64, "$x"])  # fmt: skip
TTLS = (["", "300", "0", "1h30m", "1H", "2w", "4294967295", "007"], ["4294967296", "1x"])
CLASSES = (["", "IN", "in", "CLASS1"], ["CH", "ANY"])
RDATAS = (
    [("A", "192.0.2.1"), ("a", "10.0.0.1"), ("A", "( 192.0.2.7 )"), ("A", "\\# 4 C000020A"),
     ("AAAA", "2001:db8::1"), ("aaaa", "::"), ("AAAA", "::ffff:1.2.3.4"), ("CNAME", "www"),
     ("CNAME", "@"), ("CNAME", "Target.Example.NET."), ("CNAME", "."), ("NS", "ns1"),
     ("PTR", "host.example.com."), ("MX", "10 mail"), ("MX", "0 ."), ("TXT", "plain words"),
     ("TXT", '"quoted; with semicolon" second'), ("TXT", '""'), ("TXT", '"a""b"c"d"'),
     ("TXT", '( "multi"\n "line" )'), ("SOA", "ns hm 1 2 3 4 5"), ("SOA", "ns hm 1 1h 2m 3w 4d"),
     ("SOA", "ns hm (\n 1 2 3\n 4 5 )"), ("SRV", "0 5 5060 sip"), ("TYPE1", "192.0.2.9"),
     ("CAA", '0 issue "ca.example"')],
    [("A", "192.0.2"), ("A", "256.1.1.1"), ("A", "01.1.1.1"), ("A", "1.2.3.4 5"),
     ("AAAA", "1::2::3"), ("CNAME", "a..b"), ("MX", "65536 mail"), ("MX", "10"),
     ("TXT", '"' + "x" * 256 + '"'), ("TXT", '"open'), ("SOA", "ns hm 1 2 3 4"), ("FOO", "1")],
)  # fmt: skip
COMMENTS = (["", " ; comment", ";tight", ' ; (paren) "quote" ünïcode'], [])
DIRECTIVES = (["$TTL 300", "$ttl 1h", "$ORIGIN sub", "$ORIGIN Other.Example.", "$ORIGIN .",
               "$ORIGIN example.com.", "$GENERATE 1-2 g$ A 192.0.2.$", "", "   ",
               "\t; only a comment", ";"],
              ["$TTL 1x", "$TTL", "$FOO", ")", "$ORIGIN"])  # fmt: skip


def pieces(both: tuple[list, list], valid_only: bool) -> st.SearchStrategy:
    good, bad = both
    return st.sampled_from(good if valid_only or not bad else good + bad)


@st.composite
def record_lines(draw, valid_only: bool) -> str:
    owner = draw(pieces(OWNERS, valid_only))
    ttl = draw(pieces(TTLS, valid_only))
    rdclass = draw(pieces(CLASSES, valid_only))
    fields = [ttl, rdclass] if draw(st.booleans()) else [rdclass, ttl]
    rtype, rdata = draw(pieces(RDATAS, valid_only))
    separator = draw(st.sampled_from([" ", "\t", "  "]))
    words = separator.join(word for word in (*fields, rtype, rdata) if word)
    line = (owner or " ") + words if owner in ("", " ", "\t") else owner + separator + words
    return line + draw(pieces(COMMENTS, valid_only))


def zone_texts(valid_only: bool, max_lines: int) -> st.SearchStrategy:
    line = st.one_of(record_lines(valid_only), pieces(DIRECTIVES, valid_only))
    return st.builds(
        lambda first, lines, end: "$ORIGIN example.com.\n" + end.join([first, *lines]) + end,
        st.sampled_from(["$TTL 60", "; no $TTL"]),
        st.lists(line, max_size=max_lines),
        st.sampled_from(["\n", "\n", "\r\n"]),
    )


@given(text=zone_texts(valid_only=True, max_lines=25))
@settings(max_examples=300, deadline=None)
def test_random_zone_texts_read_alike(text: str):
    assert_read_alike(text)


@given(text=zone_texts(valid_only=False, max_lines=8))
@settings(max_examples=300, deadline=None)
def test_random_zone_texts_with_errors_read_alike(text: str):
    assert_read_alike(text)


# --------------------------------------------------------------------------- limits


def test_generate_above_the_default_cap_is_refused_at_its_line():
    text = HEAD + "$GENERATE 1-65537 host$ A 192.0.2.1\n"
    with pytest.raises(ZoneError) as caught:
        load_zone_text(text, "example.com.", filename="bad.zone")
    assert caught.value.problems == [
        "bad.zone:5: $GENERATE 1-65537 makes 65,537 records, above the limit of 65,536 "
        "(server: generate_max_records)"
    ]


def test_generate_cap_counts_the_step_and_is_configurable():
    limits = ZoneLimits(generate_max_records=10)
    zone = load_zone_text(HEAD + "$GENERATE 1-20/2 h$ A 192.0.2.1\n", "example.com.", limits=limits)
    assert rrset(zone, "h19.example.com.", "A")
    with pytest.raises(ZoneError, match=r"^bad.zone:5: \$GENERATE 0-10 makes 11 records"):
        load_zone_text(HEAD + "$GENERATE 0-10 h$ A 192.0.2.1\n", "example.com.", "bad.zone",
                       limits=limits)  # fmt: skip


def test_a_generate_of_four_billion_records_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(ZoneError, match="above the limit"):
        load_zone_text(HEAD + "$GENERATE 0-4294967295 h$ A 192.0.2.1\n", "example.com.")
    assert time.monotonic() - started < 1.0


def test_an_oversized_zone_file_is_refused_before_it_is_read(tmp_path: Path):
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "".join(f"h{i} A 192.0.2.1\n" for i in range(100)))
    size = path.stat().st_size
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path, limits=ZoneLimits(zone_max_bytes=1000))
    assert caught.value.problems == [
        f"{path}:1: the file is {size:,} bytes, above the limit of 1,000 (server: zone_max_bytes)"
    ]
    assert load_zone_file(path, limits=ZoneLimits(zone_max_bytes=size)).origin


def test_an_oversized_included_file_is_refused_at_the_include(tmp_path: Path):
    (tmp_path / "big.inc").write_text("".join(f"h{i} A 192.0.2.1\n" for i in range(100)))
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE big.inc\n")
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path, limits=ZoneLimits(zone_max_bytes=1000))
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:5: $INCLUDE big.inc: the file is ")
    assert problem.endswith("above the limit of 1,000 (server: zone_max_bytes)")


@pytest.mark.parametrize(
    ("more", "line"),
    [
        pytest.param("".join(f"h{i} A 192.0.2.1\n" for i in range(10)), 11, id="plain records"),
        pytest.param("$GENERATE 1-10 h$ A 192.0.2.1\n", 5, id="$GENERATE"),
        pytest.param("h TXT ( a )\n" * 10, 11, id="records the Reader reads"),
    ],
)
def test_more_records_than_the_limit_are_refused_at_the_first_too_many(more: str, line: int):
    limits = ZoneLimits(zone_max_records=9)  # HEAD has 3
    with pytest.raises(ZoneError) as caught:
        load_zone_text(HEAD + more, "example.com.", filename="bad.zone", limits=limits)
    assert caught.value.problems == [
        f"bad.zone:{line}: more than 9 records in the zone (server: zone_max_records)"
    ]


def test_records_of_included_files_count_towards_the_zone(tmp_path: Path):
    (tmp_path / "hosts.inc").write_text("".join(f"h{i} A 192.0.2.1\n" for i in range(5)))
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE hosts.inc\n" * 3)
    with pytest.raises(ZoneError, match=r"more than 12 records in the zone"):
        load_zone_file(path, limits=ZoneLimits(zone_max_records=12))


def test_a_diamond_of_includes_is_cut_off(tmp_path: Path):
    # 15 levels of two files, each including both files of the next: 2**15 files to read
    for level in range(15):
        text = f"$INCLUDE d{level + 1}a.inc\n$INCLUDE d{level + 1}b.inc\n" if level < 14 else ""
        for side in "ab":
            (tmp_path / f"d{level}{side}.inc").write_text(text)
    path = tmp_path / "example.com.zone"
    path.write_text(HEAD + "$INCLUDE d0a.inc\n")
    started = time.monotonic()
    with pytest.raises(ZoneError) as caught:
        load_zone_file(path)
    assert time.monotonic() - started < 2.0
    [problem] = caught.value.problems
    assert problem.endswith(f"more than {loader.MAX_INCLUDES:,} files included in the zone")
    assert problem.startswith(str(tmp_path / "d"))
